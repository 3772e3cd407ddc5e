"""Sampling as small pure functions over a batch of logits ([rows, vocab] float32)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

_BIT_SHIFTS = torch.arange(32, dtype=torch.int32)


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: float | None  # None unless logprobs were asked for
    top: tuple[TokenLogprob, ...] = ()


def apply_token_bitmask_(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set to -inf the logits whose bit is 0 in `bitmask` [rows, ceil(vocab/32)] int32 (bit i of word j = token 32j+i)."""
    rows, vocab = logits.shape
    shifts = _BIT_SHIFTS.to(bitmask.device)
    allowed = ((bitmask[:rows, :, None] >> shifts) & 1).bool().view(rows, -1)[:, :vocab]
    logits.masked_fill_(~allowed.to(logits.device), float("-inf"))


def apply_penalties_(logits: torch.Tensor, output_ids: list[int], presence: float, frequency: float) -> None:
    """OpenAI penalties on one row: subtract presence once per seen token and frequency per occurrence."""
    if not output_ids:
        return
    counts = torch.bincount(torch.tensor(output_ids, device=logits.device), minlength=logits.shape[-1])
    counts = counts[: logits.shape[-1]].to(logits.dtype)
    logits -= presence * (counts > 0).to(logits.dtype) + frequency * counts


def apply_logit_bias_(logits: torch.Tensor, bias: dict[int, float]) -> None:
    """Add per-token biases to one row."""
    if bias:
        ids = torch.tensor(list(bias.keys()), device=logits.device)
        logits[ids] += torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)


def top_p_filter_(probs: torch.Tensor, top_p: float) -> None:
    """Zero the tail of one row outside the smallest set whose mass reaches top_p."""
    if top_p >= 1.0:
        return
    sorted_probs, order = torch.sort(probs, descending=True)
    outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
    probs[order[outside]] = 0.0


def sample_batch(
    logits: torch.Tensor, temperatures: torch.Tensor, top_ps: list[float], uniforms: torch.Tensor
) -> torch.Tensor:
    """Draw one token per row by inverse CDF, given one uniform in [0, 1) per row.

    Rows with temperature 0 take the argmax. Each row's randomness comes from its own uniform, so a
    row's token does not depend on the rest of the batch. Returns token ids [rows].
    """
    greedy = torch.argmax(logits, dim=-1)
    sampling = temperatures > 0
    if not bool(sampling.any()):
        return greedy
    probs = torch.softmax(logits / torch.where(sampling, temperatures, 1.0)[:, None], dim=-1)
    for row, top_p in enumerate(top_ps):
        top_p_filter_(probs[row], top_p)
    cdf = torch.cumsum(probs, dim=-1, dtype=torch.float64)
    targets = (uniforms.to(cdf.device) * cdf[:, -1])[:, None]
    drawn = torch.searchsorted(cdf, targets, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)
    # float rounding at the very top of the CDF could land on a zero-probability token: take the mode
    drawn = torch.where(probs.gather(1, drawn[:, None]).squeeze(1) > 0, drawn, torch.argmax(probs, dim=-1))
    return torch.where(sampling, drawn, greedy)


def logprobs_of(logits: torch.Tensor, token_id: int, top: int) -> SampledToken:
    """Log-probability of the chosen token in one row, with the `top` most likely alternatives."""
    logprobs = torch.log_softmax(logits, dim=-1)
    alternatives = ()
    if top:
        values, ids = torch.topk(logprobs, top)
        alternatives = tuple(TokenLogprob(int(i), float(v)) for i, v in zip(ids, values))
    return SampledToken(token_id, float(logprobs[token_id]), alternatives)
