"""`GET /metrics`: scraped with prometheus_client's own parser after real requests; the counts move as they should."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

import api.metrics as metrics_module
from api.app import create_app, serving
from constrained.compiler import Compiler
from constrained.compiler.disk_cache import DiskCache
from constrained.constraints import Constraint
from constrained.engine.async_engine import AsyncEngine
from constrained.engine.params import SamplingParams
from constrained.engine.stats import Histogram

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"alpha": {"type": "integer"}, "beta": {"type": "boolean"}},
          "required": ["alpha", "beta"], "additionalProperties": False}


def client_for(app) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://testserver")


@asynccontextmanager
async def running(app):
    async with serving(app):
        yield client_for(app)


def make_app(engine, **kwargs):
    return create_app(engine, model_name=MODEL, **kwargs)


async def scrape(http, **kwargs) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics as {(name, sorted labels): value}."""
    response = await http.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def idle(engine: AsyncEngine) -> None:
    for _ in range(1000):
        waiting, running, _ = engine.engine.occupancy()
        if not waiting and not running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine never went idle")


async def test_counts_move_with_real_requests(api_engine):
    app = make_app(api_engine)
    async with running(app) as http:
        await idle(api_engine)
        before = await scrape(http)
        # a schema no other test compiles: one compile (a miss), then the same schema again (a hit)
        schema = {**SCHEMA, "properties": {**SCHEMA["properties"], "metrics_only": {"type": "string"}}}
        json_schema = {"model": MODEL, "messages": USER, "max_tokens": 40, "seed": 1,
                       "response_format": {"type": "json_schema", "json_schema": {"name": "m", "schema": schema}}}
        finishes = []
        for _ in range(2):
            response = await http.post("/v1/chat/completions", json=json_schema)
            assert response.status_code == 200
            finishes.append(response.json()["choices"][0]["finish_reason"])
        stream = {"model": MODEL, "messages": USER, "max_tokens": 5, "seed": 2, "stream": True}
        async with http.stream("POST", "/v1/chat/completions", json=stream) as response:
            assert response.status_code == 200
            assert [line async for line in response.aiter_lines()][-2:] == ["data: [DONE]", ""]
        regex = {"model": MODEL, "prompt": "x", "max_tokens": 5, "structured_outputs": {"regex": r"[a-c]{2}\d"}}
        assert (await http.post("/v1/completions", json=regex)).status_code == 200
        choice = {"model": MODEL, "prompt": "x", "max_tokens": 5, "structured_outputs": {"choice": ["red", "blue"]}}
        response = await http.post("/v1/completions", json=choice)
        assert response.status_code == 200
        finishes.append(response.json()["choices"][0]["finish_reason"])
        checkable = finishes.count("stop")
        assert (await http.post("/v1/chat/completions", json={**stream, "model": "nope"})).status_code == 404
        assert (await http.get("/v1/models")).status_code == 200
        assert (await http.get("/no/such/route")).status_code == 404
        await idle(api_engine)
        after = await scrape(http)

    chat, completions = "/v1/chat/completions", "/v1/completions"
    requests = "constrained_requests_total"
    assert delta(before, after, requests, route=chat, status="200", constraint="json_schema") == 2
    assert delta(before, after, requests, route=chat, status="200", constraint="none") == 1
    assert delta(before, after, requests, route=chat, status="404", constraint="none") == 1
    assert delta(before, after, requests, route=completions, status="200", constraint="regex") == 1
    assert delta(before, after, requests, route=completions, status="200", constraint="choice") == 1
    assert delta(before, after, requests, route="/v1/models", status="200", constraint="none") == 1
    assert delta(before, after, requests, route="other", status="404", constraint="none") == 1
    assert value(after, requests, route="/metrics", status="200", constraint="none") >= 1  # the first scrape

    generations = 5  # the 404 never reached the engine
    assert delta(before, after, "constrained_time_to_first_token_seconds_count") == generations
    assert delta(before, after, "constrained_time_to_first_token_seconds_sum") > 0
    assert 1 <= delta(before, after, "constrained_time_per_output_token_seconds_count") <= generations
    assert delta(before, after, "constrained_request_duration_seconds_count", route=chat) == 4
    assert delta(before, after, "constrained_request_duration_seconds_bucket", route=chat, le="+Inf") == 4
    assert delta(before, after, "constrained_queue_wait_seconds_count") == generations
    assert delta(before, after, "constrained_engine_step_duration_seconds_count") >= 5
    sampled = delta(before, after, "constrained_output_tokens_total", source="sampled")
    forced = delta(before, after, "constrained_output_tokens_total", source="forced")
    assert sampled >= generations and forced > 0  # keys and punctuation of the schema are forced
    assert value(after, "constrained_masked_redraws_total") == api_engine.engine.stats.redraws  # read at scrape
    assert delta(before, after, "constrained_prefix_cache_queried_tokens_total") > 0  # every prompt is looked up
    assert delta(before, after, "constrained_output_checks_total") == checkable  # json_schema and choice, if "stop"
    assert delta(before, after, "constrained_output_check_failures_total") == 0
    assert delta(before, after, "constrained_compile_cache_misses_total", cache="memory") >= 1  # this schema
    assert delta(before, after, "constrained_compile_cache_hits_total", cache="memory") >= 1  # it again
    assert delta(before, after, "constrained_compile_duration_seconds_count") >= 1
    for gauge in ("constrained_sequences_waiting", "constrained_sequences_running", "constrained_kv_cache_columns_used"):
        assert value(after, gauge) == 0  # all done
    assert delta(before, after, "constrained_queue_rejections_total") == 0
    assert delta(before, after, "constrained_aborted_requests_total") == 0


async def test_abort_and_gauges_while_running(api_engine):
    app = make_app(api_engine)
    async with running(app) as http:
        await idle(api_engine)
        before = await scrape(http)
        outputs = api_engine.generate([1, 2, 3], SamplingParams(max_tokens=500, seed=3, n=2))
        await anext(outputs)  # running now
        during = await scrape(http)
        assert value(during, "constrained_sequences_running") + value(during, "constrained_sequences_waiting") == 2
        assert value(during, "constrained_kv_cache_columns_used") >= 2 * 3
        await outputs.aclose()  # the client went away: aborted at the next step
        await idle(api_engine)
        after = await scrape(http)
    assert delta(before, after, "constrained_aborted_requests_total") == 1
    assert value(after, "constrained_sequences_running") == 0


async def test_full_queue_counts_a_429(tiny_model, compiler):
    engine = AsyncEngine(tiny_model, compiler=compiler, max_batch_size=1, max_waiting=1)
    app = make_app(engine)
    try:
        async with running(app) as http:
            before = await scrape(http)
            body = {"model": MODEL, "messages": USER, "max_tokens": 2, "n": 3}  # 1 runs, 1 may wait
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 429
            after = await scrape(http)
    finally:
        engine.shutdown()
    assert delta(before, after, "constrained_queue_rejections_total") == 1
    assert delta(before, after, "constrained_requests_total", route="/v1/chat/completions", status="429",
                 constraint="none") == 1


async def test_metrics_need_the_key_when_the_app_has_one(api_engine):
    app = make_app(api_engine, api_key="sekret")
    async with running(app) as http:
        assert (await http.get("/metrics")).status_code == 401
        samples = await scrape(http, headers={"Authorization": "Bearer sekret"})
    assert value(samples, "constrained_requests_total", route="/metrics", status="401", constraint="none") == 1


async def test_each_app_has_its_own_registry(api_engine):
    first, second = make_app(api_engine), make_app(api_engine)
    assert first.state.metrics.registry is not second.state.metrics.registry


@pytest.mark.slow  # three compilers, each building its backend
def test_compile_cache_counters_memory_and_disk(tiny_vocab, tmp_path):
    def compiler(**kwargs) -> Compiler:
        return Compiler(tiny_vocab.tokenizer, vocab_rows=tiny_vocab.vocab_rows, eos_token_ids=tiny_vocab.eos_token_ids,
                        disk_cache=DiskCache(tmp_path), **kwargs)

    first = compiler(cache_size=1)
    first.compile(Constraint.regex(r"[a-c]{2}\d"))
    first.compile(Constraint.regex(r"[a-c]{2}\d"))
    first.compile(Constraint.regex(r"x+y"))  # evicts the first (one grammar kept)
    with pytest.raises(Exception):
        first.compile(Constraint.json_schema({"type": "string", "pattern": "(?<=a)b"}))  # look-behind: refused
    memory, disk = first.stats, first.disk_cache.stats
    assert (memory.hits, memory.misses, memory.failures, memory.evictions) == (1, 3, 1, 1)
    assert memory.compile_seconds.count == 3
    assert (disk.hits, disk.misses) == (0, 3)  # the refused schema got as far as the backend

    second = compiler()  # a restarted server: both grammars load from disk
    second.compile(Constraint.regex(r"[a-c]{2}\d"))
    assert (second.disk_cache.stats.hits, second.disk_cache.stats.misses) == (1, 0)
    for entry in tmp_path.glob("*/*"):
        entry.write_bytes(b"damaged")
    third = compiler()
    third.compile(Constraint.regex(r"x+y"))
    assert (third.disk_cache.stats.failures, third.disk_cache.stats.hits) == (1, 0)

    small = DiskCache(tmp_path / "small", max_bytes=100)
    small.put("a", b"x" * 60)
    small.put("b", b"y" * 60)  # over the bound: the older entry goes
    assert small.stats.evictions >= 1


def test_histogram_buckets_are_cumulative_and_inclusive():
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.1, 0.5, 2.0):
        histogram.observe(seconds)
    buckets, total = histogram.snapshot()
    assert buckets == [("0.1", 1), ("1.0", 2), ("+Inf", 3)]
    assert total == pytest.approx(2.6) and histogram.count == 3


def test_constraint_kind_labels():
    kind = metrics_module.constraint_kind
    assert kind(None) == "none"
    assert kind(Constraint.json_object()) == "json_object"
    assert kind(Constraint.tool_calls([("f", {"type": "object"})])) == "tools"
    assert kind(Constraint.reasoning(Constraint.regex("a"), budget=4)) == "regex"
    assert kind(Constraint.reasoning(None, budget=4)) == "none"
    assert json.dumps(metrics_module.CONSTRAINT_KINDS)  # the documented label values
