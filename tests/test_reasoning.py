"""Reasoning through the `openai` SDK on tiny-qwen3: a `<think>` block within the effort's budget, then the
answer under its constraint; thoughts in `reasoning_content`, never in `content`."""

from __future__ import annotations

import openai
import pytest
import torch

from constrained.compiler.reasoning_grammar import thinking_budget
from constrained.constraints import Constraint
from constrained.reasoning_text import ReasoningSplitter
from constrained.testing import validation_errors

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "Name a city and its population."}]
THINK, END_THINK = 151667, 151668
CITY = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10},
                                         "population": {"type": "integer", "minimum": 0}},
        "required": ["city", "population"], "additionalProperties": False}
CITY_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": CITY}}


def ends_thinking(finishing_bias: dict, bias: float) -> dict:
    """finishing_bias plus a bias on `</think>`: high, the model stops thinking soon; -100, never by itself."""
    return {**finishing_bias, str(END_THINK): bias}


async def test_think_block_then_valid_json(openai_client, finishing_bias):
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, response_format=CITY_FORMAT, reasoning_effort="low", n=4, seed=0,
        max_tokens=120, logit_bias=ends_thinking(finishing_bias, 10))
    finished = [c for c in response.choices if c.finish_reason == "stop"]
    assert len(finished) >= 2, [c.finish_reason for c in response.choices]
    for choice in finished:
        assert choice.message.reasoning_content  # thoughts came first, and apart
        assert "<think>" not in choice.message.content and "</think>" not in choice.message.content
        assert validation_errors(CITY, choice.message.content) == [], choice.message.content


async def test_budget_forces_end_of_thinking(openai_client, finishing_bias, compiler, qwen_tokenizer):
    """`</think>` never chosen (bias -100): the budget ends the block, then the JSON follows."""
    budget = thinking_budget("low")
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, response_format=CITY_FORMAT, reasoning_effort="low", seed=1,
        max_tokens=budget + 60, logit_bias=ends_thinking(finishing_bias, -100), logprobs=True)
    choice = response.choices[0]
    assert choice.finish_reason == "stop" and validation_errors(CITY, choice.message.content) == []
    tokens = [entry.token for entry in choice.logprobs.content]
    assert tokens[0] == "<think>" and tokens.index("</think>") == 1 + budget and tokens[2 + budget] == "\n\n"
    # the matcher itself: after `budget` thoughts only `</think>` is allowed
    matcher = compiler.compile(Constraint.reasoning(Constraint.json_object(), budget=3)).matcher()
    thought = qwen_tokenizer.encode("hm", add_special_tokens=False)[0]
    assert matcher.accept_token(THINK) and all(matcher.accept_token(thought) for _ in range(3))
    bitmask = torch.zeros((1, compiler.bitmask_width), dtype=torch.int32)
    matcher.fill_bitmask(bitmask, 0)
    assert int(bitmask.ne(0).sum()) == 1 and not matcher.accept_token(thought) and not matcher.is_accepting()
    answer = [END_THINK, 271, *qwen_tokenizer.encode("{}"), 151645]
    assert matcher.validate_tokens(answer) == len(answer) and not matcher.is_accepting()
    assert all(matcher.accept_token(t) for t in answer) and matcher.is_terminated()
    matcher.rollback(len(answer) + 1)  # back across the answer into the thoughts: one thought left
    assert matcher.accept_token(thought) and not matcher.accept_token(thought) and not matcher.accept_token(151645)


async def test_max_tokens_inside_thinking_is_length(openai_client, finishing_bias):
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, response_format=CITY_FORMAT, reasoning_effort="high", seed=2, max_tokens=10,
        logit_bias=ends_thinking(finishing_bias, -100))
    choice = response.choices[0]
    assert choice.finish_reason == "length" and choice.message.reasoning_content and choice.message.content == ""


async def test_no_reasoning_by_default_and_with_none(openai_client, finishing_bias):
    for effort in ("none", "minimal", openai.NOT_GIVEN):
        response = await openai_client.chat.completions.create(
            model=MODEL, messages=USER, response_format=CITY_FORMAT, reasoning_effort=effort, seed=3, max_tokens=60,
            logit_bias=finishing_bias)
        message = response.choices[0].message
        assert getattr(message, "reasoning_content", None) is None and not message.content.startswith("<think>")


async def test_unconstrained_answer_after_thinking(openai_client, finishing_bias):
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, reasoning_effort="medium", seed=4, max_tokens=40,
        logit_bias=ends_thinking(finishing_bias, 10))
    message = response.choices[0].message
    assert message.reasoning_content is not None and "</think>" not in message.content + message.reasoning_content


ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
       "required": ["a", "b"], "additionalProperties": False}
ADD_TOOL = {"type": "function", "function": {"name": "add", "parameters": ADD}}


@pytest.mark.parametrize("answer", [{"response_format": CITY_FORMAT}, {"tools": [ADD_TOOL], "tool_choice": "required"}],
                         ids=["json", "tool_calls"])
async def test_stream_deltas_match_the_whole_response(openai_client, finishing_bias, answer):
    """reasoning_content deltas, then content or tool-call deltas, add up to the unstreamed response."""
    kwargs = dict(model=MODEL, messages=USER, reasoning_effort="low", seed=5, n=2, max_tokens=120,
                  logit_bias=ends_thinking(finishing_bias, 10), **answer)
    whole = await openai_client.chat.completions.create(**kwargs)
    reasoning, content, calls = ["", ""], ["", ""], [[], []]
    async for chunk in await openai_client.chat.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            assert not (c.delta.content and getattr(c.delta, "reasoning_content", None))
            reasoning[c.index] += getattr(c.delta, "reasoning_content", None) or ""
            content[c.index] += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                assert not getattr(c.delta, "reasoning_content", None)
                calls[c.index] += [[d.function.name, ""]] if d.id is not None else []
                calls[c.index][d.index][1] += d.function.arguments
    assert reasoning == [c.message.reasoning_content for c in whole.choices] and all(reasoning)
    assert content == [c.message.content or "" for c in whole.choices]
    expected = [[[t.function.name, t.function.arguments] for t in c.message.tool_calls or []] for c in whole.choices]
    assert [calls[i][:len(expected[i])] for i in range(2)] == expected
    assert "tools" not in answer or any(expected), [c.finish_reason for c in whole.choices]


async def test_reasoning_with_tools(openai_client, finishing_bias):
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, tools=[ADD_TOOL], tool_choice="required", reasoning_effort="low", n=4, seed=6,
        max_tokens=120, logit_bias=ends_thinking(finishing_bias, 10))
    calls = [call for c in response.choices if c.finish_reason == "tool_calls" for call in c.message.tool_calls]
    assert calls and all(validation_errors(ADD, call.function.arguments) == [] for call in calls)
    assert all(c.message.reasoning_content for c in response.choices if c.finish_reason == "tool_calls")


async def test_refused_without_think_tokens_and_unknown_effort(openai_client, api_app, monkeypatch):
    monkeypatch.setattr(api_app.state.pipeline, "can_reason", False)  # as a model whose vocabulary has no <think>
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client.chat.completions.create(model=MODEL, messages=USER, reasoning_effort="low")
    assert err.value.body["param"] == "reasoning_effort"
    monkeypatch.undo()
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client.chat.completions.create(model=MODEL, messages=USER, reasoning_effort="extreme")
    assert err.value.body["param"] == "reasoning_effort"


async def test_service_default_effort(api_engine, finishing_bias):
    """create_app(reasoning_effort=...) is the default of requests that set none; a request overrides it."""
    import httpx2

    from api.app import create_app

    with pytest.raises(ValueError, match="extreme"):
        create_app(api_engine, model_name=MODEL, reasoning_effort="extreme")
    app = create_app(api_engine, model_name=MODEL, reasoning_effort="low")
    app.state.ready = True  # the shared engine is running and warm
    client = openai.AsyncOpenAI(api_key="unused", base_url="http://testserver/v1", max_retries=0,
                                http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)))
    kwargs = dict(model=MODEL, messages=USER, seed=7, max_tokens=30, logit_bias=ends_thinking(finishing_bias, 10))
    thought = (await client.chat.completions.create(**kwargs)).choices[0].message
    assert thought.reasoning_content is not None
    direct = (await client.chat.completions.create(reasoning_effort="none", **kwargs)).choices[0].message
    assert getattr(direct, "reasoning_content", None) is None


async def test_splitter_is_the_same_however_the_text_is_cut():
    text = "<think>\nfirst\n\nsecond\n</think>\n\n{\"a\": 1}"
    whole = ReasoningSplitter()
    expected = [a + b for a, b in zip(whole.feed(text), whole.finish())]
    assert expected == ["first\n\nsecond", "{\"a\": 1}"]
    for size in (1, 2, 3, 5):
        splitter = ReasoningSplitter()
        parts = [splitter.feed(text[i:i + size]) for i in range(0, len(text), size)] + [splitter.finish()]
        assert ["".join(p[0] for p in parts), "".join(p[1] for p in parts)] == expected
