"""`contains` / `minContains` as positions llguidance enforces: the matching items, one after another, start
at one of the first few positions.

`contains: C, minContains: m` becomes "not an array, or an array whose items k .. k+m-1 match C" for k up to
_MAX_START (fewer when `maxItems` leaves less room). Every instance of that has m matching items, so none is
invalid; arrays whose matches lie further apart or later are left out (narrower). `maxContains` would need
the other items to fail C: it is refused unless `maxItems` already bounds it.
"""

from __future__ import annotations

from typing import Any

_MAX_START = 3
_NOT_ARRAY = ["null", "boolean", "object", "number", "string"]


def with_contains(node: dict, prefix_keyword: str) -> dict | None:
    """`node` with `contains`, `minContains` and `maxContains` rewritten; None when they cannot be. The
    positional items keyword is `prefixItems` from 2020-12, `items` (a list) before."""
    rest = {key: value for key, value in node.items() if key not in ("contains", "minContains", "maxContains")}
    least, most, size = node.get("minContains", 1), node.get("maxContains"), node.get("maxItems")
    if not all(_count(n) for n in (least, most, size) if n is not None):
        return None
    if most is not None and (size is None or most < size):
        return None
    if least == 0:
        return rest
    last_start = _MAX_START if size is None else min(_MAX_START, size - least)
    if last_start < 0:  # never room for them: only non-arrays
        return {**rest, "allOf": [*rest.get("allOf", []), {"type": _NOT_ARRAY}]}
    placed = [{"type": "array", prefix_keyword: [{}] * start + [node["contains"]] * least, "minItems": start + least}
              for start in range(last_start + 1)]
    return {**rest, "allOf": [*rest.get("allOf", []), {"anyOf": [{"type": _NOT_ARRAY}, *placed]}]}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
