"""References resolved against the base their schema sits in (local_refs.py): embedded resources, anchors and the
`$dynamicRef`s whose target is fixed; exact (labels from jsonschema), or refused."""

from __future__ import annotations

import pytest

from constrained.compiler.local_refs import with_local_refs
from constrained.constraints import Constraint
from constrained.errors import InvalidConstraint

DRAFT7 = "http://json-schema.org/draft-07/schema#"
CASES = [
    # `#/$defs/inner` inside a resource of its own means that resource's $defs, not the root's
    ({"$id": "http://example.com/root.json", "properties": {"foo": {
        "$id": "inner.json", "$defs": {"inner": {"properties": {"bar": {"type": "string"}}}}, "$ref": "#/$defs/inner"}},
      "$ref": "inner.json"}, [{"foo": {"bar": "a"}, "bar": "a"}, {"foo": {"bar": 1}, "bar": "a"}, {"bar": 1}]),
    # a resource embedded under `not`, named relative to its nearest parent resource
    ({"$id": "http://example.com/a.json", "$defs": {"x": {"$id": "http://example.com/b/c.json", "not": {
        "$defs": {"y": {"$id": "d.json", "type": "number"}}}}}, "allOf": [{"$ref": "http://example.com/b/d.json"}]},
     [1, "a"]),
    # a resource under `then` (a keyword the rewrites replace): copied where they leave it alone
    ({"$ref": "http://example.com/ref/then", "then": {"$id": "http://example.com/ref/then", "type": "integer"}},
     [1, "a", 1.5]),
    ({"properties": {"a": {"$ref": "#/oneOf/0"}}, "oneOf": [{"type": "object", "required": ["a"]}, {"type": "array"}]},
     [{"a": {"a": {}}}, {"a": {}}, [1], {"a": []}]),
    # anchors: `$anchor`, and a fragment-only `$id` before 2019-09
    ({"$defs": {"n": {"$anchor": "num", "type": "number"}}, "properties": {"x": {"$ref": "#num"}}},
     [{"x": 1}, {"x": "a"}]),
    ({"$schema": DRAFT7, "definitions": {"n": {"$id": "#num", "type": "number"}}, "items": {"$ref": "#num"}},
     [[1, 2], [1, "a"]]),
    # $dynamicRef: to a plain anchor it is a $ref; the root's $dynamicAnchor wins (the outermost scope)
    ({"$id": "https://test.json-schema.org/ref-dynamicAnchor-same-schema/root", "type": "array",
      "items": {"$dynamicRef": "#items"}, "$defs": {"foo": {"$dynamicAnchor": "items", "type": "string"}}},
     [["a", "b"], ["a", 1]]),
    ({"$id": "https://example.com/root", "$dynamicAnchor": "node", "$ref": "tree",
      "properties": {"v": {"type": "integer"}},
      "$defs": {"tree": {"$id": "tree", "$dynamicAnchor": "node", "type": "object",
                         "properties": {"kids": {"type": "array", "items": {"$dynamicRef": "#node"}}}}}},
     [{"v": 1, "kids": [{"v": 2}]}, {"v": 1, "kids": [{"v": "x"}]}]),
]


@pytest.mark.parametrize("schema,instances", CASES)
def test_references_resolve_as_validators_resolve_them(assert_exact, schema, instances):
    assert_exact(schema, instances)


def test_references_become_pointers_from_the_root():
    schema = CASES[2][0]
    assert with_local_refs(schema) == {"$ref": "#/$defs/constrained-ref-0", "then": {"type": "integer"},
                                       "$defs": {"constrained-ref-0": {"type": "integer"}}}
    plain = {"properties": {"a": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"type": "string"}}}
    assert with_local_refs(plain) is plain  # nothing to rewrite: the same object


@pytest.mark.parametrize("schema,keyword", [
    ({"properties": {"a": {"$ref": "https://example.com/elsewhere.json"}}}, None),  # another document: no fetch
    # two resources declare the dynamic anchor: which one applies depends on the path evaluation took
    ({"$id": "https://example.com/root", "properties": {"a": {"$ref": "a"}, "b": {"$ref": "b"}}, "$defs": {
        "a": {"$id": "a", "$dynamicAnchor": "t", "items": {"$dynamicRef": "#t"}},
        "b": {"$id": "b", "$dynamicAnchor": "t", "type": "string"}}}, "$dynamicRef"),
    # a $ref to a dynamic anchor: jsonschema resolves it as a $dynamicRef (to the root's), the spec as a $ref
    ({"$id": "https://example.com/root", "$dynamicAnchor": "node", "type": "object",
      "properties": {"kids": {"type": "array", "items": {"$ref": "list#node"}}},
      "$defs": {"list": {"$id": "list", "$dynamicAnchor": "node", "type": "object"}}}, None),
])
def test_references_a_grammar_cannot_fix_are_refused(compiler, schema, keyword):
    with pytest.raises(InvalidConstraint) as refused:
        compiler.compile(Constraint.json_schema(schema))
    assert refused.value.keyword == keyword


def test_generations_under_embedded_resources_validate(assert_generations_validate):
    """The guarantee end to end: tiny-qwen3 (random weights) under each schema, 4 seeds each."""
    assert_generations_validate([schema for schema, _ in CASES])
