"""Tool calling through the `openai` SDK, non-streamed: every tool_choice mode, parsed arguments, and
arguments that always validate against their tool's parameters (random weights, so counted, not hoped)."""

from __future__ import annotations

import json
import random

import openai
import pytest
from pydantic import BaseModel

from constrained.constraints import Constraint
from constrained.errors import InvalidConstraint
from constrained.testing import validation_errors
from constrained.tool_calls import ToolCallParser, parse_tool_calls

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]
GLAIVE = "/work/shared/data/jsonschemabench/Glaiveai2K.jsonl"
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city", "days"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
       "required": ["a", "b"], "additionalProperties": False}


def tool(name: str, parameters: dict) -> dict:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


TOOLS = [tool("get_weather", WEATHER), tool("add", ADD)]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}


def complete_calls(choice) -> list:
    """The calls whose arguments are complete: on "length" the last one may be cut short (returned as far as
    it got, as OpenAI does)."""
    calls = choice.message.tool_calls or []
    return calls[:-1] if choice.finish_reason == "length" else calls


def check_calls(choice, schemas: dict) -> int:
    """Assert every call names a tool and every complete call's arguments validate; the number of those."""
    for call in choice.message.tool_calls or []:
        assert call.id.startswith("call_") and call.type == "function" and call.function.name in schemas
    calls = complete_calls(choice)
    for call in calls:
        assert validation_errors(schemas[call.function.name], call.function.arguments) == [], call.function.arguments
    if choice.message.tool_calls:
        assert choice.finish_reason in ("tool_calls", "length")
    return len(calls)


async def create(client, finishing_bias, **kwargs):
    return await client.chat.completions.create(model=MODEL, messages=USER, logit_bias=finishing_bias,
                                                max_tokens=kwargs.pop("max_tokens", 60), **kwargs)


async def test_parse_tool_calls():
    text = 'Let me check.\n<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n{"name"'
    content, calls = parse_tool_calls(text)
    assert content == "Let me check." and [(c.name, json.loads(c.arguments)) for c in calls] == [("f", {"x": 1})]
    assert parse_tool_calls("plain \n") == ("plain \n", [])


async def test_call_parser_is_the_same_however_the_text_is_cut():
    """A stream's content and call deltas add up to the whole text's, wherever the pieces are cut."""
    text = ('Sure. \n<tool_call>\n{"name": "f", "arguments": {"x": "}\\n</"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>')
    for size in (1, 2, 3, 5, len(text)):
        parser, content, calls = ToolCallParser(), "", []
        for i in range(0, len(text), size):
            piece, deltas = parser.feed(text[i:i + size])
            content += piece
            for delta in deltas:
                if delta.name is not None:
                    assert delta.index == len(calls)
                    calls.append([delta.name, ""])
                else:
                    assert delta.index == len(calls) - 1
                    calls[-1][1] += delta.arguments
        content += parser.finish()[0]
        assert content == "Sure." and calls == [["f", '{"x": "}\\n</"}'], ["g", "{}"]]
        assert [[c.name, c.arguments] for c in parser.calls] == calls


async def test_required_and_named(openai_client, finishing_bias):
    required = await create(openai_client, finishing_bias, tools=TOOLS, tool_choice="required", n=8, seed=1)
    named = await create(openai_client, finishing_bias, tools=TOOLS, n=8, seed=2,
                         tool_choice={"type": "function", "function": {"name": "add"}})
    single = await create(openai_client, finishing_bias, tools=TOOLS, tool_choice="required", n=8, seed=3,
                          parallel_tool_calls=False, max_tokens=120)
    finished = [c for r in (required, named, single) for c in r.choices if c.finish_reason == "tool_calls"]
    assert len(finished) >= 6, [c.finish_reason for r in (required, named, single) for c in r.choices]
    for response in (required, named, single):
        for choice in response.choices:
            assert choice.finish_reason in ("tool_calls", "length")
            assert choice.message.content is None or choice.finish_reason == "length"
            check_calls(choice, SCHEMAS)
    assert all(call.function.name == "add" for c in named.choices for call in c.message.tool_calls or [])
    assert all(len(c.message.tool_calls or []) <= 1 for c in single.choices)
    ids = [call.id for r in (required, named) for c in r.choices for call in c.message.tool_calls or []]
    assert len(set(ids)) == len(ids)


async def test_auto_and_none(openai_client, finishing_bias):
    auto = await create(openai_client, finishing_bias, tools=TOOLS, n=8, seed=4)
    for choice in auto.choices:
        check_calls(choice, SCHEMAS)
        assert choice.finish_reason in ("stop", "length", "tool_calls")
    # "<tool_call>" made likely: with tool_choice "none" it still never becomes a call.
    none = await create(openai_client, {**finishing_bias, "151657": 20}, tools=TOOLS, tool_choice="none", n=8,
                        seed=5)
    for choice in none.choices:
        assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")


async def test_pydantic_function_tool_parse(openai_client, finishing_bias):
    class Add(BaseModel):
        a: int
        b: int

    parsed = []
    for seed in range(6):  # parse raises on any "length" choice: one choice, one call, a few seeds
        try:
            completion = await openai_client.chat.completions.parse(
                model=MODEL, messages=USER, tools=[openai.pydantic_function_tool(Add)], tool_choice="required",
                parallel_tool_calls=False, logit_bias=finishing_bias, max_tokens=100, seed=seed)
        except openai.LengthFinishReasonError:
            continue
        parsed += [call.function.parsed_arguments for c in completion.choices for call in c.message.tool_calls]
    assert len(parsed) >= 2 and all(isinstance(p, Add) for p in parsed)


async def test_refusals(openai_client):
    bad = tool("f", {"type": "object", "properties": {"x": {"type": "array", "uniqueItems": True,
                                                           "items": {"type": "boolean"}}}})
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client.chat.completions.create(model=MODEL, messages=USER, tools=[bad], tool_choice="required")
    assert err.value.body["param"] == "tools" and "/tools/0/parameters" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client.chat.completions.create(model=MODEL, messages=USER, tool_choice="required")
    assert err.value.body["param"] == "tool_choice"


async def test_auto_text_cannot_spell_the_tag(compiler, qwen_tokenizer):
    """In "auto", `<tool_call>` opens a call only as its token; spelled out in text it is refused, so the
    call parser never reads an unconstrained call."""
    grammar = compiler.compile(Constraint.tool_calls([("add", ADD)], mode="auto"))
    def encode(text: str) -> list[int]:
        return qwen_tokenizer.encode(text, add_special_tokens=False)

    spelled = encode("Hi <tool_") + encode("call>")
    assert 151657 not in spelled and grammar.matcher().validate_tokens(spelled) == len(spelled) - 1
    call = encode('Hi <tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>') + [151645]
    assert 151657 in call and grammar.matcher().validate_tokens(call) == len(call)


def glaive_tools(compiler) -> list[dict]:
    """Glaive function schemas the compiler accepts, as tools with unique names."""
    tools = []
    for line in open(GLAIVE, encoding="utf-8").read().split("\n")[:300]:
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            compiler.compile(Constraint.json_schema(row["schema"]))
        except InvalidConstraint:
            continue
        tools.append(tool(f"f{len(tools)}", row["schema"]))
    return tools


@pytest.mark.slow  # a sweep: 112 runs per mode; the other tests here keep tools in the fast tier
@pytest.mark.parametrize("mode", ["auto", "required"])
async def test_arguments_always_validate(openai_client, finishing_bias, compiler, mode):
    """>= 100 seeded runs over varied Glaive tools (3 per request): every call's arguments validate against
    its tool's parameters. In "auto", `<tool_call>` is made likely so that calls happen. The figures print
    with `pytest -s`."""
    pool = glaive_tools(compiler)
    rng = random.Random(0)
    bias = {**finishing_bias, "151657": 14} if mode == "auto" else finishing_bias
    runs = finished = calls = 0
    failures = []
    for seed in range(7):
        tools = rng.sample(pool, 3)
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
        response = await create(openai_client, bias, tools=tools, tool_choice=mode, n=16, seed=seed, max_tokens=80)
        for choice in response.choices:
            runs += 1
            finished += choice.finish_reason in ("tool_calls", "stop")
            for call in complete_calls(choice):
                calls += 1
                errors = validation_errors(schemas[call.function.name], call.function.arguments)
                failures += [(call.function.arguments, errors)] if errors else []
    print(f"\ntool_choice={mode}: {runs} runs, {finished} finished, {calls} calls, {len(failures)} validation failures")
    assert failures == []
    assert runs == 112 and finished >= 15 and calls >= 15, (runs, finished, calls)


@pytest.mark.slow  # streamed calls stay fast in test_reasoning's stream-equals-whole test
async def test_stream_helper_accumulates_parallel_calls(openai_client, finishing_bias):
    """The SDK's stream helper rebuilds exactly the calls of the same seeded request, unstreamed; the
    arguments arrive in several fragments, id and name once per call, indices 0, 1, ..."""
    bias = {**finishing_bias, "198": 2}  # "\n" after a call: another call follows
    kwargs = dict(model=MODEL, messages=USER, tools=TOOLS, tool_choice="required", logit_bias=bias, max_tokens=200)
    compared = parallel = 0
    for seed in range(6):  # the helper raises on "length": one choice per request, a few seeds
        whole = (await openai_client.chat.completions.create(seed=seed, **kwargs)).choices[0]
        if whole.finish_reason != "tool_calls":
            continue
        async with openai_client.chat.completions.stream(seed=seed, **kwargs) as stream:
            fragments = [event async for event in stream if event.type == "tool_calls.function.arguments.delta"]
            final = (await stream.get_final_completion()).choices[0]
        assert final.finish_reason == "tool_calls" and check_calls(final, SCHEMAS) >= 1
        assert [(c.function.name, c.function.arguments) for c in final.message.tool_calls] == \
            [(c.function.name, c.function.arguments) for c in whole.message.tool_calls]
        assert len(fragments) > len(final.message.tool_calls)  # arguments came in pieces
        compared += 1
        parallel += len(final.message.tool_calls) > 1
    assert compared >= 2 and parallel >= 1, (compared, parallel)
    # the raw deltas: id and name once per call, indices 0, 1, ... one call after another
    stream = await openai_client.chat.completions.create(
        stream=True, stream_options={"include_usage": True}, n=4, seed=9, **kwargs)
    seen: dict[int, list] = {}
    finish: dict[int, str] = {}
    usage = None
    async for chunk in stream:
        usage = chunk.usage or usage
        for c in chunk.choices:
            finish[c.index] = c.finish_reason or finish.get(c.index)
            for d in c.delta.tool_calls or []:
                calls = seen.setdefault(c.index, [])
                if d.id is not None:
                    assert d.index == len(calls) and d.function.name in SCHEMAS and d.function.arguments == ""
                    calls.append([d.function.name, ""])
                else:
                    assert d.index == len(calls) - 1 and d.function.name is None and d.function.arguments
                    calls[-1][1] += d.function.arguments
    assert usage is not None and seen
    for index, calls in seen.items():
        complete = calls if finish[index] == "tool_calls" else calls[:-1]  # "length" may cut the last call
        for name, arguments in complete:
            assert validation_errors(SCHEMAS[name], arguments) == []


async def test_auto_stream_matches_the_whole_response(openai_client, finishing_bias):
    """"auto": text, then perhaps calls; streamed content and calls add up to the unstreamed response's."""
    bias = {**finishing_bias, "151657": 11, "151645": 10}  # <tool_call> and <|im_end|> likely: calls and answers
    kwargs = dict(model=MODEL, messages=USER, tools=TOOLS, logit_bias=bias, n=6, seed=20, max_tokens=80)
    whole = await openai_client.chat.completions.create(**kwargs)
    content, calls, finish = [""] * 6, [[] for _ in range(6)], [None] * 6
    async for chunk in await openai_client.chat.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            content[c.index] += c.delta.content or ""
            finish[c.index] = c.finish_reason or finish[c.index]
            for d in c.delta.tool_calls or []:
                if d.id is not None:
                    calls[c.index].append([d.function.name, ""])
                calls[c.index][d.index][1] += d.function.arguments
    assert finish == [c.finish_reason for c in whole.choices] and "tool_calls" in finish and "stop" in finish
    for i, choice in enumerate(whole.choices):
        assert content[i] == (choice.message.content or "")
        complete = calls[i] if finish[i] == "tool_calls" else calls[i][:len(choice.message.tool_calls or [])]
        assert complete == [[t.function.name, t.function.arguments] for t in choice.message.tool_calls or []]


async def test_response_format_with_tools(openai_client, finishing_bias):
    """Text answers follow response_format, calls their tool; "required" calls only, "none" the schema only."""
    city = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"],
            "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": city}}
    modes = {"auto": {**finishing_bias, "151657": 3}, "required": finishing_bias, "none": finishing_bias}
    answers = calls = 0
    for mode, bias in modes.items():
        response = await create(openai_client, bias, tools=TOOLS, tool_choice=mode, response_format=fmt, n=8,
                                seed=10)
        for choice in response.choices:
            calls += check_calls(choice, SCHEMAS)
            if choice.finish_reason == "stop":
                answers += 1
                assert mode != "required" and choice.message.tool_calls is None
                assert validation_errors(city, choice.message.content) == [], choice.message.content
            assert mode != "none" or choice.message.tool_calls is None
    assert answers >= 4 and calls >= 4, (answers, calls)
    with pytest.raises(openai.BadRequestError) as err:
        await create(openai_client, finishing_bias, tools=TOOLS, response_format={
            "type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "array", "uniqueItems": True}}})
    assert err.value.body["param"] == "response_format"


async def test_parse_answer_or_call(openai_client, finishing_bias):
    """`parse` with a pydantic response_format and a pydantic tool: parsed content or parsed_arguments."""
    class City(BaseModel):
        city: str

    class Add(BaseModel):
        a: int
        b: int

    parsed = []
    for seed in range(6):
        try:
            completion = await openai_client.chat.completions.parse(
                model=MODEL, messages=USER, response_format=City, tools=[openai.pydantic_function_tool(Add)],
                logit_bias={**finishing_bias, "151657": 3}, max_tokens=60, seed=seed)
        except openai.LengthFinishReasonError:
            continue
        message = completion.choices[0].message
        parsed += [call.function.parsed_arguments for call in message.tool_calls or []]
        parsed += [message.parsed] if message.parsed is not None else []
    assert len(parsed) >= 2 and all(isinstance(p, (City, Add)) for p in parsed)


async def test_round_trip(openai_client, finishing_bias, tiny_model):
    """The model's call -> the tool's result (tool_call_id) -> a text answer; the history renders into the
    template (Qwen: the call in <tool_call>, the result in <tool_response>) so the model sees both."""
    from api.prompt import render_prompt
    from api.protocol.chat import ChatCompletionRequest

    for seed in range(6):
        first = (await create(openai_client, finishing_bias, tools=TOOLS, seed=seed,
                              tool_choice={"type": "function", "function": {"name": "add"}})).choices[0]
        if first.finish_reason == "tool_calls":
            break
    assert first.finish_reason == "tool_calls", "no finished call in 6 seeds"
    call = first.message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    messages = [*USER, first.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": str(arguments["a"] + arguments["b"])}]
    answer = (await openai_client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS,
                                                          tool_choice="none", max_tokens=8, seed=0)).choices[0]
    assert answer.message.tool_calls is None and answer.message.content and answer.finish_reason in ("stop", "length")
    request = ChatCompletionRequest.model_validate({"model": MODEL, "messages": messages, "tools": TOOLS})
    prompt = tiny_model.tokenizer.decode(render_prompt(tiny_model.tokenizer, request.messages,
                                                       [t.model_dump(exclude_none=True) for t in request.tools]))
    assert f"<tool_response>\n{arguments['a'] + arguments['b']}\n</tool_response>" in prompt and "<tools>" in prompt
    assert f'<tool_call>\n{{"name": "add", "arguments": {call.function.arguments}}}\n</tool_call>' in prompt


class Address(BaseModel):
    street: str
    city: str


class Person(BaseModel):
    name: str
    home: Address
    previous: list[Address]


class Node(BaseModel):
    value: int
    children: list["Node"]


class Shipment(BaseModel):  # its own "Address" in $defs, unlike Person's
    to: "Parcel"


class Parcel(BaseModel):
    weight: int


async def test_nested_pydantic_tools_compile_as_their_schemas(openai_client, finishing_bias):
    """Parameters with $defs (nested, recursive, several tools with their own $defs) are enforced as in
    response_format; a named tool_choice makes exactly one call."""
    tools = [openai.pydantic_function_tool(m) for m in (Person, Node, Shipment)]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert all("$defs" in s for s in schemas.values())
    calls = 0
    for name in schemas:
        response = await create(openai_client, finishing_bias, tools=tools, n=6, seed=7, max_tokens=120,
                                tool_choice={"type": "function", "function": {"name": name}})
        for choice in response.choices:
            made = choice.message.tool_calls or []
            assert len(made) == 1 and made[0].function.name == name
            if choice.finish_reason == "tool_calls":
                calls += 1
                assert validation_errors(schemas[name], made[0].function.arguments) == []
    assert calls >= 6, calls


async def test_a_call_cut_by_max_tokens_is_returned_as_far_as_it_got(openai_client, finishing_bias):
    tools = [openai.pydantic_function_tool(Person)]
    response = await create(openai_client, finishing_bias, tools=tools, tool_choice="required", max_tokens=14, seed=0)
    choice = response.choices[0]
    call, = choice.message.tool_calls
    assert choice.finish_reason == "length" and call.function.name == "Person"
    assert call.function.arguments.startswith('{"name":') and validation_errors(
        schemas := tools[0]["function"]["parameters"], call.function.arguments)  # partial: not valid yet
    stream = await openai_client.chat.completions.create(model=MODEL, messages=USER, tools=tools, stream=True,
                                                         tool_choice="required", max_tokens=14, seed=0,
                                                         logit_bias=finishing_bias)
    streamed = ""
    async for chunk in stream:
        for c in chunk.choices:
            streamed += "".join(d.function.arguments or "" for d in c.delta.tool_calls or [])
    assert streamed == call.function.arguments and schemas
