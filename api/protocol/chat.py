"""OpenAI chat-completions request and response models, fields in the API reference's order.

A field we cannot honour is refused with the reason (never silently dropped: a dropped constraint fails
open). The request turns itself into the engine's `SamplingParams` and one `Constraint`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from api.errors import APIError
from api.protocol.base import (
    JSONSchemaFormat, StrictRequest, WholeInt, new_id, now, omit_none, or_default, refuse,
)
from api.protocol.extras import one_constraint_error
from api.protocol.sampling import SamplingRequest
from constrained.constraints import Constraint
from constrained.compiler.reasoning_grammar import THINKING_BUDGETS
from constrained.engine.params import SamplingParams

# What OpenAI's clients read in a choice: the engine's stop or length (engine.sequence.FinishReason, whose abort
# and failed never reach a response), or tool_calls for a stop after calls (api.call_fields).
ChoiceFinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}  # a function without parameters


# --- request -------------------------------------------------------------------------------------


class ContentPart(StrictRequest):
    """A text part of a message's content; other part types (images, audio, files) are refused."""

    type: Literal["text"]
    text: str

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type", "text") != "text":
            raise refuse(f"Content parts of type '{data['type']}' are not supported: "
                          "the served model reads text only.")
        return data


class FunctionCall(StrictRequest):
    name: str
    arguments: str


class ToolCall(StrictRequest):
    """A call an assistant made earlier in the conversation (history only; tools arrive next)."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(StrictRequest):
    """One message; roles system, developer, user, assistant, tool. Content is a string or text parts."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("name")
    @classmethod
    def _no_name(cls, value: str | None) -> str | None:
        if value is not None:
            raise refuse("'name' on messages is not supported: the chat template has no place for participant "
                          "names; put the name in the content instead.")
        return value

    @model_validator(mode="after")
    def _fields_fit_role(self) -> "ChatMessage":
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry 'tool_calls'")
        if (self.tool_call_id is None) != (self.role != "tool"):
            raise ValueError("'tool_call_id' is required on tool messages and only there")
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.refusal)):
            raise ValueError(f"{self.role} messages need 'content'")
        return self

    def text(self) -> str:
        """The content as one string (text parts joined; an earlier refusal is what the assistant said)."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or self.refusal or ""


class FunctionDefinition(StrictRequest):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None  # None: no arguments ({"type": "object", "properties": {}})
    strict: bool | None = None  # the parameters schema is enforced either way


class Tool(StrictRequest):
    type: Literal["function"]
    function: FunctionDefinition


class ResponseFormat(StrictRequest):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_iff_json_schema(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("'json_schema' is required with type 'json_schema' and only there")
        return self

    def answer_schema(self) -> dict[str, Any] | None:
        """The format as a schema (json_object: any object); None for text."""
        if self.type == "text":
            return None
        return {"type": "object"} if self.type == "json_object" else self.json_schema.schema_

    def constraint(self) -> Constraint | None:
        """What the output must match; None for text."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return Constraint.json_object()
        return Constraint.json_schema(self.json_schema.schema_)

    @property
    def name(self) -> str | None:
        return self.json_schema.name if self.json_schema is not None else None


class ChatCompletionRequest(SamplingRequest):
    """POST /v1/chat/completions. Nullable fields mean "the default"."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str
    modalities: list[Literal["text"]] | None = None
    logprobs: bool | None = None
    max_completion_tokens: WholeInt | None = None
    max_tokens: WholeInt | None = Field(None, description="Deprecated alias of max_completion_tokens.")
    metadata: dict[str, str] | None = Field(None, description="Accepted and logged; does not affect generation.")
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    service_tier: Literal["auto", "default"] | None = None
    store: bool | None = Field(None, description="Completions are not stored: true is refused.")
    tool_choice: str | dict[str, Any] | None = None
    tools: list[Tool] | None = None
    top_logprobs: WholeInt | None = None
    user: str | None = Field(None, description="Accepted and logged; does not affect generation.")

    @field_validator("store")
    @classmethod
    def _not_stored(cls, value: bool | None) -> bool | None:
        if value:
            raise refuse("'store' is not supported: this server stores no completions (send store: false or "
                         "leave it out).")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice_form(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("none", "auto", "required"):
            raise ValueError("'tool_choice' is 'none', 'auto', 'required' or {\"type\": \"function\", "
                             "\"function\": {\"name\": ...}}")
        if isinstance(value, dict):
            function = value.get("function")
            if value.get("type") != "function" or not isinstance(function, dict) \
                    or not isinstance(function.get("name"), str):
                raise ValueError("a named 'tool_choice' is {\"type\": \"function\", \"function\": {\"name\": ...}}")
        return value

    @model_validator(mode="after")
    def _tools_fit(self) -> "ChatCompletionRequest":
        names = [tool.function.name for tool in self.tools or []]
        if len(set(names)) != len(names):
            raise APIError(400, "Tool names must be unique.", param="tools")
        choice = self.tool_choice
        if choice not in (None, "none") and not names:
            raise APIError(400, "'tool_choice' is only allowed when 'tools' are specified.", param="tool_choice")
        if isinstance(choice, dict) and choice["function"]["name"] not in names:
            raise APIError(400, f"'tool_choice' names function '{choice['function']['name']}', which is not among "
                                "the tools.", param="tool_choice")
        return self

    def tool_mode(self) -> str | None:
        """"auto", "required" or the named function when calls can be made; None for no tool calls."""
        if not self.tools or self.tool_choice == "none":
            return None
        if isinstance(self.tool_choice, dict):
            return self.tool_choice["function"]["name"]
        return self.tool_choice or "auto"

    @field_validator("reasoning_effort")
    @classmethod
    def _known_effort(cls, value: str | None) -> str | None:
        if value is not None and value not in THINKING_BUDGETS:
            raise ValueError(f"'reasoning_effort' is one of {', '.join(map(repr, THINKING_BUDGETS))}")
        return value

    def max_new_tokens(self) -> int | None:
        """max_completion_tokens, or the deprecated max_tokens; None when neither is given."""
        a, b = self.max_completion_tokens, self.max_tokens
        if a is not None and b is not None and a != b:
            raise APIError(400, "Give either 'max_completion_tokens' or the deprecated 'max_tokens', not both.",
                           param="max_tokens")
        return a if a is not None else b

    def sampling_params(self, *, max_tokens: int) -> SamplingParams:
        return self.engine_params(max_tokens=max_tokens, logprobs=bool(self.logprobs),
                                  top_logprobs=or_default(self.top_logprobs, 0))

    def constraint(self) -> tuple[str | None, Constraint | None]:
        """(field, constraint) the answer must match; (None, None) for free text. With tools, calls follow
        their tool's parameters and a text answer response_format. One constraint field at most."""
        extra = self.extra_constraint()
        fmt = self.response_format
        answer = fmt.answer_schema() if fmt is not None else None
        if extra is not None and answer is not None:
            raise one_constraint_error("response_format", extra[0])
        mode = self.tool_mode()
        if mode is not None:
            if extra is not None:
                raise one_constraint_error("tools", extra[0])
            tools = [(t.function.name, or_default(t.function.parameters, NO_ARGUMENTS)) for t in self.tools]
            return ("response_format" if answer is not None else None), Constraint.tool_calls(
                tools, mode=mode, parallel=or_default(self.parallel_tool_calls, True), answer=answer)
        if extra is not None:
            return extra
        return ("response_format", fmt.constraint()) if answer is not None else (None, None)

    def schema_name(self) -> str | None:
        return self.response_format.name if self.response_format is not None else None



# --- responses -----------------------------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str
    bytes: list[int] | None
    logprob: float


class TokenLogprob(BaseModel):
    token: str
    bytes: list[int] | None
    logprob: float
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class ResponseFunction(BaseModel):
    name: str
    arguments: str


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ResponseFunction


class AssistantMessage(BaseModel):
    content: str | None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"
    tool_calls: list[ResponseToolCall] | None = omit_none()
    reasoning_content: str | None = omit_none()  # the think block, when the model reasoned


class Choice(BaseModel):
    finish_reason: ChoiceFinishReason
    index: int
    logprobs: ChoiceLogprobs | None = None
    message: AssistantMessage


class Usage(BaseModel):
    completion_tokens: int
    prompt_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl-"))
    choices: list[Choice]
    created: int = Field(default_factory=now)
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    service_tier: str | None = None
    system_fingerprint: str
    usage: Usage


class DeltaFunction(BaseModel):
    name: str | None = omit_none()
    arguments: str | None = omit_none()


class DeltaToolCall(BaseModel):
    """The first delta of a call carries id, type and name; later ones only argument fragments."""

    index: int
    id: str | None = omit_none()
    type: Literal["function"] | None = omit_none()
    function: DeltaFunction


class Delta(BaseModel):
    """Only the fields a chunk carries are sent: the SDK concatenates what it receives."""

    content: str | None = omit_none()
    refusal: str | None = omit_none()
    role: Literal["assistant"] | None = omit_none()
    tool_calls: list[DeltaToolCall] | None = omit_none()
    reasoning_content: str | None = omit_none()


class ChunkChoice(BaseModel):
    delta: Delta
    finish_reason: ChoiceFinishReason | None = None
    index: int
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    service_tier: str | None = None
    system_fingerprint: str
    usage: Usage | None = None
