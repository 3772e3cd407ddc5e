"""The engine on tiny-qwen3: batching equivalence, aborts, finish reasons, sampling parameters."""

from __future__ import annotations

import json

import pytest

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sampler import CANDIDATES
from constrained.engine.sequence import FinishReason
from constrained.errors import EngineOverloaded, InvalidSamplingParams
from constrained.testing import first_draw_distribution, json_finishing_bias, run_until_idle, validation_errors

SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "number", "minimum": 0, "maximum": 9}},
     "required": ["ok", "n"], "additionalProperties": False},
    {"type": "array", "items": {"enum": ["x", "y", 3]}, "minItems": 1, "maxItems": 4},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "integer"}, "maxItems": 3}},
     "required": ["tags"], "additionalProperties": False},
]


@pytest.fixture(scope="module")
def bias(tiny_model):
    return json_finishing_bias(tiny_model.tokenizer)


def prompt(tiny_model, text="Give me JSON."):
    return tiny_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )


def encode(tiny_model, text="Give me JSON."):
    return tiny_model.tokenizer.encode(prompt(tiny_model, text))


@pytest.mark.parametrize("requests, queue_batch", [(4, 2), pytest.param(16, 5, marks=pytest.mark.slow)])
def test_mixed_requests_batched_equal_each_alone(tiny_model, compiler, bias, requests, queue_batch):
    submissions = []
    for i in range(requests):
        schema = SCHEMAS[i % len(SCHEMAS)]
        grammar = compiler.compile(Constraint.json_schema(schema)) if i % 4 != 3 else None  # some unconstrained
        params = SamplingParams(max_tokens=24 + i, seed=100 + i, logit_bias=bias, temperature=1.0)
        submissions.append(Submission(encode(tiny_model, f"request {i} " * (1 + i % 5)), params, grammar, f"r{i}"))
    batched = run_until_idle(Engine(tiny_model, max_batch_size=16), submissions)
    for sub in submissions:
        alone = run_until_idle(Engine(tiny_model, max_batch_size=1), [sub])
        assert alone[(sub.request_id, 0)]["tokens"] == batched[(sub.request_id, 0)]["tokens"], sub.request_id
    # a batch smaller than the load queues requests and admits them as others finish: still identical
    queued = run_until_idle(Engine(tiny_model, max_batch_size=queue_batch), submissions)
    assert {k: v["tokens"] for k, v in queued.items()} == {k: v["tokens"] for k, v in batched.items()}


@pytest.mark.parametrize("extras", [  # all_cuts covers top_k and min_p in the fast tier
    {}, pytest.param(dict(top_k=5), marks=pytest.mark.slow), pytest.param(dict(min_p=0.1), marks=pytest.mark.slow),
    dict(top_k=40, min_p=0.05, top_p=0.9)], ids=["plain", "top_k", "min_p", "all_cuts"])
def test_constrained_outputs_that_stop_validate(tiny_model, compiler, bias, extras):
    """With or without vLLM's truncations (they cut among the allowed tokens), every finished output validates."""
    submissions = [
        Submission(encode(tiny_model), SamplingParams(max_tokens=64, seed=s, logit_bias=bias, **extras),
                   compiler.compile(Constraint.json_schema(schema)), f"g{s}-{j}")
        for j, schema in enumerate(SCHEMAS) for s in range(6)
    ]
    results = run_until_idle(Engine(tiny_model), submissions)
    stopped = 0
    for sub in submissions:
        out = results[(sub.request_id, 0)]
        if out["finish"] is FinishReason.STOP:
            stopped += 1
            schema = SCHEMAS[int(sub.request_id.split("-")[1])]
            assert validation_errors(schema, out["text"]) == [], out["text"]
    assert stopped >= len(submissions) * 3 // 4, f"only {stopped} of {len(submissions)} finished"


def test_abort_mid_batch_leaves_others_untouched(tiny_model):
    subs = [Submission(encode(tiny_model, f"abort test {i}"), SamplingParams(max_tokens=30, seed=i), None, f"a{i}")
            for i in range(4)]
    reference = run_until_idle(Engine(tiny_model), subs)
    engine = Engine(tiny_model)
    results = run_until_idle(engine, subs, after_step=lambda steps: engine.abort("a1") if steps == 5 else None)
    assert results[("a1", 0)]["finish"] is FinishReason.ABORT and len(results[("a1", 0)]["tokens"]) < 30
    for rid in ("a0", "a2", "a3"):
        assert results[(rid, 0)]["tokens"] == reference[(rid, 0)]["tokens"]
    assert engine.cache.num_rows == 0 and not engine.scheduler.running


def test_max_tokens_cut_says_length(tiny_model, compiler):
    schema = {"type": "object", "properties": {"text": {"type": "string", "minLength": 50}}, "required": ["text"]}
    sub = Submission(encode(tiny_model), SamplingParams(max_tokens=5, seed=1), compiler.compile(Constraint.json_schema(schema)), "cut")
    out = run_until_idle(Engine(tiny_model), [sub])[("cut", 0)]
    assert out["finish"] is FinishReason.LENGTH and len(out["tokens"]) == 5
    with pytest.raises(json.JSONDecodeError):
        json.loads(out["text"])


def test_forced_end_finishes_with_stop(tiny_model, compiler):
    """A choice constraint ends as soon as nothing but EOS can follow: `stop`, never `length`."""
    grammar = compiler.compile(Constraint.choice(["yes", "no"]))
    subs = [Submission(encode(tiny_model), SamplingParams(max_tokens=8, seed=s), grammar, f"c{s}") for s in range(8)]
    for key, out in run_until_idle(Engine(tiny_model), subs).items():
        assert out["finish"] is FinishReason.STOP and out["text"] in ("yes", "no"), out


def test_stop_strings_cut_unconstrained_text(tiny_model):
    params = SamplingParams(max_tokens=40, seed=3)
    base = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), params, None, "s")])[("s", 0)]["text"]
    stop = base[5:8]
    assert stop and base.find(stop) >= 0
    cut = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), SamplingParams(max_tokens=40, seed=3, stop=(stop,)), None, "s")])
    out = cut[("s", 0)]
    assert out["finish"] is FinishReason.STOP and out["text"] == base[: base.find(stop)]


def test_stop_strings_with_a_constraint_are_refused():
    with pytest.raises(InvalidSamplingParams) as err:
        SamplingParams(stop=("}",)).validate(vocab_rows=100, constrained=True)
    assert err.value.param == "stop"


@pytest.mark.slow  # seeds stay covered fast by test_mixed_requests_batched_equal_each_alone
def test_seed_reproducible_and_n_choices_differ(tiny_model):
    params = SamplingParams(max_tokens=12, seed=7, n=2)
    first = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), params, None, "n")])
    second = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), params, None, "n")])
    assert first == second
    assert first[("n", 0)]["tokens"] != first[("n", 1)]["tokens"]
    other = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), SamplingParams(max_tokens=12, seed=8), None, "n")])
    assert other[("n", 0)]["tokens"] != first[("n", 0)]["tokens"]


def test_logprobs_and_top_logprobs(tiny_model):
    params = SamplingParams(max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    results = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), params, None, "lp")])
    sampled = results[("lp", 0)]["logprobs"]
    assert len(sampled) == 4
    for lp in sampled:
        assert lp.logprob <= 0 and len(lp.top) == 3
        assert lp.top[0].token_id == lp.token_id  # greedy picks the top token
        assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)


@pytest.mark.slow  # penalize_ and the penalties stay fast in test_sampling_extras and test_engine_parts
def test_logit_bias_and_penalties_steer_sampling(tiny_model):
    token = tiny_model.tokenizer.encode("hello")[0]
    biased = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), SamplingParams(max_tokens=6, temperature=0, logit_bias={token: 100}), None, "b")])
    assert biased[("b", 0)]["tokens"] == [token] * 6
    greedy = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), SamplingParams(max_tokens=12, temperature=0), None, "p")])
    penalised = run_until_idle(Engine(tiny_model), [Submission(encode(tiny_model), SamplingParams(max_tokens=12, temperature=0, presence_penalty=2.0, frequency_penalty=2.0), None, "p")])
    assert len(set(penalised[("p", 0)]["tokens"])) > len(set(greedy[("p", 0)]["tokens"]))


def test_runner_logits_are_the_models_for_prompts_and_forced_runs(tiny_model):
    """Rows fed runs of tokens (forced runs) beside a row fed one, packed into one sequence and
    attending in one group or a group each, then reordered in the cache: each row's logits are the
    model's own (the reference calls go through the model as usual, with sdpa)."""
    import torch

    from constrained.engine.model_runner import ModelRunner

    runner = ModelRunner(tiny_model)
    cache = runner.new_cache()
    cache.add_rows(3)
    fed = [[9707, 11, 1879, 0, 220], [785, 6722, 13], [40, 1079]]  # prompts of different lengths
    runner.forward(cache, fed)
    for step, groups in [([[90, 1, 606, 788], [4913], [11]], None),  # one attention group, padded to 4
                         ([[25], [1, 2, 3], [4, 5]], [(0, 1), (1, 2), (2, 3)])]:  # a group per row
        logits = runner.forward(cache, step, groups)
        fed = [prompt + tokens for prompt, tokens in zip(fed, step)]
        with torch.no_grad():
            for row, tokens in enumerate(fed):
                expected = tiny_model.model(torch.tensor([tokens])).logits[0, -1]
                assert torch.allclose(logits[row], expected, atol=1e-4)
    cache.keep_rows([2, 0])  # row 1 leaves, row 2 moves in front: their caches move with them
    logits = runner.forward(cache, [[7], [8, 9]], [(0, 1), (1, 2)])
    with torch.no_grad():
        for row, tokens in enumerate([fed[2] + [7], fed[0] + [8, 9]]):
            expected = tiny_model.model(torch.tensor([tokens])).logits[0, -1]
            assert torch.allclose(logits[row], expected, atol=1e-4)


@pytest.mark.parametrize("temperature, underflow", [(1.0, False), (0.0, False),
                                                    pytest.param(1.0, True, marks=pytest.mark.slow)])  # 4000 draws
def test_constrained_draws_follow_the_masked_distribution(tiny_model, compiler, temperature, underflow):
    """A row draws unmasked and draws again under its mask only if the token is forbidden: the
    tokens must still follow softmax over the allowed tokens alone (greedy: the allowed argmax).
    logit_bias puts about half the mass on forbidden tokens, so both draws happen often; or, with
    `underflow`, all but 1e-43 of it, so the allowed probabilities underflow float32 and the redraw
    must come from the masked logits."""
    import collections

    import torch

    tokenizer = tiny_model.tokenizer
    cat, dog, pig, hen = (tokenizer.encode(word)[0] for word in ("cat", "dog", "pig", "hen"))
    bias = {pig: 100.0} if underflow else {cat: 12.0, dog: 11.0, pig: 12.5, hen: 10.0}
    grammar = compiler.compile(Constraint.regex("(cat|dog|cow)"))
    prompt_ids = encode(tiny_model, "Name an animal.")
    samples = 4000 if temperature else 16
    engine = Engine(tiny_model, max_batch_size=64, max_waiting=samples, fast_forward=False)
    params = [SamplingParams(max_tokens=1, temperature=temperature, seed=i * 16, n=16, logit_bias=bias)
              for i in range(samples // 16)]
    drawn = collections.Counter(
        choice["tokens"][0] for choice in run_until_idle(engine, [Submission(prompt_ids, p, grammar) for p in params]).values())

    logits, allowed = first_draw_distribution(tiny_model, grammar, prompt_ids, bias)
    expected = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    if not temperature:
        assert drawn == {int(torch.argmax(expected)): samples}
        return
    assert set(drawn) <= set(torch.nonzero(allowed).flatten().tolist())
    total_variation = 0.5 * sum(abs(drawn[t] / samples - float(expected[t])) for t in set(drawn) | {cat, dog})
    assert total_variation < 0.03, (total_variation, drawn.most_common(4), float(expected[cat]), float(expected[dog]))
    if underflow:  # every row redrew: its kept mask found too little mass, its masked logits decided
        assert engine.sampler.masks.rows == 2 * samples
    else:  # a mask only when the first draw and all CANDIDATES more were forbidden: (1 - p(A))^(1 + CANDIDATES)
        forbidden = 1.0 - float(torch.softmax(logits, dim=-1)[allowed].sum())
        expected_masks = samples * forbidden ** (1 + CANDIDATES)
        assert 0.2 < forbidden < 0.8 and 0.7 * expected_masks < engine.sampler.masks.rows < 1.3 * expected_masks, (
            forbidden, engine.sampler.masks.rows)


class FailingMatcher:
    """A real matcher that fails after `after` tokens the way llguidance does on a resource limit:
    every token rejected, a mask of EOS alone that EOS cannot pass, and stopped without accepting."""

    def __init__(self, inner, after: int, eos: tuple[int, ...]):
        self.inner, self.after, self.eos = inner, after, eos

    @property
    def failed(self) -> bool:
        return self.after <= 0

    def accept_token(self, token_id):
        if self.failed or not self.inner.accept_token(token_id):
            return False
        self.after -= 1
        return True

    def validate_tokens(self, token_ids):
        return 0 if self.failed else self.inner.validate_tokens(token_ids)

    def fill_bitmask(self, bitmask, row):
        if not self.failed:
            return self.inner.fill_bitmask(bitmask, row)
        bitmask[row] = 0
        for token in self.eos:
            bitmask[row, token // 32] |= 1 << (token % 32)

    def is_accepting(self):
        return not self.failed and self.inner.is_accepting()

    def is_terminated(self):
        return self.failed or self.inner.is_terminated()  # llguidance reports itself stopped once it gives up

    def forced_tokens(self):
        return [] if self.failed else self.inner.forced_tokens()


class FailingGrammar:
    def __init__(self, grammar, after: int, eos: tuple[int, ...]):
        self.grammar, self.after, self.eos = grammar, after, eos

    def matcher(self):
        return FailingMatcher(self.grammar.matcher(), self.after, self.eos)


def test_a_failing_matcher_fails_its_choice_alone(tiny_model, compiler, bias):
    """A matcher that fails mid-generation finishes its choice as FAILED; the batch goes on unharmed."""
    grammar = compiler.compile(Constraint.json_schema(SCHEMAS[3]))
    failing = FailingGrammar(grammar, after=3, eos=tuple(tiny_model.eos_token_ids))
    params = SamplingParams(max_tokens=30, seed=5, logit_bias=bias)
    healthy = Submission(encode(tiny_model), params, grammar, "healthy")
    results = run_until_idle(Engine(tiny_model, fast_forward=False), [Submission(encode(tiny_model), params, failing, "failing"), healthy])
    assert results[("failing", 0)]["finish"] is FinishReason.FAILED and len(results[("failing", 0)]["tokens"]) == 3
    assert results[("healthy", 0)] == run_until_idle(Engine(tiny_model, fast_forward=False), [healthy])[("healthy", 0)]


def test_max_waiting_counts_what_the_free_batch_slots_cannot_take(tiny_model):
    """A burst that fits the batch is admitted even with no queue at all; past the free slots, max_waiting."""
    engine = Engine(tiny_model, max_batch_size=4, max_waiting=1)
    params = SamplingParams(max_tokens=2, seed=0)
    for i in range(5):  # 4 free slots and 1 waiting place
        engine.submit(Submission(encode(tiny_model), params, None, f"r{i}"))
    with pytest.raises(EngineOverloaded):
        engine.submit(Submission(encode(tiny_model), params, None, "over"))
    run_until_idle(engine, [])  # drain
    engine.submit(Submission(encode(tiny_model), SamplingParams(max_tokens=2, n=5), None, "wide"))  # room again
