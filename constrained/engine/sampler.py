"""The constrained draw: one token per row of a batch's logits, from the row's distribution under its constraint.

A row's distribution is softmax((logits + logit_bias, penalised) / temperature) over the tokens its matcher
allows, its tail cut by top_k / top_p / min_p among those. Building a mask costs a matcher's fill of a packed
bitmask and a pass over [rows, vocab] floats; testing one token costs far less (benchmarks/SPEED.md). So a
constrained row draws from its unmasked distribution first; if its matcher forbids the token, it tries
CANDIDATES more unmasked draws and keeps the first allowed one; only if all are forbidden does it get its mask
and draw again from the first draw's probabilities restricted to the mask, with no second softmax: among the
allowed tokens alone where the mask allows few (masks.FEW_WORDS), else over the vocabulary times the 0/1 mask.

Why this is exact: drawing x from p until it falls in the allowed set A, k times at most, and else drawing
from p restricted to A gives P(x) = p(x) (1 + q + ... + q^(k-1)) + q^k p(x) / p(A) = p(x) / p(A), with
q = 1 - p(A): the masked distribution. The work scales with how often the model disagrees with the grammar,
not with how many tokens are allowed. Where float32 underflow may have erased allowed probabilities
(distributions.MIN_KEPT_MASS), and for greedy rows (the masked argmax), the row draws from its masked logits.
Rows that need the masked distribution itself get their mask before drawing (draws_under_mask).

Randomness: each row brings its own uniforms (SamplingRow.draw_uniforms): one per position, split in two
(distributions.split_uniforms) for the first draw and the masked redraw, and CANDIDATES more only when its
first token is forbidden. A row's token thus depends on its own history alone, batched or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from constrained.engine.distributions import DistributionBuffers, Distributions, Truncation, split_uniforms
from constrained.engine.masks import BatchMasks, apply_mask_bias_
from constrained.engine.params import SamplingParams
from constrained.engine.penalties import apply_logit_bias_, apply_penalties_, apply_repetition_penalty_
from constrained.engine.stats import EngineStats
from constrained.matcher import Matcher

# Unmasked draws a forbidden row tries before building its mask: 4 settle most redraws in an open string,
# and cost little where the allowed mass is small (benchmarks/SPEED.md, "How a constrained row samples").
CANDIDATES = 4


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: float | None  # None unless logprobs were asked for
    top: tuple[SampledToken, ...] = ()  # the most likely alternatives, when top_logprobs asks for them


class SamplingRow(Protocol):
    """What the sampler reads of a row (engine.sequence.Sequence is one)."""

    params: SamplingParams
    matcher: Matcher | None  # None: unconstrained
    fast_forward: bool  # forced tokens are appended, not sampled
    output_ids: list[int]
    logit_bias: tuple[torch.Tensor, torch.Tensor] | None  # (token ids, values)

    def seen_ids(self) -> torch.Tensor: ...  # prompt and output ids, for repetition_penalty

    def draw_uniforms(self, count: int = 1) -> torch.Tensor: ...  # float64 in [0, 1), from the row's generator


class Sampler:
    """`sample` draws one token per row; `stats.redraws` counts the rows whose unmasked draw was forbidden, and
    `masks` (BatchMasks) the masks built and the time spent building them."""

    def __init__(self, *, max_rows: int, vocab_rows: int, real_vocab: int, device: torch.device,
                 stats: EngineStats | None = None):
        self.masks = BatchMasks(max_rows=max_rows, vocab_rows=vocab_rows, device=device)
        self.stats = stats if stats is not None else EngineStats()
        self._buffers = DistributionBuffers(max_rows=max_rows, vocab_rows=vocab_rows, device=device)
        self._real_vocab = real_vocab

    def sample(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> list[SampledToken]:
        """One token per row of `logits` ([rows, vocab_rows] float32, changed in place: bias, penalties,
        masks), with its log-probability where the row asks for logprobs."""
        logits[:, self._real_vocab:] = float("-inf")  # embedding rows past the tokenizer are no tokens
        for row, seq in enumerate(rows):
            penalize_(logits[row], seq)
        first, second = split_uniforms(torch.cat([seq.draw_uniforms() for seq in rows]))
        constrained = [row for row, seq in enumerate(rows) if seq.matcher is not None]
        temperatures = torch.tensor([seq.params.temperature for seq in rows], device=logits.device)
        cuts = [Truncation(seq.params.top_k, seq.params.top_p, seq.params.min_p) for seq in rows]
        upfront = [row for row in constrained if draws_under_mask(rows[row])]
        if upfront:  # most steps have none: no mask work at all
            self._mask_rows_(logits, rows, upfront)
        drawn, distributions = self._buffers.draw(logits, temperatures, cuts, first)
        tokens = drawn.tolist()
        forbidden = [row for row in constrained
                     if row not in upfront and rows[row].matcher.validate_tokens([tokens[row]]) == 0]
        self.stats.redraws += len(forbidden)
        for row, token in self._redraw(logits, rows, forbidden, temperatures, second, distributions).items():
            tokens[row] = token
        return [logprobs_of(logits[row], token, seq.params.top_logprobs) if seq.params.logprobs
                else SampledToken(token, None) for row, (seq, token) in enumerate(zip(rows, tokens))]

    def _redraw(self, logits: torch.Tensor, rows: Sequence[SamplingRow], forbidden: list[int],
                temperatures: torch.Tensor, uniforms: torch.Tensor,
                distributions: Distributions | None) -> dict[int, int]:
        """Tokens drawn again under the mask for the `forbidden` rows (no truncation: those draw under their
        mask up front). A sampling row first tries CANDIDATES more draws from its first distribution and keeps
        the first its matcher allows; failing that, it draws from those probabilities restricted to its mask.
        Greedy rows, and rows whose allowed mass underflowed, draw from their masked logits."""
        tokens: dict[int, int] = {}
        sampling = [row for row in forbidden if rows[row].params.temperature > 0]
        if sampling:
            extra = torch.stack([rows[row].draw_uniforms(CANDIDATES) for row in sampling])
            drawn, positive = distributions.candidates(torch.tensor(sampling, device=logits.device), extra)
            for row, candidates, possible in zip(sampling, drawn.tolist(), positive.tolist()):
                matcher = rows[row].matcher
                allowed = (token for token, ok in zip(candidates, possible) if ok and matcher.validate_tokens([token]))
                token = next(allowed, None)
                if token is not None:
                    tokens[row] = token
        kept = [row for row in sampling if row not in tokens]
        if kept:
            tokens.update(self._draw_under_masks(rows, kept, uniforms[kept], distributions))
        exact = [row for row in forbidden if row not in tokens]
        if exact:
            self._mask_rows_(logits, rows, exact)
            index = torch.tensor(exact, device=logits.device)
            drawn, _ = self._buffers.draw(logits, temperatures[index], [Truncation()] * len(exact), uniforms[exact],
                                          rows=index)
            tokens.update(zip(exact, drawn.tolist()))
        return tokens

    def _draw_under_masks(self, rows: Sequence[SamplingRow], kept: list[int], uniforms: torch.Tensor,
                          distributions: Distributions) -> dict[int, int]:
        """Tokens for the `kept` rows from their first draw's probabilities restricted to their masks: among
        the allowed tokens alone where a mask allows few, else over the vocabulary times the 0/1 mask. Rows
        whose allowed mass underflowed are left out (they draw from their masked logits)."""
        packed = self.masks.fill([rows[row].matcher for row in kept])
        few = self.masks.few_allowed(packed).tolist()
        sparse = [i for i, is_few in enumerate(few) if is_few]
        dense = [i for i, is_few in enumerate(few) if not is_few]
        index = torch.tensor(kept, device=packed.device)
        drawn = torch.zeros(len(kept), dtype=torch.long, device=packed.device)
        trusted = torch.zeros(len(kept), dtype=torch.bool, device=packed.device)
        if sparse:
            owners, allowed = self.masks.allowed_tokens(packed[sparse])
            drawn[sparse], trusted[sparse] = distributions.redraw_among(index[sparse], owners, allowed,
                                                                        uniforms[sparse])
        if dense:
            drawn[dense], trusted[dense] = distributions.redraw(index[dense], self.masks.kept(packed[dense]),
                                                                uniforms[dense])
        return {row: token for row, token, ok in zip(kept, drawn.tolist(), trusted.tolist()) if ok}

    def _mask_rows_(self, logits: torch.Tensor, rows: Sequence[SamplingRow], chosen: list[int]) -> None:
        """Add the masks of the `chosen` rows to their logits, in place: -inf on every token their matcher
        forbids."""
        apply_mask_bias_(logits, self.masks.bias([rows[row].matcher for row in chosen]), chosen)


def draws_under_mask(row: SamplingRow) -> bool:
    """Whether a constrained row draws under its mask up front instead of testing an unmasked draw: logprobs
    report the masked distribution, and top_k, top_p and min_p cut its tail (as vLLM, which masks before it
    truncates); and without fast-forward a forced stretch is sampled, where llguidance's mask allows only the
    canonical split of the forced text while its matcher accepts any split."""
    return (row.params.logprobs or row.params.truncates
            or (not row.fast_forward and bool(row.matcher.forced_tokens())))


def penalize_(logits: torch.Tensor, row: SamplingRow) -> None:
    """logit_bias, then the penalties, on one row in place. vLLM's order: the bias, then repetition_penalty
    (which scales it), then presence and frequency."""
    params = row.params
    apply_logit_bias_(logits, row.logit_bias)
    if params.repetition_penalty != 1.0:
        apply_repetition_penalty_(logits, row.seen_ids(), params.repetition_penalty)
    if params.has_penalties:
        apply_penalties_(logits, row.output_ids, params.presence_penalty, params.frequency_penalty)


def logprobs_of(logits: torch.Tensor, token_id: int, top: int) -> SampledToken:
    """Log-probability of the chosen token in one row, with the `top` most likely alternatives."""
    logprobs = torch.log_softmax(logits, dim=-1)
    alternatives = ()
    if top:
        values, ids = torch.topk(logprobs, top)
        alternatives = tuple(SampledToken(int(i), float(v)) for i, v in zip(ids, values))
    return SampledToken(token_id, float(logprobs[token_id]), alternatives)
