"""Scheduler: who runs this step. Waiting sequences join the running batch while there is room."""

from __future__ import annotations

from collections import deque

from constrained.engine.sequence import Sequence


class Scheduler:
    def __init__(self, *, max_batch_size: int, max_waiting: int):
        self.max_batch_size = max_batch_size
        self.max_waiting = max_waiting
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, sequences: list[Sequence]) -> None:
        self.waiting.extend(sequences)

    def admit(self) -> list[Sequence]:
        """Move waiting sequences into the batch (first come, first served); return the newcomers."""
        newcomers = []
        while self.waiting and len(self.running) + len(newcomers) < self.max_batch_size:
            newcomers.append(self.waiting.popleft())
        self.running.extend(newcomers)
        return newcomers

    def remove(self, request_id: str) -> list[Sequence]:
        """Take every sequence of a request out of the queues; return those that were running or waiting."""
        gone = [s for s in self.waiting if s.request_id == request_id]
        self.waiting = deque(s for s in self.waiting if s.request_id != request_id)
        gone += [s for s in self.running if s.request_id == request_id]
        return gone

    def retire_finished(self) -> list[int]:
        """Drop finished sequences from the batch; the last running ones fill their places, so the
        KV cache copies one row per finished sequence, not every row behind it. Returns the kept
        rows' former indices, in their new order."""
        live = [i for i, s in enumerate(self.running) if s.finish_reason is None]
        movers = iter(i for i in live if i >= len(live))
        kept = [i if self.running[i].finish_reason is None else next(movers) for i in range(len(live))]
        self.reorder(kept)
        return kept

    def reorder(self, rows: list[int]) -> list[Sequence]:
        """The running batch as former rows `rows`, in that order; returns it."""
        self.running = [self.running[i] for i in rows]
        return self.running

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)
