"""What tool calls add to an answer, whole or streamed: each call's id, and the finish reason "tool_calls"."""

from __future__ import annotations

import uuid


def tool_call_id() -> str:
    """A call's id in OpenAI's form: "call_" and 24 hex digits."""
    return f"call_{uuid.uuid4().hex[:24]}"


def chat_finish_reason(reason: str | None, made_calls: bool) -> str | None:
    """A choice that stopped after making calls finished with "tool_calls", as OpenAI reports it."""
    return "tool_calls" if made_calls and reason == "stop" else reason
