"""POST /v1/completions through the `openai` SDK and as raw SSE frames: prompts as text or token ids, n
choices per prompt, echo, logprobs, streams, constraints."""

from __future__ import annotations

import json
import re

import httpx2
import openai
import pytest

from constrained.testing import validation_errors

MODEL = "tiny-qwen3"
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"],
          "additionalProperties": False}


async def test_prompts_choices_and_usage(openai_client, qwen_tokenizer):
    ids = qwen_tokenizer.encode("The sky is")
    completion = await openai_client.completions.create(
        model=MODEL, prompt=[ids, "Once upon a time"], n=2, max_tokens=5, seed=3, temperature=0.8)
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]  # prompt 0's two choices, then prompt 1's
    assert all(c.finish_reason in ("stop", "length") and c.logprobs is None for c in completion.choices)
    prompt_tokens = len(ids) + len(qwen_tokenizer.encode("Once upon a time"))
    assert completion.usage.prompt_tokens == prompt_tokens
    default = await openai_client.completions.create(model=MODEL, prompt="a", seed=1)
    assert default.usage.completion_tokens <= 16  # OpenAI's default max_tokens
    same_ids = await openai_client.completions.create(model=MODEL, prompt=ids, max_tokens=5, seed=3, temperature=0.8)
    same_text = await openai_client.completions.create(model=MODEL, prompt="The sky is", max_tokens=5, seed=3,
                                                       temperature=0.8)
    assert same_ids.choices[0].text == same_text.choices[0].text == completion.choices[0].text


async def test_echo_and_logprobs(openai_client):
    echoed = await openai_client.completions.create(model=MODEL, prompt="Say:", echo=True, max_tokens=3, seed=0)
    assert echoed.choices[0].text.startswith("Say:")
    scored = await openai_client.completions.create(model=MODEL, prompt="Say:", max_tokens=4, logprobs=3, seed=0)
    logprobs = scored.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
    assert "".join(logprobs.tokens) == scored.choices[0].text
    assert logprobs.text_offset == [sum(map(len, logprobs.tokens[:i])) for i in range(4)]
    assert all(len(top) <= 3 and max(top.values()) >= lp - 1e-4
               for top, lp in zip(logprobs.top_logprobs, logprobs.token_logprobs))


async def test_constrained_completions(openai_client, finishing_bias):
    shaped = await openai_client.completions.create(
        model=MODEL, prompt="JSON:", n=6, max_tokens=40, seed=2, logit_bias=finishing_bias,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}})
    finished = [c for c in shaped.choices if c.finish_reason == "stop"]
    assert len(finished) >= 3 and all(validation_errors(SCHEMA, c.text) == [] for c in finished)
    regex = await openai_client.completions.create(model=MODEL, prompt="Code:", n=4, max_tokens=12, seed=2,
                                                   extra_body={"guided_regex": "[A-Z]{2}-[0-9]{3}"})
    assert all(re.fullmatch("[A-Z]{2}-[0-9]{3}", c.text) and c.finish_reason == "stop" for c in regex.choices)


async def test_stream_frames(openai_client, api_app):
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=api_app), base_url="http://testserver")
    response = await http.post("/v1/completions", json={
        "model": MODEL, "prompt": ["a", "b"], "n": 2, "max_tokens": 6, "stream": True, "seed": 5,
        "stream_options": {"include_usage": True}, "structured_outputs": {"choice": ["red", "green", "blue"]}})
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(f.removeprefix("data: ")) for f in response.text.split("\n\n")[:-2]]
    texts, finish = {}, {}
    for chunk in chunks[:-1]:
        assert chunk["object"] == "text_completion" and chunk["usage"] is None if "usage" in chunk else True
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
            finish[choice["index"]] = choice["finish_reason"] or finish.get(choice["index"])
    assert set(texts) == {0, 1, 2, 3} and all(t in ("red", "green", "blue") for t in texts.values())
    assert set(finish.values()) == {"stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    whole = await openai_client.completions.create(model=MODEL, prompt=["a", "b"], n=2, max_tokens=6, seed=5,
                                                   extra_body={"structured_outputs": {"choice": ["red", "green", "blue"]}})
    assert [c.text for c in whole.choices] == [texts[i] for i in range(4)]


@pytest.mark.parametrize("fields, param", [
    ({"suffix": "x"}, "suffix"),
    ({"best_of": 3}, "best_of"),
    ({"echo": True, "logprobs": 1}, "echo"),
    ({"logprobs": 6}, "logprobs"),
    ({"prompt": [[]]}, "prompt"),
    ({"prompt": [10**9]}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": ["abc", ""]}, "prompt"),
    ({"guided_regex": "a+", "guided_choice": ["a"]}, "guided_choice"),
    ({"response_format": {"type": "json_object"}, "regex": "a+"}, "regex"),
    ({"guided_regex": "(a"}, "guided_regex"),
])
async def test_refusals_name_the_field(openai_client, fields, param):
    body = {"prompt": "hi", "max_tokens": 2, **fields}
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client.completions.create(model=MODEL, **{k: body.pop(k) for k in ("prompt", "max_tokens")},
                                               extra_body=body)
    assert err.value.body["param"] == param, err.value.body
