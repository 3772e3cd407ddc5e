"""The legacy completions request and response models (POST /v1/completions), fields in the API
reference's order. The prompt is raw text or token ids: no chat template."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from api.errors import APIError
from api.protocol.base import WholeInt, new_id, now, or_default, refuse
from api.protocol.chat import ResponseFormat, Usage
from api.protocol.extras import one_constraint_error
from api.protocol.sampling import SamplingRequest
from constrained.constraints import Constraint
from constrained.engine.params import SamplingParams

MAX_LOGPROBS = 5
DEFAULT_MAX_TOKENS = 16  # OpenAI's


class CompletionRequest(SamplingRequest):
    """POST /v1/completions. `prompt` is a string, a list of strings, token ids, or a list of token-id lists;
    each prompt gets `n` choices, indexed prompt by prompt."""

    model: str
    prompt: str | list[int] | list[str | list[int]]
    best_of: WholeInt | None = None
    echo: bool | None = None
    logprobs: WholeInt | None = Field(None, ge=0, le=MAX_LOGPROBS)
    max_tokens: WholeInt | None = None
    response_format: ResponseFormat | None = None
    suffix: str | None = None
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
        if self.echo and self.logprobs is not None:
            raise APIError(400, "'echo' with 'logprobs' is not supported: prompt tokens have no logprobs here.",
                           param="echo")
        return self.engine_params(max_tokens=max_tokens, logprobs=self.logprobs is not None,
                                  top_logprobs=or_default(self.logprobs, 0))

    def constraint(self) -> tuple[str | None, Constraint | None]:
        """(field, constraint): response_format or one vLLM/SGLang constraint field; (None, None) for free text."""
        extra = self.extra_constraint()
        constraint = self.response_format.constraint() if self.response_format is not None else None
        if constraint is None:
            return extra or (None, None)
        if extra is not None:
            raise one_constraint_error("response_format", extra[0])
        return "response_format", constraint

    def schema_name(self) -> str | None:
        return self.response_format.name if self.response_format is not None else None



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
