"""xgrammar as Outlines' xgrammar backend uses it: `compile_json_schema` with its defaults (any whitespace,
strict_mode: undeclared properties forbidden). One compile thread, like every other backend here."""

from __future__ import annotations

import json
from typing import Any

import xgrammar as xgr

from benchmarks.coverage.adapter import Adapter, Checker, Refused


class XgrammarAdapter(Adapter):
    name = "xgrammar"

    def __init__(self, model, deadline_s: float):
        super().__init__(model, deadline_s)
        info = xgr.TokenizerInfo.from_huggingface(model.tokenizer, vocab_size=model.vocab_rows,
                                                  stop_token_ids=list(model.eos_token_ids))
        self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self._vocab_size = model.vocab_rows

    def compile(self, schema: Any) -> Checker:
        try:
            compiled = self._compiler.compile_json_schema(json.dumps(schema))
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError/its own types for unsupported schemas
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        return XgrammarChecker(compiled, self._vocab_size)


class XgrammarChecker(Checker):
    def __init__(self, compiled, vocab_size: int):
        self._matcher = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)

    def reset(self) -> None:
        self._matcher.reset()

    def advance(self, token_id: int) -> bool:
        return self._matcher.accept_token(token_id)

    def fill_mask(self) -> None:
        self._matcher.fill_next_token_bitmask(self._bitmask, 0)

    def is_accepting(self) -> bool:
        return self._matcher.is_completed()
