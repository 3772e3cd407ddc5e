"""Outlines output types work here unchanged: Outlines' own conversion gives the constraint, it compiles,
its matcher accepts what the type describes and rejects the rest, and `constrained check module:name`
reports on it."""

from __future__ import annotations

import enum
import sys
from typing import Literal

import pytest
from outlines import grammars, types
from outlines.types.dsl import to_regex
from pydantic import BaseModel

import api.cli
from api.cli import main
from constrained.check import load_source
from constrained.errors import InvalidCheckInput, InvalidConstraint
from constrained.outlines_types import constraint_from_output_type


class Address(BaseModel):
    city: str


class Person(BaseModel):
    name: str
    address: Address


class Size(enum.Enum):
    small = "S"
    large = "L"


PLATE = types.Regex(r"[A-Z]{2}-[0-9]{3}")
LIMITED = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 9}}, "required": ["n"]}

# (output type, constraint kind, a valid output, an invalid output)
CASES = {
    "pydantic nested": (Person, "json_schema", '{"name": "Ada", "address": {"city": "Paris"}}',
                        '{"name": "Ada", "address": {"town": "Paris"}}'),
    "Literal": (Literal["red", "green"], "choice", "green", "blue"),
    "str Enum": (Size, "choice", "L", "large"),
    "Regex": (PLATE, "regex", "AB-123", "AB-12"),
    "integer term": (types.integer, "regex", "-42", "042"),
    "DSL sequence": (types.either("yes", "no") + types.optional("!"), "regex", "no!", "maybe"),
    "JsonSchema": (types.JsonSchema(LIMITED), "json_schema", '{"n": 3}', '{"n": 12}'),
    "CFG Lark": (types.CFG(grammars.arithmetic), "grammar", "1+2*3", "1+"),
    "CFG GBNF": (types.CFG('root ::= "yes" | "no"'), "grammar", "yes", "yes no"),
    "dict": (dict, "grammar", '{"a": [1, 2]}', '{"a": }'),  # Outlines' JSON grammar
}


def accepts(grammar, tokenizer, eos: int, text: str) -> bool:
    """Walk the matcher over `text`'s token ids, then EOS: True when every token is accepted."""
    matcher = grammar.matcher()
    return all(matcher.accept_token(t) for t in tokenizer.encode(text, add_special_tokens=False)) \
        and matcher.accept_token(eos)


@pytest.mark.parametrize("case", CASES)
def test_each_kind_converts_compiles_and_matches_what_the_type_describes(case, compiler, qwen_tokenizer):
    output_type, kind, valid, invalid = CASES[case]
    constraint = constraint_from_output_type(output_type)
    assert constraint.kind == kind
    grammar = compiler.compile(constraint)
    eos = compiler.spec.eos_token_ids[0]
    assert accepts(grammar, qwen_tokenizer, eos, valid)
    assert not accepts(grammar, qwen_tokenizer, eos, invalid)


def test_the_conversion_is_outlines_own():
    assert constraint_from_output_type(Person).value == Person.model_json_schema()  # not the SDK's strict form
    assert constraint_from_output_type(Literal["red", "green"]).value == ("red", "green")
    assert constraint_from_output_type(PLATE).value == to_regex(PLATE)
    assert constraint_from_output_type(Literal[1, 2]).kind == "regex"  # numbers are not choices of strings
    assert constraint_from_output_type(types.CFG(grammars.arithmetic)).value == grammars.arithmetic
    assert constraint_from_output_type(PLATE, backend="outlines_core").backend == "outlines_core"


def test_what_outlines_cannot_convert_or_we_cannot_enforce_is_refused():
    with pytest.raises(InvalidConstraint, match="not an Outlines output type"):
        constraint_from_output_type(object())
    with pytest.raises(InvalidConstraint, match="whitespace_pattern") as refused:
        constraint_from_output_type(types.JsonSchema(LIMITED, whitespace_pattern=r"[\n ]*"))
    assert refused.value.hint


SHAPES = '''
from typing import Literal
from pydantic import BaseModel
from outlines.types import JsonSchema, Regex

Color = Literal["red", "green"]
Plate = Regex(r"[A-Z]{2}-[0-9]{3}")
Limited = JsonSchema({"type": "object", "properties": {"n": {"type": "integer", "maximum": 9}}, "required": ["n"]})
Nothing = object()

class Point(BaseModel):
    x: int
'''


@pytest.fixture
def shapes(tmp_path, monkeypatch):
    """A module of the project being checked, importable from the working directory as `check` finds it."""
    (tmp_path / "outlines_shapes.py").write_text(SHAPES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "outlines_shapes", raising=False)
    return "outlines_shapes"


@pytest.mark.parametrize(("attribute", "kind"), [("Color", "choice"),
                                                  pytest.param("Plate", "regex", marks=pytest.mark.slow)])
def test_check_cli_on_an_outlines_type_exits_0_and_names_its_kind(
        shapes, attribute, kind, tiny_model, monkeypatch, capsys):
    monkeypatch.setattr(api.cli, "load_model", lambda *args, **kwargs: tiny_model)  # the session's model
    common = ["--model", "tiny-qwen3", "--device", "cpu", "--samples", "0"]
    assert main(["check", f"{shapes}:{attribute}", *common]) == 0
    out = capsys.readouterr().out
    assert f"({kind}; model tiny-qwen3, backend llguidance)" in out and "Compile:" in out
    assert "Verdict: ACCEPTED (exit 0)" in out and "keyword" not in out  # no schema: no keyword table


def test_check_sources_schemas_stay_schemas_and_pydantic_stays_on_the_sdk_path(shapes):
    limited = load_source(f"{shapes}:Limited")
    assert (limited.kind, limited.parts[0].schema) == ("schema", LIMITED)  # checked keyword by keyword
    point = load_source(f"{shapes}:Point")
    assert point.kind == "pydantic" and point.parts[0].schema["additionalProperties"] is False
    plate = load_source(f"{shapes}:Plate")
    assert plate.parts == () and plate.constraint("outlines_core").backend == "outlines_core"
    with pytest.raises(InvalidCheckInput, match="neither a pydantic model nor an Outlines output type"):
        load_source(f"{shapes}:Nothing")
