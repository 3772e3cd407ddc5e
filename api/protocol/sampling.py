"""OpenAI's sampling fields, shared by chat completions and completions, and the engine parameters they make."""

from __future__ import annotations

from pydantic import Field

from api.errors import APIError
from api.protocol.base import LaxInt, StrictRequest, WholeInt, or_default
from api.protocol.extras import EngineExtras
from constrained.engine.params import SamplingParams


class StreamOptions(StrictRequest):
    include_usage: bool | None = None


class SamplingRequest(EngineExtras):
    """The fields both endpoints take (and, through EngineExtras, vLLM's and SGLang's). Nullable fields mean
    "the default"."""

    frequency_penalty: float | None = None
    logit_bias: dict[LaxInt, float] | None = None
    n: WholeInt | None = None
    presence_penalty: float | None = None
    seed: WholeInt | None = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI
    stop: str | list[str] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None

    def engine_params(self, *, max_tokens: int, logprobs: bool, top_logprobs: int) -> SamplingParams:
        """The engine's parameters; `max_tokens` is the resolved completion budget."""
        if self.stream_options is not None and not self.stream:
            raise APIError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options")
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
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            **self.sampling_extras(),
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)
