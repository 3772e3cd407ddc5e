"""The batch's token masks, prepared on a worker thread while the forward pass runs.

Each step the constrained rows' matchers fill one packed int32 bitmask (allocated once), which is
unpacked into a boolean "forbidden" tensor (allocated once) by one table lookup per byte. Both
llguidance's fill and torch's kernels release the GIL, so this work overlaps the model's forward
pass; the main thread only applies the ready mask to the logits. On a GPU the packed bitmask (pinned)
is copied over and unpacked there: 4 bytes per 32 tokens cross the bus, not 32.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from constrained.matcher import Matcher

# _FORBIDDEN_BITS[b, i]: bit i of byte b is 0. A little-endian int32 word j read as bytes 4j..4j+3
# puts token 32j+8k+i at bit i of byte 4j+k: bytes unpack in token order.
_FORBIDDEN_BITS = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1) == 0


class BatchMasks:
    """`start` the step's masks before the forward pass, `wait` for them after it. `prepare_s` and
    `wait_s` add up the worker's time on masks and the time the step was blocked on them: the
    benchmarks report both, to show the mask work hidden behind the forward pass (or not)."""

    def __init__(self, *, max_rows: int, vocab_rows: int, device: torch.device):
        self.vocab_rows = vocab_rows
        width = (vocab_rows + 31) // 32
        pinned = device.type == "cuda"
        self.bitmask = torch.zeros(max_rows, width, dtype=torch.int32, pin_memory=pinned)  # row k: k-th constrained row
        self._byte_index = torch.zeros(max_rows, width * 4, dtype=torch.int32, device=device)
        self._forbidden = torch.zeros(max_rows, width * 32, dtype=torch.bool, device=device)
        self._forbidden_bits = _FORBIDDEN_BITS.to(device)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="constrained-masks")
        self._pending: Future[torch.Tensor] | None = None
        self.prepare_s = 0.0
        self.wait_s = 0.0

    def start(self, matchers: list[Matcher]) -> None:
        """Begin filling and unpacking the masks of `matchers` (one per constrained row, in order).
        Matchers must not advance until `wait` returned. No rows: no hand-off to the worker."""
        self._pending = self._worker.submit(self._prepare, matchers) if matchers else None

    def wait(self) -> torch.Tensor:
        """The started masks: a bool tensor [rows, vocab_rows], True where a token is forbidden; a
        view of a buffer that the next `start` overwrites."""
        if self._pending is None:
            return self._forbidden[:0, : self.vocab_rows]
        start = time.perf_counter()
        forbidden = self._pending.result()
        self.wait_s += time.perf_counter() - start
        self._pending = None
        return forbidden

    def _prepare(self, matchers: list[Matcher]) -> torch.Tensor:
        start = time.perf_counter()
        rows = len(matchers)
        for row, matcher in enumerate(matchers):
            matcher.fill_bitmask(self.bitmask, row)
        index = self._byte_index[:rows]
        index.copy_(self.bitmask[:rows].view(torch.uint8), non_blocking=True)
        forbidden = self._forbidden[:rows]
        torch.index_select(self._forbidden_bits, 0, index.view(-1), out=forbidden.view(-1, 8))
        self.prepare_s += time.perf_counter() - start
        return forbidden[:, : self.vocab_rows]


def apply_forbidden_(logits: torch.Tensor, forbidden: torch.Tensor, rows: list[int]) -> None:
    """Set to -inf the forbidden logits: `forbidden[k]` masks `logits[rows[k]]` ([rows, vocab] float)."""
    if not rows:
        return
    if len(rows) == logits.shape[0]:  # every row constrained, in order: no gather, no scatter
        logits.masked_fill_(forbidden, float("-inf"))
        return
    index = torch.tensor(rows, device=logits.device)
    logits[index] = logits[index].masked_fill_(forbidden, float("-inf"))
