"""Streamed chat completions: the SDK's `stream` helper, and the raw SSE frames checked one by one."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import httpx2
import openai
import pytest
from pydantic import BaseModel, StringConstraints

from constrained.engine.sequence import SequenceOutput
from constrained.testing import validation_errors

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "Give me a record."}]
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0, "maximum": 99},
        "tag": {"type": "string", "enum": ["a", "b"]},
        "words": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    },
    "required": ["id", "tag", "words"],
    "additionalProperties": False,
}


class Record(BaseModel):
    id: int
    tag: Literal["a", "b"]
    word: Annotated[str, StringConstraints(max_length=3)]


@pytest.fixture
def http(api_app):
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=api_app), base_url="http://testserver")


async def sse_frames(http, body: dict) -> list[str]:
    """The `data:` payloads of the response, after checking the framing byte for byte."""
    response = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    raw = response.text
    assert raw.endswith("data: [DONE]\n\n")
    frames = raw.split("\n\n")[:-1]
    assert all(f.startswith("data: ") and "\n" not in f for f in frames)
    return [f.removeprefix("data: ") for f in frames]


async def test_raw_frames_follow_openai(http, finishing_bias):
    payloads = await sse_frames(http, {
        "stream": True, "stream_options": {"include_usage": True}, "n": 2, "seed": 4, "max_tokens": 60,
        "logprobs": True, "response_format": {"type": "json_schema", "json_schema": {"name": "R", "schema": SCHEMA}},
        "logit_bias": finishing_bias,
    })
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    *choice_chunks, usage_chunk = chunks
    for chunk in choice_chunks:
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == MODEL
        assert chunk["usage"] is None and len(chunk["choices"]) == 1
    texts, finish, counted = {0: "", 1: ""}, {}, {0: 0, 1: 0}
    seen_role = set()
    for chunk in choice_chunks:
        choice = chunk["choices"][0]
        index, delta = choice["index"], choice["delta"]
        if index not in seen_role:  # the first delta of each choice carries the role, in index order
            assert delta == {"role": "assistant", "content": ""} and index == len(seen_role)
            seen_role.add(index)
            continue
        assert "role" not in delta and index not in finish  # nothing after a choice's finish_reason
        texts[index] += delta.get("content", "")
        counted[index] += len((choice["logprobs"] or {}).get("content") or [])
        if choice["finish_reason"] is not None:
            finish[index] = choice["finish_reason"]
    assert set(finish) == {0, 1}
    for index, reason in finish.items():
        if reason == "stop":
            assert validation_errors(SCHEMA, texts[index]) == [], texts[index]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == counted[0] + counted[1]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_without_include_usage_no_usage_chunk(http):
    payloads = await sse_frames(http, {"stream": True, "max_tokens": 3, "seed": 1})
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["choices"] and c["usage"] is None for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_sdk_stream_helper_parses_the_result(openai_client, finishing_bias):
    finished = 0
    for seed in range(6):
        try:
            async with openai_client.chat.completions.stream(
                model=MODEL, messages=USER, response_format=Record, seed=seed, max_tokens=60,
                logit_bias=finishing_bias, stream_options={"include_usage": True},
            ) as stream:
                deltas = [event.delta async for event in stream if event.type == "content.delta"]
                completion = await stream.get_final_completion()
        except openai.LengthFinishReasonError:
            continue
        finished += 1
        message = completion.choices[0].message
        assert isinstance(message.parsed, Record) and "".join(deltas) == message.content
        assert completion.usage.completion_tokens > 0
    assert finished >= 2


async def test_sdk_create_stream_n2(openai_client):
    stream = await openai_client.chat.completions.create(model=MODEL, messages=USER, stream=True, n=2, max_tokens=5)
    reasons = {}
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert reasons == {0: "length", 1: "length"}


async def test_error_after_the_stream_started_is_one_error_frame(http, api_engine, monkeypatch):
    async def fail_midway(prompt_ids, params, constraint=None, *, request_id=""):
        yield SequenceOutput(request_id, 0, "{", (90,), prompt_tokens=len(prompt_ids), completion_tokens=1)
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(api_engine, "generate", fail_midway)
    payloads = await sse_frames(http, {"stream": True})
    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])
    assert error == {"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "param": None, "code": None}}
    assert json.loads(payloads[1])["choices"][0]["delta"] == {"content": "{"}


async def test_sdk_raises_on_the_error_frame(openai_client, api_engine, monkeypatch):
    async def fail_midway(prompt_ids, params, constraint=None, *, request_id=""):
        yield SequenceOutput(request_id, 0, "x", (90,), prompt_tokens=len(prompt_ids), completion_tokens=1)
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(api_engine, "generate", fail_midway)
    stream = await openai_client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    with pytest.raises(openai.APIError, match="server had an error"):
        async for _ in stream:
            pass
