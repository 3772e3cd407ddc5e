"""Attention for a packed step: every row's new tokens side by side in one sequence.

The linear layers (projections and MLP: most of a forward pass) then compute real tokens only. Padding
a batch to its widest input instead made one newcomer's prompt or one 16-token forced run cost every row
that many positions (benchmarks/SPEED.md, "The forward pass", has the figures). Attention still needs each row's
own keys, so it runs per group of rows of similar width (groups.py): the group's queries are scattered
into a [rows, width] block, attend to their rows' cached keys through transformers' sdpa, and are
gathered back. The model runner sets the step (`packed`) around its forward pass. Any other call of the
model gets transformers' sdpa with no mask but causality (the engine is the model's only caller; a test
compares it with the model run on single unpadded sequences).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "constrained_packed"


@dataclass(frozen=True)
class Group:
    """Rows rows[0]..rows[1]-1, whose new tokens are tokens[0]..tokens[1]-1 of the packed sequence."""

    rows: tuple[int, int]
    tokens: tuple[int, int]
    width: int  # the group's widest input: its query block is [rows, width]
    keys: int  # columns of the cache its rows attend over (the longest row's, after this step)
    scatter: torch.Tensor | None  # [tokens] each token's place in the row-major [rows * width] block; None
    # when every row of the group is `width` wide: the tokens are the block already
    mask: torch.Tensor  # [rows, 1, width, keys] bool: which keys each query sees


_groups: ContextVar[list[Group] | None] = ContextVar("packed_groups", default=None)

# sdpa's kernels for a packed step: all but cuDNN's, which plans anew for each shape it meets, and a group's
# key length grows every step (on CUDA that planning cost more CPU time than the step's GPU work:
# benchmarks/SPEED.md, "CUDA"). The CPU's kernels (flash, math) are all kept.
STEP_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@contextlib.contextmanager
def packed(groups: list[Group]) -> Iterator[None]:
    """Attention layers called inside attend as `groups` of a packed step, with STEP_BACKENDS."""
    token = _groups.set(groups)
    try:
        with sdpa_kernel(STEP_BACKENDS):
            yield
    finally:
        _groups.reset(token)


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """query [1, heads, tokens, dim] packed; key and value [rows, kv_heads, columns, dim], the cache's
    (kv_cache.py). Returns [1, tokens, heads, dim], like transformers' attention functions."""
    groups = _groups.get()
    if groups is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    tokens = query[0].transpose(0, 1)  # [tokens, heads, dim]
    heads, dim = tokens.shape[1:]
    outputs = []
    for group in groups:
        (first, end), (start, stop) = group.rows, group.tokens
        rows, columns = end - first, group.keys
        block = tokens[start:stop]
        if group.scatter is not None:
            block = block.new_zeros(rows * group.width, heads, dim).index_copy_(0, group.scatter, block)
        block = block.view(rows, group.width, heads, dim).transpose(1, 2)
        out, _ = sdpa_attention_forward(module, block, key[first:end, :, :columns], value[first:end, :, :columns],
                                        group.mask, **kwargs)  # [rows, width, heads, dim]
        out = out.reshape(rows * group.width, heads, dim)
        outputs.append(out if group.scatter is None else out[group.scatter])
    return torch.cat(outputs)[None], None


AttentionInterface.register(NAME, packed_attention)
