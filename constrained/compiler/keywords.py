"""Which JSON Schema keywords and formats each backend enforces: data, printed by docs and `constrained check`.

A keyword is accepted in a schema when it is an annotation, or when the chosen backend enforces it.
Every other assertion keyword of any draft (4 to 2020-12) is refused with its path. Keywords no draft
defines are annotations by the JSON Schema spec (validators ignore them), so they are accepted too.
Formats: enforced ones are kept; formats a validator checks (in any draft) but the backend cannot are refused; formats
the validator does not know (e.g. "int32") are annotations and are dropped before compiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
    "contentEncoding", "contentMediaType", "contentSchema",
    # identifiers and containers: they locate subschemas, they assert nothing
    "$schema", "$id", "id", "$anchor", "$dynamicAnchor", "$recursiveAnchor", "$vocabulary", "$defs", "definitions",
})

ASSERTIONS = frozenset({
    "type", "enum", "const",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "format",
    "items", "prefixItems", "additionalItems", "maxItems", "minItems", "uniqueItems",
    "contains", "maxContains", "minContains", "unevaluatedItems",
    "properties", "patternProperties", "additionalProperties", "required", "propertyNames",
    "maxProperties", "minProperties", "dependentRequired", "dependentSchemas", "dependencies",
    "unevaluatedProperties",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "$ref", "$dynamicRef", "$recursiveRef",
})


@dataclass(frozen=True)
class KeywordTable:
    """What one backend enforces: keyword -> how ("" = exactly as JSON Schema says), and the formats."""

    backend: str
    keywords: Mapping[str, str]
    formats: Mapping[str, str]


LLGUIDANCE = KeywordTable(
    backend="llguidance",
    keywords={
        "type": "", "enum": "", "const": "",
        "anyOf": "", "allOf": "intersection; llguidance refuses a few combinations",
        "oneOf": "as anyOf where branches provably cannot overlap; else each branch without the others' "
                 "instances (their complements, as for `not`), or where those cannot be written or grow too large, "
                 "without a name the others require (narrower, never invalid); otherwise refused",
        "not": "as its complement: of type, enum/const, required, properties, bounds, pattern (its automaton "
               "complemented), format (ipv4, ipv6, hostname, date, date-time, uri, email), items (a failing item "
               "among the first positions), anyOf/allOf/not of those; non-integer numbers left out of "
               "`not: {type: integer}`; others refused",
        "if": "as anyOf [if and then, not if and else]; `not if` as for `not`",
        "then": "with `if`", "else": "with `if`",
        "dependencies": "", "dependentRequired": "", "dependentSchemas": "",
        "$ref": "references inside the schema, recursion included; beside other keywords, these ignored before "
                "2019-09 (as validators do), else both hold (llguidance refuses a recursion where each has some)",
        "properties": "emitted in schema order", "required": "", "additionalProperties": "",
        "patternProperties": "overlapping patterns where at most 4 overlap and each is read exactly (no \\d, \\w, \\s)",
        "minProperties": "beside optional properties, as which of them are present (narrower on an open object: "
                         "undeclared keys do not count)",
        "maxProperties": "beside optional properties, as which of them are absent, on a closed object; refused on an "
                         "open one",
        "propertyNames": "one pattern, an enum/const or length bounds, as a patternProperty (not beside "
                         "patternProperties; with additionalProperties other than true, declared names it matches "
                         "must satisfy both)",
        "items": "", "prefixItems": "", "additionalItems": "", "minItems": "", "maxItems": "",
        "uniqueItems": "a check beside the grammar refuses the token that would repeat an item: strings (plain or "
                       "of an enum) by spelling; items of other kinds (numbers, objects, arrays, any value) as JSON "
                       "values, where an item can always still differ where it ends (refused beside an item's "
                       "maximum, maxLength, format, enum or a pattern some match of which can go no further; an "
                       "integer's minimum below 1, a number's below 0); objects closed to more properties: narrower, "
                       "told apart by a plain string property they all require (refused without one); reached through "
                       "properties, additionalProperties, items, $ref, allOf, anyOf and oneOf, in response_format and "
                       "in tools' parameters; refused elsewhere (and in an answer schema sent with tools)",
        "unevaluatedProperties": "beside allOf and $ref, as additionalProperties over the names they declare; beside "
                                 "one anyOf or oneOf, in each branch (narrower under anyOf: where several branches "
                                 "validate, each must evaluate every property); refused beside not, if, contains or "
                                 "dependent schemas",
        "unevaluatedItems": "beside allOf and $ref, as items after the positions they declare; beside one anyOf or "
                            "oneOf, in each branch (narrower under anyOf); refused beside not, if, contains or "
                            "dependent schemas",
        "contains": "narrower: the matching items one after another, starting at one of the first 4 positions",
        "minContains": "with `contains`", "maxContains": "with `contains` whose failing items have a schema",
        "minLength": "", "maxLength": "", "pattern": "", "format": "see formats",
        "minimum": "", "maximum": "", "exclusiveMinimum": "", "exclusiveMaximum": "", "multipleOf": "",
    },
    formats={
        "date-time": "exact pattern of ours (llguidance's own admits Feb 29 of any year, year 0000, second 60)",
        "date": "exact pattern of ours, leap years included",
        "time": "exact pattern of ours",
        "hostname": "exact pattern of ours, at most 253 characters; labels with \"--\" in 3rd-4th position (punycode) "
                    "refused",
        "duration": "", "email": "", "ipv4": "", "ipv6": "", "uuid": "", "uri": "",
        "idn-hostname": "pattern of ours: as hostname (ASCII labels only)",
        "idn-email": "as email (jsonschema checks both alike)",
        "json-pointer": "exact pattern of ours",
        "uri-reference": "pattern of ours: RFC 3986 without IP-literal hosts",
        "iri-reference": "pattern of ours: as uri-reference (ASCII only)", "iri": "pattern of ours: ASCII only",
        "relative-json-pointer": "pattern of ours: no \"0\" before another digit in its number (jsonschema "
                                 "refuses \"201\")",
        "uri-template": "pattern of ours: RFC 6570 without the reserved operators or percent-escaped variable names",
        "regex": "pattern of ours: what both Python's re and ECMA-262 compile, groups nested at most 3 deep, class "
                 "ranges 0-9, 1-9, a-z, A-Z, a-f, A-F",
    },
)

OUTLINES_CORE = KeywordTable(
    backend="outlines_core",
    keywords={
        "type": "object needs properties and array needs items (generic JSON is slow and depth-limited)",
        "enum": "alone (with at most a matching type)", "const": "alone (with at most a matching type)",
        "anyOf": "alone (outlines-core drops sibling keywords)",
        "$ref": "alone, not recursive (its recursion limit emits invalid JSON)",
        "properties": "plain names only; emitted in schema order; extra properties never emitted",
        "required": "names declared in properties",
        "additionalProperties": "ignored: only declared properties are emitted",
        "items": "a single schema", "minItems": "", "maxItems": "",
        "minLength": "", "maxLength": "",
        "format": "see formats",
    },
    formats={"uuid": ""},
)

TABLES: Mapping[str, KeywordTable] = {table.backend: table for table in (LLGUIDANCE, OUTLINES_CORE)}
