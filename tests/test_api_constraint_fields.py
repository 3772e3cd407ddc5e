"""vLLM's and SGLang's constraint fields on chat completions (as the SDK sends them, in `extra_body`):
each one constrains the output, two are a 400 naming both, what cannot be served is refused by name."""

from __future__ import annotations

import json
import re

import openai
import pytest

from constrained.testing import validation_errors

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "Answer."}]
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
GBNF = 'root ::= "yes" | "no" | "maybe " [0-9]'
LARK = '?start: greeting\ngreeting: "hello " NAME\nNAME: /[a-z]{1,5}/'


async def outputs(client, finishing_bias, extra: dict, n: int = 4) -> list[str]:
    response = await client.chat.completions.create(model=MODEL, messages=USER, n=n, seed=1, max_tokens=30,
                                                    logit_bias=finishing_bias, extra_body=extra)
    finished = [c.message.content for c in response.choices if c.finish_reason == "stop"]
    assert len(finished) >= n // 2, [c.finish_reason for c in response.choices]
    return finished


@pytest.mark.parametrize("extra", [
    {"structured_outputs": {"json": SCHEMA}}, {"guided_json": SCHEMA}, {"guided_json": json.dumps(SCHEMA)},
    {"json_schema": json.dumps(SCHEMA)}, {"structured_outputs": {"json": SCHEMA, "disable_any_whitespace": True}},
], ids=["structured_outputs", "guided_json", "guided_json_string", "sglang_json_schema", "no_whitespace"])
async def test_json_fields(openai_client, finishing_bias, extra):
    assert all(validation_errors(SCHEMA, text) == [] for text in await outputs(openai_client, finishing_bias, extra))


@pytest.mark.parametrize("extra, check", [
    ({"structured_outputs": {"regex": r"[a-c]{2}\d"}}, lambda t: re.fullmatch(r"[a-c]{2}\d", t)),
    ({"guided_regex": r"[a-c]{2}\d"}, lambda t: re.fullmatch(r"[a-c]{2}\d", t)),
    ({"regex": r"[a-c]{2}\d"}, lambda t: re.fullmatch(r"[a-c]{2}\d", t)),
    ({"structured_outputs": {"choice": ["red", "blue"]}}, lambda t: t in ("red", "blue")),
    ({"guided_choice": ["red", "blue"]}, lambda t: t in ("red", "blue")),
    ({"structured_outputs": {"grammar": GBNF}}, lambda t: re.fullmatch(r"yes|no|maybe \d", t)),
    ({"guided_grammar": LARK}, lambda t: re.fullmatch(r"hello [a-z]{1,5}", t)),
    ({"ebnf": GBNF}, lambda t: re.fullmatch(r"yes|no|maybe \d", t)),
    ({"structured_outputs": {"json_object": True}}, lambda t: isinstance(json.loads(t), dict)),
    ({"guided_regex": r"[a-c]{2}\d", "guided_decoding_backend": "outlines"}, lambda t: re.fullmatch(r"[a-c]{2}\d", t)),
])
async def test_regex_choice_grammar_fields(openai_client, finishing_bias, extra, check):
    texts = await outputs(openai_client, finishing_bias, extra)
    assert all(check(text) for text in texts), texts


async def test_sampling_extras_are_applied(openai_client):
    kwargs = dict(model=MODEL, messages=USER, max_tokens=8, seed=4)
    greedy = await openai_client.chat.completions.create(temperature=0, **kwargs)
    top_one = await openai_client.chat.completions.create(extra_body={"top_k": 1}, **kwargs)
    assert top_one.choices[0].message.content == greedy.choices[0].message.content
    free = await openai_client.chat.completions.create(extra_body={"top_k": -1, "min_p": 0.0,
                                                                   "repetition_penalty": 1.0}, **kwargs)
    assert free.choices[0].message.content == (await openai_client.chat.completions.create(**kwargs)).choices[0] \
        .message.content


@pytest.mark.parametrize("extra, param", [
    ({"guided_json": SCHEMA, "guided_regex": "a"}, "guided_regex"),
    ({"response_format": {"type": "json_object"}, "guided_choice": ["a"]}, "guided_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "regex": "a"}, "regex"),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
    ({"structured_outputs": {}}, "structured_outputs"),
    ({"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs.structural_tag"),
    ({"structured_outputs": {"json": SCHEMA, "disable_additional_properties": True}},
     "structured_outputs.disable_additional_properties"),
    ({"guided_whitespace_pattern": " *"}, "guided_whitespace_pattern"),
    ({"guided_decoding_backend": "lm-format-enforcer"}, "guided_decoding_backend"),
    ({"guided_regex": "(a"}, "guided_regex"),
    ({"structured_outputs": {"grammar": "start: foo"}}, "structured_outputs.grammar"),
    ({"ebnf": ""}, "ebnf"),
    ({"guided_grammar": "root ::= foo"}, "guided_grammar"),
    ({"guided_grammar": 'foo ::= "a"'}, "guided_grammar"),
    ({"guided_json": {"type": "array", "uniqueItems": True, "items": {"type": "boolean"}}}, "guided_json"),
    ({"guided_json": "{not json"}, "guided_json"),
    ({"top_k": -2}, "top_k"),
    ({"min_p": 1.5}, "min_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"store": True}, "store"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"modalities": ["text", "audio"]}, "modalities[1]"),
])
async def test_refusals_name_the_field(openai_client, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        await openai_client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2, extra_body=extra)
    assert err.value.body["param"] == param, err.value.body


async def test_accepted_defaults(openai_client):
    """Fields SDK users send that ask for nothing we don't do."""
    response = await openai_client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=2, store=False, service_tier="auto", modalities=["text"])
    assert response.choices[0].finish_reason in ("stop", "length")
