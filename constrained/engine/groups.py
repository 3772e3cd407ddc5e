"""Which rows attend together in a packed step (packed_attention.py).

Attention pads each group of rows to its widest input, so rows fed one token must not share a query
block with a newcomer's 60-token prompt. Rows are grouped by width in powers of two (1, 2, 3-4, 5-8, ...):
padding stays under half of a group's block, and a step has a handful of groups. A group's keys are a
slice of the KV cache, so its rows must be contiguous there; the plan also says how to reorder the rows
to get there, moving as few as it can.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupPlan:
    order: list[int]  # new row i is former row order[i]
    groups: list[tuple[int, int]]  # row ranges [start, end) of the reordered rows, narrowest first


def plan_groups(widths: list[int]) -> GroupPlan:
    """Rows fed `widths` tokens, grouped by width in powers of two."""
    buckets = [(width - 1).bit_length() for width in widths]
    distinct = sorted(set(buckets))
    return _arrange([distinct.index(bucket) for bucket in buckets], len(distinct))


def _arrange(group_of: list[int], count: int) -> GroupPlan:
    """Rows gathered by group, in group order; a row already inside its group's range stays where it is."""
    sizes = [group_of.count(k) for k in range(count)]
    starts = [sum(sizes[:k]) for k in range(count)]
    groups = [(start, start + size) for start, size in zip(starts, sizes)]
    order: list[int | None] = [None] * len(group_of)
    movers: list[list[int]] = [[] for _ in range(count)]
    for row, k in enumerate(group_of):
        start, end = groups[k]
        if start <= row < end:
            order[row] = row
        else:
            movers[k].append(row)
    for k, (start, end) in enumerate(groups):
        free = [i for i in range(start, end) if order[i] is None]
        for i, row in zip(free, movers[k]):
            order[i] = row
    return GroupPlan(order, groups)
