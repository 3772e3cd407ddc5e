"""Recursive references llguidance refuses to intersect (recursive_refs.py): compiled by rewriting, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import llguidance
import pytest

from benchmarks.coverage.cases import Case
from benchmarks.coverage.evaluate import evaluate
from benchmarks.coverage.ours import OursAdapter
from constrained.compiler.backends.llguidance_backend import JSON_OPTIONS, prepare_with_unique_items
from constrained.compiler.recursive_refs import without_recursive_intersections
from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.testing import json_finishing_bias, run_until_idle, validation_errors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench"
DRAFT4 = "http://json-schema.org/draft-04/schema#"
# WashingtonPost's shape, small: content holds related content (keyed lists of content, and a redirect list
# whose items are also content by the pattern `.*`) and promo items (a `basic` one, and any key, alike).
CONTENT = {"$ref": "#/definitions/content"}
ITEM = {"anyOf": [CONTENT, {"type": "string"}]}
SCHEMA = {
    "$schema": DRAFT4, "type": "object", "properties": {"story": CONTENT}, "required": ["story"],
    "definitions": {
        "content": {"type": "object", "additionalProperties": False, "required": ["type"],
                    "properties": {"type": {"type": "string", "maxLength": 8}, "url": {"type": "string"},
                                   "related": {"$ref": "#/definitions/related"},
                                   "promo": {"$ref": "#/definitions/promo"}}},
        "redirect": {"type": "object", "additionalProperties": False, "required": ["url"],
                     "properties": {"type": {"enum": ["redirect"]}, "url": {"type": "string"}}},
        "related": {"type": "object",
                    "patternProperties": {".*": {"type": "array", "items": {**ITEM, "type": ["object", "string"]}}},
                    "properties": {"redirect": {"type": "array", "maxItems": 1,
                                                "items": {"$ref": "#/definitions/redirect"}}}},
        "promo": {"type": "object", "patternProperties": {"^[a-z_]*$": ITEM},
                  "properties": {"basic": {**ITEM, "description": "the default one"}}},
    },
}
INSTANCES = [
    {"story": {"type": "story"}},
    {"story": {"type": "story", "related": {"redirect": [], "more": [{"type": "a"}, "ref"]}}},  # declared first
    {"story": {"type": "story", "related": {"redirect": [{"type": "redirect", "url": "u"}]}}},  # both schemas
    {"story": {"type": "story", "related": {"redirect": [{"url": "u"}]}}},  # content requires type
    {"story": {"type": "story", "related": {"redirect": ["ref"]}}},  # redirect: an object
    {"story": {"type": "story", "related": {"redirect": [{"type": "redirect", "url": "u"}, {"type": "x"}]}}},
    {"story": {"type": "story", "promo": {"basic": {"type": "p", "promo": {"basic": "r", "other": {"x": 1}}}}}},
    {"story": {"type": "story", "promo": {"basic": {"type": "p", "promo": {"basic": "r", "more": {"type": "q"}}}}}},
    {"story": {"type": "story", "promo": {"basic": 3}}},
    {"story": {"type": "a very long type"}},
]


def test_llguidance_alone_refuses_it():
    """What the rewrite is for: llguidance refuses the prepared schema, and takes the rewritten one."""
    prepared, _ = prepare_with_unique_items(SCHEMA)
    errors = [llguidance.LLMatcher.validate_grammar(
        llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS), None)
        for schema in (prepared, without_recursive_intersections(prepared))]
    assert "circular references with sibling keys" in errors[0]
    assert errors[1] == ""


def test_the_rewritten_schema_accepts_exactly_the_valid_instances(tiny_vocab):
    validator = jsonschema.Draft4Validator(SCHEMA)
    labelled = tuple((validator.is_valid(x), x) for x in INSTANCES)
    assert sum(valid for valid, _ in labelled) == 4
    row = evaluate(OursAdapter(tiny_vocab, 10.0), Case("recursive", "case", SCHEMA, labelled), lambda: None)
    assert row["status"] == "compiled", row.get("detail")
    assert row["valid_rejected"] == row["invalid_accepted"] == 0, row["mistakes"]


def test_only_plain_patterns_and_equal_schemas_make_a_property_free():
    """A property becomes {} where a pattern Python and llguidance read alike repeats its schema; else it stays."""
    def rewritten(pattern: str, value: dict) -> dict:
        node = {"patternProperties": {pattern: {"type": "integer"}}, "properties": {"a": value, "b": CONTENT},
                "definitions": {"content": {"properties": {"next": CONTENT}}}}
        return without_recursive_intersections(node)["properties"]["a"]
    assert rewritten("^a", {"type": "integer", "title": "A"}) == {}
    assert rewritten("^a", {"type": "integer", "minimum": 1}) == {"type": "integer", "minimum": 1}
    assert rewritten("^\\w", {"type": "integer"}) == {"type": "integer"}  # \w: the readings may differ


def test_generations_under_it_validate(tiny_model, compiler):
    """The guarantee end to end: tiny-qwen3 (random weights) under the rewritten schema, 6 seeds."""
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    prompt = tiny_model.tokenizer.encode("JSON:")
    bias = json_finishing_bias(tiny_model.tokenizer)
    results = run_until_idle(Engine(tiny_model, max_batch_size=8), [
        Submission(prompt, SamplingParams(max_tokens=96, seed=seed, logit_bias=bias), grammar, str(seed))
        for seed in range(6)])
    stopped = [result["text"] for result in results.values() if result["finish"] is FinishReason.STOP]
    assert [(text, validation_errors(SCHEMA, text)) for text in stopped if validation_errors(SCHEMA, text)] == []
    assert len(stopped) >= 3, f"only {len(stopped)} finished: the test would prove little"


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_washington_post_compiles(compiler):
    rows = (json.loads(line) for line in (DATA / "WashingtonPost.jsonl").read_text().split("\n") if line.strip())
    schema = next(row["schema"] for row in rows if row["id"] == "WashingtonPost/wp_0_Normalized")
    assert compiler.compile(Constraint.json_schema(schema)).matcher() is not None


def test_a_tool_with_it_compiles(compiler):
    """Tool parameters take the same way: the call grammar is built again with the rewritten schemas."""
    tools = [("post", SCHEMA), ("ping", {"type": "object", "properties": {"n": {"type": "integer"}}})]
    grammar = compiler.compile(Constraint.tool_calls(tools, mode="required"))
    assert grammar.matcher() is not None
