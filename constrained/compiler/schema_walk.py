"""Where a JSON Schema holds subschemas, so checks and rewrites visit schemas and never instance values.

(`{"default": {"format": "x"}}` holds a value, not a schema: a blind recursive walk would rewrite it.)
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from constrained.compiler.keywords import ANNOTATIONS

_ONE = ("additionalItems", "additionalProperties", "contains", "not", "if", "then", "else", "propertyNames",
        "unevaluatedItems", "unevaluatedProperties", "contentSchema")
_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")


def escape(token: str) -> str:
    """One JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def children(schema: dict) -> Iterator[tuple[str, Any]]:
    """(pointer suffix, subschema) for each direct subschema of `schema`."""
    for key, value in schema.items():
        if key in _ONE or (key == "items" and not isinstance(value, list)):
            yield f"/{escape(key)}", value
        elif key in _LIST or key == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    yield f"/{key}/{i}", item
        elif key in _MAP and isinstance(value, dict):
            for name, item in value.items():
                if key != "dependencies" or isinstance(item, (dict, bool)):
                    yield f"/{escape(key)}/{escape(name)}", item


def map_subschemas(schema: Any, rewrite: Callable[[dict], Any]) -> Any:
    """Return a copy of `schema` with `rewrite` applied to every (sub)schema object, innermost first."""
    return map_with_pointers(schema, lambda _, node: rewrite(node))


def map_with_pointers(schema: Any, rewrite: Callable[[str, dict], Any], pointer: str = "") -> Any:
    """`map_subschemas`, where `rewrite` also gets the JSON pointer of the (original) subschema."""
    return map_with_originals(schema, lambda at, node, _: rewrite(at, node), pointer)


def map_with_originals(schema: Any, rewrite: Callable[[str, dict, dict], Any], pointer: str = "",
                       memo: dict[int, tuple[dict, Any]] | None = None) -> Any:
    """`map_with_pointers`, where `rewrite` also gets the subschema as it was, before its children were rewritten.
    With `memo`, a subschema object met again (by identity; `memo` keeps it alive) takes its first result: for a
    `rewrite` whose result does not depend on the pointer."""
    if not isinstance(schema, dict):
        return schema
    if memo is not None and id(schema) in memo:
        return memo[id(schema)][1]
    mapped = map_children(schema, lambda suffix, child: map_with_originals(child, rewrite, pointer + suffix, memo))
    result = rewrite(pointer, mapped, schema)
    if memo is not None:
        memo[id(schema)] = (schema, result)
    return result


def map_children(schema: dict, rewrite: Callable[[str, Any], Any]) -> dict:
    """A copy of `schema` with each direct subschema replaced by `rewrite(pointer suffix, subschema)`."""
    out = dict(schema)
    for key, value in schema.items():
        here = f"/{escape(key)}"
        if key in _ONE or (key == "items" and not isinstance(value, list)):
            out[key] = rewrite(here, value)
        elif key in _LIST or key == "items":
            if isinstance(value, list):
                out[key] = [rewrite(f"{here}/{i}", item) for i, item in enumerate(value)]
        elif key in _MAP and isinstance(value, dict):
            out[key] = {name: rewrite(f"{here}/{escape(name)}", item) for name, item in value.items()}
    return out


def map_document(schema: Any, rewrite: Callable[[dict], Any]) -> Any:
    """`map_subschemas` over a whole document, the `$ref` targets kept under names of its own included."""
    mapped = map_subschemas(schema, rewrite)
    for pointer in outside_targets(schema):
        mapped = replaced(mapped, pointer, map_subschemas(resolve_local(schema, "#" + pointer)[1], rewrite))
    return mapped


def outside_targets(root: Any) -> list[str]:
    """Pointers of the subschemas a `$ref` reaches that the keyword walk (`children`) never visits: kept under
    names of the schema's own (`#/onvif/ptz/...`). Those below another one's keywords are left out (a walk from
    it visits them), shortest first."""
    if '"$ref"' not in json.dumps(root):
        return []
    tree: set[str] = set()
    stack = [("", root)]
    while stack:  # every subschema the keyword walk visits
        pointer, node = stack.pop()
        tree.add(pointer)
        if isinstance(node, dict):
            stack.extend((pointer + suffix, child) for suffix, child in children(node))
    try:
        found = sorted({pointer for pointer, _, _ in reachable(root) if pointer not in tree}, key=len)
    except KeyError:  # a $ref that points nowhere: refused where the schema is checked
        return []
    tops: list[str] = []
    for pointer in found:
        if not any(pointer.startswith(top + "/") and in_keyword_tree(resolve_local(root, "#" + top)[1],
                                                                     pointer[len(top):]) for top in tops):
            tops.append(pointer)
    return tops


def replaced(tree: Any, pointer: str, value: Any) -> Any:
    """A copy of `tree` with the node at `pointer` set to `value` (the nodes on the way copied, none changed)."""
    if not pointer:
        return value
    token, _, rest = pointer[1:].partition("/")
    rest = "/" + rest if rest else ""
    if isinstance(tree, list):
        copy = list(tree)
        copy[int(token)] = replaced(tree[int(token)], rest, value)
        return copy
    name = unquote(token).replace("~1", "/").replace("~0", "~")
    return {**tree, name: replaced(tree[name], rest, value)}


def is_bare_ref(node: Any) -> bool:
    """A `$ref` beside annotations alone: the node is its target."""
    return isinstance(node, dict) and isinstance(node.get("$ref"), str) and set(node) - ANNOTATIONS == {"$ref"}


def local_target(root: Any, ref: str) -> Any:
    """The subschema a same-document `$ref` names; None for another document, or for nowhere."""
    try:
        found = resolve_local(root, ref)
    except KeyError:
        return None
    return None if found is None else found[1]


def bare_target(node: Any, root: Any, depth: int = 8) -> Any:
    """`node`, or what its chain of bare `$ref`s leads to, `depth` at most; None where one points nowhere or to
    another document."""
    for _ in range(depth):
        if not is_bare_ref(node):
            break
        node = local_target(root, node["$ref"])
    return node


def resolve_local(root: Any, ref: str) -> tuple[str, Any] | None:
    """(pointer, target) of a same-document reference like "#/$defs/x"; None for any other kind of $ref."""
    if not ref.startswith("#") or (len(ref) > 1 and not ref.startswith("#/")):
        return None
    node = root
    tokens = [] if ref == "#" else ref[2:].split("/")
    for token in tokens:
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise KeyError(ref)
    return ref[1:], node


def in_keyword_tree(root: Any, pointer: str) -> bool:
    """Whether `pointer` names a subschema reached from the root through keywords alone (`children`), not one kept
    under a name of the schema's own (`#/onvif/ptz/...`), which only a `$ref` reaches."""
    node = root
    while pointer:
        step = next(((suffix, child) for suffix, child in children(node) if isinstance(node, dict)
                     and pointer.startswith(suffix) and pointer[len(suffix):][:1] in ("", "/")), None)
        if step is None:
            return False
        pointer, node = pointer[len(step[0]):], step[1]
    return True


def reachable(root: Any) -> Iterator[tuple[str, int, dict]]:
    """(JSON pointer, nesting depth, subschema) for every schema object reachable from the root.

    Local $refs are followed once (the target keeps the referrer's depth); definitions nothing refers to
    are not visited: they cannot shape the output. A local $ref that points nowhere raises
    KeyError(pointer of the schema holding it, the $ref).
    """
    seen: set[str] = set()
    stack = [("", 0, root)]
    while stack:
        pointer, depth, node = stack.pop()
        if pointer in seen or not isinstance(node, dict):
            continue
        seen.add(pointer)
        yield pointer, depth, node
        ref = node.get("$ref")
        try:
            target = resolve_local(root, ref) if isinstance(ref, str) else None
        except KeyError:
            raise KeyError(pointer, ref) from None
        if target is not None:
            stack.append((target[0], depth, target[1]))
        for suffix, child in reversed(list(children(node))):  # reversed: visited in document order
            if not suffix.startswith(("/$defs/", "/definitions/")):
                stack.append((pointer + suffix, depth + 1, child))
