"""What every instance of a schema must be, conservatively: enough to tell that two oneOf branches can never
match one instance (rewrites.py keeps those as anyOf, and keeps the others apart).

Two string patterns are told apart by intersecting their automata (pattern_automata.py), each matching at
least what the pattern matches for Python's `re` (jsonschema, which the guarantee is checked with) and ECMA-262.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from constrained.compiler.pattern_automata import automaton, searches
from constrained.compiler.schema_walk import resolve_local

JSON_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})

_MAX_REF_DEPTH = 8


@dataclass
class Shape:
    """What every instance of a schema must be (conservative: what is not known is left open).

    `values`: its possible values as canonical JSON (None: any); for objects, `required` names, the possible
    values of some of them (`known`) and of some properties when present (`declared`), the names it cannot
    hold (`closed`: all but these; `absent`) and how many properties it holds (`fewest` to `most`); for strings,
    the patterns they match.
    """

    types: set[str] = field(default_factory=lambda: set(JSON_TYPES))
    values: set[str] | None = None
    required: set[str] = field(default_factory=set)
    known: dict[str, set[str]] = field(default_factory=dict)
    declared: dict[str, set[str]] = field(default_factory=dict)
    closed: set[str] | None = None
    absent: set[str] = field(default_factory=set)
    patterns: list[str] = field(default_factory=list)
    fewest: int = 0
    most: int | None = None
    names: set[str] = field(default_factory=set)  # every name `properties` declares

    def excludes(self, name: str) -> bool:
        return name in self.absent or (self.closed is not None and name not in self.closed)

    def narrow(self, other: "Shape") -> None:
        """Both must hold (allOf)."""
        self.types &= other.types
        if other.values is not None:
            self.values = other.values if self.values is None else self.values & other.values
        self.required |= other.required
        self.known.update(other.known)
        self.declared.update(other.declared)
        if other.closed is not None:
            self.closed = other.closed if self.closed is None else self.closed & other.closed
        self.absent |= other.absent
        self.patterns += other.patterns
        self.names |= other.names
        self.fewest = max(self.fewest, other.fewest)
        if other.most is not None:
            self.most = other.most if self.most is None else min(self.most, other.most)


def shape_of(schema: Any, root: dict, depth: int) -> Shape:
    if schema is False:
        return Shape(types=set(), values=set())
    if not isinstance(schema, dict) or depth > _MAX_REF_DEPTH:
        return Shape()
    if isinstance(schema.get("$ref"), str):  # siblings of $ref are ignored before draft 2019-09: the target alone
        try:
            target = resolve_local(root, schema["$ref"])
        except KeyError:
            target = None
        return Shape() if target is None else shape_of(target[1], root, depth + 1)
    shape = Shape()
    if "type" in schema:
        named = {schema["type"]} if isinstance(schema["type"], str) else set(schema["type"])
        shape.types &= named | ({"integer"} if "number" in named else set())
    listed = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(listed, list):
        shape.values = {_canonical(v) for v in listed}
        shape.types &= {t for v in listed for t in _types_of(v)}
    if isinstance(schema.get("pattern"), str):
        shape.patterns.append(schema["pattern"])
    for part in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        shape.narrow(shape_of(part, root, depth + 1))
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    shape.names |= set(properties)
    shape.required |= {n for n in schema.get("required", []) if isinstance(n, str)} \
        if isinstance(schema.get("required"), list) else set()
    for name, sub in properties.items():
        allowed = shape_of(sub, root, depth + 1).values
        if allowed is not None:
            shape.declared[name] = allowed
    shape.known |= {name: shape.declared[name] for name in shape.required & set(shape.declared)}
    shape.absent |= {name for name, sub in properties.items() if sub is False}
    if schema.get("additionalProperties") is False and not schema.get("patternProperties"):
        shape.closed = set(properties) if shape.closed is None else shape.closed & set(properties)
    counts = [schema.get(key) for key in ("minProperties", "maxProperties")]
    shape.fewest = max(shape.fewest, len(shape.required), counts[0] if _is_count(counts[0]) else 0)
    if _is_count(counts[1]):
        shape.most = counts[1] if shape.most is None else min(shape.most, counts[1])
    for key in ("anyOf", "oneOf"):  # an object matching one of the branches holds as many properties as it asks
        if isinstance(schema.get(key), list) and schema[key]:
            shape.fewest = max(shape.fewest, min(shape_of(b, root, depth + 1).fewest for b in schema[key]))
    return shape


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def disjoint(a: Shape, b: Shape) -> bool:
    shared = a.types & b.types
    if not shared:
        return True
    if a.values is not None and b.values is not None and not a.values & b.values:
        return True
    if shared == {"string"}:
        return _apart(a, b) or _apart(b, a)
    if shared == {"object"}:  # objects told apart by a required property (its values, or the other forbids it),
        return any(not a.known[name] & b.known[name] for name in a.known.keys() & b.known.keys()) \
            or any(b.excludes(name) for name in a.required) or any(a.excludes(name) for name in b.required) \
            or (a.most is not None and a.most < b.fewest) or (b.most is not None and b.most < a.fewest)  # or counts
    return False


def _types_of(value: Any) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int) or isinstance(value, float) and value.is_integer():
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"}
    return {"string" if isinstance(value, str) else "array" if isinstance(value, list) else "object"}


def _canonical(value: Any) -> str:
    """Equal JSON values (as JSON Schema compares them: 1 == 1.0, true != 1) get equal keys."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        return "[" + ",".join(map(_canonical, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_canonical(v)}" for k, v in sorted(value.items())) + "}"
    return json.dumps(value)


def _apart(a: Shape, b: Shape) -> bool:
    """Whether no string `a` allows matches all of `b`'s patterns: a pattern of each with no string in common, or
    `a`'s listed values all outside one of `b`'s patterns (as Python's `re` reads it: jsonschema's own test)."""
    if a.values is not None and any(all(not searches(p, json.loads(v)) for v in a.values if v.startswith('"'))
                                    for p in b.patterns):
        return True
    return any(mine is not None and theirs is not None and mine.intersection(theirs).empty()
               for mine in map(automaton, a.patterns) for theirs in map(automaton, b.patterns))

