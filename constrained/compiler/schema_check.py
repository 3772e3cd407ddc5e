"""Cheap early validation of a constraint: refuse with a path and a fix before spending time compiling.

A schema must be valid JSON Schema (meta-validated against the draft its `$schema` names, 2020-12 by
default), within the size limits, and use only keywords and formats the chosen backend enforces (see
`keywords.py`). `enforceable_schema` then drops what only annotates, so the backend never sees it.
`analyze_schema` says the same keyword by keyword, every refusal included (for `constrained check`);
the compiler raises the first.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import jsonschema
import jsonschema_rs
import llguidance

from constrained.compiler.drafts import validator_class
from constrained.compiler.keywords import ANNOTATIONS, ASSERTIONS, TABLES, KeywordTable
from constrained.compiler.local_refs import with_local_refs
from constrained.compiler.schema_walk import escape, map_document, reachable
from constrained.constraints import Constraint
from constrained.errors import InvalidConstraint
from constrained.json_values import unrepresentable

# Formats jsonschema checks in some draft from 4 to 2020-12: an assertion whatever draft the schema names (a
# draft-4 schema's "iri" means an IRI to its author and to later validators), so one the backend cannot
# enforce is refused. Any other format is unknown to every validator: an annotation, dropped.
ASSERTED_FORMATS = frozenset().union(*(validator.FORMAT_CHECKER.checkers for validator in (
    jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator, jsonschema.Draft202012Validator)))


# Drafts whose meta-schemas both validators hold offline; `$schema` of another (draft 3) is refused.
OFFLINE_DRAFTS = {
    jsonschema.Draft4Validator: "draft-04", jsonschema.Draft6Validator: "draft-06",
    jsonschema.Draft7Validator: "draft-07", jsonschema.Draft201909Validator: "2019-09",
    jsonschema.Draft202012Validator: "2020-12",
}


@dataclass(frozen=True)
class Limits:
    """Size limits: OpenAI's (10 levels, 5,000 properties, 1,000 enum values, 120,000 characters), doubled or more."""

    max_schema_chars: int = 1_000_000  # serialized; the largest JSONSchemaBench schema is 938 kB
    max_depth: int = 32  # subschemas nested inside each other
    max_properties: int = 10_000
    max_optional_properties: int = 2_000  # in one object: each is a branch the parser tracks at every key
    max_enum_values: int = 5_000  # enum entries and choices, over the whole constraint
    max_value_chars: int = 250_000  # property names, enum/const strings and choices
    max_regex_chars: int = 20_000
    max_grammar_chars: int = 100_000


LIMITS = Limits()

# Keywords whose value is a count: a non-negative integer, which drafts from 6 on may write as `2.0`.
COUNT_KEYWORDS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                            "minContains", "maxContains"})

_HINTS = {
    "oneOf": "use anyOf when at most one branch can match anyway",
    "not": "drop it or list what is allowed instead (enum, anyOf)",
    "if": "express the cases with anyOf", "then": "express the cases with anyOf", "else": "express the cases with anyOf",
    "dependencies": "make the properties required or express the cases with anyOf",
    "dependentRequired": "make the properties required or express the cases with anyOf",
    "dependentSchemas": "express the cases with anyOf",
    "contains": "describe the items with items/prefixItems", "minContains": "drop it", "maxContains": "drop it",
    "propertyNames": "list the names in properties with additionalProperties: false",
    "unevaluatedProperties": "use additionalProperties", "unevaluatedItems": "use items",
    "$dynamicRef": "use $ref", "$recursiveRef": "use $ref",
}


def check_constraint(constraint: Constraint, table: KeywordTable, limits: Limits = LIMITS) -> None:
    """Raise InvalidConstraint unless `constraint` is well formed and within what `table`'s backend enforces."""
    if constraint.kind == "json_schema":
        check_schema(constraint.value, table, limits)
    elif constraint.kind == "regex":
        check_regex(constraint.value, limits)
    elif constraint.kind == "choice":
        check_choices(constraint.value, limits)
    elif constraint.kind == "grammar":
        check_grammar(constraint.value, limits)
    elif constraint.kind == "tool_calls":
        check_tool_calls(constraint.value, table, limits)
    elif constraint.kind != "json_object":
        raise InvalidConstraint(f"unknown constraint kind {constraint.kind!r}")


@dataclass(frozen=True)
class KeywordUse:
    """One keyword of one reachable subschema, and what the backend does with it."""

    path: str  # JSON pointer of the subschema holding the keyword ("" = the root)
    keyword: str
    status: Literal["enforced", "refused", "ignored"]
    note: str  # enforced: how ("" = exactly as JSON Schema says); refused: why; ignored: why it asserts nothing
    hint: str | None = None  # refused: how to rewrite it

    def refusal(self) -> InvalidConstraint:
        return InvalidConstraint(self.note, path=self.path, keyword=self.keyword, hint=self.hint)


@dataclass(frozen=True)
class SchemaAnalysis:
    """Every keyword use, and every reason to refuse the schema (empty: accepted).

    A structural problem (not JSON Schema, too large, a dangling $ref) is the only refusal and stops the
    analysis there: keywords of a malformed schema mean nothing."""

    uses: list[KeywordUse] = field(default_factory=list)
    refusals: list[InvalidConstraint] = field(default_factory=list)


def check_schema(schema: Any, table: KeywordTable, limits: Limits = LIMITS) -> None:
    """Raise the first of `analyze_schema`'s refusals, if any."""
    refusals = analyze_schema(schema, table, limits).refusals
    if refusals:
        raise refusals[0]


def analyze_schema(schema: Any, table: KeywordTable, limits: Limits = LIMITS) -> SchemaAnalysis:
    """Bound the size, meta-validate, then classify every keyword: enforced, refused (not enforced by
    `table`'s backend) or ignored (asserts nothing).

    Meta-validation is the costly step, so the limits come first.
    """
    try:
        nodes = _well_formed(schema, limits)
    except InvalidConstraint as exc:
        return SchemaAnalysis(refusals=[exc])
    uses = list(_keyword_uses(nodes, table, ASSERTED_FORMATS))
    return SchemaAnalysis(uses, [use.refusal() for use in uses if use.status == "refused"])


def _well_formed(schema: Any, limits: Limits) -> list[tuple[str, int, dict]]:
    """The reachable subschemas; InvalidConstraint for a malformed schema."""
    if schema is False:
        raise InvalidConstraint("the schema `false` matches nothing", hint="give a schema some value satisfies")
    if not isinstance(schema, (dict, bool)):
        raise InvalidConstraint(f"a JSON Schema is an object or a boolean, not {type(schema).__name__}")
    if (found := unrepresentable(schema)) is not None:
        path, reason = found
        raise InvalidConstraint(f"the schema holds {reason}", path="".join(f"/{escape(str(p))}" for p in path))
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError) as exc:
        raise InvalidConstraint(f"the schema is not JSON: {exc}") from None
    if size > limits.max_schema_chars:
        raise InvalidConstraint(f"schema of {size} characters exceeds the limit of {limits.max_schema_chars}")
    if isinstance(schema, bool):
        return []
    nodes = _reachable_nodes(with_local_refs(schema))
    _check_limits(nodes, limits)
    validator = validator_class(schema)
    if validator not in OFFLINE_DRAFTS:  # jsonschema-rs would fetch its meta-schema over the network
        raise InvalidConstraint(f"$schema {schema['$schema']!r} names a draft that is not supported",
                                keyword="$schema", hint=f"use one of {', '.join(OFFLINE_DRAFTS.values())}")
    if _surely_well_formed(schema, nodes, validator):
        return nodes
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        *parents, last = list(exc.path) or [None]
        keyword = last if isinstance(last, str) else None
        path = "".join(f"/{escape(str(p))}" for p in (parents if keyword else exc.path))
        raise InvalidConstraint(f"invalid JSON Schema: {exc.message}", path=path, keyword=keyword) from None
    return nodes


def enforceable_schema(schema: Any, table: KeywordTable) -> Any:
    """`schema` without what asserts nothing: no-op keywords, formats no validator checks either,
    and "x-" extensions (llguidance would read "x-guidance" as options, e.g. one turning oneOf into anyOf);
    counts written as integral floats (`"maxItems": 2.0`, the same bound to validators) as integers."""
    if schema is True:
        return {}
    def strip(node: dict) -> dict:
        fmt = node.get("format")
        return {
            key: int(value) if key in COUNT_KEYWORDS and isinstance(value, float) and value.is_integer() else value
            for key, value in node.items()
            if not is_no_op(key, value) and not key.startswith("x-")
            and not (key == "format" and fmt not in table.formats and fmt not in ASSERTED_FORMATS)
        }

    return map_document(schema, strip)


def check_tool_calls(value: Any, table: KeywordTable, limits: Limits = LIMITS) -> None:
    """Every tool's parameters schema as check_schema checks one; paths start at "/tools/<i>/parameters"."""
    tools = value.get("tools") or []
    if not tools:
        raise InvalidConstraint("tool calls need at least one tool")
    names = [name for name, _ in tools]
    if value.get("mode") not in ("auto", "required", *names):
        raise InvalidConstraint(f"tool_choice names no tool among {names}")
    for i, (name, schema) in enumerate(tools):
        try:
            check_schema(schema, table, limits)
        except InvalidConstraint as exc:
            raise InvalidConstraint.in_tool(i, name, exc) from exc
    if value.get("answer") is not None:  # the text answer's schema (response_format): its own paths
        check_schema(value["answer"], table, limits)


def check_regex(pattern: Any, limits: Limits = LIMITS) -> None:
    """The pattern must be a string of the regex dialect both backends share (Rust `regex` syntax)."""
    if not isinstance(pattern, str):
        raise InvalidConstraint(f"a regex constraint is a string, not {type(pattern).__name__}")
    _check_encodable(pattern)
    if len(pattern) > limits.max_regex_chars:
        raise InvalidConstraint(f"regex of {len(pattern)} characters exceeds the limit of {limits.max_regex_chars}")
    error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_regex(pattern))
    if error:
        raise InvalidConstraint(f"invalid regex: {error}", hint="lookaround and backreferences are not supported")


def check_grammar(lark: Any, limits: Limits = LIMITS) -> None:
    """The grammar must be a Lark text (llguidance's dialect) that llguidance accepts, within the size limit."""
    if not isinstance(lark, str):
        raise InvalidConstraint(f"a grammar constraint is a string, not {type(lark).__name__}")
    _check_encodable(lark)
    if len(lark) > limits.max_grammar_chars:
        raise InvalidConstraint(f"grammar of {len(lark)} characters exceeds the limit of {limits.max_grammar_chars}")
    try:
        error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(lark))
    except ValueError as exc:  # a syntax error in the Lark text itself
        error = str(exc)
    if error:
        raise InvalidConstraint(f"invalid grammar: {error}",
                                hint="write it in Lark (llguidance's dialect) or GBNF, with a `start` or `root` rule")


def check_choices(options: Any, limits: Limits = LIMITS) -> None:
    """Choices: a non-empty list of non-empty strings, within the enum limits."""
    if not options:
        raise InvalidConstraint("a choice constraint needs at least one option")
    if len(options) > limits.max_enum_values:
        raise InvalidConstraint(f"{len(options)} choices exceed the limit of {limits.max_enum_values}")
    for i, option in enumerate(options):
        if not isinstance(option, str) or not option:
            raise InvalidConstraint(f"choice {i} is {option!r}; every choice must be a non-empty string")
    _check_encodable(options)
    if sum(map(len, options)) > limits.max_value_chars:
        raise InvalidConstraint(f"the choices exceed the limit of {limits.max_value_chars} characters")


def _check_encodable(value: Any) -> None:
    """InvalidConstraint for a regex, grammar or choice that JSON cannot carry (a lone surrogate)."""
    if (found := unrepresentable(value)) is not None:
        raise InvalidConstraint(f"the constraint holds {found[1]}")


def _surely_well_formed(schema: dict, nodes: list[tuple[str, int, dict]], validator: type) -> bool:
    """jsonschema-rs's meta-validation, far faster than jsonschema's (which would be most of a cold compile).
    Trusted when it says valid for a draft jsonschema knows (an unknown `$schema` would make it fetch one) and
    Python's `re` compiles every pattern, as jsonschema's "regex" format asks; otherwise jsonschema decides and
    names the error. Where their verdicts differ (benchmarks/RESULTS.md, "Backend choice") it is harmless."""
    declared = schema.get("$schema")
    if declared is not None and str(declared).rstrip("#") != validator.ID_OF(validator.META_SCHEMA).rstrip("#"):
        return False
    if not jsonschema_rs.meta.is_valid(schema):
        return False
    try:
        for _, _, node in nodes:
            for pattern in (node.get("pattern"), *(node.get("patternProperties") or {})):
                if isinstance(pattern, str):
                    re.compile(pattern)
    except (re.error, TypeError):
        return False
    return True


def _reachable_nodes(schema: dict) -> list[tuple[str, int, dict]]:
    try:
        return list(reachable(schema))
    except KeyError as exc:
        pointer, ref = exc.args
        raise InvalidConstraint(f"{ref!r} points nowhere in the schema", path=pointer, keyword="$ref") from None


def _check_limits(nodes: list[tuple[str, int, dict]], limits: Limits) -> None:
    properties = enum_values = value_chars = 0
    for pointer, depth, node in nodes:
        if depth > limits.max_depth:
            raise InvalidConstraint(f"schemas nested {depth} deep exceed the limit of {limits.max_depth}", path=pointer)
        if isinstance(node.get("properties"), dict):
            properties += len(node["properties"])
            value_chars += sum(map(len, node["properties"]))
            required = node.get("required") if isinstance(node.get("required"), list) else []
            optional = len(set(node["properties"]) - set(required))
            if optional > limits.max_optional_properties:
                raise InvalidConstraint(
                    f"{optional} optional properties in one object exceed the limit of {limits.max_optional_properties}",
                    path=pointer, keyword="properties", hint="make more of them required, or nest them in sub-objects")
        values = (node["enum"] if isinstance(node.get("enum"), list) else []) + ([node["const"]] if "const" in node else [])
        enum_values += len(values)
        value_chars += sum(len(v) for v in values if isinstance(v, str))
    for count, limit, what in ((properties, limits.max_properties, "properties"),
                               (enum_values, limits.max_enum_values, "enum values"),
                               (value_chars, limits.max_value_chars, "characters of names and enum values")):
        if count > limit:
            raise InvalidConstraint(f"{count} {what} exceed the limit of {limit}")


def _keyword_uses(nodes: list[tuple[str, int, dict]], table: KeywordTable,
                  checked_formats: set[str]) -> Iterator[KeywordUse]:
    for pointer, _, node in nodes:
        for key, value in node.items():
            if key in ANNOTATIONS:
                yield KeywordUse(pointer, key, "ignored", "annotation")
            elif key not in ASSERTIONS:
                yield KeywordUse(pointer, key, "ignored", "not a JSON Schema keyword: an annotation")
            elif is_no_op(key, value):
                yield KeywordUse(pointer, key, "ignored", f"asserts nothing with the value {json.dumps(value)}")
            elif key not in table.keywords:
                yield KeywordUse(pointer, key, "refused", f"not enforced by backend {table.backend!r}",
                                 refusal_hint(key, table))
            elif key == "format" and value not in table.formats:
                if value in checked_formats:
                    yield KeywordUse(pointer, key, "refused",
                                     f"format {value!r} is not enforced by backend {table.backend!r}",
                                     refusal_hint(key, table, value))
                else:
                    yield KeywordUse(pointer, key, "ignored", f"format {value!r} is unknown to validators: an annotation")
            elif key == "format":
                how = table.formats[value]
                yield KeywordUse(pointer, key, "enforced", f"{value!r}" + (f": {how}" if how else ""))
            else:
                yield KeywordUse(pointer, key, "enforced", table.keywords[key])


def is_no_op(key: str, value: Any) -> bool:
    """Keywords whose value asserts nothing (`"uniqueItems": false` is common in real schemas)."""
    if key in ("uniqueItems", "exclusiveMinimum", "exclusiveMaximum"):
        return value is False
    return key in ("required", "dependencies", "dependentRequired", "dependentSchemas", "patternProperties") \
        and value in ({}, [])


def refusal_hint(key: str, table: KeywordTable, fmt: str | None = None) -> str:
    """How to rewrite a schema that uses `key` (or format `fmt`), which `table`'s backend does not enforce."""
    other = [t.backend for t in TABLES.values() if t is not table
             and key in t.keywords and (fmt is None or fmt in t.formats)]
    if other:
        return f"backend {other[0]!r} enforces it; or use backend 'auto'"
    if fmt is not None:
        return f"drop it or give a pattern; enforced formats: {', '.join(table.formats)}"
    return _HINTS.get(key, "drop it")
