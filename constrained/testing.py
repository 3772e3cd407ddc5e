"""Helpers for tests, benchmarks and schema authors: make a random model finish JSON, validate outputs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import jsonschema
from transformers import PreTrainedTokenizerFast

if TYPE_CHECKING:
    from constrained.engine.engine import Engine, Submission

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


def run_until_idle(engine: Engine, submissions: list[Submission]) -> dict[tuple[str, int], dict]:
    """Submit, then step `engine` until idle: {"tokens", "text", "finish"} per (request id, choice index)."""
    ids = [engine.submit(s) for s in submissions]
    results = {(i, k): {"tokens": [], "text": "", "finish": None} for i, s in zip(ids, submissions)
               for k in range(s.params.n)}
    while engine.has_work():
        for out in engine.step():
            slot = results[(out.request_id, out.index)]
            slot["tokens"] += out.token_ids
            slot["text"] += out.text
            slot["finish"] = out.finish_reason or slot["finish"]
    return results
