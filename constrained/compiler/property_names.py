"""`propertyNames` as what llguidance enforces: the names a schema allows, as a regex over the object's keys.

Declared properties are decided here, by validating each name (a name the schema refuses becomes `false`:
absent). Undeclared keys go through a patternProperty whose pattern spells the allowed names, carrying the
old `additionalProperties`, and nothing else is admitted. That is exact when `additionalProperties` was
absent or `true`; otherwise the declared names the pattern matches must satisfy it too (narrower, never
invalid). Name schemas beyond one pattern, an enum/const, or length bounds, and objects that already have
patternProperties (two patterns cannot be intersected), stay refused.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

from constrained.compiler.keywords import ASSERTIONS
from constrained.compiler.pattern_automata import regex_literal
from constrained.compiler.schema_walk import resolve_local

_MAX_REFS = 8


def with_property_names(node: dict, root: Any) -> dict | None:
    """`node` with its `propertyNames` rewritten (see the module docstring); None when it cannot be."""
    names = _names_schema(node["propertyNames"], root)
    rest = {key: value for key, value in node.items() if key != "propertyNames"}
    if names is None:
        return None
    if names is True:
        return rest
    pattern = False if names is False else _pattern(names)
    if pattern is None:
        return None
    properties = rest.get("properties") if isinstance(rest.get("properties"), dict) else {}
    rest["properties"] = {name: sub if names is not False and jsonschema_rs.is_valid(names, name) else False
                          for name, sub in properties.items()}
    if pattern is False:
        return {**rest, "patternProperties": {}, "additionalProperties": False}
    if rest.get("patternProperties"):
        return None
    additional = rest.get("additionalProperties", {})
    if additional is False:
        return rest
    return {**rest, "patternProperties": {pattern: additional}, "additionalProperties": False}


def _names_schema(schema: Any, root: Any) -> Any:
    """The assertions of the names schema, its `$ref`s followed: True (any name), False (none), a dict, or None
    (a reference that cannot be followed)."""
    for _ in range(_MAX_REFS):
        if schema is True or schema is False:
            return schema
        if not isinstance(schema, dict):
            return None
        asserting = {key: value for key, value in schema.items() if key in ASSERTIONS}
        if set(asserting) != {"$ref"}:
            break
        try:
            target = resolve_local(root, asserting["$ref"]) if isinstance(asserting["$ref"], str) else None
        except KeyError:
            target = None
        if target is None:
            return None
        schema = target[1]
    else:
        return None
    if "$ref" in asserting:
        return None
    kinds = asserting.pop("type", "string")
    if "string" not in ([kinds] if isinstance(kinds, str) else kinds):
        return False
    return asserting or True


def _pattern(names: dict) -> str | bool | None:
    """A regex matching the names `names` allows (False: none); None when it has none here."""
    if set(names) == {"pattern"} and isinstance(names["pattern"], str):
        return names["pattern"]
    if set(names) in ({"enum"}, {"const"}):
        values = names["enum"] if "enum" in names else [names["const"]]
        strings = sorted({value for value in values if isinstance(value, str)}) if isinstance(values, list) else []
        return f"^(?:{'|'.join(map(regex_literal, strings))})$" if strings else False
    if set(names) <= {"minLength", "maxLength"}:
        low, high = names.get("minLength", 0), names.get("maxLength", "")
        if all(isinstance(bound, int) and not isinstance(bound, bool) for bound in (low, high or 0)):
            return rf"^[\s\S]{{{low},{high}}}$"
    return None
