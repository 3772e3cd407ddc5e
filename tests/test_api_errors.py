"""Every error leaves as OpenAI's body `{"error": {message, type, param, code}}` with the right status.

Never a 422, never a traceback; fields we cannot honour are refused by name with the reason.
"""

from __future__ import annotations

import asyncio
import json

import httpx2
import openai
import pytest

from api.app import create_app
from constrained.compiler import Compiler
from constrained.engine.async_engine import AsyncEngine

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "hi"}]
OBJECT = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False}


def nested_arrays(depth: int) -> dict:
    schema: dict = {}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def schema_format(schema) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def body(**fields) -> dict:
    return {"model": MODEL, "messages": USER, "max_tokens": 2, **fields}


def client_for(app, **transport) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app, **transport), base_url="http://testserver")


@pytest.fixture
def http(api_app):
    return client_for(api_app)


async def ready(app) -> None:
    for _ in range(500):
        if app.state.ready:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("app never became ready")


def assert_error(response, status: int, *, param=None, contains: str = "", code=None, type="invalid_request_error"):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type and error["param"] == param, error
    assert contains in error["message"], error
    if code is not None:
        assert error["code"] == code, error
    assert "Traceback" not in response.text
    return error


REFUSED = [
    # unknown and malformed fields
    (body(foo=1), "foo", "Unrecognized request argument supplied: foo", "unknown_parameter"),
    (body(audio={"voice": "x"}), "audio", "Unrecognized request argument", "unknown_parameter"),
    (body(temperature="hot"), "temperature", "Invalid type for 'temperature'", "invalid_type"),
    (body(stream="yes"), "stream", "Invalid type", None),
    (body(model=3), "model", "Invalid type for 'model'", None),
    ({"messages": USER}, "model", "Missing required parameter: 'model'", "missing_required_parameter"),
    (body(messages=[]), "messages", "at least 1 item", None),
    (body(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", "'user'", None),
    (body(messages=[{"role": "user"}]), "messages[0]", "need 'content'", None),
    (body(messages=[{"role": "user", "content": "x", "extra": 1}]), "messages[0].extra", "Unrecognized", None),
    (body(messages=[{"role": "tool", "content": "x"}]), "messages[0]", "tool_call_id", None),
    (body(logit_bias={"abc": 1}), "logit_bias.abc", "Invalid type", None),
    (body(response_format={"type": "xml"}), "response_format.type", "'json_schema'", None),
    (body(response_format={"type": "json_schema"}), "response_format", "'json_schema' is required", None),
    (body(response_format={"type": "json_schema", "json_schema": {"name": "bad name!", "schema": OBJECT}}),
     "response_format.json_schema.name", "pattern", None),
    (body(response_format={"type": "json_schema", "json_schema": {"name": "N"}}),
     "response_format.json_schema.schema", "Missing required parameter", None),
    # well-formed but not honoured (yet): refused by name, with the reason
    (body(tool_choice="required"), "tool_choice", "only allowed when 'tools'", None),
    (body(reasoning_effort="extreme"), "reasoning_effort", "'none', 'minimal', 'low', 'medium', 'high'", None),
    (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]),
     "messages[0].content[0]", "'image_url' are not supported", "unsupported_parameter"),
    (body(messages=[{"role": "user", "content": "x", "name": "bob"}]), "messages[0].name", "'name'",
     "unsupported_parameter"),
    # values out of range or in conflict (checked by the engine's SamplingParams)
    (body(temperature=5), "temperature", "between 0 and 2", None),
    (body(top_p=0), "top_p", "top_p", None),
    (body(n=0), "n", "n must be", None),
    (body(seed=2**64), "seed", "Invalid value for 'seed'", None),
    (body(seed=2**63), "seed", "less than or equal", None),
    (body(max_tokens=0), "max_tokens", "at least 1", None),
    (body(presence_penalty=3), "presence_penalty", "between -2 and 2", None),
    (body(logit_bias={"999999999": 1}), "logit_bias", "outside the vocabulary", None),
    (body(logit_bias={"10": 101}), "logit_bias", "outside [-100, 100]", None),
    (body(top_logprobs=2), "top_logprobs", "requires logprobs", None),
    (body(logprobs=True, top_logprobs=21), "top_logprobs", "between 0 and 20", None),
    (body(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4", None),
    (body(stop="}", response_format={"type": "json_object"}), "stop", "cannot be combined", None),
    (body(stream_options={"include_usage": True}), "stream_options", "only allowed when 'stream'", None),
    (body(max_tokens=5, max_completion_tokens=6), "max_tokens", "not both", None),
    (body(max_tokens=10**9), "messages", "maximum context length", "context_length_exceeded"),
    # values JSON cannot carry, anywhere in the request: a 400 naming where, never a 500
    (body(messages=[{"role": "user", "content": "a\ud800b"}]), "messages[0].content", "lone UTF-16 surrogate",
     "invalid_value"),
    (body(stop=["\udc00"]), "stop[0]", "lone UTF-16 surrogate", None),
    (body(tools=[{"type": "function", "function": {"name": "f", "description": "\ud800"}}]),
     "tools[0].function.description", "surrogate", None),
    (body(response_format=schema_format({"enum": ["a\ud800"]})), "response_format.json_schema.schema.enum[0]",
     "surrogate", None),
    (body(response_format=schema_format({"enum": [float("inf"), 1]})), "response_format.json_schema.schema.enum[0]",
     "NaN and Infinity", None),
    (body(response_format=schema_format({"const": float("nan")})), "response_format.json_schema.schema.const",
     "NaN and Infinity", None),
    (body(response_format=schema_format({"type": "integer", "minimum": 10**30})),
     "response_format.json_schema.schema.minimum", "beyond 64 bits", None),
    (body(response_format=schema_format({"enum": [2**64]})), "response_format.json_schema.schema.enum[0]",
     "beyond 64 bits", None),
    (body(response_format=schema_format({"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"})),
     "response_format", "draft-04, draft-06, draft-07, 2019-09, 2020-12", None),
    (body(response_format=schema_format({"type": "string", "pattern": "^a{1000000}$"})), "response_format",
     "too many expressions", None),
    (body(response_format=schema_format(nested_arrays(40))), "response_format", "nested 33 deep exceed", None),
    (body(response_format=schema_format({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                                         "$ref": "#/$defs/a"})), "response_format", "llguidance cannot enforce it", None),
    (body(max_tokens=8.5), "max_tokens", "Invalid type", None),
    (body(max_tokens="8"), "max_tokens", "Invalid type", None),
]


@pytest.mark.parametrize("payload, param, contains, code", REFUSED, ids=[f"{i}-{r[1]}" for i, r in enumerate(REFUSED)])
async def test_bad_requests_are_400_naming_the_param(http, payload, param, contains, code):
    """Each case of the corpus: its 400, then a normal request is still served."""
    response = await http.post("/v1/chat/completions", content=json.dumps(payload),
                               headers={"content-type": "application/json"})
    error = assert_error(response, 400, param=param, contains=contains, code=code)
    assert "<state>" not in error["message"]  # no grammar library internals
    assert (await http.post("/v1/chat/completions", json=body(max_tokens=1))).status_code == 200


async def test_whole_number_floats_are_integers_and_tiny_top_p_keeps_the_top_token(http):
    """As OpenAI reads them: max_tokens 8.0 is 8. A top_p so small that it times the mass underflows keeps
    the most probable token (it used to keep none, and a constrained row drew a forbidden token)."""
    response = await http.post("/v1/chat/completions", json=body(max_tokens=8.0, n=2.0, seed=3.0))
    assert response.status_code == 200 and len(response.json()["choices"]) == 2, response.text
    tiny = await http.post("/v1/chat/completions", json=body(top_p=1e-47, max_tokens=20, seed=1,
                                                             response_format={"type": "json_object"}))
    assert tiny.status_code == 200 and tiny.json()["choices"][0]["finish_reason"] in ("stop", "length"), tiny.text


@pytest.mark.parametrize("content, headers, contains", [
    (b'{"model": "tiny-qwen3", "messages": [', {"content-type": "application/json"}, "could not parse the JSON"),
    (b"[1, 2]", {"content-type": "application/json"}, "must be a JSON object"),
    (b"", {"content-type": "application/json"}, "body is missing"),
    (b'{"model": "tiny-qwen3"}', {"content-type": "text/plain"}, "Content-Type: application/json"),
])
async def test_unparseable_bodies_are_400(http, content, headers, contains):
    response = await http.post("/v1/chat/completions", content=content, headers=headers)
    assert_error(response, 400, contains=contains)


async def test_invalid_schema_names_the_path_and_keyword(http):
    schema = {"type": "object", "properties": {"x": {"type": "array", "uniqueItems": "yes"}}}
    response = await http.post("/v1/chat/completions", json=body(
        response_format={"type": "json_schema", "json_schema": {"name": "Bad", "strict": True, "schema": schema}}))
    error = assert_error(response, 400, param="response_format",
                         contains="Invalid schema for response_format 'Bad': In context=('properties', 'x'")
    assert "uniqueItems" in error["message"]


async def test_sdk_maps_errors_to_its_exception_types(openai_client):
    with pytest.raises(openai.NotFoundError) as not_found:
        await openai_client.chat.completions.create(model="gpt-4o", messages=USER)
    assert not_found.value.code == "model_not_found" and not_found.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        await openai_client.chat.completions.create(model=MODEL, messages=USER, temperature=3)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.NotFoundError):
        await openai_client.models.retrieve("gpt-4o")


async def test_unknown_route_and_method_are_openai_shaped(http):
    assert_error(await http.get("/v1/nothing"), 404, contains="Not Found")
    assert_error(await http.get("/v1/chat/completions"), 405, contains="Method Not Allowed")


async def test_api_key_guards_every_v1_route_but_not_health(api_engine):
    app = create_app(api_engine, model_name=MODEL, api_key="sekret")
    async with app.router.lifespan_context(app):
        await ready(app)
        http = client_for(app)
        error = assert_error(await http.get("/v1/models"), 401, contains="didn't provide an API key")
        assert error["code"] is None
        wrong = await http.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401, contains="Incorrect API key", code="invalid_api_key")
        no_key_post = await http.post("/v1/chat/completions", json=body())
        assert_error(no_key_post, 401, contains="API key")
        assert (await http.get("/health")).status_code == 200
        sdk = openai.AsyncOpenAI(api_key="sekret", base_url="http://testserver/v1", http_client=http, max_retries=0)
        assert (await sdk.chat.completions.create(model=MODEL, messages=USER, max_tokens=1)).choices
        with pytest.raises(openai.AuthenticationError):
            await sdk.with_options(api_key="wrong").models.list()


async def test_body_over_the_limit_is_413(api_engine):
    app = create_app(api_engine, model_name=MODEL, max_body_bytes=2_000)
    async with app.router.lifespan_context(app):
        await ready(app)
        http = client_for(app)
        big = body(messages=[{"role": "user", "content": "x" * 5_000}])
        assert_error(await http.post("/v1/chat/completions", json=big), 413, code="request_too_large")

        async def chunked():  # no Content-Length: counted as the bytes arrive
            for _ in range(5):
                yield b" " * 1_000
        response = await http.post("/v1/chat/completions", content=chunked(),
                                   headers={"content-type": "application/json"})
        assert_error(response, 413, code="request_too_large")
        assert (await http.post("/v1/chat/completions", json=body())).status_code == 200


async def test_full_queue_is_429_with_retry_after(tiny_model, compiler):
    engine = AsyncEngine(tiny_model, compiler=compiler, max_batch_size=1, max_waiting=1)
    app = create_app(engine, model_name=MODEL)
    try:
        async with app.router.lifespan_context(app):
            await ready(app)
            response = await client_for(app).post("/v1/chat/completions", json=body(n=3))  # 1 runs, 1 may wait
            assert_error(response, 429, type="rate_limit_error", code="rate_limit_exceeded", contains="capacity")
            assert response.headers["retry-after"] == "1"
    finally:
        engine.shutdown()


async def test_compile_deadline_is_400(tiny_model, api_engine, monkeypatch):
    slow = Compiler(tiny_model.tokenizer, vocab_rows=tiny_model.vocab_rows, eos_token_ids=tiny_model.eos_token_ids,
                    deadline_s=1e-6)
    monkeypatch.setattr(api_engine, "compiler", slow)
    app = create_app(api_engine, model_name=MODEL)
    app.state.ready = True
    schema = {**OBJECT, "properties": {"a": {"type": "string", "pattern": "(ab|cd){2,40}[0-9]{3}"}}}
    response = await client_for(app).post("/v1/chat/completions", json=body(
        response_format={"type": "json_schema", "json_schema": {"name": "Slow", "schema": schema}}))
    assert_error(response, 400, param="response_format", code="compile_timeout", contains="timed out")


async def test_unexpected_failure_is_500_without_details(api_app, api_engine, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("secret internals")
        yield  # an async generator, like the real one

    monkeypatch.setattr(api_engine, "generate", broken)
    http = client_for(api_app, raise_app_exceptions=False)
    for stream in (False, True):
        response = await http.post("/v1/chat/completions", json=body(stream=stream))
        assert_error(response, 500, type="server_error", contains="The server had an error")
        assert "secret" not in response.text


async def test_not_ready_is_503(api_engine):
    app = create_app(api_engine, model_name=MODEL)  # lifespan not run: never warmed up
    http = client_for(app)
    assert (await http.get("/health")).status_code == 503
    response = await http.post("/v1/chat/completions", json=body())
    assert_error(response, 503, type="server_error", contains="not ready")
    assert response.headers["retry-after"] == "1"


async def test_docs_need_the_key_and_the_document_lists_the_real_statuses(api_engine):
    """With a key every route but /health needs it (the interactive docs are off: a browser cannot send
    it); the OpenAPI document declares OpenAI's error body for each status the API answers, and no 422."""
    open_app = create_app(api_engine, model_name=MODEL)
    document = (await client_for(open_app).get("/openapi.json")).json()
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert "422" not in chat and {"400", "404", "413", "429", "500", "503"} <= set(chat)
    assert chat["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    keyed = client_for(create_app(api_engine, model_name=MODEL, api_key="k"))
    for path in ("/docs", "/redoc"):
        assert (await keyed.get(path)).status_code == 404
    assert_error(await keyed.get("/openapi.json"), 401)
    document = (await keyed.get("/openapi.json", headers={"Authorization": "Bearer k"})).json()
    assert "401" in document["paths"]["/v1/responses"]["post"]["responses"]
