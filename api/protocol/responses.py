"""The Responses API request and response models (POST /v1/responses), stateless.

The request's input items become chat messages (function calls an assistant turn's tool_calls, their
outputs tool messages), its flat tools and `text.format` the same constraint chat completions build.
Nothing is stored: `store: true`, `previous_response_id`, `conversation` and `background` are refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator, model_validator

from api.errors import APIError
from api.protocol.base import JSONSchemaFormat, StrictRequest, WholeInt, new_id, now, or_default, refuse
from api.protocol.chat import NO_ARGUMENTS, ChatMessage, FunctionCall, ToolCall
from api.protocol.extras import EngineExtras, one_constraint_error
from constrained.compiler.reasoning_grammar import THINKING_BUDGETS
from constrained.constraints import Constraint
from constrained.engine.params import SamplingParams

# --- request -------------------------------------------------------------------------------------


class TextPart(StrictRequest):
    """Text in an input item: input_text, or the output_text of an earlier answer given back."""

    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") not in ("input_text", "output_text"):
            raise refuse(f"Content parts of type '{data.get('type')}' are not supported: the served model reads "
                         "text only.")
        return data


class MessageItem(StrictRequest):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[TextPart]
    id: str | None = None
    status: str | None = None
    phase: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class FunctionCallItem(StrictRequest):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(StrictRequest):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[TextPart]
    id: str | None = None
    status: str | None = None


class ReasoningItem(StrictRequest):
    """An earlier answer's thoughts, given back: not shown to the model again (chat templates drop them)."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[Any] = []
    content: list[Any] | None = None
    encrypted_content: str | None = None
    status: str | None = None


def _item_type(value: Any) -> str:
    """The union tag of an item or format: its type (a message's may be left out). Tags hold a ":", which
    error locations skip (api.errors)."""
    kind = (value.get("type") if isinstance(value, dict) else getattr(value, "type", None)) or "message"
    return f"type:{kind}"


InputItem = Annotated[Union[
    Annotated[MessageItem, Tag("type:message")],
    Annotated[FunctionCallItem, Tag("type:function_call")],
    Annotated[FunctionCallOutputItem, Tag("type:function_call_output")],
    Annotated[ReasoningItem, Tag("type:reasoning")],
], Discriminator(_item_type)]


class FunctionTool(StrictRequest):
    """A function tool in the Responses API's flat form (no `function` wrapper)."""

    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # the parameters schema is enforced either way

    @model_validator(mode="before")
    @classmethod
    def _functions_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") != "function":
            raise refuse(f"Tools of type '{data.get('type')}' are not supported: only function tools are.")
        return data

    def as_chat_tool(self) -> dict[str, Any]:
        """The chat-completions form the chat template and the tool constraint take."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


class TextFormat(JSONSchemaFormat):
    type: Literal["json_schema"]


class PlainFormat(StrictRequest):
    type: Literal["text", "json_object"]


def _format_type(value: Any) -> str:
    return "type:json_schema" if _item_type(value) == "type:json_schema" else "type:plain"


class TextConfig(StrictRequest):
    format: Annotated[Union[Annotated[TextFormat, Tag("type:json_schema")], Annotated[PlainFormat, Tag("type:plain")]],
                      Discriminator(_format_type)] | None = None
    verbosity: Literal["medium"] | None = None


class ReasoningConfig(StrictRequest):
    effort: str | None = None
    summary: Literal["auto"] | None = None
    generate_summary: Literal["auto"] | None = None

    @field_validator("effort")
    @classmethod
    def _known_effort(cls, value: str | None) -> str | None:
        if value is not None and value not in THINKING_BUDGETS:
            raise ValueError(f"'reasoning.effort' is one of {', '.join(map(repr, THINKING_BUDGETS))}")
        return value


class StreamOptions(StrictRequest):
    include_obfuscation: bool | None = None  # no obfuscation padding is sent either way


class ResponseRequest(EngineExtras):
    """POST /v1/responses. Nullable fields mean "the default"."""

    model: str
    input: str | list[InputItem]
    include: list[str] | None = Field(None, description="Extra output data: none is offered, so only [] is accepted.")
    instructions: str | None = None
    max_output_tokens: WholeInt | None = None
    metadata: dict[str, str] | None = Field(None, description="Accepted and echoed; does not affect generation.")
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = Field(None, description="Accepted; the prompt is not cached across requests.")
    reasoning: ReasoningConfig | None = None
    safety_identifier: str | None = None
    seed: WholeInt | None = Field(None, ge=-(2**63), le=2**63 - 1, description="vLLM's extra: a reproducible output.")
    service_tier: Literal["auto", "default"] | None = None
    store: bool | None = Field(None, description="Responses are not stored: true is refused.")
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    tools: list[FunctionTool] | None = None
    top_p: float | None = None
    truncation: Literal["disabled"] | None = None
    user: str | None = Field(None, description="Accepted and logged; does not affect generation.")
    previous_response_id: str | None = Field(None, description="Refused: responses are not stored.")

    @field_validator("include")
    @classmethod
    def _nothing_to_include(cls, value: list[str] | None) -> list[str] | None:
        if value:
            raise refuse(f"'include' {value} is not supported: no extra output data (logprobs, encrypted "
                         "reasoning, tool results) is offered; send [] or leave it out.")
        return value

    @field_validator("store", "previous_response_id")
    @classmethod
    def _stateless(cls, value: Any, info: Any) -> Any:
        if value:
            raise refuse(f"'{info.field_name}' is not supported: this server stores no responses; send the whole "
                         "conversation in 'input' (store: false).")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_form(cls, value: Any) -> Any:
        if isinstance(value, dict) and (value.get("type") != "function" or not isinstance(value.get("name"), str)
                                        or set(value) != {"type", "name"}):
            raise ValueError("a named 'tool_choice' is {\"type\": \"function\", \"name\": ...}")
        return value

    @model_validator(mode="after")
    def _tools_fit(self) -> "ResponseRequest":
        names = [tool.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise APIError(400, "Tool names must be unique.", param="tools")
        if isinstance(self.tool_choice, dict) and self.tool_choice["name"] not in names:
            raise APIError(400, f"'tool_choice' names function '{self.tool_choice['name']}', which is not among "
                                "the tools.", param="tool_choice")
        if self.tool_choice not in (None, "none", "auto") and not names:
            raise APIError(400, "'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
        return self

    def tool_mode(self) -> str | None:
        """"auto", "required" or the named function when calls can be made; None for no tool calls."""
        if not self.tools or self.tool_choice == "none":
            return None
        if isinstance(self.tool_choice, dict):
            return self.tool_choice["name"]
        return self.tool_choice or "auto"

    def chat_tools(self) -> list[dict[str, Any]] | None:
        return [tool.as_chat_tool() for tool in self.tools] if self.tool_mode() else None

    def messages(self) -> list[ChatMessage]:
        """The conversation as chat messages: instructions first, consecutive function calls one assistant
        turn (after its text, when the assistant said something first), their outputs tool messages."""
        items = [MessageItem(role="user", content=self.input)] if isinstance(self.input, str) else self.input
        messages = [ChatMessage(role="system", content=self.instructions)] if self.instructions is not None else []
        for item in items:
            if isinstance(item, MessageItem):
                messages.append(ChatMessage(role=item.role, content=item.text()))
            elif isinstance(item, FunctionCallItem):
                call = ToolCall(id=item.call_id, type="function",
                                function=FunctionCall(name=item.name, arguments=item.arguments))
                last = messages[-1] if messages else None
                if last is not None and last.role == "assistant":
                    last.tool_calls = [*(last.tool_calls or []), call]
                else:
                    messages.append(ChatMessage(role="assistant", tool_calls=[call]))
            elif isinstance(item, FunctionCallOutputItem):
                output = item.output if isinstance(item.output, str) else "".join(p.text for p in item.output)
                messages.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=output))
        if not messages:
            raise APIError(400, "'input' holds no message.", param="input")
        return messages

    def constraint(self) -> tuple[str | None, Constraint | None]:
        """(field, constraint) the output must match; (None, None) for free text."""
        extra = self.extra_constraint()
        fmt = self.text.format if self.text is not None else None
        answer = None if fmt is None or fmt.type == "text" else \
            {"type": "object"} if fmt.type == "json_object" else fmt.schema_
        if extra is not None and answer is not None:
            raise one_constraint_error("text.format", extra[0])
        mode = self.tool_mode()
        if mode is not None:
            if extra is not None:
                raise one_constraint_error("tools", extra[0])
            tools = [(t.name, or_default(t.parameters, NO_ARGUMENTS)) for t in self.tools]
            return ("text.format" if answer is not None else None), Constraint.tool_calls(
                tools, mode=mode, parallel=or_default(self.parallel_tool_calls, True), answer=answer)
        if extra is not None:
            return extra
        if answer is None:
            return None, None
        return "text.format", Constraint.json_object() if fmt.type == "json_object" else Constraint.json_schema(answer)

    def schema_name(self) -> str | None:
        fmt = self.text.format if self.text is not None else None
        return fmt.name if isinstance(fmt, TextFormat) else None

    def sampling_params(self, *, max_tokens: int) -> SamplingParams:
        return SamplingParams(max_tokens=max_tokens, temperature=or_default(self.temperature, 1.0),
                              top_p=or_default(self.top_p, 1.0), seed=self.seed, **self.sampling_extras())

    def echo(self) -> dict[str, Any]:
        """The settings a Response repeats back."""
        return {
            "instructions": self.instructions, "max_output_tokens": self.max_output_tokens,
            "metadata": self.metadata or {}, "parallel_tool_calls": or_default(self.parallel_tool_calls, True),
            "reasoning": {"effort": self.reasoning.effort if self.reasoning else None, "summary": None},
            "service_tier": "default", "store": False, "temperature": or_default(self.temperature, 1.0),
            "text": {"format": self.text.format.model_dump(by_alias=True, exclude_none=True)
                     if self.text is not None and self.text.format is not None else {"type": "text"},
                     "verbosity": "medium"},
            "tool_choice": or_default(self.tool_choice, "auto"),
            "tools": [tool.model_dump(exclude_none=True) for tool in self.tools or []],
            "top_p": or_default(self.top_p, 1.0), "truncation": "disabled", "user": self.user,
        }


# --- response ------------------------------------------------------------------------------------


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class Response(BaseModel):
    """A response: its output items (reasoning, message, function_call dicts) and the request's settings."""

    id: str = Field(default_factory=lambda: new_id("resp_"))
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=now)
    status: Literal["completed", "incomplete", "in_progress"]
    error: None = None
    incomplete_details: dict[str, str] | None = None
    model: str
    output: list[dict[str, Any]]
    usage: ResponseUsage | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, str] = {}
    parallel_tool_calls: bool = True
    previous_response_id: None = None
    reasoning: dict[str, Any] = {}
    service_tier: str = "default"
    store: bool = False
    temperature: float = 1.0
    text: dict[str, Any] = {}
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float = 1.0
    truncation: str = "disabled"
    user: str | None = None
