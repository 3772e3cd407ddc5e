"""Plain llguidance, as Outlines' llguidance backend uses it: `grammar_from_json_schema` with default options
(flexible whitespace, its own formats). The first mask is part of the compile time (its lexer is lazy)."""

from __future__ import annotations

from typing import Any

import llguidance
import llguidance.hf
import torch

from benchmarks.coverage.adapter import Adapter, Checker, Refused


class LlguidanceAdapter(Adapter):
    name = "llguidance"

    def __init__(self, model, deadline_s: float):
        super().__init__(model, deadline_s)
        self._tokenizer = llguidance.hf.from_tokenizer(model.tokenizer, n_vocab=model.vocab_rows,
                                                       eos_token=list(model.eos_token_ids))
        self._width = (model.vocab_rows + 31) // 32

    def compile(self, schema: Any) -> Checker:
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema)
        except (ValueError, TypeError) as exc:
            raise Refused(str(exc)) from None
        matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
        if not matcher.is_error():
            matcher.compute_bitmask()
        if matcher.is_error():
            raise Refused(matcher.get_error())
        return LlguidanceChecker(matcher, self._width)


class LlguidanceChecker(Checker):
    def __init__(self, prototype: llguidance.LLMatcher, width: int):
        self._prototype = prototype
        self._matcher = prototype.deep_copy()
        self._bitmask = torch.zeros(width, dtype=torch.int32)

    def reset(self) -> None:
        self._matcher = self._prototype.deep_copy()

    def advance(self, token_id: int) -> bool:
        return self._matcher.try_consume_tokens([token_id]) == 1

    def rollback(self, num_tokens: int, walked) -> None:
        self._matcher.rollback(num_tokens)

    def fill_mask(self) -> None:
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.data_ptr(), self._bitmask.numel() * 4)

    def is_accepting(self) -> bool:
        return self._matcher.is_accepting()
