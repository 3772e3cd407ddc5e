"""The batch's token masks, prepared on a worker thread while the forward pass runs.

Each step the constrained rows' matchers fill one packed int32 bitmask (allocated once), which is
unpacked into an additive float mask (0 allowed, -inf forbidden; allocated once) by one table lookup
per byte. Both llguidance's fill and torch's kernels release the GIL, so this work overlaps the
model's forward pass; the main thread only adds the ready mask to the logits. Adding costs the same
whatever is allowed: on the CPU `masked_fill_` with a boolean mask took 26 ms for 32 x 151,936
logits, the add 0.7 ms. On a GPU the packed bitmask (pinned)
is copied over and unpacked there: 4 bytes per 32 tokens cross the bus, not 32.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from constrained.matcher import Matcher

# _BYTE_BIAS[b, i]: -inf where bit i of byte b is 0, else 0. A little-endian int32 word j read as
# bytes 4j..4j+3 puts token 32j+8k+i at bit i of byte 4j+k: bytes unpack in token order.
_BYTE_BIAS = torch.zeros(256, 8).masked_fill_(((torch.arange(256)[:, None] >> torch.arange(8)) & 1) == 0,
                                               float("-inf"))


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
        self._bias = torch.zeros(max_rows, width * 32, device=device)  # float32, like the logits
        self._byte_bias = _BYTE_BIAS.to(device)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="constrained-masks")
        self._pending: Future[torch.Tensor] | None = None
        self.prepare_s = 0.0
        self.wait_s = 0.0

    def start(self, matchers: list[Matcher]) -> None:
        """Begin filling and unpacking the masks of `matchers` (one per constrained row, in order).
        Matchers must not advance until `wait` returned. No rows: no hand-off to the worker."""
        self._pending = self._worker.submit(self._prepare, matchers) if matchers else None

    def wait(self) -> torch.Tensor:
        """The started masks: float32 [rows, vocab_rows], -inf where a token is forbidden, else 0;
        a view of a buffer that the next `start` overwrites."""
        if self._pending is None:
            return self._bias[:0, : self.vocab_rows]
        start = time.perf_counter()
        bias = self._pending.result()
        self.wait_s += time.perf_counter() - start
        self._pending = None
        return bias

    def _prepare(self, matchers: list[Matcher]) -> torch.Tensor:
        start = time.perf_counter()
        rows = len(matchers)
        for row, matcher in enumerate(matchers):
            matcher.fill_bitmask(self.bitmask, row)
        index = self._byte_index[:rows]
        index.copy_(self.bitmask[:rows].view(torch.uint8), non_blocking=True)
        bias = self._bias[:rows]
        torch.index_select(self._byte_bias, 0, index.view(-1), out=bias.view(-1, 8))
        self.prepare_s += time.perf_counter() - start
        return bias[:, : self.vocab_rows]


def apply_mask_bias_(logits: torch.Tensor, bias: torch.Tensor, rows: list[int]) -> None:
    """Add the masks to the logits: `bias[k]` (0 or -inf per token) to `logits[rows[k]]` ([rows, vocab] float32)."""
    if not rows:
        return
    if len(rows) == logits.shape[0]:  # every row constrained, in order: no gather, no scatter
        logits.add_(bias)
        return
    logits.index_add_(0, torch.tensor(rows, device=logits.device), bias)
