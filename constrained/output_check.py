"""The last line of defence: a choice that ends with finish_reason "stop" under a JSON constraint is validated
before it leaves the server. The grammar makes a failure impossible; one that happens anyway (a backend bug) is
never returned as content: the server logs it with the schema's hash, counts it, and answers a 500
`constraint_failed` (api/pipeline.py).

Checked: json_schema (the answer against its schema, formats included), json_object, choice, and tool calls
(each call's arguments against its tool's parameters; a text answer against the answer schema). Not checked:
regex and grammar outputs (llguidance's regex and Lark dialects have no exact Python twin). jsonschema-rs
validates; an instance it rejects is validated again with `jsonschema`, the reference the tests use, and
refused only when both agree it is invalid (their format checkers differ at the edges).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from threading import Lock
from typing import Any

import jsonschema_rs

from constrained.answer import AnswerParser
from constrained.constraints import Constraint
from constrained.testing import validation_errors

log = logging.getLogger(__name__)


class OutputCheck:
    """Validates finished choices; keeps the validators of the `max_schemas` schemas seen last."""

    def __init__(self, *, max_schemas: int = 512):
        self._validators: OrderedDict[str, Any] = OrderedDict()
        self._max_schemas = max_schemas
        self._lock = Lock()  # requests finish on the event loop, compiles of validators may race in threads

    @staticmethod
    def applies(constraint: Constraint | None) -> bool:
        """Whether outputs under `constraint` are checked (a think block's answer is)."""
        answer = constraint.answer if constraint is not None else None
        return answer is not None and answer.kind in ("json_schema", "json_object", "choice", "tool_calls")

    def errors(self, constraint: Constraint, text: str, *, reasoning: bool, tools: bool) -> list[str]:
        """Why the finished text of a choice does not match `constraint` (empty when it does)."""
        answer = constraint.answer
        parser = AnswerParser(reasoning=reasoning, tools=tools)
        piece = parser.feed(text, final=True)
        if answer.kind == "choice":
            return [] if piece.content in answer.value else [f"{piece.content!r} is not one of the choices"]
        if answer.kind == "json_object":
            return self._instance_errors(None, piece.content, must_be_object=True)
        if answer.kind == "json_schema":
            return self._instance_errors(answer.value, piece.content)
        schemas = dict((name, schema) for name, schema in answer.value["tools"])
        mode = answer.value["mode"]
        calls = parser.calls
        if not calls:
            if mode != "auto":
                return [f"tool_choice {mode!r} but no tool call"]
            answer_schema = answer.value["answer"]
            return [] if answer_schema is None else self._instance_errors(answer_schema, piece.content)
        problems = []
        for call in calls:
            if call.name not in schemas or mode not in ("auto", "required", call.name):
                problems.append(f"call of {call.name!r}, not an allowed tool")
            else:
                problems += [f"{call.name}: {error}" for error in self._instance_errors(schemas[call.name],
                                                                                         call.arguments)]
        return problems

    def _instance_errors(self, schema: Any, text: str, *, must_be_object: bool = False) -> list[str]:
        try:
            instance = json.loads(text)
        except json.JSONDecodeError as exc:
            return [f"not JSON: {exc}"]
        if must_be_object:
            return [] if isinstance(instance, dict) else ["not a JSON object"]
        validator = self._validator(schema)
        if validator is not None and validator.is_valid(instance):
            return []
        return validation_errors(schema, text)  # the reference validator confirms (or overrules, or stands in)

    def _validator(self, schema: Any) -> Any:
        """jsonschema-rs's validator of `schema`, or None where it cannot build one."""
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key in self._validators:
                self._validators.move_to_end(key)
                return self._validators[key]
        try:
            validator = jsonschema_rs.validator_for(schema, validate_formats=True)
        except Exception:  # noqa: BLE001 - its errors (a draft or keyword it lacks) leave the check to jsonschema
            validator = None
        with self._lock:
            self._validators[key] = validator
            while len(self._validators) > self._max_schemas:
                self._validators.popitem(last=False)
        return validator
