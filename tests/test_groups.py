"""Grouping a packed step's rows for attention: by width in powers of two, contiguous, fewest rows moved."""

from __future__ import annotations

from constrained.engine.groups import plan_groups


def test_rows_of_one_width_class_stay_in_place_as_one_group():
    for widths in ([1] * 8, [3, 4, 3], [5, 8, 6, 7]):
        plan = plan_groups(widths)
        assert plan.order == list(range(len(widths))) and plan.groups == [(0, len(widths))]


def test_groups_are_width_classes_contiguous_and_few_rows_move():
    widths = [1, 30, 1, 1, 4, 1, 17, 1, 2, 3]
    plan = plan_groups(widths)
    assert sorted(plan.order) == list(range(len(widths)))
    assert [widths[row] for row in plan.order] == [1, 1, 1, 1, 1, 2, 4, 3, 30, 17]
    assert plan.groups == [(0, 5), (5, 6), (6, 8), (8, 10)]  # widths 1 | 2 | 3-4 | 17-32
    for start, end in plan.groups:  # no row of a group is padded to twice its width or more
        group = [widths[row] for row in plan.order[start:end]]
        assert max(group) < 2 * min(group)
    kept = [i for i, row in enumerate(plan.order) if row == i]
    assert kept == [0, 2, 3]  # the fewest moves: the other 7 places hold a row of another group now
