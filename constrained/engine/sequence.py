"""One generated choice of a request: its tokens, matcher, random generator and text state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Sequence as Seq

import torch

from constrained.engine.detokenizer import IncrementalDetokenizer
from constrained.engine.params import SamplingParams
from constrained.engine.sampler import SampledToken
from constrained.engine.stops import StopStringMatcher
from constrained.matcher import Matcher


class FinishReason(str, enum.Enum):
    STOP = "stop"  # EOS under a complete constraint, or a stop string
    LENGTH = "length"  # max_tokens reached: the output is cut, not valid
    ABORT = "abort"  # the caller went away
    FAILED = "failed"  # the matcher failed (errors.ConstraintFailed): no valid end can be reached


@dataclass(frozen=True)
class SequenceOutput:
    """What one step produced for one choice: new text and tokens, and the finish reason once done."""

    request_id: str
    index: int
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[SampledToken, ...] = ()
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Sequence:
    request_id: str
    index: int
    prompt_ids: list[int]
    params: SamplingParams
    matcher: Matcher | None
    generator: torch.Generator  # on the CPU: one small copy of the batch's uniforms per step, no sync per row
    device: torch.device  # the model's, where logit_bias is kept
    detokenizer: IncrementalDetokenizer
    eos_token_ids: frozenset[int]
    fast_forward: bool = False  # append the tokens the matcher forces without sampling them (needs a matcher)
    output_ids: list[int] = field(default_factory=list)
    fed: int = 0  # prompt + output tokens already in the KV cache
    prompt_blocks_cached: int = 0  # prompt tokens known to the prefix cache (whole blocks)
    finish_reason: FinishReason | None = None
    submitted_at: float = 0.0  # time.perf_counter() when the engine accepted it (for the queue-wait histogram)

    def __post_init__(self) -> None:
        self.stops = StopStringMatcher(self.params.stop)
        # logit_bias as tensors once, not rebuilt from the dict at every step
        bias = self.params.logit_bias
        self.logit_bias = (
            torch.tensor(list(bias.keys()), dtype=torch.long, device=self.device),
            torch.tensor(list(bias.values()), dtype=torch.float32, device=self.device),
        ) if bias else None
        # the prompt's distinct ids once, for repetition_penalty (seen_ids adds the output's at each step)
        self.prompt_seen = (torch.tensor(sorted(set(self.prompt_ids)), dtype=torch.long, device=self.device)
                            if self.params.repetition_penalty != 1.0 else None)

    def take_input(self, limit: int | None = None) -> list[int]:
        """Tokens to feed this step, now marked fed: those not yet in the KV cache (the prompt, then
        the last sampled token and the run of forced tokens after it), at most `limit` of them."""
        start = self.fed - len(self.prompt_ids)
        unfed = self.prompt_ids[self.fed:] + self.output_ids if start < 0 else self.output_ids[start:]
        if limit is not None:
            unfed = unfed[:limit]
        self.fed += len(unfed)
        return unfed

    @property
    def prefilling(self) -> bool:
        """Part of the prompt is not in the KV cache yet."""
        return self.fed < len(self.prompt_ids)

    @property
    def all_fed(self) -> bool:
        """Every token so far is in the KV cache: the last forward pass's logits are for the next token."""
        return self.fed == len(self.prompt_ids) + len(self.output_ids)

    def append(self, sampled: SampledToken) -> SequenceOutput:
        """Take the sampled token, advance the matcher and the text, decide whether we are done;
        then, with fast-forward, append the tokens the constraint forces after it."""
        token = sampled.token_id
        if self.matcher is not None and not self.matcher.accept_token(token):  # drawn under its own mask
            self.finish_reason = FinishReason.FAILED
            return self._output("", (), None)
        if token in self.eos_token_ids:
            self.finish_reason = FinishReason.STOP
            return self._output(self._flush(), (), sampled)
        text = self._push(token)
        forced = self.forced_run()
        return self._output(text + forced.text, (token, *forced.token_ids), sampled)

    def forced_run(self) -> SequenceOutput:
        """Append the run of tokens the constraint forces now (none without fast-forward), cut at
        max_tokens. Forced tokens are not sampled, but each consumes one uniform of the generator,
        so a seeded choice draws the same uniform for the same output position with or without
        fast-forward."""
        forced = self.matcher.forced_tokens() if self.fast_forward and self.finish_reason is None else []
        taken, text = [], ""
        for token in forced:
            if self.finish_reason is not None:
                break
            if not self.matcher.accept_token(token):  # the backend ran past its own limits on this constraint
                self.finish_reason = FinishReason.FAILED
                break
            self.draw_uniforms()
            taken.append(token)
            text += self._push(token)
        return self._output(text, taken, None)

    def seen_ids(self) -> torch.Tensor:
        """Ids of the tokens seen so far, prompt and output (output repeats left in: they do no harm),
        for a choice whose repetition_penalty is on."""
        return torch.cat([self.prompt_seen, torch.tensor(self.output_ids, dtype=torch.long, device=self.device)])

    def draw_uniforms(self, count: int = 1) -> torch.Tensor:
        """This output position's randomness: `count` float64 draws in [0, 1). One per position, and
        sampler.CANDIDATES more when its first token was forbidden. They depend only on this choice's own
        history, so a seed gives one output, batched or alone, and with or without fast-forward (a forced
        token consumes one draw, as it would sampled, and is never redrawn)."""
        return torch.rand(count, dtype=torch.float64, generator=self.generator)

    def _push(self, token: int) -> str:
        """Record one output token (not EOS); return the text it completes, flushed if it ends the output."""
        self.output_ids.append(token)
        text, hit_stop = self.stops.push(self.detokenizer.push(token))
        if hit_stop:
            self.finish_reason = FinishReason.STOP
        elif self.matcher is not None and self.matcher.is_terminated():
            # only EOS could follow: the output is complete, unless the backend gave up short of an end
            self.finish_reason = FinishReason.STOP if self.matcher.is_accepting() else FinishReason.FAILED
        elif len(self.output_ids) >= self.params.max_tokens:
            self.finish_reason = FinishReason.LENGTH
        if self.finish_reason is not None and not hit_stop:
            text += self._flush()
        return text

    def abort(self) -> SequenceOutput:
        self.finish_reason = FinishReason.ABORT
        return self._output("", (), None)

    def _flush(self) -> str:
        return self.stops.push(self.detokenizer.flush())[0] + self.stops.flush()

    def _output(self, text: str, token_ids: Seq[int], sampled: SampledToken | None) -> SequenceOutput:
        logprobs = (sampled,) if sampled is not None and sampled.logprob is not None and token_ids else ()
        return SequenceOutput(
            self.request_id, self.index, text, tuple(token_ids), logprobs, self.finish_reason,
            len(self.prompt_ids), len(self.output_ids),
        )
