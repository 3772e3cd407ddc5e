"""Rewrites of oneOf / not / dependencies for llguidance: exact (labels from jsonschema), or refused with the path."""

from __future__ import annotations

import jsonschema
import pytest

from benchmarks.coverage.cases import Case
from benchmarks.coverage.evaluate import evaluate
from benchmarks.coverage.ours import OursAdapter
from constrained.compiler.rewrites import llguidance_equivalent
from constrained.errors import InvalidConstraint

DRAFT7 = "http://json-schema.org/draft-07/schema#"
AB = {"a": {"type": "integer"}, "b": {"type": "string"}}
CASES = [
    ({"type": "object", "properties": AB, "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
     [{"a": 1}, {"b": "x"}, {"a": 1, "b": "x"}, {}, 3]),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, ["x", 3, 3.5, None]),
    ({"oneOf": [{"type": "object", "properties": {"k": {"const": "a"}, "x": {"type": "integer"}}, "required": ["k"]},
                {"$ref": "#/$defs/b"}], "$defs": {"b": {"type": "object", "properties": {"k": {"enum": ["b", "c"]}},
                                                        "required": ["k"]}}},
     [{"k": "a", "x": 1}, {"k": "b"}, {"k": "d"}, {"k": "a", "x": "s"}, "k"]),
    ({"oneOf": [{"type": "object", "properties": {"dog": {"type": "string"}}, "additionalProperties": False,
                 "required": ["dog"]}, {"type": "object", "properties": {"cat": {"type": "string"}, "dog": False},
                                        "required": ["cat"]}]},
     [{"dog": "a"}, {"cat": "b"}, {"dog": "a", "cat": "b"}, {}, {"cat": "b", "x": 1}, {"dog": "a", "x": 1}]),
    # narrowed: each branch kept apart from the other by a name it requires, or a property's values
    ({"oneOf": [{"type": "object", "properties": {"kind": {"enum": ["x"]}, "v": {"type": "integer"}}},
                {"$ref": "#/$defs/y"}], "$defs": {"y": {"type": "object", "properties": {"kind": {"const": "y"}},
                                                        "required": ["w"]}}},
     [{"kind": "x", "v": 1}, {"kind": "y", "w": 1}, {"w": 1}, {}, {"kind": "y", "w": 1, "v": "s"}, {"v": "s"}, 3]),
    ({"$schema": DRAFT7, "type": "object", "properties": AB, "dependencies": {"a": ["b"]}},
     [{"a": 1, "b": "x"}, {"b": "x"}, {}, {"a": 1}]),
    ({"type": "object", "properties": AB, "dependencies": {"a": ["b"]}, "dependentRequired": {"b": ["a"]}},
     [{"a": 1, "b": "x"}, {"b": "x"}]),  # 2020-12: `dependencies` is kept (see the next test)
    ({"type": "object", "properties": AB, "required": ["a"], "dependentRequired": {"a": ["b"]}}, [{"a": 1, "b": "x"}, {"a": 1}]),
    ({"type": "object", "properties": AB, "dependentSchemas": {"a": {"properties": {"b": {"const": "y"}}}}},
     [{"a": 1, "b": "y"}, {"b": "x"}, {"a": 1, "b": "x"}]),
    ({"not": {"type": ["array", "object", "null"]}}, [1, 2.5, "s", True, None, [1], {}]),
    ({"type": "object", "properties": AB, "not": {"required": ["a", "b"]}}, [{"a": 1}, {"a": 1, "b": "x"}]),
    ({"properties": {"a": {"type": "integer"}}, "not": {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}},
     [{}, {"c": 1}, {"a": 1}, {"b": 1}, 3]),
    ({"type": "object", "properties": {"a": {"not": {}}}}, [{}, {"a": 1}]),
]


@pytest.fixture(scope="module")
def ours(tiny_vocab):
    return OursAdapter(tiny_vocab, 10.0)  # tokenizer, vocab_rows, eos ids: no weights needed


@pytest.mark.parametrize("schema,instances", CASES)
def test_rewritten_schema_accepts_exactly_the_valid_instances(ours, schema, instances):
    labelled = tuple((jsonschema.validators.validator_for(schema)(schema).is_valid(x), x) for x in instances)
    assert {valid for valid, _ in labelled} == {True, False}
    row = evaluate(ours, Case("rewrites", "case", schema, labelled), lambda: None)
    assert row["status"] == "compiled", row.get("detail")
    assert row["valid_rejected"] == row["invalid_accepted"] == 0, row["mistakes"]


@pytest.mark.parametrize("schema,path,keyword", [
    ({"properties": {"x": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}}, "/properties/x", "oneOf"),
    ({"oneOf": [{"required": ["a"]}, {"required": ["a"]}]}, "", "oneOf"),
    ({"items": {"not": {"type": "integer"}}}, "/items", "not"),
    ({"not": {"pattern": "^a"}}, "", "not"),
    ({"oneOf": [{"required": ["a", "b"]}, {"required": ["b"], "properties": {"a": {"type": "string"}}}]}, "", "oneOf"),
])
def test_what_has_no_exact_equivalent_is_refused_with_its_path(schema, path, keyword):
    with pytest.raises(InvalidConstraint) as caught:
        llguidance_equivalent(schema)
    assert (caught.value.path, caught.value.keyword) == (path, keyword)


def test_dependencies_hold_in_2020_12_too(ours):
    """jsonschema ignores `dependencies` in 2020-12, the suite's compatibility tests assert it: we enforce it."""
    schema = {"type": "object", "properties": AB, "dependencies": {"a": ["b"]}}
    row = evaluate(ours, Case("rewrites", "case", schema, ((False, {"a": 1}), (True, {"a": 1, "b": "x"}))), lambda: None)
    assert row["valid_rejected"] == row["invalid_accepted"] == 0, row["mistakes"]
