"""The llguidance Lark grammar of a tool_calls constraint: Qwen's `<tool_call>` blocks, arguments by schema.

Each call is `<tool_call>\\n{"name": "NAME", "arguments": ARGUMENTS}\\n</tool_call>`, calls separated by
"\\n". The call object's layout is written in Lark and each tool's parameters are a `%json` rule of
their own, so every schema is the root of its own document: its `#/$defs/...` and `#` references
resolve as they do in response_format, and tools may share `$defs` names. Where the vocabulary has the
tags as added tokens (Qwen: 151657/151658) they are named as tokens (bare in Lark: llguidance treats
added tokens as special, so they never match as text); elsewhere (SmolLM2) they are literal text. In
"auto" mode free text comes first and can never contain `<tool_call>`, even spelled out, so the call
parser never sees an unconstrained call; once the tag is generated, the call is constrained. With an
answer schema (response_format together with tools), "auto" is either a JSON instance of it or calls.
A named tool_choice makes exactly one call; "required" one, or more when calls may be parallel.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from constrained.tool_calls import CALL_END, CALL_SEPARATOR, CLOSE, OPEN, TAG_PAD, call_prefix

_TEXT = f"TEXT: /(.|\\n)*/ & ~/(.|\\n)*{OPEN}(.|\\n)*/"  # any text without the opening tag


def tool_calls_lark(value: dict[str, Any], prepare: Callable[[Any], Any], options: dict[str, Any], *,
                    tags_are_tokens: bool = True) -> str:
    """The Lark text for `Constraint.tool_calls(...).value`; `prepare` maps a parameters schema to what
    llguidance gets (no-op keywords stripped, exact formats), `options` are its JSON options;
    `tags_are_tokens`: the tags are added tokens of the vocabulary, not text."""
    open_, close = (OPEN, CLOSE) if tags_are_tokens else (json.dumps(OPEN), json.dumps(CLOSE))
    mode = value["mode"]
    named = mode not in ("auto", "required")
    chosen = [(n, s) for n, s in value["tools"] if n == mode] if named else value["tools"]
    lines = ["%llguidance {}", f"body: {' | '.join(f'body_{i}' for i in range(len(chosen)))}"]
    for i, (name, schema) in enumerate(chosen):
        lines += [f"body_{i}: {json.dumps(call_prefix(name))} arguments_{i} {json.dumps(CALL_END)}",
                  f"arguments_{i}: %json {json.dumps({**prepare(schema), 'x-guidance': options})}"]
    pad = json.dumps(TAG_PAD)
    more = f"({json.dumps(CALL_SEPARATOR)} call)*" if value["parallel"] and not named else ""
    lines += [f"rest: {pad} body {pad} {close} {more}", f"call: {open_} rest"]
    if mode == "auto" and value.get("answer") is not None:  # a JSON answer or calls, not both
        answer = {**prepare(value["answer"]), "x-guidance": options}
        lines += [f"answer: %json {json.dumps(answer)}", "start: answer | call"]
    elif mode == "auto" and tags_are_tokens:
        lines += [f"start: TEXT ({OPEN} rest)?", _TEXT]
    elif mode == "auto":  # one lexeme up to the tag: text and tag are lexed together, the tag ends it
        lines += ["start: TEXT | TEXT_OPEN rest", _TEXT,
                  f"TEXT_OPEN: /(.|\\n)*{OPEN}/ & ~/(.|\\n)*{OPEN}(.|\\n)+/"]
    else:
        lines += ["start: call"]
    return "\n".join(lines) + "\n"
