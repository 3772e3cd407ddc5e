"""Messages -> prompt token ids through the model's own chat template."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerFast

from api.errors import APIError
from api.protocol import ChatMessage


def render_prompt(tokenizer: PreTrainedTokenizerFast, messages: list[ChatMessage],
                  tools: list[dict[str, Any]] | None = None, *, thinking: bool | None = None) -> list[int]:
    """Token ids of the conversation, ending where the assistant's reply begins; `tools` (OpenAI's
    {"type": "function", "function": {...}} dicts) are rendered by the template (Qwen: a <tools> block).
    `thinking` is the template's `enable_thinking` (Qwen3: False writes an empty think block, so the
    model answers at once); None leaves it to the template.

    The template writes every special token itself, so the tokenizer adds none.
    """
    options = {} if thinking is None else {"enable_thinking": thinking}
    try:
        text = tokenizer.apply_chat_template([_turn(m) for m in messages], tools=tools or None,
                                             add_generation_prompt=True, tokenize=False, **options)
    except TemplateError as exc:  # e.g. a template that insists on alternating user/assistant turns
        raise APIError(400, f"The messages do not fit the model's chat template: {exc}", param="messages") from exc
    return tokenizer.encode(text, add_special_tokens=False)


def _turn(message: ChatMessage) -> dict[str, Any]:
    """A plain dict every template understands: text content, developer folded into system."""
    role = "system" if message.role == "developer" else message.role
    turn: dict[str, Any] = {"role": role, "content": message.text()}
    if message.tool_calls:
        turn["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    return turn
