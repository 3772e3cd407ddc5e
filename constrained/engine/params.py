"""Sampling parameters of one request, validated once at submission."""

from __future__ import annotations

from dataclasses import dataclass, field

from constrained.errors import InvalidSamplingParams

MAX_STOP_STRINGS = 4
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    """OpenAI's sampling fields. `temperature == 0` means greedy.

    `seed` makes a request reproducible whatever else shares its batch: choice i samples from its
    own generator seeded with `seed + i`. `logprobs` are taken from the distribution the token was
    drawn from after the constraint mask, logit_bias and penalties, before temperature and truncation.

    vLLM's extras: `top_k` (0 is off), `min_p` (0 is off) and `top_p` truncate the distribution left
    by the constraint mask; `repetition_penalty` (1 is off) divides the positive logits of every token
    seen in the prompt or the output and multiplies the negative ones. vLLM takes any value above 0;
    here it is capped at 2 like temperature and the OpenAI penalties (usual values are 1 to 1.3; past
    2 every token already seen is all but banned, which no output wants).
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0

    def validate(self, *, vocab_rows: int, constrained: bool) -> None:
        """Raise InvalidSamplingParams naming the offending field."""
        _check(self.max_tokens >= 1, "max_tokens", "max_tokens must be at least 1")
        _check(0.0 <= self.temperature <= 2.0, "temperature", "temperature must be between 0 and 2")
        _check(0.0 < self.top_p <= 1.0, "top_p", "top_p must be in (0, 1]")
        _check(self.top_k >= 0, "top_k", "top_k must be at least 1, or 0 or -1 to keep every token")
        _check(0.0 <= self.min_p <= 1.0, "min_p", "min_p must be between 0 and 1")
        _check(0.0 < self.repetition_penalty <= 2.0, "repetition_penalty",
               "repetition_penalty must be in (0, 2]")
        _check(1 <= self.n <= 16, "n", "n must be between 1 and 16")
        _check(len(self.stop) <= MAX_STOP_STRINGS, "stop", f"at most {MAX_STOP_STRINGS} stop sequences")
        _check(all(self.stop), "stop", "stop sequences must be non-empty strings")
        _check(not (self.stop and constrained), "stop",
               "stop sequences cannot be combined with a constrained output: they would cut the JSON; "
               "the constraint already ends the output where it is complete")
        for name in ("presence_penalty", "frequency_penalty"):
            _check(-2.0 <= getattr(self, name) <= 2.0, name, f"{name} must be between -2 and 2")
        for token_id, bias in self.logit_bias.items():
            _check(0 <= int(token_id) < vocab_rows, "logit_bias", f"token id {token_id} is outside the vocabulary")
            _check(-100.0 <= bias <= 100.0, "logit_bias", f"bias {bias} for token {token_id} is outside [-100, 100]")
        _check(0 <= self.top_logprobs <= MAX_TOP_LOGPROBS, "top_logprobs", "top_logprobs must be between 0 and 20")
        _check(self.logprobs or not self.top_logprobs, "top_logprobs", "top_logprobs requires logprobs=true")

    @property
    def has_penalties(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty)

    @property
    def truncates(self) -> bool:
        """Whether top_k, top_p or min_p cut the distribution's tail."""
        return self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0.0


def _check(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise InvalidSamplingParams(message, param=param)
