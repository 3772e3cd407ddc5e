"""`constrained` itself: the Compiler with backend "auto", through our Matcher (what the server runs)."""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks.coverage.adapter import Adapter, Checker, Refused
from constrained.compiler import Compiler
from constrained.constraints import Constraint
from constrained.errors import ConstrainedError, InvalidConstraint
from constrained.matcher import Matcher


class OursAdapter(Adapter):
    name = "constrained"

    def __init__(self, model, deadline_s: float):
        super().__init__(model, deadline_s)
        self.compiler = Compiler(model.tokenizer, vocab_rows=model.vocab_rows, eos_token_ids=model.eos_token_ids,
                                 deadline_s=deadline_s)

    def compile(self, schema: Any) -> Checker:
        try:
            grammar = self.compiler.compile(Constraint.json_schema(schema))
        except InvalidConstraint as exc:
            core = str(exc).split(": ", 1)[-1] if exc.keyword or exc.path else str(exc)
            raise Refused(f"{exc.keyword or '-'}: {core}", str(exc)) from None
        except ConstrainedError as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        return OursChecker(grammar, self.compiler.bitmask_width)

    def cached_compile_s(self, schema: Any) -> float:
        """The cache lookup alone: a request builds (and hashes) its Constraint before compiling either way."""
        constraint = Constraint.json_schema(schema)
        start = time.perf_counter()
        self.compiler.compile(constraint)
        return time.perf_counter() - start


class OursChecker(Checker):
    def __init__(self, grammar, bitmask_width: int):
        self._grammar = grammar
        self._bitmask = torch.zeros(1, bitmask_width, dtype=torch.int32)
        self._matcher: Matcher = grammar.matcher()

    def reset(self) -> None:
        self._matcher = self._grammar.matcher()

    def advance(self, token_id: int) -> bool:
        return self._matcher.accept_token(token_id)

    def rollback(self, num_tokens: int, walked) -> None:
        self._matcher.rollback(num_tokens)

    def fill_mask(self) -> None:
        self._matcher.fill_bitmask(self._bitmask, 0)

    def is_accepting(self) -> bool:
        return self._matcher.is_accepting()
