"""uniqueItems on arrays of plain strings: where it applies, the matcher beside the grammar, generation under it."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Literal

import numpy as np
import openai
import pytest
import torch
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from constrained.compiler.unique_items import Track, split_unique_items
from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.errors import InvalidConstraint
from constrained.testing import json_finishing_bias, run_until_idle, validation_errors
from constrained.tool_calls import parse_tool_calls

TAGS = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
SCHEMA = {
    "type": "object",
    "properties": {
        "tags": TAGS,
        "groups": {"type": "array", "items": {"$ref": "#/$defs/group"}},
        "maybe": {"anyOf": [{"$ref": "#/$defs/names"}, {"type": "null"}]},  # pydantic's Optional[set[str]]
        "note": {"type": "string"},
        "labels": {"type": "object", "properties": {"fixed": {"type": "string"}}, "additionalProperties": TAGS},
        "colors": {"type": "array", "items": {"enum": ["red", "re", "green", "blue"]}, "uniqueItems": True},
    },
    "required": ["tags"],
    "$defs": {"group": {"type": "object", "properties": {"tags": TAGS, "sub": {"$ref": "#/$defs/group"}}},
              "names": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True}},
}


def test_the_locations_of_unique_arrays_form_a_graph_recursion_included():
    schema, track = split_unique_items(SCHEMA)
    assert "uniqueItems" not in json.dumps(schema)
    assert track.properties["tags"].unique and track.properties["maybe"].unique
    group = track.properties["groups"].items
    assert group.properties["tags"].unique and group.properties["sub"] is group  # a cycle, as the schema recurses
    assert set(track.properties) == {"tags", "groups", "maybe", "labels", "colors"}  # "note" leads to none
    assert track.properties["labels"].other.unique and track.properties["labels"].declared == {"fixed"}
    assert track.properties["colors"].values == {"red", "re", "green", "blue"}
    assert track.properties["tags"].values is None
    again = Track.from_json(json.loads(json.dumps(track.to_json())))
    assert again.properties["groups"].items.properties["sub"] is again.properties["groups"].items
    assert split_unique_items({"type": "array", "items": {"type": "string"}}) == (
        {"type": "array", "items": {"type": "string"}}, None)


def test_keywords_of_other_types_beside_a_unique_array_are_left_to_the_grammar():
    """uniqueItems asserts nothing where `type` rules arrays out; keywords for strings or objects beside it (and
    unknown ones) shape no array."""
    assert split_unique_items({"type": "string", "uniqueItems": True, "items": {"type": "integer"}})[1] is None
    _, track = split_unique_items({"type": ["string", "array"], "format": "uri", "minLength": 2, "x-note": 1,
                                   "additionalProperties": False, "items": {"type": "string"}, "uniqueItems": True})
    assert track.unique and track.values is None
    _, track = split_unique_items({"properties": {"t": {"anyOf": [{"type": "string", "pattern": "^a"}, TAGS]}}})
    assert track.properties["t"].unique


@pytest.mark.parametrize("schema, path", [
    # items that may have no way left to differ from the earlier ones where they end
    ({"type": "array", "items": {"type": "boolean"}, "uniqueItems": True}, ""),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, ""),  # "0" takes no more digits
    ({"type": "array", "items": {"type": "number", "minimum": -1}, "uniqueItems": True}, ""),  # nor "-1"
    ({"type": "array", "items": {"type": "number", "maximum": 9}, "uniqueItems": True}, ""),
    ({"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True}, ""),
    ({"type": "array", "items": {"type": "string", "pattern": "^a$"}, "uniqueItems": True}, ""),
    ({"type": "array", "items": {"type": "object", "additionalProperties": False}, "uniqueItems": True}, ""),
    ({"type": "array", "items": {"type": "array", "maxItems": 2}, "uniqueItems": True}, ""),
    ({"type": "array", "items": {"enum": ["a", 1]}, "uniqueItems": True}, ""),  # 1 is no string
    ({"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True, "minItems": 3}, ""),  # only 2 values
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True, "contains": {"const": "a"}}, ""),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True, "enum": [["a", "a"], ["b"]]}, ""),
    ({"type": "object", "patternProperties": {"^t": TAGS}}, "/patternProperties/^t"),
    ({"type": "object", "additionalProperties": TAGS, "patternProperties": {"^x": {}}}, "/additionalProperties"),
    ({"type": "array", "prefixItems": [TAGS]}, "/prefixItems/0"),
    ({"type": "object", "properties": {"t": TAGS}, "patternProperties": {"^t$": {"items": {"maxLength": 2}}}},
     "/properties/t"),  # a pattern adds to what applies at "t"
    ({"anyOf": [{"type": "object", "properties": {"t": TAGS}}, {"properties": {"t": {"items": {"type": "integer"}}}}]},
     "/anyOf/0/properties/t"),
])
def test_unique_items_it_cannot_follow_are_refused_with_their_path(compiler, schema, path):
    with pytest.raises(InvalidConstraint) as refused:
        compiler.validate(Constraint.json_schema(schema))
    assert (refused.value.path, refused.value.keyword) == (path, "uniqueItems")


def test_an_answer_schema_beside_tools_with_unique_items_is_refused(compiler):
    tools = [("f", {"type": "object", "properties": {"t": TAGS}})]
    compiler.validate(Constraint.tool_calls(tools))  # in a tool's parameters: enforced
    with pytest.raises(InvalidConstraint, match="answer schema sent with tools") as refused:
        compiler.validate(Constraint.tool_calls(tools, answer={"type": "object", "properties": {"t": TAGS}}))
    assert refused.value.keyword == "uniqueItems"


TOOLS = [("tag", {"type": "object", "properties": {"t": TAGS}, "required": ["t"]}),
         ("note", {"type": "object", "properties": {"t": {"type": "array", "items": {"type": "string"}}}})]


def call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


@pytest.mark.parametrize("text, valid", [
    (call("tag", '{"t": ["a", "b"]}'), True),
    (call("tag", '{"t": ["a", "a"]}'), False),
    (call("note", '{"t": ["a", "a"]}'), True),  # no uniqueItems in that tool
    (call("tag", '{"t": ["a"]}') + "\n" + call("tag", '{"t": ["a", "b"]}'), True),  # each call's own array
    (call("note", '{"t": ["a"]}') + "\n" + call("tag", '{"t": ["b", "b"]}'), False),
])
def test_each_tool_calls_arguments_keep_their_items_distinct(compiler, qwen_tokenizer, text, valid):
    grammar = compiler.compile(Constraint.tool_calls(TOOLS, mode="required"))
    assert accepts(grammar, qwen_tokenizer, text) is valid


def accepts(grammar, tokenizer, text: str) -> bool:
    matcher = grammar.matcher()
    return all(matcher.accept_token(t) for t in tokenizer.encode(text)) and matcher.is_accepting()


@pytest.mark.parametrize("text, valid", [
    ('{"tags": ["a", "b"]}', True),
    ('{"tags": ["a", "a"]}', False),
    ('{"tags": ["x", "xy", "y", "x"]}', False),
    ('{"tags": ["a\\"", "a"]}', True),
    ('{"tags": ["a\\"", "a\\""]}', False),  # escapes are part of the spelling, one spelling per string
    ('{"tags": ["\\n", "\\n"]}', False),
    ('{"tags": [], "groups": [{"tags": ["a"]}, {"tags": ["a"], "sub": {"tags": ["b", "a"]}}]}', True),  # per array
    ('{"tags": [], "groups": [{"sub": {"sub": {"tags": ["c", "c"]}}}]}', False),
    ('{"tags": ["é", "e"], "maybe": ["é", "e"]}', True),
    ('{"tags": [], "maybe": ["é", "é"]}', False),
    ('{"tags": [], "maybe": null, "note": "a"}', True),
    ('{"tags": [], "labels": {"fixed": "a", "x": ["a", "b"], "y": ["a"]}}', True),  # additionalProperties
    ('{"tags": [], "labels": {"x": ["a", "b", "a"]}}', False),
    ('{"tags": [], "colors": ["re", "red", "green", "blue"]}', True),
    ('{"tags": [], "colors": ["red", "green", "red"]}', False),
    ('{"tags": [], "colors": ["red", "green", "blue", "re", "red"]}', False),
])
def test_a_repeated_item_is_refused_and_the_rest_follows_the_grammar(compiler, qwen_tokenizer, text, valid):
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    assert accepts(grammar, qwen_tokenizer, text) is valid
    assert validation_errors(SCHEMA, text) == [] if valid else validation_errors(SCHEMA, text) != []


def allowed(bitmask: torch.Tensor) -> np.ndarray:
    return np.unpackbits(bitmask[0].numpy().view(np.uint8), bitorder="little").astype(bool)[:151_936]


def masks_after(compiler, tokenizer, schema: dict, prefix: str):
    """After `prefix`: the matcher with the check, its mask, and the mask of the grammar without the check."""
    grammar = compiler.compile(Constraint.json_schema(schema))
    plain = compiler.compile(Constraint.json_schema(split_unique_items(schema)[0]))
    matcher, other = grammar.matcher(), plain.matcher()
    for token in tokenizer.encode(prefix):
        assert matcher.accept_token(token) and other.accept_token(token)
    bitmask = torch.zeros(1, compiler.bitmask_width, dtype=torch.int32)
    matcher.fill_bitmask(bitmask, 0)
    mask = allowed(bitmask)
    other.fill_bitmask(bitmask, 0)
    return matcher, mask, allowed(bitmask)


@pytest.mark.parametrize("prefix, repeating", [
    ('{"tags": ["ab", "ab', '"'), pytest.param('{"tags": ["x.", "x', '."', marks=pytest.mark.slow),
    pytest.param('{"tags": ["", "', '"', marks=pytest.mark.slow),
    ('{"tags": ["a\\"", "a\\', '""'),  # inside an escape: the escaped quote, then the closing one
    ('{"tags": ["",', ' ""'), pytest.param('{"tags": ["", ', '""', marks=pytest.mark.slow),  # a whole item
    pytest.param('{"tags": ["a', None, marks=pytest.mark.slow),  # the first item repeats nothing
    ('{"tags": [], "colors": ["red", "re', 'd'),  # an enum item: on the way to an unused value alone
    ('{"tags": [], "colors": ["red", "green", "blue", "re"', ',')])  # every value used: no next item
def test_the_mask_allows_exactly_the_tokens_the_matcher_accepts(compiler, qwen_tokenizer, prefix, repeating):
    """The check takes from the grammar's mask exactly the tokens that would repeat an item (`repeating` among
    them), and the matcher agrees with the mask on every token that holds a quote (others cannot close a string)."""
    matcher, mask, grammar_allows = masks_after(compiler, qwen_tokenizer, SCHEMA, prefix)
    assert not (mask & ~grammar_allows).any()
    forbidden = set(np.flatnonzero(grammar_allows & ~mask).tolist())
    if repeating is None:
        assert forbidden == set()
    else:
        assert qwen_tokenizer.encode(repeating)[0] in forbidden
    tested = [t for t in np.flatnonzero(grammar_allows).tolist()
              if '"' in qwen_tokenizer.decode([t]) or "colors" in prefix]  # others cannot close a plain string
    assert {t for t in tested if matcher.validate_tokens([t]) == 0} == forbidden
    for token in np.flatnonzero(mask)[::50].tolist():
        assert matcher.validate_tokens([token]) == 1
    if prefix.startswith('{"tags": ["') and prefix[-1] not in ", \\":  # inside a plain string: it always goes on
        assert mask[qwen_tokenizer.encode("c")[0]]


def test_rollback_and_dry_runs_keep_the_items(compiler, qwen_tokenizer):
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    matcher = grammar.matcher()
    head, repeat = qwen_tokenizer.encode('{"tags": ["a", '), qwen_tokenizer.encode('"a"]}')
    assert all(matcher.accept_token(t) for t in head)
    closing = next(i for i in range(len(repeat)) if qwen_tokenizer.decode(repeat[:i + 1]).count('"') == 2)
    assert matcher.validate_tokens(repeat) == closing  # the token closing the repeat, not one before
    fresh = qwen_tokenizer.encode('"b"]}')
    assert matcher.validate_tokens(fresh) == len(fresh)
    assert all(matcher.accept_token(t) for t in fresh)
    matcher.rollback(len(fresh))  # back inside the array, "a" still taken
    assert matcher.validate_tokens(repeat) == closing
    assert all(matcher.accept_token(t) for t in fresh) and matcher.is_accepting()


def test_a_cached_grammar_keeps_its_unique_arrays(compiler, qwen_tokenizer):
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    backend = compiler._backend("llguidance")
    loaded = backend.load(grammar.to_bytes(), deadline=time.monotonic() + 10)
    assert not accepts(loaded, qwen_tokenizer, '{"tags": ["a", "a"]}')
    assert accepts(loaded, qwen_tokenizer, '{"tags": ["a", "b"]}')


@pytest.mark.parametrize("items, min_items, max_items", [
    ({"type": "string"}, 4, 8),
    pytest.param({"enum": ["a", "ab", "b", "ba", "c"]}, 3, 5,  # values prefixes of others: no item may dead-end
                 marks=pytest.mark.slow),
])
def test_generation_never_repeats_an_item(tiny_model, compiler, items, min_items, max_items):
    """Random weights pushed toward short strings repeat items often without the check (the plain schema
    shows it), never with it; every output that stops validates, none fails."""
    def tags(unique: bool) -> dict:
        array = {"type": "array", "items": items, "uniqueItems": unique, "minItems": min_items, "maxItems": max_items}
        return {"type": "object", "properties": {"tags": array}, "required": ["tags"], "additionalProperties": False}

    schema, plain = tags(True), tags(False)
    tokenizer = tiny_model.tokenizer
    closing = {t: 14.0 for t in range(len(tokenizer)) if tokenizer.decode([t]) in ('"', '", "', '",', '"]', '""')}
    bias = json_finishing_bias(tokenizer) | closing  # empty and one-character strings: repeats are likely
    prompt = tokenizer.encode("tags:")
    outputs = {}
    for name, value in (("unique", schema), ("plain", plain)):
        grammar = compiler.compile(Constraint.json_schema(value))
        results = run_until_idle(Engine(tiny_model, max_batch_size=16), [
            Submission(prompt, SamplingParams(max_tokens=60, seed=seed, logit_bias=bias), grammar, f"{name}{seed}")
            for seed in range(16)])
        outputs[name] = [results[(f"{name}{seed}", 0)] for seed in range(16)]
    repeated = [o for o in outputs["plain"] if o["finish"] is FinishReason.STOP
                and len(set(json.loads(o["text"])["tags"])) < len(json.loads(o["text"])["tags"])]
    assert len(repeated) >= 4, "the bias no longer makes repeats likely: the test would prove little"
    stopped = [o for o in outputs["unique"] if o["finish"] is FinishReason.STOP]
    assert len(stopped) >= 12
    assert all(validation_errors(schema, o["text"]) == [] for o in stopped), [o["text"] for o in stopped]
    assert all(o["finish"] is not FinishReason.FAILED for o in outputs["unique"])


def random_instance(rng: random.Random) -> dict:
    """An instance of SCHEMA's shape (its property order, the grammar's), its arrays often repeating an item."""
    alphabet = ["a", "b", "ab", "", "é", 'q"', "\\", "\n", "x y", "日本"]

    def strings(count: int) -> list[str]:
        return [rng.choice(alphabet) for _ in range(count)]

    def group(depth: int) -> dict:
        out = {"tags": strings(rng.randint(0, 3))} if rng.random() < 0.8 else {}
        return {**out, "sub": group(depth + 1)} if depth < 2 and rng.random() < 0.4 else out

    instance = {"tags": strings(rng.randint(0, 4))}
    if rng.random() < 0.5:
        instance["groups"] = [group(0) for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.5:
        instance["maybe"] = None if rng.random() < 0.3 else [s for s in strings(rng.randint(0, 3)) if s]
    if rng.random() < 0.5:
        instance["labels"] = {**({"fixed": "f"} if rng.random() < 0.5 else {}),
                              **{f"k{i}": strings(rng.randint(0, 3)) for i in range(rng.randint(0, 2))}}
    if rng.random() < 0.5:
        instance["colors"] = [rng.choice(["red", "re", "green", "blue"]) for _ in range(rng.randint(0, 4))]
    return instance


def test_the_matcher_accepts_exactly_the_valid_instances_however_they_are_tokenized(compiler, qwen_tokenizer):
    """Random instances, each split into tokens at random places (a model need not write the tokenizer's own
    split): the matcher accepts an instance if and only if jsonschema finds it valid."""
    rng = random.Random(0)
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    verdicts = set()
    for _ in range(300):
        text = json.dumps(random_instance(rng), ensure_ascii=False, separators=(", ", ": "))
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12))))
        ids = [t for a, b in zip([0, *cuts], [*cuts, len(text)]) for t in qwen_tokenizer.encode(text[a:b])]
        if qwen_tokenizer.decode(ids) != text:
            continue
        matcher = grammar.matcher()
        accepted = all(matcher.accept_token(t) for t in ids) and matcher.is_accepting()
        valid = validation_errors(SCHEMA, text) == []
        assert accepted == valid, text
        verdicts.add(valid)
    assert verdicts == {True, False}


class Tagged(BaseModel):
    tags: set[str] = Field(max_length=6)
    labels: frozenset[Literal["urgent", "billing", "bug"]]


async def test_the_sdk_parses_pydantic_sets_through_the_server(openai_client, finishing_bias):
    """pydantic writes uniqueItems for every set: the SDK's strict schema is served, and what it parses is valid."""
    schema = to_strict_json_schema(Tagged)
    assert schema["properties"]["tags"]["uniqueItems"] and schema["properties"]["labels"]["uniqueItems"]

    async def attempt(seed: int):
        try:
            return await openai_client.chat.completions.parse(
                model="tiny-qwen3", messages=[{"role": "user", "content": "Tag this ticket."}], response_format=Tagged,
                seed=seed, max_tokens=80, logit_bias=finishing_bias)
        except openai.LengthFinishReasonError:
            return None

    parsed = [r for r in await asyncio.gather(*(attempt(seed) for seed in range(6))) if r is not None]
    assert len(parsed) >= 3, f"only {len(parsed)} of 6 finished"
    for completion in parsed:
        assert isinstance(completion.choices[0].message.parsed, Tagged)
        assert validation_errors(schema, completion.choices[0].message.content) == []


@pytest.mark.slow
def test_tool_call_generation_never_repeats_an_item(tiny_model, compiler):
    tokenizer = tiny_model.tokenizer
    closing = {t: 14.0 for t in range(len(tokenizer)) if tokenizer.decode([t]) in ('"', '", "', '",', '"]', '""')}
    bias = json_finishing_bias(tokenizer) | closing
    tools = [("tag", {"type": "object", "properties": {"t": {**TAGS, "minItems": 4, "maxItems": 8}}, "required": ["t"],
                      "additionalProperties": False})]
    grammar = compiler.compile(Constraint.tool_calls(tools, mode="tag"))
    results = run_until_idle(Engine(tiny_model, max_batch_size=16), [
        Submission(tokenizer.encode("call:"), SamplingParams(max_tokens=80, seed=seed, logit_bias=bias), grammar,
                   f"r{seed}") for seed in range(16)])
    outputs = [results[(f"r{seed}", 0)] for seed in range(16)]
    assert all(o["finish"] is not FinishReason.FAILED for o in outputs)
    stopped = [o for o in outputs if o["finish"] is FinishReason.STOP]
    assert len(stopped) >= 12
    for o in stopped:
        arguments = json.loads(parse_tool_calls(o["text"])[1][0].arguments)
        assert validation_errors(tools[0][1], json.dumps(arguments)) == [], o["text"]


ANY_KIND = {"type": "object", "properties": {"any": {"type": "array", "uniqueItems": True},
                                             "objects": {"type": "array", "uniqueItems": True, "items": {
                                                 "type": "object", "properties": {"k": {"type": "integer"}}}},
                                             "numbers": {"type": "array", "uniqueItems": True,
                                                         "items": {"type": "number", "minimum": 0}},
                                             "names": {"type": "array", "uniqueItems": True,
                                                       "items": {"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$"}},
                                             "deps": {"type": "array", "uniqueItems": True, "items": {"anyOf": [
                                                 {"type": "string"},
                                                 {"type": "object", "additionalProperties": False, "required": ["name"],
                                                  "properties": {"name": {"type": "string"},
                                                                 "optional": {"type": "boolean"}}}]}}}}


@pytest.mark.parametrize("text, valid", [
    ('{"any": [1, "1", true, null, [1], {"k": 1}, [], {}]}', True),
    ('{"any": [1, 1.0]}', False),  # equal numbers, as jsonschema has it
    ('{"any": [1, true]}', True),  # but true is no number
    ('{"any": [true, false, true]}', False),
    ('{"any": [null, "null", null]}', False),
    ('{"any": [[1, 2], [2, 1], [1, 2]]}', False),
    ('{"any": [{"k": [1]}, {"k": [1.0]}]}', False),
    ('{"any": ["a", "ab", "a"]}', False),
    ('{"objects": [{"k": 1}, {"k": 1, "x": 2}, {"k": 2}]}', True),
    ('{"objects": [{"k": 1, "x": 2}, {"k": 1, "x": 2.0}]}', False),
    ('{"objects": [{"k": 1, "x": {"a": 1, "b": 2}}, {"k": 1, "x": {"b": 2, "a": 1}}]}', False),  # keys in any order
    ('{"numbers": [1, 1.5, 10, 0]}', True),
    ('{"numbers": [1e2, 100]}', False),
    ('{"names": ["a", "a-b", "ab"]}', True),  # a pattern each match of which can go on: "a" -> "ab", "a-b"
    ('{"names": ["a-b", "a-b"]}', False),
    ('{"deps": [{"name": "a"}, {"name": "b", "optional": true}, "a", "b"]}', True),  # closed objects: by "name"
    ('{"deps": [{"name": "a", "optional": true}, {"name": "a", "optional": true}]}', False),
])
def test_items_of_other_kinds_are_compared_as_json_values(compiler, qwen_tokenizer, text, valid):
    grammar = compiler.compile(Constraint.json_schema(ANY_KIND))
    assert accepts(grammar, qwen_tokenizer, text) is valid
    assert validation_errors(ANY_KIND, text) == [] if valid else validation_errors(ANY_KIND, text) != []


@pytest.mark.parametrize("prefix", [
    '{"any": [1, {"k": "ab"}, {"k": "ab',  # inside an item: only what closes it can repeat one
    '{"any": ["xy", "x', '{"any": [true, null, ', '{"any": [[1], [1', '{"any": [{"k": [1]}, {"k": [1]',
    '{"objects": [{"k": 1}, {"k": 1', '{"numbers": [1, 1', '{"names": ["a-b", "a-b',
    '{"deps": [{"name": "ab"}, {"name": "ab'])
def test_the_mask_refuses_exactly_what_the_matcher_refuses(compiler, qwen_tokenizer, prefix):
    """Every token the grammar allows after `prefix`, read by the matcher: the mask allows exactly those it takes."""
    matcher, mask, grammar_allows = masks_after(compiler, qwen_tokenizer, ANY_KIND, prefix)
    taken = []
    for token in np.flatnonzero(grammar_allows).tolist():
        taken.append(matcher.accept_token(token))
        if taken[-1]:
            matcher.rollback(1)
    assert mask[grammar_allows].tolist() == taken
    assert not all(taken) or prefix.endswith("x"), "nothing refused: the prefix proves little"


def test_objects_closed_to_more_properties_are_told_apart_by_a_key(compiler, qwen_tokenizer):
    """Narrower: two objects alike in their key are never both written, even where they differ otherwise (their
    last properties may leave no way to differ once the key is written); the key can always go on."""
    grammar = compiler.compile(Constraint.json_schema(ANY_KIND))
    text = '{"deps": [{"name": "a", "optional": true}, {"name": "a", "optional": false}]}'
    assert validation_errors(ANY_KIND, text) == [] and not accepts(grammar, qwen_tokenizer, text)
    closed = {"type": "object", "additionalProperties": False, "properties": {"n": {"type": "integer"}}}
    with pytest.raises(InvalidConstraint, match="'additionalProperties' may leave"):  # no string key to tell apart
        compiler.validate(Constraint.json_schema({"type": "array", "uniqueItems": True, "items": closed}))


@pytest.mark.parametrize("items", [{"type": "integer", "minimum": 1},
                                   {"type": "object", "properties": {"k": {"type": "integer", "minimum": 1}},
                                    "required": ["k"]}])
def test_generation_never_repeats_a_value(tiny_model, compiler, items):
    """Random weights pushed toward short items repeat them without the check, never with it: an item about to
    repeat an earlier one takes another digit or property instead; every output that stops validates, none fails."""
    def array(unique: bool) -> dict:
        return {"type": "array", "items": items, "uniqueItems": unique, "minItems": 3, "maxItems": 5}

    tokenizer = tiny_model.tokenizer
    closing = {",": 12.0, "]": 12.0, "}": 14.0, "},": 14.0, "}]": 14.0}  # one-digit items: repeats are likely
    bias = json_finishing_bias(tokenizer) | {t: closing[tokenizer.decode([t])] for t in range(len(tokenizer))
                                             if tokenizer.decode([t]) in closing}
    prompt = tokenizer.encode("items:")
    outputs = {}
    for name, value in (("unique", array(True)), ("plain", array(False))):
        grammar = compiler.compile(Constraint.json_schema(value))
        results = run_until_idle(Engine(tiny_model, max_batch_size=16), [
            Submission(prompt, SamplingParams(max_tokens=60, seed=seed, logit_bias=bias), grammar, f"{name}{seed}")
            for seed in range(12)])
        outputs[name] = [results[(f"{name}{seed}", 0)] for seed in range(12)]

    def repeats(text: str) -> bool:
        values = [json.dumps(item, sort_keys=True) for item in json.loads(text)]
        return len(set(values)) < len(values)
    assert sum(o["finish"] is FinishReason.STOP and repeats(o["text"]) for o in outputs["plain"]) >= 3, \
        "the bias no longer makes repeats likely: the test would prove little"
    stopped = [o["text"] for o in outputs["unique"] if o["finish"] is FinishReason.STOP]
    assert len(stopped) >= 6
    assert [text for text in stopped if validation_errors(array(True), text)] == []
    assert all(o["finish"] is not FinishReason.FAILED for o in outputs["unique"])
