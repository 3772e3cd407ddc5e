"""Prefix caching (engine/prefix_cache.py): prompts that share leading blocks reuse their keys and values, and
generate exactly what they generate without the cache."""

from __future__ import annotations

import torch

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.prefix_cache import PrefixCache
from constrained.testing import json_finishing_bias, run_until_idle

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "n": {"type": "integer"}},
          "required": ["name", "n"], "additionalProperties": False}
SYSTEM = ("You extract records from documents. Answer with one JSON object and nothing else. " * 12).strip()


def submissions(tiny_model, grammar, bias, wave: int) -> list[Submission]:
    """Requests sharing the system prompt (several blocks), each with its own document, two of them asked twice."""
    tokenizer = tiny_model.tokenizer
    subs = []
    for i in range(6):
        document = f"Document {i % 4}: the catalogue lists item {i % 4} at {10 * (i % 4)} euros."
        prompt = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": document}],
                                               add_generation_prompt=True, tokenize=False)
        params = SamplingParams(max_tokens=24, seed=100 * wave + i, logit_bias=bias if i % 2 else {},
                                temperature=0.0 if i == 5 else 1.0)
        subs.append(Submission(tokenizer.encode(prompt), params, grammar if i % 3 else None, f"w{wave}r{i}"))
    return subs


def test_cached_prefixes_give_the_same_tokens(tiny_model, compiler):
    """Two waves of requests, on an engine with the cache and one without: the second wave's prompts start
    with blocks the first computed (and the first wave's own duplicates hit within it); every choice's tokens
    are the same either way."""
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    bias = json_finishing_bias(tiny_model.tokenizer)
    cached = Engine(tiny_model, max_batch_size=4, prefix_cache_bytes=256 << 20)
    plain = Engine(tiny_model, max_batch_size=4)
    for wave in range(2):
        subs = submissions(tiny_model, grammar, bias, wave)
        assert run_until_idle(cached, subs) == run_until_idle(plain, subs)
    stats = cached.prefix_cache.stats
    assert stats.hit_tokens >= 0.5 * stats.queried_tokens  # the system prompt is most of each prompt
    assert plain.prefix_cache is None


def test_a_hit_skips_the_cached_tokens(tiny_model):
    """A prompt whose blocks are cached feeds only the rest to the model."""
    engine = Engine(tiny_model, max_batch_size=2, prefix_cache_bytes=64 << 20)
    prompt = tiny_model.tokenizer.encode(SYSTEM)
    run_until_idle(engine, [Submission(prompt, SamplingParams(max_tokens=2, seed=1))])
    engine.submit(Submission(prompt, SamplingParams(max_tokens=2, seed=1)))
    engine.step()
    seq = engine.scheduler.running[0]
    size = engine.prefix_cache.block_tokens
    assert seq.prompt_blocks_cached == (len(prompt) - 1) // size * size > 0
    assert int(engine.cache.lengths[0]) == len(prompt)  # the cached columns, then the rest, fed this step


def test_the_cache_keeps_whole_prefixes_within_its_bytes():
    cache = PrefixCache(max_bytes=3 * 4 * 16, block_tokens=4)  # three blocks of 16 float32
    tokens = list(range(17))
    keys = cache.keys(tokens)
    assert len(keys) == 4 and cache.keys(tokens[:8]) == keys[:2]
    assert cache.keys([99, *tokens[1:]])[1] != keys[1]  # a block's key depends on every token before it
    for i, key in enumerate(keys):
        cache.insert(key, torch.full((16,), float(i)))
    assert cache.bytes <= cache.max_bytes and cache.stats.evictions == 1
    assert cache.lookup(tokens) == []  # block 0 went first: nothing after it can be used
    cache.insert(keys[2], torch.full((16,), 2.0))  # already there: nothing changes
    cache.insert(keys[0], torch.zeros(16))  # block 1 is now the least recently used
    assert cache.stats.evictions == 2
    assert [float(b[0]) for b in cache.lookup(tokens[:5])] == [0.0]  # the 5th token is left to compute
    assert cache.lookup(tokens[:4]) == []
