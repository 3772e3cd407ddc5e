"""What every compiler backend provides, and the small pieces they share.

A backend is bound to one tokenizer (built once, it holds the tokenizer's byte vocabulary in its own
form); `compile` turns a validated constraint into a `Grammar`, which is shared by every request using
the constraint and hands each request its own `Matcher`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Sequence, TypeVar

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from constrained.compiler.keywords import KeywordTable
from constrained.compiler.schema_check import check_constraint
from constrained.constraints import Constraint
from constrained.errors import CompileError, CompileTimeout
from constrained.matcher import Matcher

T = TypeVar("T")


@dataclass(frozen=True)
class TokenizerSpec:
    """The tokenizer a backend serves, the model's logits rows, and every id that ends a sequence."""

    tokenizer: PreTrainedTokenizerFast
    vocab_rows: int
    eos_token_ids: tuple[int, ...]

    @property
    def bitmask_width(self) -> int:
        """int32 words per bitmask row: ceil(vocab_rows / 32)."""
        return bitmask_width(self.vocab_rows)

    def eos_only_row(self) -> torch.Tensor:
        """A bitmask row allowing the EOS tokens alone: the mask of a finished sequence."""
        row = torch.zeros(self.bitmask_width, dtype=torch.int32)
        set_bits(row.numpy(), self.eos_token_ids)
        return row


def bitmask_width(vocab_rows: int) -> int:
    """int32 words per row of a token bitmask over `vocab_rows` logits rows: ceil(vocab_rows / 32)."""
    return (vocab_rows + 31) // 32


class Grammar(ABC):
    """A compiled constraint: immutable, shared by the requests that use it."""

    backend: ClassVar[str]

    @abstractmethod
    def matcher(self) -> Matcher:
        """A fresh matcher at the start of the constraint, for one sequence."""


class CompiledGrammar(Grammar):
    """A grammar a backend compiled: it can be stored on disk and rebuilt by the backend's `load`."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """What the backend's `load` needs to rebuild this grammar without compiling it (for the disk cache)."""


class Backend(ABC):
    """Compiles constraints for one tokenizer; `table` says which JSON Schema keywords it enforces."""

    name: ClassVar[str]
    table: ClassVar[KeywordTable]

    @classmethod
    def validate(cls, constraint: Constraint) -> None:
        """Raise InvalidConstraint unless this backend can enforce `constraint` exactly. Cheap: no tokenizer."""
        check_constraint(constraint, cls.table)

    @abstractmethod
    def compile(self, constraint: Constraint, deadline: float) -> CompiledGrammar:
        """Compile a validated constraint; CompileTimeout once `time.monotonic()` passes `deadline`."""

    @abstractmethod
    def load(self, data: bytes, deadline: float) -> CompiledGrammar:
        """Rebuild a grammar from its `to_bytes()`, made by this backend for the same tokenizer."""


class EosMatcher(Matcher):
    """A matcher over a grammar that knows nothing of EOS. EOS is accepted where the grammar accepts; it ends
    the sequence (no other token after it, a mask of EOS alone) until a rollback takes it back. Subclasses
    give the grammar's side: `_consume`, `_validate`, `_rollback`, `_fill`, `_accepting`, `_terminated`."""

    def __init__(self, eos_token_ids: Iterable[int], eos_only: torch.Tensor):
        self._eos = frozenset(eos_token_ids)
        self._eos_only = eos_only  # the mask of an ended sequence
        self._ended = False  # EOS accepted

    @abstractmethod
    def _consume(self, token_id: int) -> bool:
        """Advance the grammar by one token that is not EOS; False (state unchanged) if it forbids it."""

    @abstractmethod
    def _validate(self, token_ids: list[int], eos_follows: bool) -> int:
        """Dry run over `token_ids` (none of them EOS): how many the grammar accepts in a row, plus one when
        it accepts them all, `eos_follows` and it is accepting after them. State unchanged."""

    @abstractmethod
    def _rollback(self, num_tokens: int) -> None:
        """Undo the grammar's last `num_tokens` tokens (at least one)."""

    @abstractmethod
    def _fill(self, target: torch.Tensor) -> None:
        """Write the grammar's allowed tokens (EOS bits iff accepting) into the bitmask row `target`."""

    @abstractmethod
    def _accepting(self) -> bool:
        """The grammar is at a complete match."""

    @abstractmethod
    def _terminated(self) -> bool:
        """The grammar admits no further token."""

    def accept_token(self, token_id: int) -> bool:
        if self._ended:
            return False
        if token_id in self._eos:
            self._ended = self._accepting()
            return self._ended
        return self._consume(token_id)

    def validate_tokens(self, token_ids: Sequence[int]) -> int:
        if self._ended:
            return 0
        tokens = list(token_ids)
        end = next((i for i, t in enumerate(tokens) if t in self._eos), len(tokens))
        return self._validate(tokens[:end], end < len(tokens))

    def rollback(self, num_tokens: int) -> None:
        if num_tokens and self._ended:
            self._ended = False
            num_tokens -= 1
        if num_tokens:
            self._rollback(num_tokens)

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        target = mask_row(bitmask, row)
        if self._ended:
            target.copy_(self._eos_only)
        else:
            self._fill(target)

    def is_accepting(self) -> bool:
        return self._ended or self._accepting()

    def is_terminated(self) -> bool:
        return self._ended or self._terminated()


def mask_row(bitmask: torch.Tensor, row: int) -> torch.Tensor:
    """`bitmask[row]`, checked to be what the backends write into through a raw pointer."""
    if bitmask.dtype != torch.int32 or bitmask.device.type != "cpu" or not bitmask.is_contiguous():
        raise ValueError("the bitmask must be a contiguous int32 CPU tensor [batch, ceil(vocab_rows / 32)]")
    return bitmask[row]


def set_bits(row: np.ndarray, token_ids: tuple[int, ...]) -> None:
    """Set the bits of `token_ids` in an int32 bitmask row (a numpy view: no tensor indexing per bit)."""
    for token_id in token_ids:
        row[token_id >> 5] |= np.uint32(1 << (token_id & 31)).view(np.int32)


def choice_regex(options: tuple[str, ...]) -> str:
    """A regex matching exactly one of `options` (Rust `regex` syntax, shared by both backends)."""
    return "|".join("".join("\\" + c if c in _META else c for c in option) for option in options)


_META = set("\\.+*?()|[]{}^$#&-~")


def call_with_deadline(fn: Callable[[], T], deadline: float, what: str) -> T:
    """Run `fn` in a daemon thread; CompileTimeout if it has not returned by `deadline`.

    Only for work that releases the GIL (the caller's threads keep running) and stops by itself
    (the thread is abandoned on timeout, not killed).
    """
    if time.monotonic() >= deadline:  # spent before the work starts (e.g. on the tokenizer): no race to lose
        raise CompileTimeout(f"compiling {what} took longer than the deadline")
    box: list = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))

    worker = threading.Thread(target=run, name="constrained-compile", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if not box:
        raise CompileTimeout(f"compiling {what} took longer than the deadline")
    ok, value = box[0]
    if not ok:
        raise CompileError(f"{what}: {value}") from value
    return value
