"""Reasoning (Qwen3-style `<think>...</think>`): a free think block within a token budget, then the answer.

`ReasoningGrammar` wraps the answer's grammar (or none, for free text): its matcher forces `<think>`,
lets the model think freely (no end of sequence before `</think>`), forces `</think>` once the budget
is spent, forces the "\\n\\n" the model's template puts after it, and only then hands every token to
the answer's matcher. constrained/reasoning_text.py splits the generated text the same way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from constrained.compiler.backends.base import EosMatcher, Grammar, TokenizerSpec, mask_row
from constrained.errors import InvalidConstraint
from constrained.matcher import Matcher
from constrained.reasoning_text import CLOSE, OPEN

SEPARATOR = "\n\n"  # what Qwen3 writes between `</think>` and the answer

# Thinking tokens per OpenAI `reasoning_effort`; 0 is no thinking. max_tokens bounds thinking too.
THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 256, "medium": 1024, "high": 4096}


def thinking_budget(effort: str) -> int:
    """Tokens the think block may hold for a `reasoning_effort` (0: skip thinking)."""
    return THINKING_BUDGETS[effort]


def think_token_ids(tokenizer: PreTrainedTokenizerFast) -> tuple[int, int] | None:
    """(`<think>`, `</think>`) when the vocabulary has each as one token; None for a model that cannot think."""
    ids = [tokenizer.encode(tag, add_special_tokens=False) for tag in (OPEN, CLOSE)]
    return (ids[0][0], ids[1][0]) if all(len(i) == 1 for i in ids) else None


class ReasoningGrammar(Grammar):
    """A think block of at most `budget` tokens, then `answer` (None: any text). The rows are shared."""

    backend = "reasoning"

    def __init__(self, spec: TokenizerSpec, budget: int, answer: Grammar | None):
        ids = think_token_ids(spec.tokenizer)
        if ids is None:
            raise InvalidConstraint(f"the vocabulary has no single {OPEN} and {CLOSE} tokens: the model cannot think")
        self.open_id, self.close_id = ids
        self.budget = budget
        self.answer = answer
        self.spec = spec
        n = len(spec.tokenizer)
        thoughts = np.ones(n, dtype=bool)
        thoughts[[*spec.tokenizer.all_special_ids, *spec.eos_token_ids, self.open_id]] = False
        self.thought_row = _row(spec, thoughts)
        answer = np.ones(n, dtype=bool)
        answer[[self.open_id, self.close_id]] = False
        self.answer_row = _row(spec, answer)
        self.open_row, self.close_row = _row(spec, [self.open_id]), _row(spec, [self.close_id])
        self.separator_rows = [_row(spec, [t]) for t in spec.tokenizer.encode(SEPARATOR, add_special_tokens=False)]
        self.eos_row = spec.eos_only_row()

    def matcher(self) -> "ReasoningMatcher":
        answer = self.answer.matcher() if self.answer is not None else AnyText(self)
        return ReasoningMatcher(self, answer)


class ReasoningMatcher(Matcher):
    """Tracks the think block itself (`_prefix` tokens: `<think>`, thoughts, `</think>`, separator), then
    delegates to the answer's matcher (`_answered` tokens), so a rollback can cross back into the block."""

    def __init__(self, grammar: ReasoningGrammar, answer: Matcher):
        self._g = grammar
        self._answer = answer
        self._prefix = 0
        self._closed_at: int | None = None  # position of `</think>` in the prefix
        self._answered = 0

    def _block_row(self) -> torch.Tensor | None:
        """The only tokens the think block allows next; None once it is over (the answer decides)."""
        g = self._g
        if self._prefix == 0:
            return g.open_row
        if self._closed_at is None:
            return g.close_row if self._prefix - 1 >= g.budget else g.thought_row
        separated = self._prefix - self._closed_at - 1
        return g.separator_rows[separated] if separated < len(g.separator_rows) else None

    def accept_token(self, token_id: int) -> bool:
        row = self._block_row()
        if row is None:
            accepted = self._answer.accept_token(token_id)
            self._answered += accepted
            return accepted
        if not _allows(row, token_id):
            return False
        if self._closed_at is None and token_id == self._g.close_id:
            self._closed_at = self._prefix
        self._prefix += 1
        return True

    def validate_tokens(self, token_ids: Sequence[int]) -> int:
        accepted = 0
        for token_id in token_ids:
            if not self.accept_token(token_id):
                break
            accepted += 1
        self.rollback(accepted)
        return accepted

    def rollback(self, num_tokens: int) -> None:
        undo = min(num_tokens, self._answered)
        if undo:
            self._answer.rollback(undo)
            self._answered -= undo
        num_tokens -= undo
        if num_tokens > self._prefix:
            raise ValueError(f"cannot roll back {num_tokens} tokens: only {self._prefix} were accepted")
        self._prefix -= num_tokens
        if self._closed_at is not None and self._closed_at >= self._prefix:
            self._closed_at = None

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        allowed = self._block_row()
        if allowed is None:
            self._answer.fill_bitmask(bitmask, row)
        else:
            mask_row(bitmask, row).copy_(allowed)

    def is_accepting(self) -> bool:
        return self._block_row() is None and self._answer.is_accepting()

    def is_terminated(self) -> bool:
        return self._block_row() is None and self._answer.is_terminated()


class AnyText(EosMatcher):
    """The answer when nothing constrains it: any token of the tokenizer but the think tags, EOS whenever
    the model likes."""

    def __init__(self, grammar: ReasoningGrammar):
        super().__init__(grammar.spec.eos_token_ids, grammar.eos_row)
        self._g = grammar

    def _consume(self, token_id: int) -> bool:
        return _allows(self._g.answer_row, token_id)

    def _validate(self, token_ids: list[int], eos_follows: bool) -> int:
        for i, token_id in enumerate(token_ids):
            if not _allows(self._g.answer_row, token_id):
                return i
        return len(token_ids) + eos_follows

    def _rollback(self, num_tokens: int) -> None:
        pass  # free text has no state to undo

    def _fill(self, target: torch.Tensor) -> None:
        target.copy_(self._g.answer_row)

    def _accepting(self) -> bool:
        return True

    def _terminated(self) -> bool:
        return False


def _row(spec: TokenizerSpec, allowed: np.ndarray | list[int]) -> torch.Tensor:
    """A bitmask row from a boolean vector over token ids, or from a list of ids."""
    bits = np.zeros(spec.bitmask_width * 32, dtype=bool)
    if isinstance(allowed, list):
        bits[allowed] = True
    else:
        bits[:len(allowed)] = allowed
    return torch.from_numpy(np.packbits(bits, bitorder="little").view(np.int32).copy())


def _allows(row: torch.Tensor, token_id: int) -> bool:
    return 0 <= token_id < row.numel() * 32 and bool((int(row[token_id >> 5]) >> (token_id & 31)) & 1)
