"""`minProperties` / `maxProperties` where some declared properties are optional, which llguidance refuses, as
which of those are present.

An object's keys are its required names, the optional declared properties present, and (if the object is
open) others. `minProperties: m` becomes "at least t of the optional properties present" (t = m minus the
required count): an anyOf over the t-sized sets of them, each required. That is exact for a closed object
(`additionalProperties: false`, no patternProperties); for an open one it leaves out the objects that reach
m through undeclared keys (narrower, never invalid). `maxProperties: M` on a closed object becomes "at least
(optional count - u) of them absent" (u = M minus the required count): an anyOf over those sets, each
`false`. On an open object, or where the sets would be too many, the keyword is left for llguidance (which
refuses it).
"""

from __future__ import annotations

from itertools import combinations
from math import comb
from typing import Any

_MAX_SETS = 64


def with_property_counts(node: dict) -> dict:
    """`node` with the property counts rewritten where the module docstring says; else as it is."""
    properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    required = {name for name in node.get("required", []) if isinstance(name, str)} \
        if isinstance(node.get("required"), list) else set()
    optional = sorted(set(properties) - required)
    if not optional:
        return node
    closed = node.get("additionalProperties") is False and not node.get("patternProperties")
    out, conditions = dict(node), []
    least, most = node.get("minProperties"), node.get("maxProperties")
    if _count(least):
        present = least - len(required)
        if present <= 0:
            del out["minProperties"]
        elif present <= len(optional) and comb(len(optional), present) <= _MAX_SETS:
            del out["minProperties"]
            conditions.append({"anyOf": [{"required": list(names)} for names in combinations(optional, present)]})
    if _count(most) and closed:
        absent = len(optional) - (most - len(required))
        if absent <= 0:
            del out["maxProperties"]
        elif absent <= len(optional) and comb(len(optional), absent) <= _MAX_SETS:
            del out["maxProperties"]
            conditions.append({"anyOf": [{"properties": {name: False for name in names}}
                                         for names in combinations(optional, absent)]})
    return {**out, "allOf": [*out.get("allOf", []), *conditions]} if conditions else out


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
