"""Helpers for tests, benchmarks and schema authors: make a random model finish JSON, validate outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jsonschema
import torch
from transformers import PreTrainedTokenizerFast

if TYPE_CHECKING:
    from constrained.compiler import Grammar
    from constrained.engine.engine import Engine, Submission
    from constrained.models import LoadedModel

_JSON_CHARS = set('{}[]:,"0123456789.- ')


def json_finishing_bias(tokenizer: PreTrainedTokenizerFast, bias: float = 8.0) -> dict[int, float]:
    """logit_bias toward JSON punctuation and digits.

    A random-weights model rarely closes an open string (few of ~150k allowed tokens end it); this
    bias makes most constrained generations finish, so a guarantee test checks real outputs.
    """
    out = {}
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text and len(text) <= 3 and set(text) <= _JSON_CHARS:
            out[token_id] = bias
    return out


def validation_errors(schema: Any, text: str) -> list[str]:
    """Why `text` is not a JSON instance of `schema` (empty when it is), with format checking on."""
    try:
        instance = json.loads(text)
    except json.JSONDecodeError as exc:
        return [f"not JSON: {exc}"]
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


class IdleRun(dict):
    """run_until_idle's result: a dict per (request id, choice index), plus `steps`, the engine steps taken."""

    steps: int = 0


def run_until_idle(engine: Engine, submissions: list[Submission],
                   after_step: Callable[[int], None] | None = None) -> IdleRun:
    """Submit, then step `engine` until idle: {"tokens", "text", "finish", "logprobs", "usage"} per
    (request id, choice index), for these submissions and any the engine already held; "usage" is the completion
    tokens reported. `after_step(steps so far)` runs after each step (to abort mid-run, say)."""
    def empty() -> dict:
        return {"tokens": [], "text": "", "finish": None, "logprobs": [], "usage": 0}

    ids = [engine.submit(s) for s in submissions]
    results = IdleRun({(i, k): empty() for i, s in zip(ids, submissions) for k in range(s.params.n)})
    while engine.has_work():
        for out in engine.step():
            slot = results.setdefault((out.request_id, out.index), empty())
            slot["tokens"] += out.token_ids
            slot["text"] += out.text
            slot["logprobs"] += out.logprobs
            slot["usage"] = out.completion_tokens
            slot["finish"] = out.finish_reason or slot["finish"]
        results.steps += 1
        if after_step is not None:
            after_step(results.steps)
    return results


def first_draw_distribution(model: LoadedModel, grammar: Grammar, prompt_ids: list[int],
                            bias: dict[int, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, allowed) of the first output position, computed without the engine: the model's logits plus
    `bias`, and which tokens `grammar` allows there. What a constrained draw must follow."""
    from constrained.compiler.backends.base import bitmask_width  # not at the top: the compiler imports this module

    with torch.no_grad():
        logits = model.model(torch.tensor([prompt_ids])).logits[0, -1].float()
    for token, value in bias.items():
        logits[token] += value
    bitmask = torch.zeros(1, bitmask_width(model.vocab_rows), dtype=torch.int32)
    grammar.matcher().fill_bitmask(bitmask, 0)
    ids = torch.arange(logits.numel())
    return logits, ((bitmask[0, ids // 32] >> (ids % 32)) & 1).bool()
