"""POST /v1/responses through the `openai` SDK (create, parse, stream) and as raw SSE events, on
tiny-qwen3-json (the Responses API has no logit_bias: that model's head makes outputs finish)."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from pydantic import BaseModel

from constrained.testing import validation_errors

MODEL = "tiny-qwen3-json"


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    home: Address
    previous: list[Address]


PERSON = openai.pydantic_function_tool(Person)["function"]["parameters"]  # strict, with $defs
TOOLS = [{"type": "function", "name": "save_person", "parameters": PERSON, "strict": True},
         {"type": "function", "name": "noop", "parameters": {"type": "object", "properties": {}}}]


async def test_create_with_a_schema_and_plain_text(json_model_client):
    client = json_model_client
    shaped = [await client.responses.create(
        model=MODEL, input="Who lives where?", max_output_tokens=200, extra_body={"seed": seed},
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}})
        for seed in range(4)]
    completed = [r for r in shaped if r.status == "completed"]
    assert len(completed) >= 2, [r.status for r in shaped]
    for response in completed:
        assert response.id.startswith("resp_") and response.object == "response" and response.model == MODEL
        message, = response.output
        assert message.type == "message" and message.id.startswith("msg_") and message.status == "completed"
        assert validation_errors(PERSON, response.output_text) == [], response.output_text
        assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
        assert response.text.format.type == "json_schema" and response.store is False
    plain = await client.responses.create(model=MODEL, input="hi", instructions="Be brief.", max_output_tokens=40)
    assert plain.status in ("completed", "incomplete") and plain.output[0].type == "message"


async def test_parse_nested_model(json_model_client):
    parsed = []
    for seed in range(4):
        response = await json_model_client.responses.parse(model=MODEL, input="Extract", text_format=Person,
                                                           max_output_tokens=200, extra_body={"seed": seed})
        if response.status == "completed":
            parsed.append(response.output_parsed)
    assert len(parsed) >= 2 and all(isinstance(p, Person) for p in parsed)


async def test_stream_helper_gives_the_same_response(json_model_client):
    """The SDK's stream helper accumulates the events into the response the same seed gives unstreamed."""
    kwargs = dict(model=MODEL, input="Extract", text_format=Person, max_output_tokens=200)
    compared = 0
    for seed in range(4):
        whole = await json_model_client.responses.parse(extra_body={"seed": seed}, **kwargs)
        if whole.status != "completed":
            continue
        async with json_model_client.responses.stream(extra_body={"seed": seed}, **kwargs) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        assert final.output_text == whole.output_text == "".join(deltas) and len(deltas) > 1
        assert final.output_parsed == whole.output_parsed
        compared += 1
    assert compared >= 2


async def test_raw_events_follow_the_responses_api(json_model_app):
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=json_model_app), base_url="http://testserver")
    response = await http.post("/v1/responses", json={
        "model": MODEL, "input": "Save a person", "tools": TOOLS, "tool_choice": "required", "stream": True,
        "max_output_tokens": 300, "seed": 1, "parallel_tool_calls": False})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = [f.split("\n") for f in response.text.split("\n\n") if f]
    events = []
    for kind, data in frames:
        event = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {event['type']}"
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] in ("response.completed", "response.incomplete") and "[DONE]" not in response.text
    final = events[-1]["response"]
    call, = final["output"]  # one call: parallel_tool_calls is false
    assert call["type"] == "function_call" and call["call_id"].startswith("call_") and call["id"].startswith("fc_")
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert arguments == call["arguments"] and all(e.get("item_id", call["id"]) == call["id"] for e in events[2:-1])
    if final["status"] == "completed":
        parameters = {tool["name"]: tool["parameters"] for tool in TOOLS}[call["name"]]
        assert validation_errors(parameters, arguments) == []
    else:
        assert final["incomplete_details"] == {"reason": "max_output_tokens"} and call["status"] == "incomplete"


async def test_tools_with_nested_models_and_the_round_trip(json_model_client):
    """Calls validate against parameters with $defs; a call and its output go back as input items."""
    calls = []
    for seed in range(4):
        response = await json_model_client.responses.create(
            model=MODEL, input="Save Ada", tools=TOOLS, max_output_tokens=300, extra_body={"seed": seed},
            tool_choice={"type": "function", "name": "save_person"})
        assert len(response.output) == 1  # a named tool_choice makes exactly one call
        if response.status == "completed":
            calls.append(response.output[0])
    assert len(calls) >= 2
    for call in calls:
        assert call.type == "function_call" and call.name == "save_person"
        assert validation_errors(PERSON, call.arguments) == []
    follow_up = await json_model_client.responses.create(
        model=MODEL, max_output_tokens=30, tools=TOOLS, tool_choice="none", input=[
            {"role": "user", "content": "Save Ada"},
            {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
             "arguments": calls[0].arguments, "id": calls[0].id, "status": "completed"},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "saved"}])
    assert [item.type for item in follow_up.output] == ["message"]


async def test_reasoning_comes_first(json_model_client):
    response = await json_model_client.responses.create(
        model=MODEL, input="Think, then answer", reasoning={"effort": "low"}, max_output_tokens=400,
        text={"format": {"type": "json_object"}}, extra_body={"seed": 0})
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].content[0].type == "reasoning_text"
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    if response.status == "completed":
        assert isinstance(json.loads(response.output_text), dict)


@pytest.mark.parametrize("fields, param", [
    ({"store": True}, "store"),
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
    ({"text": {"format": {"type": "json_schema", "name": "x",
                          "schema": {"type": "array", "uniqueItems": True, "items": {"type": "boolean"}}}}},
     "text.format"),
    ({"text": {"format": {"type": "json_object"}}, "structured_outputs": {"regex": "a+"}}, "structured_outputs"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
])
async def test_refusals_name_the_field(json_model_app, fields, param):
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=json_model_app), base_url="http://testserver")
    response = await http.post("/v1/responses", json={"model": MODEL, "input": "hi", "max_output_tokens": 5, **fields})
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
