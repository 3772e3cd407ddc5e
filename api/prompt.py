"""Messages -> prompt token ids through the model's own chat template."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerFast

from api.errors import APIError
from api.protocol.chat import ChatMessage
from api.tool_prompt import inline_tools


def render_prompt(tokenizer: PreTrainedTokenizerFast, messages: list[ChatMessage],
                  tools: list[dict[str, Any]] | None = None, *, thinking: bool | None = None) -> list[int]:
    """Token ids of the conversation, ending where the assistant's reply begins; `tools` (OpenAI's
    {"type": "function", "function": {...}} dicts) are rendered by the template (Qwen: a <tools> block),
    or by api.tool_prompt into the turns when the template ignores them (SmolLM2).
    `thinking` is the template's `enable_thinking` (Qwen3: False writes an empty think block, so the
    model answers at once); None leaves it to the template.

    The template writes every special token itself, so the tokenizer adds none.
    """
    options = {} if thinking is None else {"enable_thinking": thinking}
    turns = [_turn(m) for m in messages]
    if not _renders_tools(tokenizer) and (tools or any(m.role == "tool" or m.tool_calls for m in messages)):
        turns, tools = inline_tools(turns, tools), None
    try:
        text = tokenizer.apply_chat_template(turns, tools=tools or None, add_generation_prompt=True, tokenize=False,
                                             **options)
    except TemplateError as exc:  # e.g. a template that insists on alternating user/assistant turns
        raise APIError(400, f"The messages do not fit the model's chat template: {exc}", param="messages") from exc
    return tokenizer.encode(text, add_special_tokens=False)


_RENDERS_TOOLS: dict[str, bool] = {}  # per chat template


def _renders_tools(tokenizer: PreTrainedTokenizerFast) -> bool:
    """Whether the chat template writes the tools it is given: a probe rendered with and without one."""
    template = tokenizer.chat_template
    if template not in _RENDERS_TOOLS:
        probe = [{"role": "user", "content": "hi"}]
        tool = {"type": "function", "function": {"name": "probe_tool", "parameters": {"type": "object"}}}
        with_tool, without = (tokenizer.apply_chat_template(probe, tools=tools, add_generation_prompt=True,
                                                            tokenize=False) for tools in ([tool], None))
        _RENDERS_TOOLS[template] = with_tool != without
    return _RENDERS_TOOLS[template]


def _turn(message: ChatMessage) -> dict[str, Any]:
    """A plain dict every template understands: text content, developer folded into system."""
    role = "system" if message.role == "developer" else message.role
    turn: dict[str, Any] = {"role": role, "content": message.text()}
    if message.tool_calls:
        turn["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    return turn
