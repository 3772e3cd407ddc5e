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


def sample_row(
    logits: torch.Tensor, *, temperature: float, top_p: float, generator: torch.Generator, top_logprobs: int | None
) -> SampledToken:
    """Draw one token from one row of processed logits (mask, bias and penalties already applied)."""
    if temperature == 0.0:
        token = int(torch.argmax(logits))
    else:
        probs = torch.softmax(logits / temperature, dim=-1)
        top_p_filter_(probs, top_p)
        token = int(torch.multinomial(probs, 1, generator=generator))
    if top_logprobs is None:
        return SampledToken(token, None)
    logprobs = torch.log_softmax(logits, dim=-1)
    top = ()
    if top_logprobs:
        values, ids = torch.topk(logprobs, top_logprobs)
        top = tuple(TokenLogprob(int(i), float(v)) for i, v in zip(ids, values))
    return SampledToken(token, float(logprobs[token]), top)
