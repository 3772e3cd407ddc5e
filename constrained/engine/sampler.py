"""Sampling as small pure functions over a batch of logits ([rows, vocab] float32)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float


@dataclass(frozen=True)
class SampledToken:
    token_id: int
    logprob: float | None  # None unless logprobs were asked for
    top: tuple[TokenLogprob, ...] = ()


def apply_penalties_(logits: torch.Tensor, output_ids: list[int], presence: float, frequency: float) -> None:
    """OpenAI penalties on one row: subtract presence once per seen token and frequency per occurrence."""
    if not output_ids:
        return
    counts = torch.bincount(torch.tensor(output_ids, device=logits.device), minlength=logits.shape[-1])
    counts = counts[: logits.shape[-1]].to(logits.dtype)
    logits -= presence * (counts > 0).to(logits.dtype) + frequency * counts


def apply_logit_bias_(logits: torch.Tensor, bias: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """Add per-token biases to one row; `bias` is (token ids, values), built once per sequence."""
    if bias is not None:
        ids, values = bias
        logits[ids] += values


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

    `logits` are divided by the temperatures in place. Rows with temperature 0 take the argmax. Each row's randomness comes from its own uniform, so a
    row's token does not depend on the rest of the batch. Returns token ids [rows].
    """
    sampling = temperatures > 0
    if not bool(sampling.any()):
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(logits.div_(torch.where(sampling, temperatures, 1.0)[:, None]), dim=-1)
    for row, top_p in enumerate(top_ps):
        top_p_filter_(probs[row], top_p)
    drawn = _inverse_cdf(probs, uniforms.to(probs.device))
    landed = probs.gather(1, drawn[:, None]).squeeze(1) > 0
    if not bool(landed.all()):  # float rounding at the very top of the CDF hit a zero-probability token
        drawn = torch.where(landed, drawn, torch.argmax(probs, dim=-1))
    if bool(sampling.all()):
        return drawn
    return torch.where(sampling, drawn, torch.argmax(logits, dim=-1))


def _inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Token ids [rows] at `uniforms` of each row's CDF, found block first, then within the block.

    A float32 running sum over 150k entries drifts enough that logits equal to 1e-7 (batched vs
    alone) pick different tokens; running sums here are float64 over block masses, then over one
    block, which keeps that exactness for a fraction of a full float64 CDF.
    """
    rows, vocab = probs.shape
    blocks = torch.nn.functional.pad(probs, (0, -vocab % block)).view(rows, -1, block)
    block_cdf = torch.cumsum(blocks.sum(dim=-1).double(), dim=-1)  # [rows, blocks]
    targets = uniforms.to(torch.float64) * block_cdf[:, -1]
    chosen = torch.searchsorted(block_cdf, targets[:, None], right=True).clamp_(max=block_cdf.shape[1] - 1)
    before = torch.where(chosen > 0, block_cdf.gather(1, (chosen - 1).clamp(min=0)), 0.0).squeeze(1)
    inner_cdf = torch.cumsum(blocks[torch.arange(rows, device=probs.device), chosen.squeeze(1)].double(), dim=-1)
    inner = torch.searchsorted(inner_cdf, (targets - before)[:, None], right=True).clamp_(max=block - 1)
    return (chosen * block + inner).squeeze(1).clamp_(max=vocab - 1)


def logprobs_of(logits: torch.Tensor, token_id: int, top: int) -> SampledToken:
    """Log-probability of the chosen token in one row, with the `top` most likely alternatives."""
    logprobs = torch.log_softmax(logits, dim=-1)
    alternatives = ()
    if top:
        values, ids = torch.topk(logprobs, top)
        alternatives = tuple(TokenLogprob(int(i), float(v)) for i, v in zip(ids, values))
    return SampledToken(token_id, float(logprobs[token_id]), alternatives)
