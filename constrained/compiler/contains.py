"""`contains` / `minContains` / `maxContains` as positions llguidance enforces: the matching items, one after
another, start at one of the first few positions.

`contains: C, minContains: m` becomes "not an array, or an array whose items k .. k+m-1 match C" for k up to
_MAX_START (fewer when `maxItems` leaves less room). Every instance of that has m matching items, so none is
invalid; arrays whose matches lie further apart or later are left out (narrower). Where `maxContains` bounds
the count below `maxItems`, every other item fails C (its complement, from the caller), so the arrays hold
exactly m matches (none or one, when m is 0).
"""

from __future__ import annotations

from typing import Any, Callable

_MAX_START = 3
_NOT_ARRAY = ["null", "boolean", "object", "number", "string"]


def with_contains(node: dict, prefix_keyword: str, complement: Callable[[], Any]) -> dict | None:
    """`node` with `contains`, `minContains` and `maxContains` rewritten; None when they cannot be. The
    positional items keyword is `prefixItems` from 2020-12, `items` (a list) before; `complement()` is the
    schema of the instances failing C (None: it has none)."""
    rest = {key: value for key, value in node.items() if key not in ("contains", "minContains", "maxContains")}
    least, most, size = node.get("minContains", 1), node.get("maxContains"), node.get("maxItems")
    if not all(_count(n) for n in (least, most, size) if n is not None):
        return None
    others: Any = {}  # what the items other than the matching run may be
    if most is not None and (size is None or most < size):
        if least > most:
            return _conjoin(rest, {"type": _NOT_ARRAY})
        others = complement()
        if others is None:
            return None
    if least == 0 and others == {}:
        return rest
    # arrays with no match (when none is enough), and arrays with a run of `run` matches
    cases: list[Any] = [{"type": _NOT_ARRAY}] + ([_items(others)] if least == 0 else [])
    run = least or min(1, most)
    last_start = _MAX_START if size is None else min(_MAX_START, size - run)
    if others is False:  # every item matches C: the run is the whole array
        last_start = min(last_start, 0)
    rest_keyword = "items" if prefix_keyword == "prefixItems" else "additionalItems"
    cases += [{"type": "array", prefix_keyword: [others] * start + [node["contains"]] * run,
               "minItems": start + run} | ({} if others == {} else {rest_keyword: others})
              for start in range(last_start + 1) if run]
    return _conjoin(rest, {"anyOf": cases} if len(cases) > 1 else cases[0])


def _items(schema: Any) -> dict:
    return {"type": "array", "items": schema} if schema is not False else {"type": "array", "maxItems": 0}


def _conjoin(node: dict, extra: dict) -> dict:
    return {**node, "allOf": [*node.get("allOf", []), extra]}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
