"""Outlines output types as constraints, so an Outlines user's types work here unchanged.

The conversion is Outlines' own, the one its `Generator` and vLLM adapter run: `python_types_to_terms`
turns the type into a term; a `CFG` term is a grammar, a `JsonSchema` term a schema, any other term a
regular expression (`to_regex`). One refinement keeps the intent visible to the compiler: a term that is
only alternative literal strings (`Literal["a", "b"]`, a string `Enum`, `Choice`) becomes a choice.

`outlines` is imported on first use: importing it costs seconds on its own.
"""

from __future__ import annotations

import json
from typing import Any

from constrained.constraints import Constraint
from constrained.errors import InvalidConstraint


def constraint_from_output_type(output_type: Any, *, backend: str = "auto") -> Constraint:
    """The constraint of an Outlines output type: a pydantic model, dataclass, TypedDict, `JsonSchema`,
    `Literal`, `Enum`, `Regex` or another DSL term (`integer`, `either(...)`, sequences), `CFG`, ...

    Raises InvalidConstraint for what Outlines cannot convert, and for a `JsonSchema` with a
    `whitespace_pattern` (the grammar emits its own separators; dropping the pattern silently would not
    give the output the user asked for).
    """
    from outlines.types.dsl import CFG, JsonSchema, python_types_to_terms, to_regex

    try:
        term = python_types_to_terms(output_type)
        if isinstance(term, CFG):
            return Constraint.grammar(term.definition, backend=backend)
        if isinstance(term, JsonSchema):
            if term.whitespace_pattern:
                raise InvalidConstraint(
                    f"JsonSchema whitespace_pattern {term.whitespace_pattern!r} cannot be enforced",
                    hint="drop it: the output has ', ' and ': ' separators and no other whitespace")
            return Constraint.json_schema(json.loads(term.schema), backend=backend)
        if (options := _literal_strings(term)) is not None:
            return Constraint.choice(options, backend=backend)
        return Constraint.regex(to_regex(term), backend=backend)
    except (TypeError, ValueError, RecursionError) as exc:  # Outlines' own refusals, worded by Outlines
        raise InvalidConstraint(f"not an Outlines output type constrained can use: {exc}") from None


def _literal_strings(term: Any) -> list[str] | None:
    """The strings of a term that is only alternative literal strings (a choice), else None."""
    from outlines.types.dsl import Alternatives, Choice, String, python_types_to_terms

    if isinstance(term, Choice):  # its items convert as `to_regex` converts them
        terms = [python_types_to_terms(item) for item in term.items]
    elif isinstance(term, Alternatives):
        terms = term.terms
    else:
        return None
    if terms and all(isinstance(t, String) for t in terms):
        return [t.value for t in terms]
    return None
