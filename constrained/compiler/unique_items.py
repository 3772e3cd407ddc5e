"""Which arrays `uniqueItems` applies to, as instance locations a matcher can follow while it generates.

llguidance has no `uniqueItems`. It is enforced by a check beside the grammar (backends/unique_matcher.py), which
never lets the generation reach a point where no token is left:
- plain strings (`items: {type: string}`, at most a minLength): the closing quote that would repeat an earlier
  item is forbidden; a plain string can always go on with another character instead;
- strings from an enum: an item must stay on the way to a value not used yet, and no item starts once every
  value is used (refused when `minItems` asks for more items than there are values);
- items of other kinds, compared as JSON values (1 == 1.0, keys in any order): the token ending an item equal to
  an earlier one is forbidden, and `true`/`false`/`null` do not start once used; refused unless every item can
  still differ where it would end (`_open_ended`): a string goes on, a number takes another digit, an object
  another property, an array another item. Objects closed to more properties are compared by one property they
  all require, a plain string (`_shared_key`: narrower, two objects alike in it are never both written).

The locations are found on the schema llguidance compiles (after the rewrites): starting at the root, a location
is reached through `properties` (by name), `additionalProperties` (any other name, where no `patternProperties`
applies) and `items` (every item), and every subschema that applies there (through `$ref`, `allOf`, `anyOf` and
`oneOf`) is collected. `uniqueItems` reached any other way (under `patternProperties`, `prefixItems`, `contains`,
...) is refused with its path. The locations leading to a unique array form a `Track` graph (finite: recursive
schemas give cycles), which the matcher walks as the JSON is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from constrained.compiler.keywords import ANNOTATIONS
from constrained.compiler.pattern_automata import endless, searches
from constrained.compiler.schema_walk import bare_target, children, escape, map_document, resolve_local
from constrained.errors import InvalidConstraint

_IN_PLACE = ("allOf", "anyOf", "oneOf")
# What may not stand beside a unique array's own keywords: those shaping an array some other way (the rest apply
# to other types, or assert nothing), and beside a string item's, what may.
_SHAPING_ARRAYS = frozenset({"prefixItems", "additionalItems", "contains", "minContains", "maxContains",
                             "unevaluatedItems", "not", "if", "then", "else"})
_ITEM_KEYS = frozenset({"type", "minLength", "enum", "const", "$ref", "allOf", *ANNOTATIONS})
_HINT = "drop it, or keep the items open-ended: plain strings, numbers with no maximum, objects open to more properties"


@dataclass(eq=False)
class Track:
    """One instance location on the way to a unique array: the locations below it that lead to one."""

    unique: bool = False  # an array here must hold distinct items
    values: frozenset[str] | None = None  # unique strings: the strings its items are drawn from (None: any)
    general: bool = False  # unique items of other kinds too, compared as JSON values (see `_open_ended`)
    key: str | None = None  # general: objects compared by this property alone (see `_shared_key`)
    properties: dict[str, Track] = field(default_factory=dict)  # by property name
    other: Track | None = None  # any name not in `declared`
    declared: frozenset[str] = frozenset()  # every name `properties` declares here (with `other` only)
    items: Track | None = None  # every item of an array here

    @cached_property
    def spellings(self) -> frozenset[bytes] | None:
        """`values` as the JSON text spells them between quotes (with no \\u escapes, as llguidance writes them)."""
        return None if self.values is None else frozenset(json.dumps(v, ensure_ascii=False)[1:-1].encode()
                                                          for v in self.values)

    @cached_property
    def key_spelling(self) -> bytes | None:
        """`key` as the JSON text spells it between quotes."""
        return None if self.key is None else json.dumps(self.key, ensure_ascii=False)[1:-1].encode()

    def to_json(self) -> list:
        """The graph as a list of nodes (the first is this one), children by index: cycles survive."""
        order: dict[int, int] = {}
        nodes: list[Track] = []

        def index(track: Track | None) -> int | None:
            if track is not None and id(track) not in order:
                order[id(track)] = len(nodes)
                nodes.append(track)
            return None if track is None else order[id(track)]

        index(self)
        out = []
        while len(out) < len(nodes):
            track = nodes[len(out)]
            out.append({"unique": track.unique, "general": track.general, "key": track.key,
                        "values": None if track.values is None else sorted(track.values),
                        "items": index(track.items), "other": index(track.other), "declared": sorted(track.declared),
                        "properties": {name: index(child) for name, child in track.properties.items()}})
        return out

    @staticmethod
    def from_json(nodes: list) -> Track:
        tracks = [Track(node["unique"], None if node["values"] is None else frozenset(node["values"]),
                        node.get("general", False), node.get("key"), declared=frozenset(node["declared"]))
                  for node in nodes]
        for track, node in zip(tracks, nodes):
            track.items = None if node["items"] is None else tracks[node["items"]]
            track.other = None if node["other"] is None else tracks[node["other"]]
            track.properties = {name: tracks[i] for name, i in node["properties"].items()}
        return tracks[0]


@dataclass(frozen=True)
class UniqueRoots:
    """Where the JSON documents with unique arrays start in the output: the output itself (`start`, a
    response_format schema), and the arguments of each tool call by tool name (`calls`)."""

    start: Track | None = None
    calls: dict[str, Track] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"start": None if self.start is None else self.start.to_json(),
                "calls": {name: track.to_json() for name, track in self.calls.items()}}

    @staticmethod
    def from_json(value: dict) -> UniqueRoots:
        return UniqueRoots(None if value["start"] is None else Track.from_json(value["start"]),
                           {name: Track.from_json(nodes) for name, nodes in value["calls"].items()})


def split_unique_items(schema: Any) -> tuple[Any, Track | None]:
    """`schema` without `uniqueItems: true`, and the Track of where it applies (None: nowhere); InvalidConstraint
    with the path of a `uniqueItems` that cannot be enforced."""
    if not _holds_unique(schema):
        return schema, None
    track = _Locations(schema).track()
    return map_document(schema, lambda node: {k: v for k, v in node.items() if k != "uniqueItems"}), track


def _holds_unique(schema: Any) -> bool:
    return '"uniqueItems": true' in json.dumps(schema)  # cheap, and exact enough: a false positive costs a walk


Location = frozenset  # the JSON pointers of the subschemas applying at one instance location


class _Edges(NamedTuple):
    properties: dict[str, Location]
    other: Location | None
    items: Location | None


class _Locations:
    """The instance locations of `root`, each as the set of subschemas (JSON pointers) applying there."""

    def __init__(self, root: dict):
        self.root = root
        self.nodes: dict[str, Any] = {"": root}  # every subschema met, by pointer
        self.checked: set[str] = set()  # subschemas known to hold no uniqueItems below

    def track(self) -> Track | None:
        root = self._location([""])
        edges: dict[Location, _Edges] = {}
        unique: dict[Location, tuple[frozenset[str] | None, bool]] = {}
        pending = [root]
        while pending:  # every location the walk can name
            location = pending.pop()
            if location in edges:
                continue
            if self._is_unique_array(location):
                unique[location] = self._item_values(location)
            edges[location] = found = self._edges(location)
            pending.extend(child for child in (*found.properties.values(), found.other, found.items) if child)
        live, changed = set(unique), True
        while changed:  # and those leading to a unique array (cycles included)
            changed = False
            for location, found in edges.items():
                if location not in live and any(child in live for child in (*found.properties.values(), found.other,
                                                                            found.items)):
                    live.add(location)
                    changed = True
        tracks = {location: Track(location in unique, *unique[location]) if location in unique else Track()
                  for location in live}
        for location, track in tracks.items():
            found = edges[location]
            track.properties = {name: tracks[child] for name, child in found.properties.items() if child in live}
            track.items, track.other = tracks.get(found.items), tracks.get(found.other)
            track.declared = frozenset(found.properties) if track.other is not None else frozenset()
        return tracks.get(root)

    def _location(self, pointers: list[str]) -> Location:
        """The pointers given and every subschema applying in place through $ref, allOf, anyOf, oneOf."""
        found: set[str] = set()
        stack = list(pointers)
        while stack:
            pointer = stack.pop()
            node = self.nodes[pointer]
            if pointer in found or not isinstance(node, dict):
                continue
            found.add(pointer)
            if isinstance(node.get("$ref"), str):
                target = resolve_local(self.root, node["$ref"]) if node["$ref"].startswith("#") else None
                if target is None:
                    raise InvalidConstraint("a $ref to another document, where uniqueItems applies, is not enforced",
                                            path=pointer, keyword="$ref", hint=_HINT)
                self.nodes.setdefault(target[0], target[1])
                stack.append(target[0])
            for keyword in _IN_PLACE:
                members = node.get(keyword)
                for i, member in enumerate(members if isinstance(members, list) else []):
                    self.nodes.setdefault(f"{pointer}/{keyword}/{i}", member)
                    stack.append(f"{pointer}/{keyword}/{i}")
        # a node holding a $ref alone adds nothing: left out, so that a recursion closes on the same location
        return frozenset(p for p in found if not set(self.nodes[p]) <= {"$ref", *ANNOTATIONS})

    def _edges(self, location: Location) -> _Edges:
        """The locations of each declared property (what `patternProperties` and `additionalProperties` add there
        included), of any other name, and of every item; a `uniqueItems` under any other child of the location's
        subschemas is refused."""
        nodes = {pointer: self.nodes[pointer] for pointer in location}
        by_position = any("prefixItems" in node or isinstance(node.get("items"), list) for node in nodes.values())
        by_pattern = any(node.get("patternProperties") for node in nodes.values())
        names = {name for node in nodes.values() if isinstance(node.get("properties"), dict)
                 for name in node["properties"]}
        located: dict[str, list[str]] = {name: [] for name in names}
        others: list[str] = []
        items: list[str] = []
        for pointer, node in nodes.items():
            for suffix, child in children(node):
                keyword = suffix[1:].partition("/")[0]
                self.nodes.setdefault(pointer + suffix, child)
                if keyword == "items" and not by_position:
                    items.append(pointer + suffix)
                elif keyword == "additionalProperties" and not by_pattern:
                    others.append(pointer + suffix)
                elif keyword not in ("properties", *_IN_PLACE, "$defs", "definitions"):
                    self._refuse_unique_below(pointer + suffix, child)
            for name in names:
                located[name].extend(_applying(pointer, node, name))
        return _Edges({name: self._location(pointers) for name, pointers in located.items()},
                      self._location(others) if others else None, self._location(items) if items else None)

    def _is_unique_array(self, location: Location) -> bool:
        """Whether an array here must hold distinct items; InvalidConstraint where other keywords shape arrays
        beside."""
        nodes = {pointer: self.nodes[pointer] for pointer in location}
        unique = [pointer for pointer, node in nodes.items() if _asks_unique(node)]
        for pointer, node in nodes.items() if unique else ():
            odd = sorted(_SHAPING_ARRAYS & set(node)) or [key for key in ("items", "enum", "const")
                                                          if _holds_arrays(key, node.get(key))]
            if odd:
                raise InvalidConstraint(f"enforced on arrays of strings alone: {odd[0]!r} applies here too "
                                        f"(at '{pointer or '/'}')", path=unique[0], keyword="uniqueItems", hint=_HINT)
        return bool(unique)

    def _item_values(self, location: Location) -> tuple[frozenset[str] | None, bool, str | None]:
        """How a unique array's items are kept apart: (the strings they are drawn from, None: any string; False;
        None), or (None, True, key) for items compared as JSON values; InvalidConstraint where the items are of no
        such kind, or there cannot be as many distinct items as required."""
        nodes = {pointer: self.nodes[pointer] for pointer in location}
        path = min(pointer for pointer, node in nodes.items() if _asks_unique(node))
        pointers = [f"{pointer}/items" for pointer, node in nodes.items() if "items" in node]
        for pointer in pointers:
            self.nodes.setdefault(pointer, nodes[pointer[:-len("/items")]]["items"])
        item_nodes = [self.nodes[p] for p in self._location(pointers)]
        if not all(set(node) <= _ITEM_KEYS and node.get("type", "string") == "string" for node in item_nodes) \
                or not item_nodes:
            return self._general_items(item_nodes, path)
        values: list | None = None
        for node in item_nodes:
            if not set(node) <= _ITEM_KEYS or node.get("type", "string") != "string":
                raise InvalidConstraint("enforced on arrays of strings alone: plain (at most a minLength) or from "
                                        "an enum", path=path, keyword="uniqueItems", hint=_HINT)
            for allowed in ([node["const"]] if "const" in node else None, node.get("enum")):
                if isinstance(allowed, list):
                    values = allowed if values is None else [v for v in values if v in allowed]
        strings = any(node.get("type") == "string" for node in item_nodes)
        if not strings and (values is None or not all(isinstance(v, str) for v in values)):
            raise InvalidConstraint("enforced on arrays of strings alone (items: {type: string}, or an enum of "
                                    "strings)", path=path, keyword="uniqueItems", hint=_HINT)
        values = None if values is None else frozenset(v for v in values if isinstance(v, str))
        if values is not None and not values:
            raise InvalidConstraint("the items can be no string", path=path, keyword="uniqueItems", hint=_HINT)
        if values is not None and any(node.get("minLength", 0) for node in item_nodes):
            raise InvalidConstraint("enforced on enum items without minLength", path=path, keyword="uniqueItems",
                                    hint="drop the minLength: the enum says which strings")
        needed = max((node.get("minItems", 0) for node in nodes.values()), default=0)
        if values is not None and needed > len(values):
            raise InvalidConstraint(f"minItems {needed} asks for more distinct items than the {len(values)} values",
                                    path=path, keyword="uniqueItems", hint="lower minItems or add values")
        return values, False, None

    def _general_items(self, item_nodes: list[dict], path: str) -> tuple[None, bool, str | None]:
        """(None, True, key) where every item can still be made unlike the earlier ones (`_open_ended`), objects
        closed to more properties by their `key` (`_shared_key`); else InvalidConstraint naming what may leave an
        item no way to differ."""
        key = self._shared_key(item_nodes)
        for node in item_nodes:
            closing = _open_ended(node)
            if closing is not None and not (closing == "additionalProperties" and key is not None):
                raise InvalidConstraint(f"items compared as JSON values must stay open-ended: {closing!r} may leave "
                                        "an item no way to differ from the earlier ones", path=path,
                                        keyword="uniqueItems", hint=_HINT)
        return None, True, key

    def _shared_key(self, item_nodes: list[dict]) -> str | None:
        """Where some object item is closed to more properties: a name every object item requires, a plain string
        in each, by which all object items are compared instead (narrower: two objects alike in it are never
        both written, however else they differ; the string can always go on). None: no object is closed, or no
        such name. Subschemas holding only anyOf/oneOf/allOf (and `type`) leave it to their members."""
        objects = [node for node in item_nodes if "object" in _kinds(node)
                   and not set(node) - ANNOTATIONS <= {"type", "anyOf", "oneOf", "allOf"}]
        if not any(node.get("additionalProperties") is False for node in objects):
            return None
        names = set.intersection(*(set(node["required"]) if isinstance(node.get("required"), list) else set()
                                   for node in objects))
        return next((name for name in sorted(names) if all(
            isinstance(node.get("properties"), dict) and self._plain_string(node["properties"].get(name))
            and not any(searches(pattern, name) for pattern in node.get("patternProperties") or {})
            for node in objects)), None)

    def _plain_string(self, schema: Any) -> bool:
        schema = bare_target(schema, self.root)
        return isinstance(schema, dict) and schema.get("type") == "string" \
            and set(schema) - ANNOTATIONS <= {"type", "minLength"}

    def _refuse_unique_below(self, pointer: str, node: Any) -> None:
        """InvalidConstraint if a `uniqueItems: true` is reachable from the subschema at `pointer`."""
        stack = [(pointer, node)]
        while stack:
            pointer, node = stack.pop()
            if pointer in self.checked or not isinstance(node, dict):
                continue
            self.checked.add(pointer)
            if _asks_unique(node):
                raise InvalidConstraint("enforced on arrays reached through properties, additionalProperties and items "
                                        "alone, not under patternProperties, prefixItems, contains or not",
                                        path=pointer, keyword="uniqueItems", hint=_HINT)
            ref = node.get("$ref")
            target = resolve_local(self.root, ref) if isinstance(ref, str) and ref.startswith("#") else None
            if target is not None:
                stack.append(target)
            stack.extend((pointer + suffix, child) for suffix, child in children(node)
                         if not suffix.startswith(("/$defs/", "/definitions/")))


_ALL_TYPES = frozenset({"string", "number", "integer", "object", "array", "boolean", "null"})
_BOUNDING = {"string": ("pattern", "format", "maxLength"), "number": ("maximum", "exclusiveMaximum", "multipleOf"),
             "object": ("maxProperties", "propertyNames", "unevaluatedProperties"),
             "array": ("maxItems", "prefixItems", "contains", "unevaluatedItems")}


def _kinds(node: dict) -> frozenset[str]:
    named = node.get("type")
    return _ALL_TYPES if named is None else frozenset([named] if isinstance(named, str) else named)


def _open_ended(node: dict) -> str | None:
    """None where an item this subschema allows can always be made unlike any finite set of earlier items at
    the point it would end (a string goes on, within its pattern where that is `endless`; a number takes another
    digit, an object another property, an array another item; `true`, `false` and `null` are refused before they
    start); else the keyword in the way.
    A number's minimum below 0 (an integer's below 1) is in the way too."""
    for key in ("enum", "const", "not", "if"):
        if key in node:
            return key
    kinds = _kinds(node)
    if kinds <= {"boolean", "null"}:
        return "type"
    number = "number" in kinds
    for kind, keys in _BOUNDING.items():
        if kind in kinds or (kind == "number" and "integer" in kinds):
            found = [key for key in keys if key in node and not (key == "pattern" and endless(node[key]))]
            if found:
                return found[0]
    if "array" in kinds and isinstance(node.get("items"), list):
        return "items"
    if number or "integer" in kinds:
        lows = {key: node[key] for key in ("minimum", "exclusiveMinimum") if _is_number(node.get(key))}
        if number and any(low < 0 for low in lows.values()):
            return "minimum"  # "-1" over a minimum of -1.5 takes no more digits
        if not number and not (lows.get("minimum", 0) >= 1 or lows.get("exclusiveMinimum", -1) >= 0):
            return "minimum"  # an integer item "0" takes no more digits
    if "object" in kinds and node.get("additionalProperties") is False:
        return "additionalProperties"  # last: objects compared by a key (`_shared_key`) pass it
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _asks_unique(node: dict) -> bool:
    """`uniqueItems: true` in a node that arrays may satisfy (beside a `type` without "array" it asserts nothing)."""
    types = node.get("type", "array")
    return node.get("uniqueItems") is True and ("array" in types if isinstance(types, list) else types == "array")


def _holds_arrays(key: str, value: Any) -> bool:
    """Whether `items` is a list of schemas (one per position), or enum/const allow an array."""
    if key == "items":
        return isinstance(value, list)
    return any(isinstance(v, list) for v in (value if key == "enum" and isinstance(value, list) else [value]))


def _applying(pointer: str, node: dict, name: str) -> list[str]:
    """Pointers of the subschemas of `node` that apply to its property `name`."""
    declared = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    patterns = node.get("patternProperties") if isinstance(node.get("patternProperties"), dict) else {}
    found = [f"{pointer}/properties/{escape(name)}"] if name in declared else []
    found += [f"{pointer}/patternProperties/{escape(p)}" for p in patterns if searches(p, name)]
    if not found and "additionalProperties" in node:
        found.append(f"{pointer}/additionalProperties")
    return found

