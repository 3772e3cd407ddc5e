"""Every reference to a schema inside the document as a pointer from its root: what the rest of the compiler reads.

A `$ref` is a URI resolved against the base its schema sits in: an embedded resource's `$id` (`id` in draft 4)
changes the base, so `#/$defs/inner` inside a resource means that resource's `$defs`, `d.json` may name a
resource embedded anywhere (under `not`, `then`, ...), and `#name` an `$anchor` (a fragment-only `$id` before
2019-09). Here each is resolved once and written as `#/json/pointer`; the identifiers are then dropped, so no
later step (nor llguidance, which registers resources only in some places) resolves one differently. A target
under a keyword the rewrites replace (`not`, `if`, `oneOf`, `allOf`, ...: rewrites.py) is copied into the root's
`$defs`, where it stays whatever they do.

`$dynamicRef` is resolved where its target does not depend on how evaluation got there: a plain `$ref` when the
anchor it names is not dynamic, or the root's `$dynamicAnchor` of that name (the root is the outermost scope of
every evaluation), or the only resource that declares one. Any other stays, and is refused; so is a `$ref` to a
dynamic anchor that this would resolve elsewhere (jsonschema does, the spec does not). A document with a
reference to another document is left as it is (refused where it is compiled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin

import jsonschema

from constrained.compiler.drafts import since_2019_09, validator_class
from constrained.compiler.schema_walk import children, map_with_pointers, resolve_local

_BASE = "https://constrained.invalid/schema.json"  # the base of a document without an `$id` of its own
_MARKERS = ('"$id"', '"id"', '"$anchor"', '"$dynamicAnchor"', '"$dynamicRef"', '"$ref"')
# Keywords whose subschemas the rewrites replace or move: a target below one is copied to the root's `$defs`.
_REWRITTEN = frozenset({"not", "if", "then", "else", "oneOf", "anyOf", "allOf", "contains", "dependencies",
                        "dependentSchemas", "propertyNames", "patternProperties", "additionalItems", "unevaluatedItems",
                        "unevaluatedProperties"})
_COPIES = "constrained-ref-"  # names of the copies in `$defs`


def with_local_refs(schema: Any) -> Any:
    """`schema` with each reference written as a pointer from its root and the identifiers dropped; unchanged when
    it has none or some reference leads outside the document."""
    if not isinstance(schema, dict):
        return schema
    text = json.dumps(schema)
    if not any(marker in text for marker in _MARKERS):
        return schema
    draft = validator_class(schema)
    index = _Index("id" if draft in (jsonschema.Draft3Validator, jsonschema.Draft4Validator) else "$id",
                   before_2019=not since_2019_09(draft))
    root = index.visit(schema, "", _BASE)
    targets = {}
    for pointer, key, base, ref in index.refs:
        target = index.resolve(urljoin(base, ref), dynamic=key == "$dynamicRef", root=root)
        if target is None and key == "$ref":
            return schema
        if target is not None:
            targets[pointer, key] = target
    moved = sorted({target for target in targets.values() if _REWRITTEN & set(target.split("/"))})
    copies = {target: f"/$defs/{_COPIES}{i}" for i, target in enumerate(moved)}
    written = {at: "#" + copies.get(target, target) for at, target in targets.items()}
    if not index.identified and all(written[at] == ref for at, ref in index.written.items() if at in written):
        return schema
    localized = map_with_pointers(schema, lambda pointer, node: _localized(node, pointer, written, index.id_key))
    if copies:
        found = {name[len("/$defs/"):]: resolve_local(localized, "#" + target)[1] for target, name in copies.items()}
        defs = localized.get("$defs") if isinstance(localized.get("$defs"), dict) else {}
        localized = {**localized, "$defs": {**defs, **found}}
    return localized


@dataclass
class _Index:
    """The document's resources, anchors and references, each with the base URI it is read against."""

    id_key: str
    before_2019: bool  # `$ref` siblings (its `$id` too) are ignored; a fragment-only `$id` is an anchor
    resources: dict[str, str] = field(default_factory=dict)  # absolute URI -> pointer
    anchors: dict[tuple[str, str], str] = field(default_factory=dict)  # (resource URI, name) -> pointer
    dynamic: dict[str, set[str]] = field(default_factory=dict)  # name -> URIs of resources with that dynamic anchor
    refs: list[tuple[str, str, str, str]] = field(default_factory=list)  # (pointer, keyword, base, value)
    written: dict[tuple[str, str], str] = field(default_factory=dict)  # (pointer, keyword) -> value
    identified: bool = False  # some `$id`, `$anchor` or `$dynamicAnchor` (dropped when references are rewritten)

    def visit(self, node: Any, pointer: str, base: str) -> str:
        """Index `node` and what it holds; the base URI it sets."""
        if not isinstance(node, dict):
            return base
        ident = node.get(self.id_key)
        self.identified |= any(isinstance(node.get(key), str) for key in (self.id_key, "$anchor", "$dynamicAnchor"))
        if isinstance(ident, str) and not (self.before_2019 and "$ref" in node):
            uri, fragment = urldefrag(urljoin(base, ident))
            if uri and not ident.startswith("#"):
                base = uri
                self.resources.setdefault(uri, pointer)
            if fragment and self.before_2019:
                self.anchors[base, fragment] = pointer
        self.resources.setdefault(base, pointer)  # the root is a resource, whatever its `$id`
        for key in ("$anchor", "$dynamicAnchor"):
            if isinstance(node.get(key), str):
                self.anchors[base, node[key]] = pointer
                if key == "$dynamicAnchor":
                    self.dynamic.setdefault(node[key], set()).add(base)
        for key in ("$ref", "$dynamicRef"):
            if isinstance(node.get(key), str):
                self.refs.append((pointer, key, base, node[key]))
                self.written[pointer, key] = node[key]
        for suffix, child in children(node):
            self.visit(child, pointer + suffix, base)
        return base

    def resolve(self, uri: str, *, dynamic: bool, root: str) -> str | None:
        """The pointer `uri` names in the document; None outside it, or where the target depends on the path
        evaluation took."""
        resource, fragment = urldefrag(uri)
        if resource not in self.resources:
            return None
        if not fragment or fragment.startswith("/"):
            return self.resources[resource] + fragment
        static = self.anchors.get((resource, fragment))
        if resource not in self.dynamic.get(fragment, ()):
            return static
        declared = self.dynamic[fragment]
        outermost = self.anchors[root, fragment] if root in declared else static if len(declared) == 1 else None
        # jsonschema resolves a `$ref` to a dynamic anchor dynamically too, where the spec (and jsonschema-rs) do not
        return outermost if dynamic or outermost == static else None

def _localized(node: dict, pointer: str, written: dict[tuple[str, str], str], id_key: str) -> dict:
    out = {key: value for key, value in node.items()
           if key not in (id_key, "$anchor", "$dynamicAnchor") or not isinstance(value, str)}
    if (pointer, "$ref") in written:
        out["$ref"] = written[pointer, "$ref"]
    elif (pointer, "$dynamicRef") in written:  # beside a `$ref` it stays: refused
        del out["$dynamicRef"]
        out["$ref"] = written[pointer, "$dynamicRef"]
    return out
