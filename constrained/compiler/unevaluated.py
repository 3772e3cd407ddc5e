"""`unevaluatedProperties` and `unevaluatedItems` where what they apply to is known before validation.

They apply to the properties (items) that no adjacent or in-place subschema evaluated. Through `allOf` and
`$ref` alone every subschema must validate for the instance to be valid, so the evaluated names and patterns
(item positions) are those the subschemas declare: the keyword becomes one more allOf member, an
`additionalProperties` (`items`) over exactly those. Beside one `anyOf` or `oneOf` (of branches without branching
keywords of their own) it goes into each branch, over what the rest and that branch evaluate: exact for `oneOf`
(one branch validates), narrower for `anyOf` (where several validate, each must evaluate every property alone).
Through `if`, `not` or dependent schemas what is evaluated depends on which of them validate, and `contains`
evaluates the items it matches: refused.

Collected from the original document (a rewritten child may spell `propertyNames` as `patternProperties`, which
would count as evaluating).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from constrained.compiler.schema_walk import resolve_local

# What makes the evaluated properties or items depend on which subschemas validate.
_BRANCHING = ("anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "dependencies", "$dynamicRef",
              "$recursiveRef")


@dataclass
class Evaluated:
    """Property names and patterns, the leading item positions, or everything (`all_*`), that subschemas
    evaluate at one instance location."""

    names: set[str] = field(default_factory=set)
    patterns: set[str] = field(default_factory=set)
    all_properties: bool = False
    positions: int = 0
    all_items: bool = False


def evaluated(root: Any, pointer: str, tuple_items: bool) -> Evaluated | None:
    """What the schema at `pointer` of `root` and its allOf members and $ref targets evaluate; None when that
    depends on which subschemas validate. `tuple_items`: `items` as a list is the prefix (before 2020-12)."""
    original = _at(root, pointer)
    return None if original is None else _collect(root, [(original, pointer, True)], tuple_items)


def evaluated_per_branch(root: Any, pointer: str, tuple_items: bool) -> tuple[str, list[Evaluated]] | None:
    """For a schema whose only branching keyword is an `anyOf` or a `oneOf`: that keyword, and what each of its
    branches evaluates together with the rest of the schema; None otherwise."""
    original = _at(root, pointer)
    if not isinstance(original, dict) or "contains" in original:
        return None
    branching = [key for key in _BRANCHING if key in original]
    if branching not in (["anyOf"], ["oneOf"]) or not isinstance(original[branching[0]], list):
        return None
    key = branching[0]
    rest = {k: v for k, v in original.items() if k != key}
    per_branch = [_collect(root, [(rest, pointer, True), (branch, f"{pointer}/{key}/{i}", False)], tuple_items)
                  for i, branch in enumerate(original[key])]
    return None if None in per_branch else (key, per_branch)


def _at(root: Any, pointer: str) -> Any:
    try:
        found = resolve_local(root, "#" + pointer)
    except KeyError:
        return None
    return None if found is None else found[1]


def _collect(root: Any, starts: list[tuple[Any, str, bool]], tuple_items: bool) -> Evaluated | None:
    """What the schemas in `starts` (node, pointer, whether it is the schema being rewritten) evaluate together."""
    found, seen = Evaluated(), set()

    def visit(node: Any, at: str, top: bool = False) -> bool:
        """Collect from `node`; False where that depends on validation. A member's own unevaluated* keyword
        evaluates every property (item) left; the top schema's is the one being rewritten."""
        if not isinstance(node, dict) or at in seen:
            return True
        seen.add(at)
        if any(key in node for key in _BRANCHING) or "contains" in node:
            return False
        found.names |= set(node.get("properties", {})) if isinstance(node.get("properties"), dict) else set()
        found.patterns |= set(node.get("patternProperties", {})) \
            if isinstance(node.get("patternProperties"), dict) else set()
        found.all_properties |= "additionalProperties" in node or ("unevaluatedProperties" in node and not top)
        items = node.get("items")
        if tuple_items and isinstance(items, list):
            found.positions = max(found.positions, len(items))
            found.all_items |= "additionalItems" in node
        else:
            found.all_items |= "items" in node or ("unevaluatedItems" in node and not top)
        if not tuple_items and isinstance(node.get("prefixItems"), list):
            found.positions = max(found.positions, len(node["prefixItems"]))
        members = node.get("allOf", [])
        if not all(visit(member, f"{at}/allOf/{i}") for i, member in enumerate(members if isinstance(members, list)
                                                                                 else [])):
            return False
        if isinstance(node.get("$ref"), str):
            try:
                target = resolve_local(root, node["$ref"])
            except KeyError:
                return False
            return target is not None and visit(target[1], target[0])
        return True

    return found if all(visit(node, at, top) for node, at, top in starts) else None


def properties_rule(found: Evaluated, unevaluated: Any) -> dict | None:
    """The allOf member that applies `unevaluatedProperties: unevaluated` (None: every property is evaluated)."""
    if found.all_properties:
        return None
    return {"properties": {name: {} for name in sorted(found.names)},
            "patternProperties": {pattern: {} for pattern in sorted(found.patterns)},
            "additionalProperties": unevaluated}


def items_rule(found: Evaluated, unevaluated: Any, tuple_items: bool) -> dict | None:
    """The allOf member that applies `unevaluatedItems: unevaluated` (None: every item is evaluated)."""
    if found.all_items:
        return None
    prefix = [{}] * found.positions
    return {"items": prefix, "additionalItems": unevaluated} if tuple_items \
        else {"prefixItems": prefix, "items": unevaluated}
