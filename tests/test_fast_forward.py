"""Fast-forward on tiny-qwen3: forced tokens appended without sampling, in the tokenizer's own split."""

from __future__ import annotations

import json

import pytest

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.testing import json_finishing_bias, run_until_idle, validation_errors

KEY_HEAVY = {
    "type": "object",
    "properties": {
        "customer_name": {"type": "string", "maxLength": 6},
        "shipping_method": {"enum": ["standard_ground", "express_overnight"]},
        "gift_wrapped": {"type": "boolean"},
        "quantity": {"type": "integer"},
    },
    "required": ["customer_name", "shipping_method", "gift_wrapped", "quantity"],
    "additionalProperties": False,
}
NESTED = {"type": "array", "items": {"type": "object", "properties": {"identifier": {"type": "integer"}},
                                     "required": ["identifier"], "additionalProperties": False},
          "minItems": 1, "maxItems": 3}


@pytest.fixture(scope="module")
def bias(tiny_model):
    return json_finishing_bias(tiny_model.tokenizer)


@pytest.fixture(scope="module")
def prompt(tiny_model):
    return tiny_model.tokenizer.encode(tiny_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "An order as JSON."}], add_generation_prompt=True, tokenize=False))


def submissions(prompt, compiler, bias, schemas, *, max_tokens=64, **params) -> list[Submission]:
    return [Submission(prompt, SamplingParams(max_tokens=max_tokens, seed=i, logit_bias=bias, **params),
                       compiler.compile(Constraint.json_schema(schema)), f"ff{i}")
            for i, schema in enumerate(schemas)]


def forced_runs(grammar, tokens: list[int]) -> list[list[int]]:
    """Replay `tokens` through a fresh matcher; return each run the matcher forced along the way."""
    matcher, runs, i = grammar.matcher(), [], 0
    while i < len(tokens):
        forced = matcher.forced_tokens()
        if forced:
            runs.append(forced)
            assert tokens[i:i + len(forced)] == forced[: len(tokens) - i], "the engine did not append the forced run"
            i += len(forced)
            for token in forced:
                matcher.accept_token(token)
            continue
        assert matcher.accept_token(tokens[i])
        i += 1
    return runs


def test_outputs_validate_and_forced_runs_are_the_tokenizers_own(tiny_model, compiler, bias, prompt):
    tokenizer = tiny_model.tokenizer
    schemas = [KEY_HEAVY, NESTED] * 3
    subs = submissions(prompt, compiler, bias, schemas, temperature=1.0)
    results = run_until_idle(Engine(tiny_model), subs)
    stopped = 0
    for sub, schema in zip(subs, schemas):
        out = results[(sub.request_id, 0)]
        assert out["text"] == tokenizer.decode(out["tokens"])  # streamed deltas add up to the tokens
        assert out["usage"] == len(out["tokens"])  # forced tokens count in usage
        if out["finish"] is FinishReason.STOP:
            stopped += 1
            assert validation_errors(schema, out["text"]) == [], out["text"]
        runs = forced_runs(sub.grammar, out["tokens"])
        assert runs, "a key-heavy schema forces its keys"
        for forced in runs:
            assert tokenizer.encode(tokenizer.decode(forced)) == forced, tokenizer.decode(forced)
    assert stopped >= len(subs) // 2


@pytest.mark.parametrize("temperature", [0.0, pytest.param(1.0, marks=pytest.mark.slow)])
def test_same_text_with_and_without_fast_forward_in_fewer_steps(tiny_model, compiler, bias, prompt, temperature):
    """Greedy and seeded choices: forced tokens consume their uniform, so the sampled positions draw
    the same randomness either way. The texts match because at each forced position this model
    (with the finishing bias) picks the same token the matcher forces; float differences between one
    multi-token forward and several single ones are far below what flips a choice here."""
    subs = submissions(prompt, compiler, bias, [KEY_HEAVY, NESTED] * 2, max_tokens=48, temperature=temperature)
    on = run_until_idle(Engine(tiny_model, fast_forward=True), subs)
    off = run_until_idle(Engine(tiny_model, fast_forward=False), subs)
    assert {k: v["text"] for k, v in on.items()} == {k: v["text"] for k, v in off.items()}
    assert {k: v["finish"] for k, v in on.items()} == {k: v["finish"] for k, v in off.items()}
    assert on.steps < off.steps


def test_forced_run_cut_by_max_tokens_says_length(tiny_model, compiler, prompt):
    """`{"customer_name":` is forced from the start: two tokens of it end the choice before any forward."""
    engine = Engine(tiny_model)
    results = run_until_idle(engine, submissions(prompt, compiler, None, [KEY_HEAVY], max_tokens=2))
    out = results[("ff0", 0)]
    assert out["finish"] is FinishReason.LENGTH and len(out["tokens"]) == 2 and out["usage"] == 2
    assert out["text"] == tiny_model.tokenizer.decode(out["tokens"]) and out["text"].startswith('{"')
    assert results.steps == 1 and engine.cache.num_rows == 0


def test_fully_forced_output_stops_without_sampling(tiny_model, compiler, prompt):
    schema = {"type": "object", "properties": {"status": {"const": "accepted"}}, "required": ["status"],
              "additionalProperties": False}
    results = run_until_idle(Engine(tiny_model), submissions(prompt, compiler, None, [schema], max_tokens=32))
    out = results[("ff0", 0)]
    assert out["finish"] is FinishReason.STOP and json.loads(out["text"]) == {"status": "accepted"}
    assert results.steps == 1


def test_logprobs_choices_sample_every_token(tiny_model, compiler, bias, prompt):
    subs = submissions(prompt, compiler, bias, [KEY_HEAVY], logprobs=True, temperature=0.0)
    out = run_until_idle(Engine(tiny_model), subs)[("ff0", 0)]
    assert len(out["logprobs"]) == len(out["tokens"]) > 0
