"""Where a JSON Schema holds subschemas, so checks and rewrites visit schemas and never instance values.

(`{"default": {"format": "x"}}` holds a value, not a schema: a blind recursive walk would rewrite it.)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import unquote

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
    if not isinstance(schema, dict):
        return schema
    return rewrite(pointer, map_children(schema, lambda suffix, child: map_with_pointers(child, rewrite,
                                                                                        pointer + suffix)))


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
