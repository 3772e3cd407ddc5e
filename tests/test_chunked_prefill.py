"""Chunked prefill (Engine(max_step_tokens=...)): a long prompt joins the batch in chunks while the other rows
keep decoding, and every choice generates exactly what it generates unchunked."""

from __future__ import annotations

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.testing import json_finishing_bias, run_until_idle
from tests.test_engine import SCHEMAS


def long_prompt(tiny_model, i: int) -> list[int]:
    text = " ".join(f"Line {k} of document {i}: the catalogue lists item {k} at {k * 3} euros." for k in range(12))
    return tiny_model.tokenizer.encode(text)


def test_chunked_prompts_give_the_same_tokens(tiny_model, compiler):
    bias = json_finishing_bias(tiny_model.tokenizer)
    grammars = [compiler.compile(Constraint.json_schema(schema)) for schema in SCHEMAS]
    subs = [Submission(long_prompt(tiny_model, i) if i % 2 else tiny_model.tokenizer.encode(f"Short {i}."),
                       SamplingParams(max_tokens=20, seed=i, logit_bias=bias if i % 3 else {}, n=1 + (i == 4)),
                       grammars[i % 4] if i % 5 else None, f"r{i}") for i in range(8)]
    chunked = Engine(tiny_model, max_batch_size=4, max_step_tokens=24)
    assert run_until_idle(chunked, subs) == run_until_idle(Engine(tiny_model, max_batch_size=4), subs)


def test_decoding_rows_keep_their_pace_while_a_long_prompt_prefills(tiny_model):
    """Each step takes at most max_step_tokens (the decoding rows' first), and a decoding row gets a token at
    every step while the long prompt goes in over several."""
    engine = Engine(tiny_model, max_batch_size=4, max_step_tokens=32)
    decoding = engine.submit(Submission(tiny_model.tokenizer.encode("Hi."), SamplingParams(max_tokens=40, seed=1)))
    engine.step()
    prompt = long_prompt(tiny_model, 0)
    engine.submit(Submission(prompt, SamplingParams(max_tokens=2, seed=2), None, "long"))
    producers, fed = [], []
    while "long" not in (producers[-1] if producers else []):
        producers.append([out.request_id for out in engine.step() if out.token_ids])
        fed.append(int(engine.cache.lengths.sum()))
    assert all(ids == [decoding] for ids in producers[:-1])  # a token every step; the long prompt none until
    assert sorted(producers[-1]) == sorted([decoding, "long"])  # its last chunk, whose logits it samples from
    assert len(producers) >= len(prompt) // 32
    assert all(0 < after - before <= 32 for before, after in zip(fed, fed[1:]))
