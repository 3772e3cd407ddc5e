"""Token masks for the rows whose draw needs one (sampler.py says when): a matcher fills a packed bitmask,
unpacked here into a bias to add to logits or a 0/1 row to multiply probabilities by, or listed as the few
tokens it allows. On a GPU the packed rows (pinned) are copied over and unpacked there: 4 bytes per 32 tokens
cross the bus, not 32.
"""

from __future__ import annotations

import time

import torch

from constrained.compiler.backends.base import bitmask_width
from constrained.matcher import Matcher

# _BYTE_KEPT[b, i]: bit i of byte b, as 1.0 or 0.0; _BYTE_BIAS[b, i]: 0 where it is set, else -inf. A
# little-endian int32 word j read as bytes 4j..4j+3 puts token 32j+8k+i at bit i of byte 4j+k: bytes
# unpack in token order.
_BYTE_KEPT = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).float()
_BYTE_BIAS = torch.zeros(256, 8).masked_fill_(_BYTE_KEPT == 0, float("-inf"))
_BITS = torch.arange(32, dtype=torch.int32)

# A row whose mask has at most this many nonzero words (of 32 tokens) allows few tokens (a number, a key's
# first token, an enum): it draws among them alone (allowed_tokens), not over the whole vocabulary
# (benchmarks/SPEED.md, "Why the few-tokens path").
FEW_WORDS = 256


class BatchMasks:
    """Fills and unpacks the masks of up to `max_rows` matchers at a time, into buffers allocated
    once. `rows` and `seconds` add up the masks filled and the time spent filling them: the benchmarks
    report both, to show what the mask work costs per step."""

    def __init__(self, *, max_rows: int, vocab_rows: int, device: torch.device):
        self.vocab_rows = vocab_rows
        width = bitmask_width(vocab_rows)
        self.bitmask = torch.zeros(max_rows, width, dtype=torch.int32, pin_memory=device.type == "cuda")
        # the packed rows the device reads: the bitmask itself on the CPU, a copy on a GPU
        self._packed = (self.bitmask if device.type == "cpu"
                        else torch.zeros(max_rows, width, dtype=torch.int32, device=device))
        self._byte_index = torch.zeros(max_rows, width * 4, dtype=torch.int32, device=device)
        self._unpacked = torch.zeros(max_rows, width * 32, device=device)  # float32, like the logits
        self._byte_bias, self._byte_kept = _BYTE_BIAS.to(device), _BYTE_KEPT.to(device)
        self._bits = _BITS.to(device)
        self.rows = 0
        self.seconds = 0.0

    def fill(self, matchers: list[Matcher]) -> torch.Tensor:
        """The matchers' packed masks: int32 [len(matchers), words] on the device, bit i of word j set
        when token 32j + i is allowed; a view of a buffer that the next call overwrites."""
        start = time.perf_counter()
        rows = len(matchers)
        for row, matcher in enumerate(matchers):
            matcher.fill_bitmask(self.bitmask, row)
        packed = self._packed[:rows]
        if packed.data_ptr() != self.bitmask.data_ptr():
            packed.copy_(self.bitmask[:rows], non_blocking=True)
        self.rows += rows
        self.seconds += time.perf_counter() - start
        return packed

    def bias(self, matchers: list[Matcher]) -> torch.Tensor:
        """The matchers' masks, to add to logits: float32 [len(matchers), vocab_rows] on the device,
        -inf where a token is forbidden, else 0; a view of a buffer that the next call overwrites."""
        return self._unpack(self.fill(matchers), self._byte_bias)

    def kept(self, packed: torch.Tensor) -> torch.Tensor:
        """Packed masks (from `fill`) to multiply probabilities by: 1.0 where a token is allowed, else 0.0."""
        return self._unpack(packed, self._byte_kept)

    def few_allowed(self, packed: torch.Tensor) -> torch.Tensor:
        """Per packed row, whether it allows few tokens (FEW_WORDS): a bool tensor."""
        return (packed != 0).sum(dim=1) <= FEW_WORDS

    def allowed_tokens(self, packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens packed rows allow, as two flat tensors: each token's row and its id, ordered by
        row, then id. Costs a pass over the words and one per nonzero word, not one per token."""
        pairs = torch.nonzero(packed)  # (row, word) of each nonzero word, in order
        bits = (packed[pairs[:, 0], pairs[:, 1]][:, None] >> self._bits) & 1
        pair, bit = torch.nonzero(bits, as_tuple=True)
        rows, tokens = pairs[pair, 0], pairs[pair, 1] * 32 + bit
        inside = tokens < self.vocab_rows
        return rows[inside], tokens[inside]

    def _unpack(self, packed: torch.Tensor, byte_table: torch.Tensor) -> torch.Tensor:
        """Packed rows unpacked with one table lookup per byte."""
        rows = len(packed)
        index = self._byte_index[:rows]
        index.copy_(packed.view(torch.uint8))
        unpacked = self._unpacked[:rows]
        torch.index_select(byte_table, 0, index.view(-1), out=unpacked.view(-1, 8))
        return unpacked[:, : self.vocab_rows]


def apply_mask_bias_(logits: torch.Tensor, bias: torch.Tensor, rows: list[int]) -> None:
    """Add the masks to the logits: `bias[k]` (0 or -inf per token) to `logits[rows[k]]` ([rows, vocab] float32)."""
    logits.index_add_(0, torch.tensor(rows, device=logits.device), bias)
