"""vLLM's sampling extras: top_k, min_p and repetition_penalty, per request, batch-invariant, under a constraint."""

from __future__ import annotations

import collections

import pytest
import torch

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.distributions import DistributionBuffers, Truncation, min_p_filter_, top_k_filter_, truncate_
from constrained.engine.penalties import apply_repetition_penalty_
from constrained.engine.sampler import penalize_
from constrained.errors import InvalidSamplingParams
from constrained.testing import first_draw_distribution, json_finishing_bias, run_until_idle
from tests.test_engine import SCHEMAS

EXTRAS = [dict(top_k=5), dict(min_p=0.1), dict(top_k=40, min_p=0.05, top_p=0.9), dict(repetition_penalty=1.3)]


@pytest.fixture(scope="module")
def bias(tiny_model):
    return json_finishing_bias(tiny_model.tokenizer)


def encode(tiny_model, text="Give me JSON."):
    return tiny_model.tokenizer.encode(tiny_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False))


def draws(logits: torch.Tensor, cut: Truncation, count: int, temperature: float = 1.0) -> collections.Counter:
    """`count` tokens drawn by the sampler from one row of `logits` under `cut`, one row per draw."""
    buffers = DistributionBuffers(max_rows=count, vocab_rows=logits.numel(), device=torch.device("cpu"))
    uniforms = torch.rand(count, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = logits.expand(count, -1).contiguous()
    drawn, _ = buffers.draw(rows, torch.full((count,), temperature), [cut] * count, uniforms)
    return collections.Counter(drawn.tolist())


def total_variation(drawn: collections.Counter, expected: torch.Tensor) -> float:
    count = sum(drawn.values())
    support = set(drawn) | set(torch.nonzero(expected).flatten().tolist())
    return 0.5 * sum(abs(drawn[t] / count - float(expected[t])) for t in support)


# --- the pure functions, on made-up logits ----------------------------------------------------------


def test_top_k_draws_among_the_k_most_probable_in_proportion():
    logits = torch.randn(3000, generator=torch.Generator().manual_seed(1)) * 3
    top5 = torch.topk(logits, 5).indices
    drawn = draws(logits, Truncation(top_k=5), 4000, temperature=0.8)
    assert set(drawn) == set(top5.tolist())  # all of them, and nothing else
    expected = torch.zeros_like(logits)
    expected[top5] = torch.softmax(logits[top5] / 0.8, dim=-1)
    assert total_variation(drawn, expected) < 0.03
    assert set(draws(logits, Truncation(top_k=1), 200)) == {int(torch.argmax(logits))}  # top_k=1 is greedy
    assert len(set(draws(logits, Truncation(), 200)) - set(top5.tolist())) > 50  # without it, the tail is drawn


def test_min_p_keeps_tokens_at_least_min_p_of_the_top():
    probs = torch.tensor([0.4, 0.2, 0.12, 0.1, 0.08, 0.06, 0.04])
    cut = probs.clone()
    min_p_filter_(cut, 0.25)  # threshold 0.1: the token at exactly 0.1 stays
    assert torch.nonzero(cut).flatten().tolist() == [0, 1, 2, 3]
    assert torch.equal(cut[:4], probs[:4])
    logits = probs.log()
    drawn = draws(logits, Truncation(min_p=0.25), 4000)
    assert set(drawn) == {0, 1, 2, 3}
    assert total_variation(drawn, torch.cat([probs[:4] / probs[:4].sum(), torch.zeros(3)])) < 0.03


def test_min_p_applies_after_temperature():
    """vLLM's min_p reads the tempered distribution: a low temperature sharpens it, so fewer tokens pass."""
    logits = torch.tensor([0.4, 0.2, 0.12, 0.1, 0.06]).log()
    assert set(draws(logits, Truncation(min_p=0.2), 500, temperature=1.0)) == {0, 1, 2, 3}
    assert set(draws(logits, Truncation(min_p=0.2), 500, temperature=0.5)) == {0, 1}  # squared: 1/4, 9/100, ...


def test_truncation_order_is_vllms():
    """top_k ties are kept; top_p reads the mass top_k and min_p kept (vLLM renormalises before top-p)."""
    probs = torch.tensor([0.3, 0.3, 0.3, 0.1])
    top_k_filter_(probs, 2)
    assert probs.tolist() == pytest.approx([0.3, 0.3, 0.3, 0.0])
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    truncate_(probs, Truncation(top_k=3, top_p=0.75))  # 0.75 of the kept 0.9 is reached by the first two
    assert torch.nonzero(probs).flatten().tolist() == [0, 1]
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    truncate_(probs, Truncation(top_p=0.75))  # of the whole row, the third is needed
    assert torch.nonzero(probs).flatten().tolist() == [0, 1, 2]
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    truncate_(probs, Truncation(min_p=0.5, top_p=0.6))  # min_p keeps 0.7; 0.6 of it needs both
    assert torch.nonzero(probs).flatten().tolist() == [0, 1]


def test_no_truncation_draws_what_the_plain_sampler_draws():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 5000, generator=generator) * 2
    uniforms = torch.rand(6, generator=generator, dtype=torch.float64)
    buffers = DistributionBuffers(max_rows=6, vocab_rows=5000, device=torch.device("cpu"))
    plain, _ = buffers.draw(logits, torch.ones(6), [Truncation()] * 6, uniforms)
    assert torch.equal(buffers.draw(logits, torch.ones(6), [Truncation(top_k=5000, min_p=0.0)] * 6, uniforms)[0], plain)


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = torch.tensor([2.0, -2.0, 0.0, 3.0, -1.0, 0.5])
    apply_repetition_penalty_(logits, torch.tensor([0, 1, 2, 1, 5]), 2.0)  # repeats are penalised once
    assert logits.tolist() == [1.0, -4.0, 0.0, 3.0, -1.0, 0.25]


# --- in the engine, on tiny-qwen3 -------------------------------------------------------------------


def test_repetition_penalty_covers_prompt_and_output_after_logit_bias(tiny_model):
    """penalize_ penalises exactly the prompt's and the output's tokens of the rows that ask, after
    their logit_bias (vLLM's order); a row without it gets its bias alone."""
    engine = Engine(tiny_model, max_batch_size=2)
    prompt_ids = [11, 22, 11, 33]
    engine.submit(Submission(prompt_ids, SamplingParams(max_tokens=8, seed=0, repetition_penalty=1.5,
                                                        logit_bias={22: 3.0, 44: -3.0}), None, "pen"))
    engine.submit(Submission(prompt_ids, SamplingParams(max_tokens=8, seed=0, logit_bias={22: 3.0}), None, "plain"))
    engine.step()
    penalised, plain = engine.scheduler.running
    assert penalised.request_id == "pen" and penalised.output_ids
    penalised.output_ids = [55, 66, 55]
    logits = torch.randn(2, tiny_model.vocab_rows, generator=torch.Generator().manual_seed(3))
    expected = logits.clone()
    expected[:, 22] += 3.0
    expected[0, 44] -= 3.0
    seen = [11, 22, 33, 55, 66]
    expected[0, seen] = torch.where(expected[0, seen] > 0, expected[0, seen] / 1.5, expected[0, seen] * 1.5)
    for row, seq in enumerate([penalised, plain]):
        penalize_(logits[row], seq)
    assert torch.equal(logits, expected)


def test_repetition_penalty_steers_greedy_away_from_repeats(tiny_model):
    prompt_ids = encode(tiny_model)
    greedy = run_until_idle(Engine(tiny_model), [Submission(prompt_ids, SamplingParams(max_tokens=16, temperature=0), None, "g")])
    penalised = run_until_idle(Engine(tiny_model), [Submission(
        prompt_ids, SamplingParams(max_tokens=16, temperature=0, repetition_penalty=2.0), None, "g")])
    greedy, penalised = greedy[("g", 0)]["tokens"], penalised[("g", 0)]["tokens"]
    assert len(set(greedy)) < len(greedy)  # the random model repeats itself
    assert len(set(penalised)) > len(set(greedy))
    assert greedy[0] in prompt_ids and penalised[0] != greedy[0]  # the prompt's tokens count from the first step


@pytest.mark.slow  # truncation among allowed tokens stays fast (top_k=1 below)
def test_top_k_one_is_greedy_with_and_without_a_constraint(tiny_model, compiler, bias):
    prompt_ids = encode(tiny_model)
    grammar = compiler.compile(Constraint.json_schema(SCHEMAS[1]))
    greedy = SamplingParams(max_tokens=24, temperature=0, logit_bias=bias)
    subs = [Submission(prompt_ids, greedy, None, "free"), Submission(prompt_ids, greedy, grammar, "json")]
    expected = run_until_idle(Engine(tiny_model), subs)
    for seed in range(2):
        top1 = SamplingParams(max_tokens=24, temperature=1.0, top_k=1, seed=seed, logit_bias=bias)
        subs = [Submission(prompt_ids, top1, None, "free"), Submission(prompt_ids, top1, grammar, "json")]
        assert run_until_idle(Engine(tiny_model), subs) == expected


@pytest.mark.parametrize("cut", [dict(top_k=1), pytest.param(dict(top_k=2), marks=pytest.mark.slow),
                                 pytest.param(dict(min_p=0.5), marks=pytest.mark.slow)])
def test_truncation_applies_among_the_allowed_tokens(tiny_model, compiler, cut):
    """A biased forbidden token tops the unmasked distribution: a cut before the mask would keep few
    allowed tokens or none. Cut among the allowed ones, the draws follow the truncated masked distribution."""
    tokenizer = tiny_model.tokenizer
    cat, dog, pig, hen = (tokenizer.encode(word)[0] for word in ("cat", "dog", "pig", "hen"))
    bias = {cat: 12.0, dog: 11.0, pig: 14.0, hen: 10.0}
    grammar = compiler.compile(Constraint.regex("(cat|dog|cow)"))
    prompt_ids = encode(tiny_model, "Name an animal.")
    engine = Engine(tiny_model, max_batch_size=64, max_waiting=256, fast_forward=False)
    params = [SamplingParams(max_tokens=1, seed=i * 16, n=16, logit_bias=bias, **cut) for i in range(16)]
    drawn = collections.Counter(
        choice["tokens"][0] for choice in run_until_idle(engine, [Submission(prompt_ids, p, grammar) for p in params]).values())

    logits, allowed = first_draw_distribution(tiny_model, grammar, prompt_ids, bias)
    expected = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    truncate_(expected, Truncation(**cut))
    expected /= expected.sum()
    assert 1 <= int((expected > 0).sum()) <= 3 and set(drawn) == set(torch.nonzero(expected).flatten().tolist())
    assert total_variation(drawn, expected) < 0.06, (drawn, expected[expected > 0])


@pytest.mark.slow  # many engine runs; test_engine.py's batched-equals-alone test stays in the fast tier
def test_seeded_extras_give_the_same_tokens_alone_and_batched(tiny_model, compiler, bias):
    """Each request's extras cut its own row alone: batched beside requests with other extras or none,
    a seeded request draws what it draws alone."""
    grammars = [compiler.compile(Constraint.json_schema(schema)) for schema in SCHEMAS]
    subs = []
    for i in range(8):
        extras = EXTRAS[i % len(EXTRAS)] if i % 3 != 2 else {}
        grammar = grammars[i % len(grammars)] if i % 4 != 3 else None
        params = SamplingParams(max_tokens=20, seed=50 + i, logit_bias=bias, **extras)
        subs.append(Submission(encode(tiny_model, f"request {i}"), params, grammar, f"r{i}"))
    batched = run_until_idle(Engine(tiny_model, max_batch_size=8), subs)
    for sub in subs:
        if sub.params.truncates or sub.params.repetition_penalty != 1.0:
            alone = run_until_idle(Engine(tiny_model, max_batch_size=1), [sub])
            assert alone[(sub.request_id, 0)]["tokens"] == batched[(sub.request_id, 0)]["tokens"], sub.request_id
    plain = run_until_idle(Engine(tiny_model, max_batch_size=8), [Submission(s.prompt_ids, SamplingParams(
        max_tokens=20, seed=s.params.seed, logit_bias=bias), s.grammar, s.request_id) for s in subs])
    changed = [s.request_id for s in subs if plain[(s.request_id, 0)]["tokens"] != batched[(s.request_id, 0)]["tokens"]]
    assert len(changed) >= 4, changed  # the extras did change what those requests drew


@pytest.mark.parametrize("field, value", [
    ("top_k", -1), ("min_p", -0.1), ("min_p", 1.5), ("min_p", float("nan")),
    ("repetition_penalty", 0.0), ("repetition_penalty", -1.0), ("repetition_penalty", 2.5),
])
def test_out_of_range_extras_are_refused_by_name(field, value):
    with pytest.raises(InvalidSamplingParams) as err:
        SamplingParams(**{field: value}).validate(vocab_rows=100, constrained=False)
    assert err.value.param == field


def test_in_range_extras_and_defaults_pass():
    assert not SamplingParams().truncates
    for params in (SamplingParams(), SamplingParams(top_k=1, min_p=1.0, repetition_penalty=2.0),
                   SamplingParams(top_k=10**6, min_p=0.0, repetition_penalty=0.5)):
        params.validate(vocab_rows=100, constrained=True)
