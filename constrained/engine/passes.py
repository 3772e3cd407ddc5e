"""How a step's rows split into forward passes.

A pass pads every row to its widest input, so one newcomer's prompt or one forced run of 16 tokens
makes the rows fed one token compute 16 positions too: at batch 32 a SmolLM2 step went from 88 to
480 ms. A second pass costs its own fixed overhead (weights read again, kernels launched again), so
the rows are cut into passes of similar width only where the padding saved outweighs that. The cost
of a pass is modelled as `pass_cost + rows * width` positions, where `pass_cost` is the fixed
overhead in positions (ModelRunner measures it); a dynamic programme over the rows sorted by width
finds the cheapest cut. Rows of one pass must be contiguous in the KV cache, so the plan also says
how to reorder them, moving as few as it can.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PassPlan:
    order: list[int]  # new row i is former row order[i]
    passes: list[tuple[int, int]]  # row ranges [start, end) of the reordered rows, one per forward pass


def plan_passes(widths: list[int], pass_cost: float) -> PassPlan:
    """The cheapest split of rows fed `widths` tokens into forward passes of contiguous rows."""
    rows = len(widths)
    if len(set(widths)) <= 1 or math.isinf(pass_cost):
        return PassPlan(list(range(rows)), [(0, rows)])
    ascending = sorted(widths)
    best, cut = [0.0] + [math.inf] * rows, [0] * (rows + 1)  # best[j]: cost of the j narrowest rows
    for end in range(1, rows + 1):
        if end < rows and ascending[end] == ascending[end - 1]:
            continue  # rows of equal width share a pass
        for start in range(end):
            if start > 0 and ascending[start] == ascending[start - 1]:
                continue
            cost = best[start] + pass_cost + (end - start) * ascending[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start
    widest = []  # each pass's widest input, from the widest pass down
    end = rows
    while end > 0:
        widest.append(ascending[end - 1])
        end = cut[end]
    widest.reverse()
    pass_of = [next(k for k, top in enumerate(widest) if width <= top) for width in widths]
    return _arrange(pass_of, len(widest))


def _arrange(pass_of: list[int], count: int) -> PassPlan:
    """Rows grouped by pass, in pass order; a row already inside its pass's range stays where it is."""
    sizes = [pass_of.count(k) for k in range(count)]
    starts = [sum(sizes[:k]) for k in range(count)]
    passes = [(start, start + size) for start, size in zip(starts, sizes)]
    order: list[int | None] = [None] * len(pass_of)
    movers: list[list[int]] = [[] for _ in range(count)]
    for row, k in enumerate(pass_of):
        start, end = passes[k]
        if start <= row < end:
            order[row] = row
        else:
            movers[k].append(row)
    for k, (start, end) in enumerate(passes):
        free = [i for i in range(start, end) if order[i] is None]
        for i, row in zip(free, movers[k]):
            order[i] = row
    return PassPlan(order, passes)
