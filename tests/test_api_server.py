"""Against a live uvicorn on 127.0.0.1 (conftest's server_url): client disconnects free engine slots; 32 streaming clients at once."""

from __future__ import annotations

import asyncio
import time

import httpx2
import openai
import pytest

from constrained.testing import validation_errors

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "A record, please."}]
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 999},
        "name": {"type": "string", "maxLength": 6},
        "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    },
    "required": ["id", "name", "flags"],
    "additionalProperties": False,
}


async def wait_until_idle(api_engine, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while api_engine.engine.scheduler.running or api_engine.engine.scheduler.waiting:
        assert time.monotonic() < deadline, "the engine still holds the request"
        await asyncio.sleep(0.02)


async def test_stream_disconnect_frees_the_engine_slot(server_url, api_engine):
    await wait_until_idle(api_engine)
    async with httpx2.AsyncClient(base_url=server_url) as http:
        request = {"model": MODEL, "messages": USER, "stream": True, "max_tokens": 3000}
        async with http.stream("POST", "/v1/chat/completions", json=request) as response:
            frames = 0
            async for line in response.aiter_lines():
                frames += line.startswith("data: ")
                if frames == 4:
                    break
            assert api_engine.engine.scheduler.running  # still generating when the client leaves
    await wait_until_idle(api_engine)


async def test_non_stream_disconnect_frees_the_engine_slot(server_url, api_engine):
    await wait_until_idle(api_engine)
    async with httpx2.AsyncClient(base_url=server_url, timeout=0.3) as http:
        with pytest.raises(httpx2.TimeoutException):
            await http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, "max_tokens": 3000})
    await wait_until_idle(api_engine)


async def test_32_concurrent_streaming_clients(server_url, finishing_bias):
    client = openai.AsyncOpenAI(api_key="unused", base_url=f"{server_url}/v1", max_retries=0)
    response_format = {"type": "json_schema", "json_schema": {"name": "Record", "strict": True, "schema": SCHEMA}}

    async def one(seed: int) -> tuple[str, str]:
        stream = await client.chat.completions.create(
            model=MODEL, messages=USER, stream=True, seed=seed, max_tokens=80, response_format=response_format,
            logit_bias=finishing_bias)
        text, finish = "", None
        async for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        return text, finish

    results = await asyncio.gather(*(one(seed) for seed in range(32)))
    assert all(finish in ("stop", "length") for _, finish in results)
    finished = [text for text, finish in results if finish == "stop"]
    assert len(finished) >= 16, [finish for _, finish in results]
    for text in finished:
        assert validation_errors(SCHEMA, text) == [], text
    await client.close()


def test_readme_quickstart_runs_against_a_live_server(server_url):
    """examples/quickstart.py is what the README shows: it must run as written."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    done = subprocess.run([sys.executable, str(script), f"{server_url}/v1", MODEL],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["create", "parse", "stream"], done.stdout


async def test_prompts_are_prepared_off_the_event_loop(openai_client, monkeypatch):
    """Templating and tokenising (seconds for an 8 MB message) run in a worker thread, so the event loop keeps
    serving /health and every stream meanwhile."""
    import threading

    import api.completions
    import api.pipeline

    threads = []

    def recording(original):
        def wrapper(*args, **kwargs):
            threads.append(threading.get_ident())
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(api.pipeline, "render_prompt", recording(api.pipeline.render_prompt))
    monkeypatch.setattr(api.completions, "_prompt_ids", recording(api.completions._prompt_ids))
    await openai_client.chat.completions.create(model="tiny-qwen3", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=1)
    await openai_client.responses.create(model="tiny-qwen3", input="hi", max_output_tokens=1)
    await openai_client.completions.create(model="tiny-qwen3", prompt="hi", max_tokens=1)
    assert len(threads) == 3 and threading.get_ident() not in threads


def test_an_http_request_uvicorn_cannot_parse_gets_the_json_error_body(server_url):
    """A malformed request or a header flood never reaches the app: uvicorn answers it, in OpenAI's error
    shape too."""
    import json
    import socket

    host, port = server_url.removeprefix("http://").split(":")
    # Just over h11's 16 kB limit, so that one read takes it all: bytes left unread when the server closes
    # would make it reset the connection, and the reset can overtake its answer.
    flood = "".join(f"X-Flood-{i}: {'a' * 1000}" + "\r\n" for i in range(24))
    for request in ("GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                    f"GET /health HTTP/1.1\r\nHost: x\r\n{flood}"):  # 24 kB of headers, never ended
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request.encode())
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower(), head
        assert json.loads(payload)["error"]["code"] == "invalid_http_request"


async def test_every_response_carries_a_request_id(api_app):
    """The client's x-request-id when it sends a usable one, else the completion id, else one made up."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=api_app), base_url="http://testserver")
    body = {"model": "tiny-qwen3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    mine = await http.post("/v1/chat/completions", json=body, headers={"x-request-id": "trace-42"})
    assert mine.headers["x-request-id"] == "trace-42"
    theirs = await http.post("/v1/chat/completions", json=body)
    assert theirs.headers["x-request-id"] == theirs.json()["id"]
    streamed = await http.post("/v1/chat/completions", json={**body, "stream": True},
                               headers={"x-request-id": "bad id with spaces"})
    assert streamed.headers["x-request-id"].startswith("chatcmpl-")
    responses = await http.post("/v1/responses", json={"model": "tiny-qwen3", "input": "hi", "max_output_tokens": 2})
    assert responses.headers["x-request-id"] == responses.json()["id"]
    refused = await http.post("/v1/chat/completions", json={**body, "foo": 1})
    assert refused.status_code == 400 and refused.headers["x-request-id"].startswith("req-")
    assert (await http.get("/health")).headers["x-request-id"].startswith("req-")
