"""logit_bias and the repetition, presence and frequency penalties: in place on a row of logits, before the
sampler masks and draws."""

from __future__ import annotations

import torch


def apply_logit_bias_(logits: torch.Tensor, bias: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """Add per-token biases to one row; `bias` is (token ids, values), built once per sequence."""
    if bias is not None:
        ids, values = bias
        logits[ids] += values


def apply_repetition_penalty_(logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float) -> None:
    """vLLM's (and HF's) repetition penalty on one row: the logit of each token in `seen_ids` (prompt
    and output so far; repeats do no harm) is divided by `penalty` when positive and multiplied by it
    when negative, so a penalty above 1 makes a seen token less likely whatever its logit's sign.
    Only the seen ids are read and written."""
    values = logits[seen_ids]
    logits[seen_ids] = torch.where(values > 0, values / penalty, values * penalty)


def apply_penalties_(logits: torch.Tensor, output_ids: list[int], presence: float, frequency: float) -> None:
    """OpenAI penalties on one row: subtract presence once per seen token and frequency per occurrence."""
    if not output_ids:
        return
    counts = torch.bincount(torch.tensor(output_ids, device=logits.device), minlength=logits.shape[-1])
    counts = counts[: logits.shape[-1]].to(logits.dtype)
    logits -= presence * (counts > 0).to(logits.dtype) + frequency * counts
