"""What `constrained check` reads: a JSON Schema file, a pydantic model (`module:Class`), an Outlines
output type (`module:name`), or an OpenAI tool definition file (one `{"type": "function", "function": {...}}`
or a list of them); and instance files.

A pydantic model becomes the schema the `openai` SDK sends for it (`parse`, `pydantic_function_tool`):
its strict form, every property required and `additionalProperties: false` everywhere, so the verdict is
the one the server gives to what the SDK sends. Any other Outlines output type (`Literal`, `Regex` and
the DSL, `JsonSchema`, `CFG`, a dataclass, ...) becomes what Outlines' own conversion gives
(constrained/outlines_types.py): a schema, checked keyword by keyword, or a regex, choice or grammar,
which has no keywords: its check is the compile and the samples.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from constrained.constraints import Constraint
from constrained.errors import InvalidCheckInput, InvalidConstraint
from constrained.jsonl import json_lines
from constrained.outlines_types import constraint_from_output_type

NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}  # a tool without parameters


@dataclass(frozen=True)
class Part:
    """One schema of a source: the schema itself, or one tool's parameters."""

    name: str  # "schema" or the tool's name
    pointer: str  # where it sits in what the server compiles: "" or "/tools/<i>/parameters"
    schema: Any


@dataclass(frozen=True)
class Source:
    origin: str  # the file or module:Class as given
    kind: Literal["schema", "pydantic", "tools", "regex", "choice", "grammar"]
    parts: tuple[Part, ...]  # no parts for a regex, choice or grammar: no schema keywords to report
    tools: tuple[dict, ...] = ()  # the tool definitions, for the model's prompt
    spec: Constraint | None = None  # a regex, choice or grammar source: what it compiles to

    @classmethod
    def of_schema(cls, schema: Any, origin: str = "schema") -> "Source":
        """A schema already in memory."""
        return cls(origin, "schema", (Part("schema", "", schema),))

    def constraint(self, backend: str) -> Constraint:
        """What the server compiles for it: the schema, calls to the tools (at least one call), or the spec."""
        if self.spec is not None:
            return Constraint(self.spec.kind, self.spec.value, backend)
        if self.kind == "tools":
            return Constraint.tool_calls([(p.name, p.schema) for p in self.parts], mode="required", backend=backend)
        return Constraint.json_schema(self.parts[0].schema, backend=backend)


@dataclass(frozen=True)
class Instance:
    line: int  # 1-based line of the instance file
    valid: bool  # what the author says: must the schema accept it?
    data: Any


def load_source(spec: str) -> Source:
    """A file (schema or tools), else `module:name` naming a pydantic model or an Outlines output type."""
    path = Path(spec)
    if path.is_file():
        document = _read_json(path)
        if isinstance(document, list) or (isinstance(document, dict) and "function" in document
                                          and document.get("type") == "function"):
            return _tools_source(spec, document if isinstance(document, list) else [document])
        return Source.of_schema(document, spec)
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise InvalidCheckInput(f"{spec!r} is neither a file nor a pydantic model path 'module:Class' "
                                "(nor an Outlines output type 'module:name')")
    value = _import(module_name, attribute)
    if isinstance(value, type) and issubclass(value, BaseModel):
        return Source(spec, "pydantic", (Part(attribute, "", _pydantic_schema(spec, value)),))
    try:
        constraint = constraint_from_output_type(value)
    except InvalidConstraint as exc:
        raise InvalidCheckInput(f"{spec} is neither a pydantic model nor an Outlines output type "
                                f"constrained can use: {exc}") from None
    if constraint.kind == "json_schema":
        return Source(spec, "schema", (Part(attribute, "", constraint.value),))
    return Source(spec, constraint.kind, (), spec=constraint)


def load_instances(path: str) -> list[Instance]:
    """JSONL lines `{"valid": bool, "data": ...}`; blank lines skipped."""
    instances = []
    try:
        rows = list(json_lines(_read_text(Path(path)), path))
    except ValueError as exc:
        raise InvalidCheckInput(str(exc)) from None
    for number, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("valid"), bool) or "data" not in row:
            raise InvalidCheckInput(f'{path}:{number}: expected {{"valid": true|false, "data": ...}}')
        instances.append(Instance(number, row["valid"], row["data"]))
    return instances


def _tools_source(origin: str, tools: list[Any]) -> Source:
    parts = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidCheckInput(f'{origin}: tool {i} is not {{"type": "function", "function": {{"name": ...}}}}')
        parameters = function.get("parameters")
        parts.append(Part(function["name"], f"/tools/{i}/parameters", NO_ARGUMENTS if parameters is None else parameters))
    if not parts:
        raise InvalidCheckInput(f"{origin}: the tool list is empty")
    return Source(origin, "tools", tuple(parts), tuple(tools))


def _import(module_name: str, attribute: str) -> Any:
    if os.getcwd() not in sys.path:  # `module:name` names a module of the project being checked
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise InvalidCheckInput(f"cannot import {module_name}:{attribute}: {exc}") from None


def _pydantic_schema(spec: str, model: type[BaseModel]) -> dict:
    try:
        from openai import pydantic_function_tool
    except ImportError:
        raise InvalidCheckInput("checking a pydantic model needs the openai SDK (pip install openai): "
                                "its strict schema is what the SDK sends") from None
    try:
        return pydantic_function_tool(model)["function"]["parameters"]
    except (TypeError, ValueError) as exc:
        raise InvalidCheckInput(f"{spec} is not a pydantic model the SDK can send: {exc}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InvalidCheckInput(f"{path}: not JSON: {exc}") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidCheckInput(f"cannot read {path}: {exc}") from None
