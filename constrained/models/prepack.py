"""Linears whose weights are packed once for oneDNN, for the CPU's eager steps (`constrained serve` does it on the
CPU unless `--no-prepack`).

PyTorch's CPU matmul hands oneDNN (or MKL) a weight in the layout it is stored in, and oneDNN reorders it into its
own blocked layout on every call. A PackedLinear reorders a copy once, at load, and multiplies by that copy
through oneDNN's linear: the same products, summed in another order (float rounding). Which is faster depends on
the CPU, the weight's shape and the rows multiplied, so each shape is timed once at load, for one row (a lone
decode step) and for MANY_ROWS (a batch, a prompt), both ways; a linear packs only where that wins. The plain
weight stays, so a packed linear's weight takes twice the memory: the compiled lone-row step (`--torch-compile`)
reads it, and a head tied to the embeddings shares it. Figures in benchmarks/SPEED.md
("The head's kernel, timed; packed weights for batches").
"""

from __future__ import annotations

import torch
from torch import nn

from constrained.kernel_timing import median_seconds
from constrained.models.linears import replace_linears

PACKED_DTYPES = (torch.float32, torch.bfloat16)
MANY_ROWS = 16  # the rows a step of more than one is timed with


def can_prepack(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether this PyTorch has oneDNN for the CPU and packs weights of `dtype` there."""
    return device.type == "cpu" and dtype in PACKED_DTYPES and torch.backends.mkldnn.is_available()


def packed_linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x [rows, in] times a packed weight (+ bias): oneDNN's linear."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class PackedLinear(nn.Linear):
    """An `nn.Linear` (same weight and bias, shared) that multiplies by a packed copy of its weight for one row
    when `one_row`, for more rows when `more_rows`, else as nn.Linear does."""

    def __init__(self, linear: nn.Linear, *, one_row: bool, more_rows: bool):
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate a new weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias  # shared, not copied (a tied head stays tied)
        self.one_row, self.more_rows = one_row, more_rows
        self._pack()

    def _pack(self) -> None:
        # a plain attribute, not a buffer: an opaque oneDNN tensor has no storage to save or copy
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if not (self.more_rows if rows.shape[0] > 1 else self.one_row):
            return nn.functional.linear(x, self.weight, self.bias)
        return packed_linear(rows, self.packed, self.bias).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, one_row={self.one_row}, more_rows={self.more_rows}"

    def __getstate__(self) -> dict:
        """Copies (copy.deepcopy, pickle) leave the packed weight out and pack their own weight again."""
        state = self.__dict__.copy()
        state.pop("packed", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._pack()


def prepack_linears(model: nn.Module) -> int:
    """Replace each plain `nn.Linear` of `model` (its output head included) by a PackedLinear where packing is
    faster for one row or for more, in place; how many. Each distinct shape is timed once."""
    choices: dict[tuple, tuple[bool, bool]] = {}

    def packed(linear: nn.Linear) -> PackedLinear | None:
        if type(linear) is not nn.Linear:
            return None
        key = (tuple(linear.weight.shape), linear.weight.dtype, linear.bias is not None)
        if key not in choices:
            choices[key] = packing_wins(linear.weight.detach(), linear.bias)
        one_row, more_rows = choices[key]
        return PackedLinear(linear, one_row=one_row, more_rows=more_rows) if one_row or more_rows else None

    return replace_linears(model, packed)


def packing_wins(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[bool, bool]:
    """Whether the packed weight multiplies faster than the plain one, for one row and for MANY_ROWS."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
    wins = []
    for rows in (1, MANY_ROWS):
        x = torch.zeros(rows, weight.shape[1], dtype=weight.dtype)
        plain = median_seconds(lambda: nn.functional.linear(x, weight, bias))
        wins.append(median_seconds(lambda: packed_linear(x, packed, bias)) < plain)
    return wins[0], wins[1]
