"""The request-level matcher: one per generated sequence, advanced token by token.

EOS contract (every implementation keeps it, tests check it):
- `fill_bitmask` sets the bits of the end-of-sequence tokens if and only if `is_accepting()`:
  the text so far is a complete match of the constraint.
- `accept_token(eos)` succeeds only when accepting; afterwards `is_terminated()` is True and no
  other token is accepted.
- `is_terminated()` is also True when the grammar admits no further non-EOS token: then the mask
  holds EOS alone, and the engine may finish the sequence without sampling.
- A rejected token leaves the state unchanged and returns False.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import torch


class Matcher(ABC):
    """Tracks one sequence's position in a compiled constraint."""

    @abstractmethod
    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; False (state unchanged) if the constraint forbids it."""

    @abstractmethod
    def validate_tokens(self, token_ids: Sequence[int]) -> int:
        """Dry run: how many leading tokens of `token_ids` would be accepted. State unchanged."""

    @abstractmethod
    def rollback(self, num_tokens: int) -> None:
        """Undo the last `num_tokens` accepted tokens."""

    @abstractmethod
    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed next tokens into `bitmask[row]` (int32, bit i of word j = token 32*j+i)."""

    @abstractmethod
    def is_accepting(self) -> bool:
        """True when the output so far is complete: EOS is allowed now."""

    @abstractmethod
    def is_terminated(self) -> bool:
        """True once EOS was accepted or nothing but EOS can follow."""

    def forced_tokens(self) -> list[int]:
        """Tokens the constraint forces next, as the tokenizer itself would split the forced text
        (the engine appends them without sampling). State unchanged. Default: none known."""
        return []
