"""Incremental detokenisation from token bytes: exact, O(1) per token, never splits a UTF-8 character."""

from __future__ import annotations

import codecs
from typing import Sequence


class IncrementalDetokenizer:
    """Turns a stream of token ids into text deltas.

    Bytes of a character cut across tokens are held back until the character is complete; only a
    sequence that ends mid-character (cut by max_tokens) flushes a replacement character.
    """

    def __init__(self, token_bytes: Sequence[bytes]):
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Text completed by this token (possibly empty)."""
        return self._decoder.decode(self._token_bytes[token_id])

    def flush(self) -> str:
        """Text still held back, at the end of the sequence."""
        return self._decoder.decode(b"", final=True)
