"""Values Python's JSON parser lets in that a JSON document cannot carry: NaN and Infinity, integers past
64 bits (the grammar backends read numbers as 64-bit), and strings with a lone UTF-16 surrogate (`"\\ud800"`:
no UTF-8 encoding). A schema or a request holding one is refused; passed on, each failed deep inside
(a 500, or worse an output that cannot validate)."""

from __future__ import annotations

import math
from typing import Any

_INT_RANGE = (-(2**63), 2**64 - 1)  # what the backends parse: i64 and u64


def unrepresentable(document: Any) -> tuple[list[str | int], str] | None:
    """(path, reason) of the first value in `document` that JSON cannot carry; None when there is none.
    The path is a list of object keys and array indices."""
    stack: list[tuple[list[str | int], Any]] = [([], document)]
    while stack:
        path, value = stack.pop()
        kind = type(value)
        if kind is str:
            if not _encodable(value):
                return path, "a string with a lone UTF-16 surrogate (it has no UTF-8 encoding)"
        elif kind is float:
            if not math.isfinite(value):
                return path, f"{value} (NaN and Infinity are not JSON numbers)"
        elif kind is int:
            if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
                return path, "an integer beyond 64 bits"
        elif kind is dict:
            for key, item in value.items():
                if type(key) is str and not _encodable(key):
                    return [*path, key], "a key with a lone UTF-16 surrogate (it has no UTF-8 encoding)"
                stack.append(([*path, key], item))
        elif kind is list:
            stack.extend(([*path, i], item) for i, item in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
