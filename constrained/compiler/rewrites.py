"""Exact rewrites of keywords llguidance does not implement into ones it does, or a refusal with the path.

Every rewrite accepts exactly the instances the original accepts (the JSON Schema semantics, including
for non-object instances, which `required`/`properties` let through):
- `dependencies` / `dependentRequired` / `dependentSchemas`: "a present => R" becomes
  `anyOf: [{properties: {a: false}}, {required: [a, ...R]}]` (just R when `a` is required anyway);
- `not` of a few shapes: `{}` (nothing matches), `type`, `required`, and anyOf/allOf of `required`;
- `oneOf` whose branches provably cannot overlap becomes `anyOf`; a oneOf of single `required` names
  ("exactly one of a, b") becomes an anyOf of objects with one name present and the others absent.
Anything else stays refused, with its path.

One rewrite narrows instead (a subset of the valid instances, never an invalid one): a `oneOf` whose
branches may overlap, where each branch can be kept apart from each other by a name the other requires
(or a property whose values they never share), becomes an anyOf of "this branch, without that name" (or
"with that property"): oneOf [{required: [a]}, {required: [b]}] emits objects with a or b, never both.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from constrained.compiler.schema_walk import map_with_pointers, resolve_local
from constrained.errors import InvalidConstraint

JSON_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})


def llguidance_equivalent(schema: Any) -> Any:
    """`schema` with `dependencies`, `not` and `oneOf` rewritten (see the module docstring); InvalidConstraint
    naming the first one that has no exact equivalent."""
    if not isinstance(schema, dict):
        return schema
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # an unknown $schema: the default draft
        known = set(jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).VALIDATORS)

    def rewrite(pointer: str, node: dict) -> Any:
        node = _dependencies(node, known)
        if "not" in node:
            replacement = _negation(node.pop("not"))
            if replacement is None:
                raise InvalidConstraint("only `not` of {}, a type, or required names is enforced", path=pointer,
                                        keyword="not", hint="list what is allowed instead (enum, anyOf)")
            if replacement is False:
                return False
            node = _conjoin(node, replacement)
        if "oneOf" in node:
            branches = _exclusive(node.pop("oneOf"), schema)
            if branches is None:
                raise InvalidConstraint("oneOf branches that may overlap are not enforced", path=pointer,
                                        keyword="oneOf", hint="use anyOf when at most one branch can match anyway")
            node = _conjoin(node, {"anyOf": branches}) if "anyOf" in node else {**node, "anyOf": branches}
        return node

    return map_with_pointers(schema, rewrite)


def _conjoin(node: dict, extra: dict) -> dict:
    return {**node, "allOf": [*node.get("allOf", []), extra]}


_DEPENDENCY_KEYWORDS = ("dependencies", "dependentRequired", "dependentSchemas")


def _dependencies(node: dict, known: set[str]) -> dict:
    """The dependency keywords of the schema's draft as conditions; the other drafts' ones assert nothing, but for
    `dependencies`, kept in every draft: 2019-09 validators may still assert it (the official suite's optional
    compatibility tests do), and a stricter grammar never emits an instance jsonschema refuses."""
    pairs = [(name, then) for key in _DEPENDENCY_KEYWORDS
             if (key in known or key == "dependencies") and isinstance(node.get(key), dict)
             for name, then in node[key].items()]
    node = {k: v for k, v in node.items() if k not in _DEPENDENCY_KEYWORDS}
    conditions = []
    for name, then in pairs:
        then_schema = {"required": [name, *then]} if isinstance(then, list) else {"required": [name], "allOf": [then]}
        required = isinstance(node.get("required"), list) and name in node["required"]
        conditions.append(then_schema if required else {"anyOf": [{"properties": {name: False}}, then_schema]})
    return {**node, "allOf": [*node.get("allOf", []), *conditions]} if conditions else node


def _negation(negated: Any) -> Any:
    """A schema matching exactly what `negated` does not match; False for nothing; None when unsupported."""
    if negated is True or negated == {}:
        return False
    if negated is False:
        return {}
    if not isinstance(negated, dict):
        return None
    keys = set(negated) - {"title", "description", "$comment"}
    if keys == {"type"}:
        named = {negated["type"]} if isinstance(negated["type"], str) else set(negated["type"])
        if "number" in named:
            named.add("integer")
        if "integer" in named and "number" not in named:
            return None  # "a number but not an integer" has no type
        rest = sorted(JSON_TYPES - named - {"integer"})
        return {"type": rest} if rest else False
    names = _required_names(negated, "allOf")
    if names is not None:  # not(all present): an object missing at least one
        return {"type": "object", "anyOf": [{"properties": {name: False}} for name in names]}
    names = _required_names(negated, "anyOf")
    if names is not None:  # not(any present): an object with none of them
        return {"type": "object", "properties": {name: False for name in names}}
    return None


def _required_names(schema: dict, combinator: str) -> list[str] | None:
    """The names of {"required": [...]} or of {combinator: [{"required": [...]}, ...]} (single names for anyOf)."""
    if set(schema) == {"required"} and combinator == "allOf":
        return list(schema["required"]) or None
    parts = schema.get(combinator)
    if set(schema) != {combinator} or not isinstance(parts, list) or not parts:
        return None
    if not all(isinstance(p, dict) and set(p) == {"required"} and len(p["required"]) == 1 for p in parts):
        return None
    return [p["required"][0] for p in parts]


def _exclusive(branches: Any, root: dict) -> list | None:
    """oneOf branches as anyOf branches when at most one can match any instance; None when not provable."""
    if not isinstance(branches, list):
        return None
    names = [b["required"][0] if isinstance(b, dict) and set(b) == {"required"} and isinstance(b["required"], list)
             and len(b["required"]) == 1 else None for b in branches]
    if len(branches) > 1 and None not in names:  # "exactly one of these names": the others absent
        if len(set(names)) < len(names):
            return None
        return [{"type": "object", "required": [name], "properties": {other: False for other in names if other != name}}
                for name in names]
    shapes = [_shape(b, root, 0) for b in branches]
    out = []
    for i, (branch, mine) in enumerate(zip(branches, shapes)):
        guards = [_excluding(mine, other) for j, other in enumerate(shapes) if j != i and not _disjoint(mine, other)]
        if None in guards:
            return None
        out.append(_guarded(branch, guards, root) if guards else branch)
    return out


def _guarded(branch: Any, guards: list[dict], root: dict) -> dict:
    """`branch` and its guards. A bare `$ref` is replaced by its target, since llguidance refuses a recursive
    reference beside other keywords; keywords in it that need a rewrite then make llguidance refuse it."""
    if isinstance(branch, dict) and set(branch) == {"$ref"} and isinstance(branch["$ref"], str):
        try:
            target = resolve_local(root, branch["$ref"])
        except KeyError:
            target = None
        if target is not None and isinstance(target[1], dict) and not {"$ref", "$id", "id"} & set(target[1]):
            return _conjoin(target[1], {"allOf": guards})
    return {"allOf": [branch, *guards]}


def _excluding(mine: "_Shape", other: "_Shape") -> dict | None:
    """A condition no instance of `other` meets: a type it cannot be, or an object without a name it requires
    (one `mine` does not require), or with a property whose values in `mine` it never allows. None if none."""
    missing = sorted(other.required - mine.required)
    apart = sorted(name for name in mine.declared.keys() & other.declared.keys()
                   if not mine.declared[name] & other.declared[name])
    free = [name for name in missing if mine.excludes(name)]  # `mine` holds no such name anyway: nothing lost
    if missing:
        guard = {"type": "object", "properties": {(free or missing)[0]: False}}
    elif apart:
        guard = {"type": "object", "required": [apart[0]]}
    else:
        return None
    types = mine.types - other.types - ({"number"} if "integer" in other.types else set())
    return {"anyOf": [{"type": sorted(types)}, guard]} if types else guard


_MAX_REF_DEPTH = 8


@dataclass
class _Shape:
    """What every instance of a schema must be (conservative: what is not known is left open).

    `values`: its possible values as canonical JSON (None: any); for objects, `required` names, the possible
    values of some of them (`known`) and of some properties when present (`declared`), and the names it cannot
    hold (`closed`: all but these; `absent`).
    """

    types: set[str] = field(default_factory=lambda: set(JSON_TYPES))
    values: set[str] | None = None
    required: set[str] = field(default_factory=set)
    known: dict[str, set[str]] = field(default_factory=dict)
    declared: dict[str, set[str]] = field(default_factory=dict)
    closed: set[str] | None = None
    absent: set[str] = field(default_factory=set)

    def excludes(self, name: str) -> bool:
        return name in self.absent or (self.closed is not None and name not in self.closed)

    def narrow(self, other: "_Shape") -> None:
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


def _shape(schema: Any, root: dict, depth: int) -> _Shape:
    if schema is False:
        return _Shape(types=set(), values=set())
    if not isinstance(schema, dict) or depth > _MAX_REF_DEPTH:
        return _Shape()
    if isinstance(schema.get("$ref"), str):  # siblings of $ref are ignored before draft 2019-09: the target alone
        try:
            target = resolve_local(root, schema["$ref"])
        except KeyError:
            target = None
        return _Shape() if target is None else _shape(target[1], root, depth + 1)
    shape = _Shape()
    if "type" in schema:
        named = {schema["type"]} if isinstance(schema["type"], str) else set(schema["type"])
        shape.types &= named | ({"integer"} if "number" in named else set())
    listed = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(listed, list):
        shape.values = {_canonical(v) for v in listed}
        shape.types &= {t for v in listed for t in _types_of(v)}
    for part in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        shape.narrow(_shape(part, root, depth + 1))
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    shape.required |= {n for n in schema.get("required", []) if isinstance(n, str)} \
        if isinstance(schema.get("required"), list) else set()
    for name, sub in properties.items():
        allowed = _shape(sub, root, depth + 1).values
        if allowed is not None:
            shape.declared[name] = allowed
    shape.known |= {name: shape.declared[name] for name in shape.required & set(shape.declared)}
    shape.absent |= {name for name, sub in properties.items() if sub is False}
    if schema.get("additionalProperties") is False and not schema.get("patternProperties"):
        shape.closed = set(properties) if shape.closed is None else shape.closed & set(properties)
    return shape


def _disjoint(a: _Shape, b: _Shape) -> bool:
    shared = a.types & b.types
    if not shared:
        return True
    if a.values is not None and b.values is not None and not a.values & b.values:
        return True
    if shared == {"object"}:  # objects told apart by a required property: its values, or the other forbids it
        return any(not a.known[name] & b.known[name] for name in a.known.keys() & b.known.keys()) \
            or any(b.excludes(name) for name in a.required) or any(a.excludes(name) for name in b.required)
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
