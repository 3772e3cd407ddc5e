"""Non-streamed chat completions through the official `openai` SDK, in-process.

The model has random weights, so outputs are checked for what the service guarantees: every output
that finished with "stop" validates against its schema. A logit bias toward JSON punctuation makes
most of them finish, and each test counts the finished ones (cut outputs prove nothing).
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
from typing import Annotated, Literal, Optional

import httpx2
import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, StringConstraints

from constrained.testing import validation_errors

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "Describe a thing in JSON."}]

POINT = {
    "type": "object",
    "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}, "label": {"type": "string", "maxLength": 3}},
    "required": ["x", "label"],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["circle", "square", "line"]},
        "center": {"$ref": "#/$defs/Point"},
        "corners": {"type": "array", "items": {"$ref": "#/$defs/Point"}, "minItems": 1, "maxItems": 2},
        "note": {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}]},
        "size": {"type": "number", "minimum": 0, "maximum": 10},
        "filled": {"type": "boolean"},
    },
    "required": ["kind", "center", "corners", "note", "size", "filled"],
    "additionalProperties": False,
    "$defs": {"Point": POINT},
}


def json_schema_format(schema: dict, *, strict: bool = True) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "Shape", "strict": strict, "schema": schema}}


def assert_finished_outputs_validate(choices, schema: dict, *, at_least: int) -> None:
    finished = [c for c in choices if c.finish_reason == "stop"]
    assert len(finished) >= at_least, [c.finish_reason for c in choices]
    for choice in finished:
        assert validation_errors(schema, choice.message.content) == [], choice.message.content
    assert all(c.finish_reason in ("stop", "length") for c in choices)


@pytest.mark.parametrize("strict", [True, pytest.param(False, marks=pytest.mark.slow)])
async def test_json_schema_outputs_validate(openai_client, finishing_bias, strict):
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, response_format=json_schema_format(SCHEMA, strict=strict),
        n=8, seed=11, max_completion_tokens=120, logit_bias=finishing_bias,
    )
    assert len(response.choices) == 8 and [c.index for c in response.choices] == list(range(8))
    assert_finished_outputs_validate(response.choices, SCHEMA, at_least=4)
    for choice in response.choices:
        assert choice.message.role == "assistant" and choice.message.refusal is None
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.model == MODEL and response.system_fingerprint.startswith("fp_")
    usage = response.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > usage.prompt_tokens > 0


async def test_json_object_output_is_an_object(openai_client, finishing_bias):
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, response_format={"type": "json_object"},
        n=6, seed=3, max_tokens=80, logit_bias=finishing_bias,
    )
    finished = [c for c in response.choices if c.finish_reason == "stop"]
    assert finished, [c.finish_reason for c in response.choices]
    for choice in finished:
        assert isinstance(json.loads(choice.message.content), dict)


class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(BaseModel):
    """A size, as the SDK sends it: description, bounds and a non-null default kept in the schema."""

    width: int = Field(ge=0, le=99, description="Width in units.")
    unit: Literal["cm", "mm"] = "cm"


class Item(BaseModel):
    name: Annotated[str, StringConstraints(max_length=5)]
    color: Color
    size: Size
    tags: list[Literal["new", "old"]] = Field(max_length=2)
    note: Optional[Annotated[str, StringConstraints(max_length=4)]]
    made: datetime.date


async def test_parse_with_pydantic_model(openai_client, finishing_bias):
    """`parse` sends a strict schema with title/description/default/$defs/format; parsed models come back."""

    async def attempt(seed: int):
        try:
            return await openai_client.chat.completions.parse(
                model=MODEL, messages=USER, response_format=Item, seed=seed, max_tokens=100,
                logit_bias=finishing_bias,
            )
        except openai.LengthFinishReasonError:
            return None

    results = await asyncio.gather(*(attempt(seed) for seed in range(8)))
    parsed = [r for r in results if r is not None]
    assert len(parsed) >= 3, f"only {len(parsed)} of 8 finished"
    schema = to_strict_json_schema(Item)
    for completion in parsed:
        message = completion.choices[0].message
        assert isinstance(message.parsed, Item) and message.refusal is None
        assert validation_errors(schema, message.content) == []


async def test_seed_reproduces_and_n_uses_consecutive_seeds(openai_client):
    async def run(seed: int, n: int = 1) -> list[str]:
        response = await openai_client.chat.completions.create(
            model=MODEL, messages=USER, seed=seed, n=n, max_tokens=12)
        return [c.message.content for c in response.choices]

    first, again, pair, other = await asyncio.gather(run(7), run(7), run(7, n=2), run(8))
    assert first == again
    assert pair == first + other  # choice i samples with seed + i
    assert first != other


async def test_stop_string_cuts_free_text(openai_client):
    base = await openai_client.chat.completions.create(model=MODEL, messages=USER, seed=5, max_tokens=24)
    text = base.choices[0].message.content
    stop = text[len(text) // 2: len(text) // 2 + 2]
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, seed=5, max_tokens=24, stop=[stop, "unlikely-stop"])
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == text[: text.index(stop)]


async def test_logprobs_name_tokens_with_their_bytes(openai_client, finishing_bias):
    for response_format in (None, json_schema_format(SCHEMA)):
        extra = {"response_format": response_format} if response_format else {}
        response = await openai_client.chat.completions.create(
            model=MODEL, messages=USER, seed=2, max_tokens=40, logprobs=True, top_logprobs=3,
            logit_bias=finishing_bias, **extra)
        choice = response.choices[0]
        tokens = choice.logprobs.content
        assert len(tokens) == response.usage.completion_tokens
        assert b"".join(bytes(t.bytes) for t in tokens).decode() == choice.message.content
        assert any(len(token.top_logprobs) == 3 for token in tokens)
        for token in tokens:
            assert token.logprob <= 0 and 1 <= len(token.top_logprobs) <= 3  # fewer where the schema forbids
            tops = [t.logprob for t in token.top_logprobs]
            assert tops == sorted(tops, reverse=True) and token.logprob <= tops[0] + 1e-6
            if token.token.isprintable() and "\\x" not in token.token:
                assert token.token.encode() == bytes(token.bytes)


async def test_max_tokens_and_max_completion_tokens_both_limit(openai_client):
    for field in ("max_tokens", "max_completion_tokens"):
        response = await openai_client.chat.completions.create(model=MODEL, messages=USER, seed=1, **{field: 3})
        assert response.choices[0].finish_reason == "length" and response.usage.completion_tokens == 3


async def test_messages_of_every_role_and_text_parts(openai_client):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer "}, {"type": "text", "text": "in JSON."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 3}"},
        {"role": "user", "content": "And now?"},
    ]
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=2, user="u-1", metadata={"team": "a"})
    assert response.choices[0].finish_reason == "length"


async def test_models_endpoint_lists_the_served_model(openai_client):
    models = await openai_client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert (await openai_client.models.retrieve(MODEL)).id == MODEL


async def test_openapi_docs_are_served(api_app):
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=api_app), base_url="http://testserver")
    spec = (await http.get("/openapi.json")).json()
    assert {"/v1/chat/completions", "/v1/models", "/health"} <= set(spec["paths"])
    assert (await http.get("/docs")).status_code == 200
