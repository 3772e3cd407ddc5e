"""Swapping a model's linears in place (quantize.py, prepack.py)."""

from __future__ import annotations

from typing import Callable

from torch import nn


def replace_linears(model: nn.Module, replacement: Callable[[nn.Linear], nn.Module | None]) -> int:
    """Put `replacement(linear)` in place of each `nn.Linear` of `model` (its output head included) where it is not
    None; how many were replaced."""
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and (new := replacement(child)) is not None:
                setattr(module, name, new)
                count += 1
    return count
