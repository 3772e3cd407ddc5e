"""The complement of a schema as a schema llguidance enforces: what `not`, `if`/`then`/`else` and overlapping
`oneOf` are rewritten with (rewrites.py).

An instance fails a schema when it fails one of its keywords, and a keyword fails only on instances of the
type it constrains: `minLength: 3` fails on strings shorter than 3, never on a number. So `not S` is the anyOf,
over S's keywords, of "an instance of that type that the keyword rejects" (`{type: string, maxLength: 2}`),
with the types `type` leaves out. `anyOf`/`allOf` swap under negation, `not` cancels, and a `$ref` is negated
through its target.

The result may be narrower than the complement, never wider: a schema whose instances all fail `S`. It
narrows in three places: the non-integer numbers outside `type: integer`, which no schema llguidance enforces
can pick out; the strings a `pattern` rejects, written from an automaton that may match more than the pattern
(pattern_automata.py), or from a pattern matching at least what a `format`'s checker accepts; and an item failing
`items`, placed at one of the first positions after the positional ones. A keyword whose failing instances cannot
be described at all (`multipleOf`, `uniqueItems`, a pattern the automaton cannot read, a format without such a
pattern or that jsonschema does not check, ...) makes the whole complement None: the caller refuses.
"""

from __future__ import annotations

from typing import Any

from constrained.compiler.drafts import since_2019_09, validator_class
from constrained.compiler.keywords import ASSERTIONS
from constrained.compiler.pattern_automata import escape, strings_not_matching
from constrained.compiler.schema_walk import resolve_local

# A pattern matching at least every string jsonschema's checker accepts for a format (its complement then holds
# only strings the format rejects): ipaddress reads ASCII digits, at most 3 an octet; IPv6 is hex, ":" and an
# IPv4 tail (jsonschema refuses a scope); fqdn's hostname regex reads \d and [A-Z] (ignoring case) in Unicode;
# RFC 3339 date-times are read upper-cased (no other character upper-cases into their alphabet), dates in ASCII;
# a URI (rfc3987, rfc3986-validator) has a scheme; an email holds "@".
_FORMAT_SUPERSETS = {
    "ipv4": r"^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$",
    "ipv6": r"^[0-9A-Fa-f:.]+$",
    "hostname": r"^(?:[A-Za-z0-9.-]|[^\x00-\x7f])+$",
    "host-name": r"^(?:[A-Za-z0-9.-]|[^\x00-\x7f])+$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "date-time": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
                 r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$",
    "uri": r"^[A-Za-z][A-Za-z0-9+.-]*:",
    "email": "@",
}
_KINDS = ("null", "boolean", "object", "array", "number", "string")  # disjoint: "integer" is among the numbers
_MAX_DEPTH = 8  # $refs followed and nested negations: deeper is refused
_MAX_VALUE_CHARS = 200  # a string left out of the complement is spelled one character at a time
_LARGE_COMPLEMENTS = ("items", "prefixItems", "additionalItems", "pattern", "format")
_MAX_ITEM_STARTS = 3  # positions an item failing `items` is placed at in its complement

# (keyword, the type it constrains, the schema of that type its failing instances satisfy, given its value)
_BOUNDS = {
    "minLength": ("string", lambda n: {"maxLength": n - 1} if n > 0 else None),
    "maxLength": ("string", lambda n: {"minLength": n + 1}),
    "minItems": ("array", lambda n: {"maxItems": n - 1} if n > 0 else None),
    "maxItems": ("array", lambda n: {"minItems": n + 1}),
    "minProperties": ("object", lambda n: {"maxProperties": n - 1} if n > 0 else None),
    "maxProperties": ("object", lambda n: {"minProperties": n + 1}),
}


class _Inexpressible(Exception):
    """Some keyword's failing instances have no schema."""


def negate(schema: Any, root: Any, *, narrowing: bool = False, coarse: bool = False) -> Any:
    """A schema that only instances failing `schema` satisfy (its complement, see the module docstring); False
    when every instance satisfies `schema`, {} when none does; None when it cannot be written. With `narrowing`,
    a keyword whose failing instances have no schema contributes none instead (a narrower complement); `coarse`
    counts items, patterns and formats among those (their complements can be large)."""
    try:
        return _Negation(root, narrowing, coarse).negate(schema, 0)
    except _Inexpressible:
        return None


class _Negation:
    def __init__(self, root: Any, narrowing: bool, coarse: bool):
        self.root, self.narrowing, self.coarse = root, narrowing, coarse
        draft = validator_class(root)
        self.checked_formats = draft.FORMAT_CHECKER.checkers  # a format the draft does not check fails nothing
        self.positional = "prefixItems" if "prefixItems" in draft.VALIDATORS else "items"  # a list of item schemas
        self.ref_siblings_apply = since_2019_09(draft)

    def negate(self, schema: Any, depth: int) -> Any:
        try:
            return self._negate(schema, depth)
        except _Inexpressible:
            if self.narrowing:  # every use of a complement here is positive: leaving instances out is safe
                return False
            raise

    def _negate(self, schema: Any, depth: int) -> Any:
        if schema is True or schema == {}:
            return False
        if schema is False:
            return {}
        if not isinstance(schema, dict) or depth > _MAX_DEPTH:
            raise _Inexpressible
        asserting = {key: value for key, value in schema.items() if key in ASSERTIONS}
        if "$ref" in asserting and len(asserting) > 1:  # its siblings: both hold from 2019-09, ignored before
            if self.ref_siblings_apply:
                rest = {key: value for key, value in asserting.items() if key != "$ref"}
                return self.negate({"allOf": [{"$ref": asserting["$ref"]}, rest]}, depth)
            asserting = {"$ref": asserting["$ref"]}
        if "$ref" in asserting:
            try:
                target = resolve_local(self.root, asserting["$ref"]) if isinstance(asserting["$ref"], str) else None
            except KeyError:  # points nowhere
                target = None
            if target is None:
                raise _Inexpressible
            return self.negate(target[1], depth + 1)
        parts: list[Any] = []
        for key, value in asserting.items():
            try:
                parts.extend(self._failing(key, value, asserting, depth))
            except _Inexpressible:
                if not self.narrowing:
                    raise
        return union(parts)

    def _failing(self, key: str, value: Any, schema: dict, depth: int) -> list[Any]:
        """Schemas of the instances `key: value` rejects (their union); raises _Inexpressible."""
        if key == "type":
            return [_other_types(value)]
        if key in ("enum", "const"):
            return [_other_values(value if key == "enum" else [value])]
        if key in _BOUNDS:
            kind, failing = _BOUNDS[key]
            bound = failing(value) if isinstance(value, int) and not isinstance(value, bool) else None
            return [] if bound is None else [{"type": kind, **bound}]
        if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            return _outside_bound(key, value, schema)
        if key == "required":
            return [{"type": "object", "properties": {name: False}} for name in dict.fromkeys(value)]
        if key == "properties":
            failing = []
            for name, sub in value.items():
                negated = self.negate(sub, depth + 1)
                if negated is not False:
                    failing.append({"type": "object", "required": [name], "properties": {name: negated}})
            return failing
        if key == "anyOf":
            return [intersection([self.negate(branch, depth + 1) for branch in value])]
        if key == "allOf":
            return [self.negate(branch, depth + 1) for branch in value]
        if key == "oneOf":  # none of them, or two at once
            pairs = [intersection([a, b]) for i, a in enumerate(value) for b in value[i + 1:]]
            return [intersection([self.negate(branch, depth + 1) for branch in value]), *pairs]
        if key == "not":
            return [value]
        if self.coarse and key in _LARGE_COMPLEMENTS:
            raise _Inexpressible
        if key in ("items", "prefixItems", "additionalItems"):
            return self._failing_items(key, value, schema, depth)
        if key == "format" and value in _FORMAT_SUPERSETS and value in self.checked_formats:
            return self._failing("pattern", _FORMAT_SUPERSETS[value], schema, depth)
        if key == "pattern" and isinstance(value, str):
            rejected = strings_not_matching(value)
            if rejected is None:
                raise _Inexpressible
            return [{"type": "string", "pattern": rejected}] if rejected else []
        raise _Inexpressible

    def _failing_items(self, key: str, value: Any, schema: dict, depth: int) -> list[Any]:
        """Arrays with an item failing its schema: at its position for a list of item schemas (exact); for the
        schema of the items after those, at one of the _MAX_ITEM_STARTS positions after them (narrower)."""
        positional = self.positional
        if isinstance(value, list):
            if key != positional:
                raise _Inexpressible
            return [{"type": "array", positional: [{}] * i + [failing], "minItems": i + 1}
                    for i, item in enumerate(value) if (failing := self.negate(item, depth + 1)) is not False]
        before = schema.get(positional) if key != positional else None
        if key == "additionalItems" and (positional == "prefixItems" or not isinstance(before, list)):
            return []  # asserts nothing from 2020-12, nor beside no list of item schemas
        if key == "prefixItems" or (key == "items" and before is not None and not isinstance(before, list)):
            raise _Inexpressible
        failing = self.negate(value, depth + 1)
        if failing is False:
            return []
        offset = len(before) if isinstance(before, list) else 0
        return [{"type": "array", positional: [{}] * start + [failing], "minItems": start + 1}
                for start in range(offset, offset + _MAX_ITEM_STARTS)]


def union(parts: list[Any]) -> Any:
    """anyOf `parts`, where False matches nothing and {} everything."""
    parts = [part for part in parts if part is not False]
    if any(part == {} for part in parts):
        return {}
    if not parts:
        return False
    return parts[0] if len(parts) == 1 else {"anyOf": parts}


def intersection(parts: list[Any]) -> Any:
    """allOf `parts`, where False matches nothing and {} everything."""
    if any(part is False for part in parts):
        return False
    parts = [part for part in parts if part != {}]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def _other_types(named: Any) -> Any:
    """The instances whose type is not among `named`; non-integer numbers left out when `integer` is named
    without `number` (the one narrowing: no enforceable schema describes them)."""
    named = {named} if isinstance(named, str) else set(named)
    if "integer" in named:
        named.add("number")
    rest = [kind for kind in _KINDS if kind not in named]
    return {"type": rest} if rest else False


def _other_values(values: list[Any]) -> Any:
    """The instances equal to none of `values` (JSON equality: 1 == 1.0, true != 1)."""
    by_type: dict[str, list[Any]] = {}
    for value in values:
        by_type.setdefault(_type_of(value), []).append(value)
    if {"array", "object"} & by_type.keys():
        raise _Inexpressible
    parts: list[Any] = [{"type": [kind for kind in _KINDS if kind not in by_type]}]
    if "boolean" in by_type:
        parts.append({"enum": [flag for flag in (False, True) if flag not in by_type["boolean"]]})
    if "string" in by_type:
        parts.append({"type": "string", "pattern": other_strings(set(by_type["string"]))})
    if "number" in by_type:
        parts.extend(_other_numbers(sorted(set(by_type["number"]))))
    return union([part for part in parts if part.get("type") != [] and part.get("enum") != []])


def _other_numbers(values: list[float]) -> list[dict]:
    """The numbers between and around sorted `values`."""
    parts = [{"type": "number", "exclusiveMaximum": values[0]}]
    parts += [{"type": "number", "exclusiveMinimum": low, "exclusiveMaximum": high}
              for low, high in zip(values, values[1:])]
    return [*parts, {"type": "number", "exclusiveMinimum": values[-1]}]


def _outside_bound(key: str, value: Any, schema: dict) -> list[dict]:
    """Numbers past one bound. Draft 4 spells an exclusive bound as `maximum` with `exclusiveMaximum: true`."""
    if isinstance(value, bool):  # draft 4's flag: read with its bound
        return []
    if not isinstance(value, (int, float)):
        raise _Inexpressible
    if key in ("minimum", "maximum"):
        exclusive = schema.get("exclusiveMinimum" if key == "minimum" else "exclusiveMaximum") is True
        key = ("exclusiveMinimum" if key == "minimum" else "exclusiveMaximum") if exclusive else key
    below = {"minimum": "exclusiveMaximum", "exclusiveMinimum": "maximum"}
    above = {"maximum": "exclusiveMinimum", "exclusiveMaximum": "minimum"}
    return [{"type": "number", **({below[key]: value} if key in below else {above[key]: value})}]


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


_ANY = r"[\s\S]"


def other_strings(values: set[str]) -> str:
    """An anchored pattern (llguidance's regex syntax) matching exactly the strings not in `values`: at each
    node of their trie, the prefix itself when it is no value, a character leading out of the trie and then
    anything, or a character into a child and that child's pattern."""
    if max(map(len, values)) > _MAX_VALUE_CHARS:
        raise _Inexpressible
    trie: dict = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[None] = {}
    return f"^(?:{_node_pattern(trie)})$"


def _node_pattern(node: dict) -> str:
    chars = sorted(char for char in node if char is not None)
    branches = [] if None in node else [""]
    branches.append(f"[^{''.join(map(escape, chars))}]{_ANY}*" if chars else f"{_ANY}+")
    branches += [f"{escape(char)}(?:{_node_pattern(node[char])})" for char in chars]
    return "|".join(branches)
