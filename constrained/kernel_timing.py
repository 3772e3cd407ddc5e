"""Timing two ways of computing the same thing once, at load, to keep the faster on this machine (prepack.py,
lone_row_step.py): which kernel wins depends on the CPU, so it is measured rather than assumed."""

from __future__ import annotations

import time
from typing import Callable

import torch


def median_seconds(call: Callable[[], object], *, calls: int = 5) -> float:
    """The median of `calls` timed runs of `call`, after an untimed one (a compile, a cold cache)."""
    times = []
    with torch.inference_mode():
        for _ in range(calls + 1):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return sorted(times[1:])[calls // 2]
