"""The legacy completions request and response models (POST /v1/completions), fields in the API
reference's order. The prompt is raw text or token ids: no chat template."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from api.errors import APIError
from api.protocol.base import LaxInt, WholeInt, new_id, now, or_default, refuse
from api.protocol.chat import ResponseFormat, StreamOptions, Usage
from api.protocol.extras import EngineExtras, one_constraint_error
from constrained.constraints import Constraint
from constrained.engine.params import SamplingParams

MAX_LOGPROBS = 5
DEFAULT_MAX_TOKENS = 16  # OpenAI's


class CompletionRequest(EngineExtras):
    """POST /v1/completions. `prompt` is a string, a list of strings, token ids, or a list of token-id lists;
    each prompt gets `n` choices, indexed prompt by prompt."""

    model: str
    prompt: str | list[int] | list[str | list[int]]
    best_of: WholeInt | None = None
    echo: bool | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[LaxInt, float] | None = None
    logprobs: WholeInt | None = Field(None, ge=0, le=MAX_LOGPROBS)
    max_tokens: WholeInt | None = None
    n: WholeInt | None = None
    presence_penalty: float | None = None
    response_format: ResponseFormat | None = None
    seed: WholeInt | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = Field(None, description="Accepted and logged; does not affect generation.")

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value is not None:
            raise refuse("'suffix' is not supported: the served model does not fill in the middle.")
        return value

    @field_validator("prompt")
    @classmethod
    def _some_prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(isinstance(p, list) and not p for p in value)):
            raise ValueError("a prompt list needs at least one prompt, and each token list at least one token")
        return value

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text, or token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and isinstance(prompt[0], int):
            return [prompt]
        return list(prompt)

    def sampling_params(self, *, max_tokens: int) -> SamplingParams:
        if self.best_of is not None and self.best_of != or_default(self.n, 1):
            raise APIError(400, "'best_of' other than 'n' is not supported: every choice generated is returned.",
                           param="best_of")
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options")
        if self.echo and self.logprobs is not None:
            raise APIError(400, "'echo' with 'logprobs' is not supported: prompt tokens have no logprobs here.",
                           param="echo")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=or_default(self.temperature, 1.0),
            top_p=or_default(self.top_p, 1.0),
            n=or_default(self.n, 1),
            seed=self.seed,
            stop=tuple(stop),
            presence_penalty=or_default(self.presence_penalty, 0.0),
            frequency_penalty=or_default(self.frequency_penalty, 0.0),
            logit_bias=dict(self.logit_bias or {}),
            logprobs=self.logprobs is not None,
            top_logprobs=or_default(self.logprobs, 0),
            **self.sampling_extras(),
        )

    def constraint(self) -> tuple[str | None, Constraint | None]:
        """(field, constraint): response_format or one vLLM/SGLang constraint field; (None, None) for free text."""
        extra = self.extra_constraint()
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return extra or (None, None)
        if extra is not None:
            raise one_constraint_error("response_format", extra[0])
        if fmt.type == "json_object":
            return "response_format", Constraint.json_object()
        return "response_format", Constraint.json_schema(fmt.json_schema.schema_)

    def schema_name(self) -> str | None:
        fmt = self.response_format
        return fmt.json_schema.name if fmt is not None and fmt.json_schema is not None else None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionLogprobs(BaseModel):
    text_offset: list[int]
    token_logprobs: list[float]
    tokens: list[str]
    top_logprobs: list[dict[str, float]]


class CompletionChoice(BaseModel):
    finish_reason: Literal["stop", "length"] | None
    index: int
    logprobs: CompletionLogprobs | None = None
    text: str


class Completion(BaseModel):
    """A completion, or (object "text_completion" too) one chunk of a stream."""

    id: str = Field(default_factory=lambda: new_id("cmpl-"))
    choices: list[CompletionChoice]
    created: int = Field(default_factory=now)
    model: str
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str
    usage: Usage | None = None
