"""The last line of defence (constrained/output_check.py): what it refuses, and that a refused output never
leaves the server."""

from __future__ import annotations

import json

import openai
import pytest

from constrained.constraints import Constraint
from constrained.output_check import OutputCheck

PET = {"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
       "required": ["name"], "additionalProperties": False}
TOOLS = [("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
         ("noop", {"type": "object"})]


def call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


@pytest.mark.parametrize("constraint, text, valid", [
    (Constraint.json_schema(PET), '{"name": "Rex", "email": "rex@example.com"}', True),
    (Constraint.json_schema(PET), '{"name": "Rex", "email": "not an email"}', False),  # formats are checked
    (Constraint.json_schema(PET), '{"name": "Rex", "age": 3}', False),
    (Constraint.json_schema(PET), '{"name": "Rex"', False),
    (Constraint.json_object(), '{"a": [1]}', True),
    (Constraint.json_object(), '[1]', False),
    (Constraint.choice(["red", "green"]), "green", True),
    (Constraint.choice(["red", "green"]), "blue", False),
    (Constraint.regex("[a-z]+"), "NOT CHECKED 1", True),  # no exact Python twin of llguidance's regex
    (Constraint.tool_calls(TOOLS), call("get_weather", '{"city": "Oslo"}'), True),
    (Constraint.tool_calls(TOOLS), call("get_weather", '{"town": "Oslo"}'), False),
    (Constraint.tool_calls(TOOLS), call("delete_all", "{}"), False),
    (Constraint.tool_calls(TOOLS), "Just text, no call.", True),
    (Constraint.tool_calls(TOOLS, mode="required"), "Just text, no call.", False),
    (Constraint.tool_calls(TOOLS, mode="noop"), call("get_weather", '{"city": "Oslo"}'), False),
    (Constraint.tool_calls(TOOLS, answer=PET), '{"name": "Rex"}', True),
    (Constraint.tool_calls(TOOLS, answer=PET), '{"nom": "Rex"}', False),
    (Constraint.reasoning(Constraint.json_schema(PET), budget=8), '<think>\nhm\n</think>\n\n{"name": "Rex"}', True),
    (Constraint.reasoning(Constraint.json_schema(PET), budget=8), '<think>\nhm\n</think>\n\n{"name": 1}', False),
])
def test_what_is_refused(constraint, text, valid):
    check = OutputCheck()
    reasoning, tools = constraint.kind == "reasoning", constraint.kind == "tool_calls"
    errors = check.errors(constraint, text, reasoning=reasoning, tools=tools) if OutputCheck.applies(constraint) else []
    assert (errors == []) == valid, errors


async def test_a_refused_output_never_leaves_the_server(api_app, openai_client, monkeypatch):
    """Were a backend to let an invalid output through, the client gets a 500 constraint_failed (an error frame
    in a stream), never the content; the refusal is counted."""
    pipeline = api_app.state.pipeline
    monkeypatch.setattr(pipeline.output_check, "errors", lambda *args, **kwargs: ["a backend bug"])
    before = api_app.state.metrics.output_check_failures._value.get()
    fmt = {"type": "json_schema", "json_schema": {"name": "pet", "schema": PET, "strict": True}}
    messages = [{"role": "user", "content": "A pet."}]
    bias = {str(t): 100 for t in pipeline.tokenizer.encode('{"name": "Rex"}')}  # finish fast: a short valid pet
    with pytest.raises(openai.InternalServerError) as raised:
        await openai_client.chat.completions.create(model="tiny-qwen3", messages=messages, response_format=fmt,
                                                    max_tokens=64, seed=0, logit_bias=bias)
    assert raised.value.status_code == 500 and raised.value.body["code"] == "constraint_failed"
    assert "Rex" not in json.dumps(raised.value.body)
    stream = await openai_client.chat.completions.create(model="tiny-qwen3", messages=messages, response_format=fmt,
                                                         max_tokens=64, seed=0, logit_bias=bias, stream=True)
    with pytest.raises(openai.APIError, match="withheld"):
        async for chunk in stream:
            assert not chunk.choices or chunk.choices[0].finish_reason is None
    assert api_app.state.metrics.output_check_failures._value.get() - before == 2
