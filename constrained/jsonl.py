"""JSON Lines text (one JSON value a line), as `check --instances` and `serve --warmup-schemas` read it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def json_lines(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line; ValueError naming `name:line` for one that is not JSON.

    Split on "\\n", not `splitlines()`: U+2028 and friends may sit inside JSON strings.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}:{number}: not JSON ({exc.msg})") from None
