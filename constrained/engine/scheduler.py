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
        """Drop finished sequences from the batch; return the kept rows' former indices."""
        kept = [i for i, s in enumerate(self.running) if s.finish_reason is None]
        self.running = [self.running[i] for i in kept]
        return kept

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)
