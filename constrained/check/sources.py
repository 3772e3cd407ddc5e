"""What `constrained check` reads: a JSON Schema file, a pydantic model (`module:Class`), or an OpenAI tool
definition file (one `{"type": "function", "function": {...}}` or a list of them); and instance files.

A pydantic model becomes the schema the `openai` SDK sends for it (`parse`, `pydantic_function_tool`):
its strict form, every property required and `additionalProperties: false` everywhere, so the verdict is
the one the server gives to what the SDK sends.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from constrained.constraints import Constraint
from constrained.errors import InvalidCheckInput
from constrained.jsonl import json_lines

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
    kind: Literal["schema", "pydantic", "tools"]
    parts: tuple[Part, ...]
    tools: tuple[dict, ...] = ()  # the tool definitions, for the model's prompt

    @classmethod
    def of_schema(cls, schema: Any, origin: str = "schema") -> "Source":
        """A schema already in memory."""
        return cls(origin, "schema", (Part("schema", "", schema),))

    def constraint(self, backend: str) -> Constraint:
        """What the server compiles for it: the schema, or calls to the tools (at least one call)."""
        if self.kind == "tools":
            return Constraint.tool_calls([(p.name, p.schema) for p in self.parts], mode="required", backend=backend)
        return Constraint.json_schema(self.parts[0].schema, backend=backend)


@dataclass(frozen=True)
class Instance:
    line: int  # 1-based line of the instance file
    valid: bool  # what the author says: must the schema accept it?
    data: Any


def load_source(spec: str) -> Source:
    """A file (schema or tools), else `module:Class` naming a pydantic model."""
    path = Path(spec)
    if path.is_file():
        document = _read_json(path)
        if isinstance(document, list) or (isinstance(document, dict) and "function" in document
                                          and document.get("type") == "function"):
            return _tools_source(spec, document if isinstance(document, list) else [document])
        return Source.of_schema(document, spec)
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise InvalidCheckInput(f"{spec!r} is neither a file nor a pydantic model path 'module:Class'")
    return Source(spec, "pydantic", (Part(attribute, "", _pydantic_schema(module_name, attribute)),))


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


def _pydantic_schema(module_name: str, attribute: str) -> dict:
    if os.getcwd() not in sys.path:  # `module:Class` names a module of the project being checked
        sys.path.insert(0, os.getcwd())
    try:
        model = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise InvalidCheckInput(f"cannot import {module_name}:{attribute}: {exc}") from None
    try:
        from openai import pydantic_function_tool
    except ImportError:
        raise InvalidCheckInput("checking a pydantic model needs the openai SDK (pip install openai): "
                                "its strict schema is what the SDK sends") from None
    try:
        return pydantic_function_tool(model)["function"]["parameters"]
    except (TypeError, ValueError) as exc:
        raise InvalidCheckInput(f"{module_name}:{attribute} is not a pydantic model the SDK can send: {exc}") from None


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
