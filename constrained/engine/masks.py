"""Token masks, built only for the rows whose draw needs one.

A mask costs a matcher's fill of a packed bitmask (25 us a row for an open JSON string with
llguidance, where 94% of the vocabulary is allowed) and a pass over [rows, vocab] floats to unpack
and add it. Testing one token costs 2 us. So a constrained row draws from its unmasked distribution
first; if its matcher forbids the token, it tries a few more unmasked draws (engine.CANDIDATES) and
keeps the first allowed one; only if all are forbidden does the row get its mask and draw again from
the first draw's probabilities restricted to the mask, with no second softmax. A row whose mask allows
few tokens (a number, a key, an enum: FEW_WORDS) draws among those alone (Sampler.redraw_among); the
others draw over the whole vocabulary times the 0/1 mask (Sampler.redraw). Drawing x from p until it
falls in the allowed set A, k times at most, and else drawing from p restricted to A gives
P(x) = p(x) (1 + q + ... + q^(k-1)) + q^k p(x) / p(A) = p(x) / p(A) with q = 1 - p(A): exactly the
masked distribution (and for a greedy row, which goes straight to its mask, the masked argmax). The
work scales with how often the model disagrees with the grammar, not with how many tokens are allowed.
Rows that need the masked distribution itself (logprobs, top_p < 1) get their mask before drawing, and
so do forced stretches when they are sampled (fast-forward off): there llguidance's mask allows only
the canonical split of the forced text, while its matcher accepts any (Sequence.draws_under_mask). On a
GPU the packed rows (pinned) are copied over and unpacked there: 4 bytes per 32 tokens cross the bus,
not 32.
"""

from __future__ import annotations

import time

import torch

from constrained.matcher import Matcher

# _BYTE_KEPT[b, i]: bit i of byte b, as 1.0 or 0.0; _BYTE_BIAS[b, i]: 0 where it is set, else -inf. A
# little-endian int32 word j read as bytes 4j..4j+3 puts token 32j+8k+i at bit i of byte 4j+k: bytes
# unpack in token order.
_BYTE_KEPT = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).float()
_BYTE_BIAS = torch.zeros(256, 8).masked_fill_(_BYTE_KEPT == 0, float("-inf"))
_BITS = torch.arange(32, dtype=torch.int32)

# A row whose mask has at most this many nonzero words (of 32 tokens) allows few tokens: it draws among
# them alone (allowed_tokens) rather than over the whole vocabulary. Measured on tiny-qwen3 with real
# key-heavy schemas, 90% of the rows that reach their mask allow at most 220 tokens in 194 words (a
# number, a key's first token, an enum), against 94% of the vocabulary in an open string.
FEW_WORDS = 256


class BatchMasks:
    """Fills and unpacks the masks of up to `max_rows` matchers at a time, into buffers allocated
    once. `rows` and `seconds` add up the masks filled and the time spent filling them: the benchmarks
    report both, to show what the mask work costs per step."""

    def __init__(self, *, max_rows: int, vocab_rows: int, device: torch.device):
        self.vocab_rows = vocab_rows
        width = (vocab_rows + 31) // 32
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
