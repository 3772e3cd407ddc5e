"""Stop strings: cut the output before the first stop string, holding back text that may start one."""

from __future__ import annotations

from constrained.text_tail import partial_suffix


class StopStringMatcher:
    """Feeds text deltas; returns the text safe to emit and whether a stop string was hit."""

    def __init__(self, stops: tuple[str, ...]):
        self._stops = stops
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        self._pending += text
        hits = [i for i in (self._pending.find(s) for s in self._stops) if i >= 0]
        if hits:
            emit, self._pending = self._pending[: min(hits)], ""
            return emit, True
        keep = max((partial_suffix(self._pending, s) for s in self._stops), default=0)
        emit = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(emit):]
        return emit, False

    def flush(self) -> str:
        """Held-back text, emitted when the sequence ends for another reason."""
        text, self._pending = self._pending, ""
        return text
