"""Weight-only int8 linears for CPU decoding at small batches (`--quantize int8`).

A decode step of a few tokens reads every weight once per token, so on a CPU its linears are bound by memory
bandwidth: int8 weights are half the bytes of bfloat16 ones (a quarter of float32). Each output row keeps one
symmetric scale (its largest |weight| / 127); activations stay in the model's dtype, and PyTorch's own
`_weight_int8pack_mm` kernel multiplies them by the int8 rows and scales. That kernel is made for a few rows: from
8 rows on it is slower than the dtype's own matmul, so a step of more than SMALL_STEP tokens (a batch, a prompt)
uses the original weights, which are kept. Embeddings stay as they are (a lookup reads one row). The speed and
the quality cost are measured by benchmarks/quantize.py (benchmarks/SPEED.md).
"""

from __future__ import annotations

import torch
from torch import nn

from constrained.models.linears import replace_linears

QUANTIZATIONS = ("none", "int8")
SMALL_STEP = 4  # rows (tokens of a step) up to which the int8 kernel is the faster one


class Int8Linear(nn.Module):
    """An `nn.Linear` with an int8 copy of its weight (one scale per output row) for steps of a few tokens."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        scales = weight.float().abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # shared, not copied (a tied head stays tied)
        self.register_buffer("weight_int8", torch.round(weight.float() / scales[:, None]).to(torch.int8).contiguous())
        self.register_buffer("scales", scales.to(weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] > SMALL_STEP:
            return nn.functional.linear(x, self.weight, self.bias)
        out = torch._weight_int8pack_mm(rows, self.weight_int8, self.scales).reshape(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias


def quantize_int8(model: nn.Module) -> int:
    """Replace every `nn.Linear` of `model` (its output head included) by an Int8Linear, in place; how many."""
    return replace_linears(model, Int8Linear)
