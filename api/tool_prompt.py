"""Tools for chat templates that know nothing of them (SmolLM2's): the tool list goes into the system
message, earlier calls and their results into the turns' text, in the Qwen/Hermes layout the tool-call
grammar generates, so the model reads the same protocol it is constrained to write."""

from __future__ import annotations

import json
from typing import Any

from constrained.tool_calls import CALL_SEPARATOR, CLOSE, OPEN, call_block

_INSTRUCTIONS = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within {open}{close} XML tags:
{open}
{{"name": <function-name>, "arguments": <args-json-object>}}
{close}"""  # Qwen's own words; the call layout itself is `call_block`'s


def inline_tools(turns: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Plain {"role", "content"} turns: the tools appended to the system message (one is added when the
    conversation has none), an assistant's calls as `<tool_call>` blocks after its text, consecutive tool
    results as `<tool_response>` blocks in one user turn."""
    out: list[dict[str, Any]] = []
    if tools:
        listing = _INSTRUCTIONS.format(tools="\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools),
                                       open=OPEN, close=CLOSE)
        if turns and turns[0]["role"] == "system":
            out.append({"role": "system", "content": f"{turns[0]['content']}\n\n{listing}"})
            turns = turns[1:]
        else:
            out.append({"role": "system", "content": listing})
    previous = None
    for turn in turns:
        if turn["role"] == "tool":
            response = f"<tool_response>\n{turn['content']}\n</tool_response>"
            if previous == "tool":
                out[-1]["content"] += "\n" + response
            else:
                out.append({"role": "user", "content": response})
        elif turn.get("tool_calls"):
            blocks = [call_block(c["function"]["name"], c["function"]["arguments"]) for c in turn["tool_calls"]]
            out.append({"role": "assistant", "content": CALL_SEPARATOR.join(filter(None, [turn["content"], *blocks]))})
        else:
            out.append({"role": turn["role"], "content": turn["content"]})
        previous = turn["role"]
    return out
