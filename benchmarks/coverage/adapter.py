"""What each backend under test provides: compile a schema into a Checker that walks token ids.

A Checker answers "does the constraint accept this token sequence" (every token allowed, accepting at
the end) and times the mask computed before each token. Every backend sees the same token ids: the Qwen
tokenizer's encoding of the instance's serialisation.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from constrained.models import LoadedModel


class Refused(Exception):
    """The backend does not compile the schema; `reason` is a short key for counting, `detail` the full message."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason_key(reason)
        self.detail = detail or reason


def reason_key(message: str) -> str:
    """A message with numbers and long quoted values blanked and cut short, so equal causes count together."""
    message = re.sub(r"\d+", "#", message.splitlines()[0] if message else "")
    message = re.sub(r'"[^"]{25,}"', '"…"', message)
    return message[:90]


class Checker(ABC):
    """One compiled schema; `reset` starts a new walk from the beginning."""

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def advance(self, token_id: int) -> bool:
        """Consume one token; False if the constraint forbids it (the walk is then abandoned)."""

    @abstractmethod
    def fill_mask(self) -> None:
        """Compute the mask of allowed next tokens (into a buffer the checker owns)."""

    @abstractmethod
    def is_accepting(self) -> bool:
        """The tokens so far form a complete instance: end of sequence allowed."""

    def rollback(self, num_tokens: int, walked: Sequence[int]) -> None:
        """Undo the last `num_tokens` of `walked`, the tokens advanced since `reset`; here by replaying the rest."""
        self.reset()
        for token_id in walked[:len(walked) - num_tokens]:
            self.advance(token_id)

    def accepts(self, token_ids: Sequence[int]) -> bool:
        self.reset()
        return all(self.advance(t) for t in token_ids) and self.is_accepting()

    def mask_times(self, token_ids: Sequence[int]) -> list[float]:
        """Seconds to compute the mask before each token of an accepted sequence."""
        self.reset()
        times = []
        for token_id in token_ids:
            start = time.perf_counter()
            self.fill_mask()
            times.append(time.perf_counter() - start)
            if not self.advance(token_id):
                break
        return times


class Adapter(ABC):
    """A backend bound to the model's tokenizer; built once per worker process."""

    name: ClassVar[str]

    def __init__(self, model: LoadedModel, deadline_s: float):
        self.model = model
        self.deadline_s = deadline_s

    @abstractmethod
    def compile(self, schema: Any) -> Checker:
        """A Checker for `schema`, or Refused (unsupported, invalid, or past the deadline)."""

    def cached_compile_s(self, schema: Any) -> float | None:
        """Seconds for a second compile of the same schema, for a backend that caches; None otherwise."""
        return None
