"""Keeps llguidance from intersecting a `$ref` while it is still compiling the target.

llguidance compiles a `$ref` target when it first meets it, and intersects two subschemas wherever both apply
to one value: allOf members, an anyOf's (oneOf's) branches with the keywords beside it, a declared property with
the patternProperties matching its name. An intersection that meets a reference to a target still being compiled
(a recursive one) is refused: "circular references with sibling keys are not supported". Three rewrites, each
accepting exactly the instances the schema accepts, take such references out of intersections:
- a declared property whose schema equals (annotations aside) that of every patternProperty matching its name
  becomes `{}`: the patterns apply to the value anyway, and `{}` intersects without resolving anything;
- `type` beside anyOf/oneOf goes where every branch has a type among those;
- at the intersections left, a `$ref` to a recursive target is replaced by the target (a few references deep),
  so llguidance intersects the target's keywords, and its references only where both sides hold one there.
"""

from __future__ import annotations

import json
import re
from typing import Any

from constrained.compiler.keywords import ANNOTATIONS
from constrained.compiler.pattern_automata import searches
from constrained.compiler.schema_walk import (bare_target, children, is_bare_ref, local_target, map_children,
                                               map_document)

_INLINE_DEPTH = 3  # references followed through one intersected branch
_MAX_GROWTH = 4  # inlining stops once it has added this many times the schema's own size (as text)
_PLAIN_PATTERN = re.compile(r"[ -\[\]-~]*")  # ASCII, no backslash: Python's re and llguidance's regex agree
_CONTAINERS = ("$defs", "definitions")
_CONTAINER_SUFFIXES = ("/$defs/", "/definitions/")


def without_recursive_intersections(schema: Any) -> Any:
    """`schema` rewritten so that llguidance intersects no reference to a recursive target (see the module)."""
    if not isinstance(schema, dict) or '"$ref"' not in json.dumps(schema):
        return schema
    simplified = map_document(schema, lambda node: _simplified(node, schema))
    recursive = _recursive_refs(simplified)
    if not recursive:
        return simplified
    inliner = _Inliner(simplified, recursive)
    return map_document(simplified, inliner.at_intersections)


def _simplified(node: dict, root: dict) -> dict:
    """The first two rewrites, on one node."""
    patterns, declared = node.get("patternProperties"), node.get("properties")
    if isinstance(patterns, dict) and isinstance(declared, dict):
        node = {**node, "properties": {name: {} if _repeats_patterns(name, value, patterns) else value
                                       for name, value in declared.items()}}
    branches = [node[key] for key in ("anyOf", "oneOf") if isinstance(node.get(key), list)]
    allowed = _types(node)
    if allowed is not None and branches and all(
            branch is False or (own := _types(bare_target(branch, root, _INLINE_DEPTH))) is not None and own <= allowed
            for members in branches for branch in members):
        node = {key: value for key, value in node.items() if key != "type"}
    return node


def _repeats_patterns(name: str, value: Any, patterns: dict) -> bool:
    """Whether every pattern matching `name` (at least one) has `value`'s schema, annotations aside."""
    if not name.isascii() or not all(isinstance(p, str) and _PLAIN_PATTERN.fullmatch(p) for p in patterns):
        return False
    try:
        matching = [schema for pattern, schema in patterns.items() if re.search(pattern, name)]
    except re.error:
        return False
    return bool(matching) and all(_assertions(schema) == _assertions(value) for schema in matching)


def _assertions(schema: Any) -> str:
    """`schema` without its annotations, as canonical text."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if key not in ANNOTATIONS}
        return [strip(item) for item in node] if isinstance(node, list) else node
    return json.dumps(strip(schema), sort_keys=True)


def _types(node: Any) -> set[str] | None:
    """The types `node` allows by its `type` (integer counted within number); None: it has none."""
    named = node.get("type") if isinstance(node, dict) else None
    types = {named} if isinstance(named, str) else set(named) if isinstance(named, list) else None
    return None if types is None else types | ({"integer"} if "number" in types else set())


def _refs_below(node: Any) -> set[str]:
    """The `$ref`s in `node` and its subschemas, definitions aside."""
    found, stack = set(), [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                found.add(node["$ref"])
            stack.extend(child for suffix, child in children(node) if not suffix.startswith(_CONTAINER_SUFFIXES))
    return found


def _recursive_refs(root: dict) -> frozenset[str]:
    """The local references on a cycle of references (and any between two cycles), as written."""
    edges: dict[str, set[str]] = {}
    pending = list(_refs_below(root))
    while pending:
        ref = pending.pop()
        if ref not in edges:
            target = local_target(root, ref)
            edges[ref] = _refs_below(target) if target is not None else set()
            pending.extend(edges[ref])
    live = set(edges)
    while True:  # drop what reaches no cycle, and what no cycle reaches
        reached = {ref for source in live for ref in edges[source]}
        kept = {ref for ref in live if edges[ref] & live and ref in reached}
        if kept == live:
            return frozenset(live)
        live = kept


class _Inliner:
    """The third rewrite: recursive references replaced by their targets where llguidance intersects."""

    def __init__(self, root: dict, recursive: frozenset[str]):
        self.root, self.recursive = root, recursive
        self.budget = _MAX_GROWTH * len(json.dumps(root))

    def at_intersections(self, node: dict) -> dict:
        """`node` with the subschemas it intersects inlined."""
        node = dict(node)
        asserting = set(node) - ANNOTATIONS
        for key in ("allOf", "anyOf", "oneOf"):
            if isinstance(node.get(key), list) and (asserting - {key} or key == "allOf" and len(node[key]) > 1):
                node[key] = [self._inlined(member, 0) for member in node[key]]
        patterns, declared = node.get("patternProperties"), node.get("properties")
        if isinstance(patterns, dict) and isinstance(declared, dict):
            named = {name for name in declared if declared[name] != {} and any(searches(p, name) for p in patterns)}
            overlapping = {pattern for pattern in patterns if any(searches(pattern, name) for name in named)}
            node["properties"] = {name: self._inlined(value, 0) if name in named else value
                                  for name, value in declared.items()}
            node["patternProperties"] = {pattern: self._inlined(value, 0) if pattern in overlapping else value
                                         for pattern, value in patterns.items()}
        return node

    def _inlined(self, node: Any, depth: int) -> Any:
        """`node` with the bare recursive references llguidance would meet while intersecting it (at its top, in
        its anyOf/oneOf/allOf members, and below where intersections descend: properties and items) replaced by
        their targets, `depth` references deep at most, definitions left out (the references inside name them from
        the root)."""
        if depth >= _INLINE_DEPTH or not isinstance(node, dict):
            return node
        if is_bare_ref(node):
            target = local_target(self.root, node["$ref"]) if node["$ref"] in self.recursive else None
            if not isinstance(target, dict) or {"$id", "id"} & set(target) or len(json.dumps(target)) > self.budget:
                return node
            self.budget -= len(json.dumps(target))
            return self._inlined({k: v for k, v in target.items() if k not in _CONTAINERS}, depth + 1)
        return map_children(node, lambda suffix, child: child if suffix.startswith(_CONTAINER_SUFFIXES)
                            else self._inlined(child, depth))

