"""Finished output -> tool calls: text before the first `<tool_call>` is content, each block one call."""

from __future__ import annotations

import json
from dataclasses import dataclass

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class ParsedCall:
    name: str
    arguments: str  # the arguments object as a JSON string


def parse_tool_calls(text: str) -> tuple[str, list[ParsedCall]]:
    """(content, calls). Blocks that are not closed or not a {"name", "arguments"} object are left out
    (a constrained output only has unfinished ones when it ran out of tokens)."""
    start = text.find(OPEN)
    if start < 0:
        return text, []
    calls = []
    for block in text[start:].split(OPEN)[1:]:
        end = block.find(CLOSE)
        if end < 0:
            continue
        try:
            call = json.loads(block[:end])
        except json.JSONDecodeError:
            continue
        if isinstance(call, dict) and isinstance(call.get("name"), str) and "arguments" in call:
            calls.append(ParsedCall(call["name"], json.dumps(call["arguments"], ensure_ascii=False)))
    return text[:start], calls
