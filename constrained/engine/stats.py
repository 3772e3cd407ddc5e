"""Counters the engine and the compiler keep for monitoring: plain ints, read at scrape time.

Each is written by one thread (the engine thread for `EngineStats`; compile workers under the compiler's
lock for `CompileStats`) with an integer add: no lock in the hot path. A reader on another thread (the
`/metrics` scrape, api/metrics.py) may see a step half-counted, never a wrong total afterwards.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Bucket upper bounds, in seconds.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COMPILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Histogram:
    """A fixed-bucket histogram as two lists of ints and a float: `observe` is one bisect and two adds."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # Prometheus buckets are `<= le`
        self.sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (le, count) pairs ending with +Inf, and the sum: what a HistogramMetricFamily takes."""
        counts, total = list(self.counts), self.sum
        buckets, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts):
            running += count
            buckets.append((bound, running))
        return buckets, total

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class EngineStats:
    """What `Engine` counts as it runs. Times in seconds."""

    tokens_sampled: int = 0  # drawn by the sampler (one per running row per step, EOS included)
    tokens_forced: int = 0  # appended by fast-forward without sampling
    redraws: int = 0  # rows whose unmasked draw their matcher forbade, drawn again
    rejected: int = 0  # submissions refused because the queue was full (EngineOverloaded: HTTP 429)
    aborted_requests: int = 0  # requests aborted while they still had sequences waiting or running
    constraint_failures: int = 0  # requests failed by their matcher (ConstraintFailed)
    step_seconds: Histogram = field(default_factory=lambda: Histogram(STEP_BUCKETS))
    queue_wait_seconds: Histogram = field(default_factory=lambda: Histogram(QUEUE_BUCKETS))


@dataclass
class CompileStats:
    """What `Compiler` counts (under its lock) about its in-memory grammar cache and compiles."""

    hits: int = 0  # grammars served from memory
    misses: int = 0  # compiles started (not in memory, no equal compile in flight)
    failures: int = 0  # compiles that raised (invalid constraint, timeout, backend error); remembered
    evictions: int = 0  # grammars dropped to stay within the count or byte bound
    compile_seconds: Histogram = field(default_factory=lambda: Histogram(COMPILE_BUCKETS))


@dataclass
class DiskCacheStats:
    """What `DiskCache` counts about its entries."""

    hits: int = 0  # entries read back intact
    misses: int = 0  # keys with no entry
    failures: int = 0  # damaged entries, entries that failed to load, writes that failed
    evictions: int = 0  # entries deleted to stay within max_bytes
