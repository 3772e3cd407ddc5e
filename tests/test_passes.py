"""Splitting a step's rows into forward passes: cheapest cut, contiguous passes, fewest rows moved."""

from __future__ import annotations

import math

from constrained.engine.passes import plan_passes


def cost(widths: list[int], plan, pass_cost: float) -> float:
    return sum(pass_cost + (end - start) * max(widths[plan.order[i]] for i in range(start, end))
               for start, end in plan.passes)


def test_uniform_widths_or_infinite_cost_take_one_pass_in_place():
    for widths, pass_cost in [([1] * 8, 0.0), ([1, 16, 1, 40], math.inf)]:
        plan = plan_passes(widths, pass_cost)
        assert plan.order == list(range(len(widths))) and plan.passes == [(0, len(widths))]


def test_a_forced_run_splits_off_only_when_its_padding_outweighs_a_pass():
    widths = [1] * 31 + [16]  # one row's 16-token forced run pads 31 rows by 15 positions: 465 saved
    split = plan_passes(widths, pass_cost=100.0)
    assert split.passes == [(0, 31), (31, 32)] and split.order == list(range(32))
    assert plan_passes(widths, pass_cost=1000.0).passes == [(0, 32)]


def test_rows_of_a_pass_are_contiguous_and_few_rows_move():
    widths = [1, 30, 1, 1, 4, 1, 30, 1]
    plan = plan_passes(widths, pass_cost=2.0)
    assert sorted(plan.order) == list(range(8))
    assert [widths[row] for row in plan.order] == [1, 1, 1, 1, 1, 4, 30, 30]
    assert plan.passes == [(0, 5), (5, 6), (6, 8)]
    moved = [i for i, row in enumerate(plan.order) if row != i]
    assert len(moved) == 4  # rows 1 and 6 (width 30) and 4 (width 4) leave, narrow ones take their places


def test_the_plan_is_the_cheapest_cut():
    """Against every way to cut the width-sorted rows (2^(distinct widths - 1) of them)."""
    import itertools

    widths = [1, 1, 3, 1, 9, 2, 1, 9, 25, 1, 3]
    distinct = sorted(set(widths))
    for pass_cost in (0.0, 3.0, 10.0, 40.0, 200.0):
        plan = plan_passes(widths, pass_cost)
        best = math.inf
        for cuts in itertools.product([False, True], repeat=len(distinct) - 1):
            groups, current = [], [distinct[0]]
            for width, cut in zip(distinct[1:], cuts):
                if cut:
                    groups.append(current)
                    current = []
                current.append(width)
            groups.append(current)
            best = min(best, sum(pass_cost + sum(widths.count(w) for w in g) * max(g) for g in groups))
        assert cost(widths, plan, pass_cost) == best, pass_cost
