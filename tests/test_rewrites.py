"""Rewrites of oneOf / not / if / $ref siblings / dependencies for llguidance: exact (labels from jsonschema), or
refused with the path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.coverage.cases import Case
from benchmarks.coverage.evaluate import evaluate
from benchmarks.coverage.ours import OursAdapter
from constrained.compiler.rewrites import llguidance_equivalent
from constrained.errors import InvalidConstraint

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench"
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
    # complements (negation.py): not, if/then/else, overlapping oneOf
    ({"type": "string", "not": {"enum": ["a", "ab", "b.c"]}}, ["a", "ab", "b.c", "b", "abc", "", "bxc"]),
    ({"not": {"const": 3}}, [3, 3.0, 2, 4, 3.5, "3", None, [3]]),
    ({"type": "integer", "not": {"minimum": 5}}, [4, 5, 6, -7]),
    ({"$schema": "http://json-schema.org/draft-04/schema#", "not": {"maximum": 5, "exclusiveMaximum": True}},
     [5, 4.5, 6, "x"]),
    ({"type": "object", "not": {"properties": {"k": {"type": "string", "minLength": 2}}, "required": ["k"]}},
     [{}, {"k": 1}, {"k": "a"}, {"k": "ab"}]),
    ({"$schema": DRAFT7, "type": "object", "properties": {"k": {"type": "string"}, "v": {}},
      "if": {"properties": {"k": {"const": "num"}}, "required": ["k"]},
      "then": {"properties": {"v": {"type": "number"}}}, "else": {"properties": {"v": {"type": "string"}}}},
     [{"k": "num", "v": 1}, {"k": "num", "v": "x"}, {"k": "str", "v": "x"}, {"k": "str", "v": 1}, {"v": 1},
      {"v": "x"}]),
    ({"if": {"type": "integer"}, "then": {"minimum": 0}, "else": {"type": "string"}}, [1, -1, "x", 1.5, None]),
    ({"$schema": "http://json-schema.org/draft-06/schema#", "type": "string", "if": {"minLength": 9},
      "then": False}, ["a", "a long string", 3]),  # no if/then/else before draft 7
    ({"oneOf": [{"type": "string", "minLength": 2}, {"type": "string", "maxLength": 3}]}, ["a", "ab", "abcd", 1]),
    ({"type": "object", "properties": {"a": {}, "b": {}},
      "oneOf": [{"required": ["a"]}, {"properties": {"b": {"type": "integer"}}}]},
     [{"a": 1}, {"a": 1, "b": 2}, {"a": 1, "b": "x"}, {"b": 2}, {"b": "x"}, {}]),
    ({"oneOf": [{"enum": [1, 2, 3]}, {"enum": [3, 4]}, {"type": "integer", "maximum": 1}]}, [1, 2, 3, 4, 0, 5, "x"]),
    ({"oneOf": [{"$ref": "#/$defs/s"}, {"type": "string", "maxLength": 3}],  # the inlined target is rewritten too
      "$defs": {"s": {"type": "string", "not": {"enum": ["ab"]}}}}, ["ab", "abc", "abcd", "a", 1]),
    # contains as positions
    ({"type": "array", "items": {"type": "integer"}, "contains": {"minimum": 5}}, [[5], [1, 7], [1, 2], [], [7, "x"]]),
    ({"contains": {"const": "a"}, "minContains": 2, "maxItems": 3},
     [["a", "a"], ["b", "a", "a"], ["a"], ["a", "b"], 3]),
    ({"$schema": DRAFT7, "type": "array", "items": [{"type": "string"}], "contains": {"type": "integer"}},
     [["x", 1], [1], ["x"], ["x", "y", 2]]),
    ({"contains": {"type": "string"}, "maxContains": 2, "maxItems": 2}, [["a"], ["a", "b"], [1, "a"], [1, 2], 3]),
    ({"type": "array", "contains": {"type": "string"}, "minContains": 0, "maxItems": 1}, [[], [1], [1, 2]]),
    # maxContains: the other items fail `contains` (its complement)
    ({"contains": {"const": 1}, "maxContains": 1}, [[1], [2, 1], [1, 2], [1, 1], [1, 2, 1], [2], []]),
    ({"contains": {"type": "string"}, "minContains": 0, "maxContains": 1, "maxItems": 3},
     [[], [1, 2], ["a"], [1, "a", 2], ["a", "b"], [1, 2, 3, 4]]),
    ({"$schema": "https://json-schema.org/draft/2019-09/schema", "items": [{"type": "integer"}],
      "contains": {"type": "string"}, "maxContains": 1}, [[1, "a"], [1, "a", 2], [1, "a", "b"], [1], ["a"]]),
    ({"contains": {"const": 1}, "minContains": 2.0, "maxContains": 2}, [[1, 1], [2, 1, 1], [1], [1, 1, 1]]),
    ({"contains": {"const": 1}, "minContains": 2, "maxContains": 1}, [[1], [1, 1], [], "x"]),
    # complements of subschemas whose rewrite narrows (items past the first positions, open keys) are taken of the
    # subschemas as written: each of these once accepted its invalid instances
    ({"not": {"not": {"type": "array", "items": {"type": "integer"}}}}, [[1, 1, 1, "x"], [1, 1, 1, 1, 1, "x"], [1]]),
    ({"type": "object", "not": {"minProperties": 1, "properties": {"a": {}}}}, [{"b": 1}, {}]),
    # a branch's $ref siblings, negated as validators read them: ignored before 2019-09, both hold after
    ({"$schema": "http://json-schema.org/draft-04/schema#", "definitions": {"v": {"enum": ["a", 1]}},
      "oneOf": [{"type": "string", "$ref": "#/definitions/v"}, {"enum": ["a", "b", 1]}]}, ["a", "b", 1, 2]),
    ({"$defs": {"v": {"enum": ["a", 1]}}, "oneOf": [{"type": "string", "$ref": "#/$defs/v"}, {"enum": ["a", "b", 1]}]},
     ["a", "b", 1, 2]),
    # overlapping patternProperties: a name matching both holds to both schemas
    ({"type": "object", "patternProperties": {"a*": {"type": "integer"}, "aaa*": {"maximum": 20}}},
     [{"a": 1}, {"aaaa": 18}, {"aaa": 31}, {"aaa": "x"}, {"b": 2}, {"b": "x"}]),
    ({"type": "object", "patternProperties": {"f.*o": {"type": "integer"}, "b.*": {"type": "integer", "minimum": 5}},
      "additionalProperties": False}, [{"foo": 1}, {"bar": 7}, {"bar": 2}, {"fbo": 9}, {"fbo": 3}, {"xy": 1}]),
    # number bounds past 1e18 (llguidance writes no range that far): brought to 1e18, narrower
    ({"type": "number", "maximum": 18446744073709551615}, [5, 123456789012345, "x"]),
    ({"type": "number", "exclusiveMinimum": -9.727837981879871e+26}, [-9.727837981879871e+26, -123456789012345, 3]),
    # counts written as integral floats
    ({"type": "array", "maxItems": 2.0}, [[1, 2], [1, 2, 3]]),
    ({"type": "object", "minProperties": 1.0}, [{"a": 1}, {}]),
    # oneOf of strings told apart by their patterns (automata), or by values outside the other's pattern
    ({"oneOf": [{"type": "string", "pattern": "^https?://.+$"}, {"type": "string", "pattern": "^\\./.+$"}]},
     ["http://a", "./a", "x", 1]),
    ({"oneOf": [{"enum": ["red", "green"]}, {"type": "string", "pattern": "[0-9a-f]{3}"}]}, ["red", "#abc", "blue"]),
    # the strings a pattern rejects, from its automaton complemented (pattern_automata.py)
    ({"type": "string", "not": {"pattern": "//"}}, ["a/b", "a//b", "//", "", "/", 3]),
    ({"type": "string", "minLength": 1, "not": {"pattern": "^[.,*\\\\\\s{}()-]+$"}},
     ["a", ". ,", "(x)", "\u3000", "", "\\"]),
    ({"not": {"pattern": "^\\w+$"}}, ["ab_1", "é", "a b", "", "a\n", 7]),  # Python's \w: "é" is a word
    ({"type": "string", "oneOf": [{"pattern": "customer"}, {"pattern": "maker"}, {"pattern": "admin"}]},
     ["customer", "admin1", "customermaker", "x", "makeradmin"]),
    ({"oneOf": [{"type": "string", "pattern": "^[A-Fa-f\\d]{4}$"}, {"type": "string"}]}, ["ab12", "ab1", "abcde", 1]),
    ({"oneOf": [{"enum": ["red", "bead"]}, {"type": "string", "pattern": "[0-9a-f]{3}"}]}, ["red", "bead", "f00", "b"]),
    # overlapping only in Python's readings: its \d matches "٣", its `$` matches before a final newline
    ({"oneOf": [{"type": "string", "pattern": "^\\d$"}, {"type": "string", "pattern": "^[٠-٩]$"}]}, ["5", "٣", "x"]),
    ({"oneOf": [{"type": "string", "pattern": "^a$"}, {"type": "string", "pattern": "^a[\n]$"}]}, ["a", "a\n", "b"]),
    # formats' complements: from a pattern holding every string their checker accepts
    ({"type": "string", "oneOf": [{"format": "hostname"}, {"format": "ipv4"}, {"format": "ipv6"}]},
     ["example.com", "1.2.3.4", "::1", "-bad", "a..b"]),
    ({"type": "string", "oneOf": [{"format": "date"}, {"format": "date-time"}]},
     ["2020-01-01", "2020-01-01T10:00:00Z", "2020-13-01", "x"]),
    ({"type": "string", "not": {"format": "email"}}, ["a@b", "ab", "@"]),
    ({"type": "string", "oneOf": [{"format": "uri"}, {"enum": ["."]}]}, [".", "https://a.b/c", "x"]),
    # items' complements: an item failing its schema, at its position (a list) or at one of the first ones
    ({"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "array", "items": {"type": "string"}}]},
     [[1, 2], ["a"], [], [1, "a"], ["a", 1]]),
    ({"type": "array", "not": {"items": {"type": "integer", "minimum": 0}}}, [[1], [-1], [1, 2, -3], [], ["x"]]),
    ({"$schema": DRAFT7, "type": "array", "not": {"items": [{"type": "string"}, {"type": "integer"}]}},
     [["a", 1], [1], ["a", "b"], [], ["a", 1, None]]),
    ({"$schema": DRAFT7, "type": "array", "not": {"items": [{"type": "string"}], "additionalItems": False}},
     [["a"], ["a", 1], [1], []]),
    ({"type": "array", "not": {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}}},
     [["a", 1], ["a", "b"], [1], [], ["a", 1, 2, "c"]]),
    # min/maxProperties beside optional properties
    ({"type": "object", "properties": {"a": {}, "b": {}, "c": {}}, "additionalProperties": False, "minProperties": 1},
     [{}, {"a": 1}, {"b": 1, "c": 2}]),
    ({"type": "object", "properties": {"a": {}, "b": {}}, "additionalProperties": False, "maxProperties": 1},
     [{}, {"a": 1}, {"a": 1, "b": 2}]),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {}}, "minProperties": 1},
     [{"a": 1}, {}, {"a": 1, "x": 2}, {"a": "s"}]),  # open: {"x": 1} is valid, left out (narrower)
    ({"type": "object", "properties": {"id": {}, "a": {}, "b": {}}, "required": ["id"], "additionalProperties": False,
      "minProperties": 2, "maxProperties": 2}, [{"id": 1, "a": 1}, {"id": 1}, {"id": 1, "a": 1, "b": 1}]),
    # propertyNames as a patternProperty
    ({"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}}, [{"ab": 1}, {"Ab": 1}, {}, {"a1": 2}]),
    ({"type": "object", "properties": {"id": {"type": "integer"}, "Bad": {}}, "propertyNames": {"enum": ["id", "n.m"]}},
     [{"id": 1}, {"n.m": "x"}, {"Bad": 1}, {"other": 1}, {"id": "x"}]),
    ({"propertyNames": {"maxLength": 3}, "additionalProperties": {"type": "integer"}},
     [{"abc": 1}, {"abcd": 1}, {"ab": "x"}, "abcd"]),
    ({"$defs": {"k": {"type": "string", "pattern": "^x"}}, "type": "object", "propertyNames": {"$ref": "#/$defs/k"}},
     [{"xa": 1}, {"ya": 1}]),
    ({"type": "object", "properties": {"a": {}}, "propertyNames": False}, [{}, {"a": 1}, {"b": 1}]),
    # recursive $ref with siblings: ignored before 2019-09, both apply after
    ({"$schema": DRAFT7, "definitions": {"n": {"type": "object", "properties": {"next": {"$ref": "#/definitions/n"}}}},
      "properties": {"head": {"$ref": "#/definitions/n", "required": ["x"]}}}, [{"head": {}}, {"head": {"next": 1}}]),
    ({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
      "properties": {"head": {"$ref": "#/$defs/n", "required": ["v"]}}},
     [{"head": {"v": 1}}, {"head": {}}, {"head": {"next": {}, "v": 1}}, {"head": {"next": 1, "v": 1}}]),
    # unevaluatedProperties / unevaluatedItems through allOf and $ref
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "allOf": [{"properties": {"b": {"type": "string"}}},
                                                                            {"$ref": "#/$defs/c"}],
      "$defs": {"c": {"patternProperties": {"^x": {"type": "boolean"}}}}, "unevaluatedProperties": False},
     [{"a": 1, "b": "s", "xy": True}, {"a": 1, "c": 1}, {"b": 1}, {}, {"xy": 1}, "s"]),
    ({"allOf": [{"properties": {"a": {}}}], "unevaluatedProperties": {"type": "integer"}},
     [{"a": "s", "b": 1}, {"a": "s", "b": "s"}]),
    ({"allOf": [{"additionalProperties": {"type": "string"}}], "unevaluatedProperties": False},
     [{"a": "s"}, {"a": 1}]),  # additionalProperties evaluates every property
    ({"type": "object", "propertyNames": {"pattern": "^a"}, "unevaluatedProperties": False},
     [{}, {"ab": 1}]),  # propertyNames evaluates nothing
    ({"prefixItems": [{"type": "integer"}], "allOf": [{"prefixItems": [{}, {"type": "string"}]}],
      "unevaluatedItems": False}, [[1, "s"], [1], [1, "s", 2], ["s"], []]),
    ({"$schema": "https://json-schema.org/draft/2019-09/schema", "items": [{"type": "integer"}],
      "unevaluatedItems": {"type": "string"}}, [[1, "s", "t"], [1, 2], []]),
    # unevaluatedProperties / unevaluatedItems beside one anyOf or oneOf: in each branch
    ({"type": "object", "properties": {"a": {}},
      "anyOf": [{"properties": {"b": {"type": "string"}}, "required": ["b"]},
                {"properties": {"c": {"type": "integer"}}, "required": ["c"]}], "unevaluatedProperties": False},
     [{"a": 1, "b": "x"}, {"c": 1}, {"b": "x", "d": 1}, {"a": 1}, {"c": "x"}]),
    ({"oneOf": [{"properties": {"b": {"const": 1}}, "required": ["b"]}, {"properties": {"c": {"const": 2}},
                                                                        "required": ["c"]}],
      "unevaluatedProperties": False}, [{"b": 1}, {"c": 2}, {"b": 1, "c": 2}, {"b": 1, "x": 0}, {}]),
    ({"prefixItems": [{"type": "integer"}], "anyOf": [{"prefixItems": [{}, {"type": "string"}]},
                                                      {"prefixItems": [{}, {"type": "boolean"}], "maxItems": 2}],
      "unevaluatedItems": False}, [[1, "s"], [1, True], [1, "s", 2], [1, 2], [1]]),
    # oneOf branches closed to each other's names: each with a name the other cannot hold ({} matches both)
    ({"type": "object", "oneOf": [{"additionalProperties": False, "properties": {"next": {"type": "string"}}},
                                  {"additionalProperties": False, "properties": {"previous": {"type": "string"}}}]},
     [{"next": "a"}, {"previous": "b"}, {}, {"next": "a", "previous": "b"}, {"next": 1}, {"other": "c"}]),
    # a $ref target kept under a name of the schema's own: rewritten (oneOf) and its formats exact, like the rest
    ({"type": "object", "properties": {"d": {"$ref": "#/things/d"}}, "required": ["d"],
      "things": {"d": {"oneOf": [{"type": "integer"}, {"type": "string", "format": "date"}]}}},
     [{"d": 1}, {"d": "2024-02-29"}, {"d": "2023-02-29"}, {"d": 1.5}, {}]),
    # oneOf branches apart by how many properties an object holds (composer.json's repositories)
    ({"oneOf": [{"type": "object", "oneOf": [{"required": ["type", "url"]}, {"required": ["type", "package"]}]},
                {"type": "object", "additionalProperties": {"const": False}, "minProperties": 1, "maxProperties": 1}]},
     [{"type": "x", "url": "u"}, {"x": False}, {"type": False}, {"type": "x"}, {"x": False, "y": False}, {}]),
    # patterns opening with lookaheads: one regex where the automata are exact, else a complement beside
    ({"type": "string", "pattern": "^(?!@@)[@a-z]+$"}, ["ab", "@a", "@@", "@@a", "a@@", ""]),
    ({"type": "string", "pattern": "^(?=.*b)(?!x)"}, ["ab", "xb", "a", "b"]),
    ({"type": "string", "pattern": "^(?!\\d)\\w+$"}, ["a1", "1a", "_", "a-"]),  # "é": narrowed (negation.py)
    ({"type": "object", "patternProperties": {"^(?!x-)[a-z-]+$": {"type": "integer"}},
      "additionalProperties": {"type": "string"}}, [{"ab": 1}, {"x-a": "s"}, {"x-a": 1}, {"ab": "s"}]),
]


@pytest.fixture(scope="module")
def ours(tiny_vocab):
    return OursAdapter(tiny_vocab, 10.0)  # tokenizer, vocab_rows, eos ids: no weights needed


@pytest.mark.parametrize("schema,instances", CASES)
def test_rewritten_schema_accepts_exactly_the_valid_instances(assert_exact, schema, instances):
    assert_exact(schema, instances)


def test_generations_under_rewritten_keywords_validate(assert_generations_validate):
    """The guarantee end to end: tiny-qwen3 (random weights) under each rewritten schema, 4 seeds each."""
    assert_generations_validate([schema for schema, _ in CASES])


@pytest.mark.parametrize("schema,path,keyword", [
    ({"properties": {"x": {"oneOf": [{"pattern": "(a)\\1"}, {"pattern": "b$"}]}}}, "/properties/x", "oneOf"),
    ({"items": {"not": {"format": "uuid"}}}, "/items", "not"),  # no pattern holding what its checker accepts
    ({"$schema": "http://json-schema.org/draft-04/schema#", "not": {"format": "date"}}, "", "not"),  # unchecked
    ({"not": {"pattern": "(?=a)"}}, "", "not"),  # a lookahead: no automaton
    ({"type": "string", "not": {"pattern": "[^\\s]"}}, "", "not"),  # \s in a negated class: the readings differ
    ({"properties": {"x": {"if": {"multipleOf": 3}, "then": {"minimum": 9}}}}, "/properties/x", "if"),
    ({"not": {}}, "", None),  # nothing matches
    ({"properties": {"o": {"propertyNames": {"pattern": "^a", "maxLength": 3}}}}, "/properties/o", "propertyNames"),
    ({"patternProperties": {"^x": {}}, "propertyNames": {"pattern": "^a"}}, "", "propertyNames"),
    ({"items": {"contains": {"type": "string", "pattern": "(a)\\1"}, "maxContains": 1}}, "/items", "maxContains"),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "", "oneOf"),  # only non-integers: no schema for them
    # a complement too large for llguidance: 3 ways to fail each of 6 branches, 3**6 alternatives once multiplied out
    ({"not": {"anyOf": [{"type": "object", "required": [f"a{i}", f"b{i}"]} for i in range(6)]}}, "", "not"),
    ({"properties": {"o": {"if": {"properties": {"a": {}}}, "unevaluatedProperties": False}}},
     "/properties/o", "unevaluatedProperties"),  # what is evaluated depends on whether `if` validates
    ({"contains": {"type": "string"}, "unevaluatedItems": False}, "", "unevaluatedItems"),
    ({"properties": {"o": {"patternProperties": {"^\\d+$": {}, "^1": {}}}}}, "/properties/o", "patternProperties"),
    # the complement of a narrowed rewrite (contains at the first positions) is wider than the complement: taken of
    # the rewritten subschemas, these let [2, 2, 2, 2, 1] through
    ({"type": "array", "not": {"contains": {"const": 1}}}, "", "not"),
    ({"type": "array", "if": {"contains": {"const": 1}}, "then": {"maxItems": 2}}, "", "if"),
    ({"oneOf": [{"type": "array", "contains": {"const": 1}}, {"type": "array", "minItems": 5}]}, "", "oneOf"),
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


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_a_recursive_complement_ends():
    """The complement of a recursive oneOf holds that oneOf again: rewriting it stops at a depth, refused (it
    once overflowed Python's stack)."""
    rows = (json.loads(line) for line in (DATA / "Github_hard.jsonl").read_text().split("\n") if line.strip())
    schema = next(row["schema"] for row in rows if row["id"] == "Github_hard/o39210")
    with pytest.raises(InvalidConstraint) as caught:
        llguidance_equivalent(schema)
    assert caught.value.keyword == "oneOf"


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_a_oneof_whose_fine_complements_grow_too_big_takes_the_coarse_ones():
    """Five arrays of enum strings: their item complements (a trie of each enum, at three positions) are too big
    together, so the branches are kept apart without them (as before items had a complement)."""
    rows = (json.loads(line) for line in (DATA / "Github_medium.jsonl").read_text().split("\n") if line.strip())
    schema = next(row["schema"] for row in rows if row["id"] == "Github_medium/o62056")
    branches = llguidance_equivalent(schema)["properties"]["serviceTypes"]["anyOf"]
    assert len(branches) == len(schema["properties"]["serviceTypes"]["oneOf"])
    assert "prefixItems" not in json.dumps(branches)  # no item complement in them


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_oneof_branches_apart_by_their_property_counts_stay_whole():
    """composer.json's repositories: a repository (6 kinds, each requiring 2 names) or {"name": false}: told apart
    by how many properties each holds, kept as they are (their complements grow too large)."""
    rows = (json.loads(line) for line in (DATA / "Github_ultra.jsonl").read_text().split("\n") if line.strip())
    schema = next(row["schema"] for row in rows if row["id"] == "Github_ultra/o21840")
    items = llguidance_equivalent(schema)["properties"]["repositories"]["items"]
    assert items == {"anyOf": schema["properties"]["repositories"]["items"]["oneOf"]}
