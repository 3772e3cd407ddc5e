"""The request fields of vLLM and SGLang servers that clients send beside OpenAI's (through the SDK's
`extra_body`): constraints and sampling extras, on every endpoint.

- vLLM: `structured_outputs: {json | regex | choice | grammar | json_object}`, and the older `guided_json`,
  `guided_regex`, `guided_choice`, `guided_grammar` (with `guided_decoding_backend`,
  `guided_whitespace_pattern`); sampling `top_k`, `min_p`, `repetition_penalty`.
- SGLang: top-level `regex`, `ebnf`, and `json_schema` as a JSON string.

Grammars may be Lark (llguidance's dialect) or GBNF/EBNF, which llguidance's own converter turns into
Lark (Constraint.grammar). A request asks for one constraint at most: two are a 400 naming both fields.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator, model_validator

from api.errors import APIError, param_of
from api.protocol.base import StrictRequest, WholeInt, or_default, refuse
from constrained.constraints import Constraint
from constrained.json_values import unrepresentable

# guided_decoding_backend values, as vLLM names them, that we serve with our own backends
_BACKENDS = {"auto": "auto", "guidance": "llguidance", "llguidance": "llguidance", "outlines": "outlines_core"}


class StructuredOutputs(StrictRequest):
    """vLLM's `structured_outputs`: exactly one of json, regex, choice, grammar, json_object."""

    json_: dict[str, Any] | bool | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    disable_fallback: bool | None = None  # there is no fallback: a constraint compiles as asked or is refused
    disable_any_whitespace: bool | None = None  # JSON never has free whitespace here either way
    disable_additional_properties: bool | None = None
    whitespace_pattern: str | None = None
    structural_tag: str | None = None

    @field_validator("disable_additional_properties")
    @classmethod
    def _schema_says_it(cls, value: bool | None) -> bool | None:
        if value:
            raise refuse("'disable_additional_properties' is not supported: write \"additionalProperties\": false "
                         "in the schema's objects (the schema is enforced as written).")
        return value

    @field_validator("whitespace_pattern", "structural_tag")
    @classmethod
    def _not_served(cls, value: str | None, info: Any) -> str | None:
        if value is not None:
            reason = {"whitespace_pattern": "JSON is written with fixed separators and no free whitespace, "
                                            "so a model cannot loop on spaces",
                      "structural_tag": "use 'tools' for tool calls, or a 'grammar'"}[info.field_name]
            raise refuse(f"'{info.field_name}' is not supported: {reason}.")
        return value

    def constraint(self, backend: str) -> tuple[str, Constraint]:
        """(the field within structured_outputs, its constraint)."""
        asked = {name: value for name, value in (("json", self.json_), ("regex", self.regex), ("choice", self.choice),
                                                 ("grammar", self.grammar), ("json_object", self.json_object or None))
                 if value is not None}
        if len(asked) != 1:
            raise APIError(400, "'structured_outputs' takes exactly one of json, regex, choice, grammar, json_object"
                                f"{'; got ' + ', '.join(asked) if asked else ''}.", param="structured_outputs")
        (name, value), = asked.items()
        return f"structured_outputs.{name}", _constraint(name, value, backend, f"structured_outputs.{name}")


class EngineExtras(StrictRequest):
    """vLLM's and SGLang's fields, mixed into every endpoint's request model (the base of each: it also
    refuses values JSON cannot carry, anywhere in the request)."""

    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | bool | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    guided_decoding_backend: str | None = None
    guided_whitespace_pattern: str | None = None
    regex: str | None = Field(None, description="SGLang: the output matches this regular expression.")
    ebnf: str | None = Field(None, description="SGLang: the output is a sentence of this EBNF (GBNF) grammar.")
    json_schema: str | None = Field(None, description="SGLang: a JSON Schema as a JSON string.")
    top_k: WholeInt | None = Field(None, description="Keep the k most likely tokens; -1 or 0: all.")
    min_p: float | None = Field(None, description="Keep tokens at least this fraction as likely as the top one.")
    repetition_penalty: float | None = Field(None, description="> 1 discourages tokens of the prompt and output.")

    @model_validator(mode="before")
    @classmethod
    def _json_values_only(cls, data: Any) -> Any:
        """A lone surrogate, NaN or a 65-bit integer anywhere: a 400 naming where, before anything reads it."""
        if (found := unrepresentable(data)) is not None:
            path, reason = found
            raise APIError(400, f"Invalid value for '{param_of(path)}': {reason}.", param=param_of(path),
                           code="invalid_value")
        return data

    @field_validator("guided_decoding_backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        if value is not None and value.split(":")[0] not in _BACKENDS:
            raise refuse(f"'guided_decoding_backend' {value!r} is not served here: use one of "
                         f"{', '.join(map(repr, _BACKENDS))}.")
        return value

    @field_validator("guided_whitespace_pattern")
    @classmethod
    def _fixed_whitespace(cls, value: str | None) -> str | None:
        if value is not None:
            raise refuse("'guided_whitespace_pattern' is not supported: JSON is written with fixed separators and "
                         "no free whitespace, so a model cannot loop on spaces.")
        return value

    def extra_constraint(self) -> tuple[str, Constraint] | None:
        """(field, constraint) of the vLLM/SGLang constraint field that is set, if any; within
        structured_outputs the field is its key ("structured_outputs.regex")."""
        backend = _BACKENDS[(self.guided_decoding_backend or "auto").split(":")[0]]
        fields = {"structured_outputs": self.structured_outputs, "guided_json": self.guided_json,
                  "guided_regex": self.guided_regex, "guided_choice": self.guided_choice,
                  "guided_grammar": self.guided_grammar, "regex": self.regex, "ebnf": self.ebnf,
                  "json_schema": self.json_schema}
        given = [name for name, value in fields.items() if value is not None]
        if len(given) > 1:
            raise one_constraint_error(given[0], given[1])
        if not given:
            return None
        name = given[0]
        if name == "structured_outputs":
            return self.structured_outputs.constraint(backend)
        kind = {"guided_json": "json", "json_schema": "json", "guided_regex": "regex", "regex": "regex",
                "guided_choice": "choice", "guided_grammar": "grammar", "ebnf": "grammar"}[name]
        return name, _constraint(kind, fields[name], backend, name)

    def sampling_extras(self) -> dict[str, Any]:
        """top_k, min_p and repetition_penalty as SamplingParams fields (vLLM's -1 for "all" is 0 here)."""
        top_k = or_default(self.top_k, 0)
        return {"top_k": 0 if top_k == -1 else top_k, "min_p": or_default(self.min_p, 0.0),
                "repetition_penalty": or_default(self.repetition_penalty, 1.0)}


def one_constraint_error(first: str, second: str) -> APIError:
    """Two fields constrain the output; the error names the second (its top-level field)."""
    second = second.split(".")[0]
    return APIError(400, f"Both '{first}' and '{second}' constrain the output: give one of them.", param=second)


def _constraint(kind: str, value: Any, backend: str, param: str) -> Constraint:
    if kind == "json":
        return Constraint.json_schema(_schema(value, param), backend=backend)
    if kind == "regex":
        return Constraint.regex(value, backend=backend)
    if kind == "choice":
        return Constraint.choice(value, backend=backend)
    if kind == "json_object":
        return Constraint.json_object(backend=backend)
    return Constraint.grammar(value, backend=backend)


def _schema(value: Any, param: str) -> Any:
    """A schema given as an object, a boolean, or a JSON string (SGLang and older vLLM clients)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise APIError(400, f"'{param}' is not a JSON Schema: {exc}", param=param) from exc
