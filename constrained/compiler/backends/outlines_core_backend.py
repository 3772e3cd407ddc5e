"""The outlines-core backend: a regex compiled ahead of time into a token-level automaton (an Index).

Its JSON Schema support is narrow, so everything it would get wrong is refused up front: numeric bounds,
formats whose regex breaks the JSON (email, uri) or is wrong (date-time), recursive $ref (its recursion
limit emits invalid JSON), keywords it drops beside anyOf/$ref/enum, property names it does not escape,
and generic JSON (seconds to compile). Index builds can run for minutes and tens of GB, so each runs in a
child process that is killed at the deadline.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import outlines_core
import torch
from outlines_core import Guide, Index
from outlines_core.json_schema import build_regex_from_schema

from constrained.compiler.backends.base import (
    Backend, CompiledGrammar, EosMatcher, TokenizerSpec, choice_regex, set_bits,
)
from constrained.compiler.keywords import ASSERTIONS, OUTLINES_CORE
from constrained.compiler.schema_check import enforceable_schema, is_no_op
from constrained.compiler.schema_walk import children, reachable, resolve_local
from constrained.compiler.vocabulary import added_token_ids, token_bytes
from constrained.constraints import Constraint
from constrained.errors import CompileError, CompileTimeout, InvalidConstraint

_WORKER = Path(__file__).with_name("outlines_worker.py")
_MEMORY_CAP = 8 << 30  # bytes of address space for one Index build
_MAX_ROLLBACK = 1 << 16  # tokens a matcher can roll back
_UNESCAPED_NAME_CHARS = set('\\.+*?()|[]{}^$"')  # outlines-core puts property names into its regex raw


class OutlinesCoreBackend(Backend):
    name = "outlines_core"
    table = OUTLINES_CORE

    def __init__(self, spec: TokenizerSpec):
        self.spec = spec
        added = added_token_ids(spec.tokenizer)
        by_bytes: dict[bytes, list[int]] = {}
        for token_id, data in token_bytes(spec.tokenizer).items():
            if token_id not in added and token_id < spec.vocab_rows and data:
                by_bytes.setdefault(data, []).append(token_id)
        vocabulary = outlines_core.Vocabulary(spec.eos_token_ids[0], by_bytes)
        self._vocabulary_pickle = pickle.dumps(vocabulary)  # sent to each worker (2 MB for Qwen, 11 ms)
        self._eos_only = spec.eos_only_row()

    @classmethod
    def validate(cls, constraint: Constraint) -> None:
        if constraint.kind in ("tool_calls", "grammar"):
            raise InvalidConstraint(f"outlines-core does not compile {constraint.kind.replace('_', ' ')}",
                                    hint="use backend 'llguidance'")
        if constraint.kind == "json_object":
            raise InvalidConstraint("outlines-core's generic JSON compiles in seconds and limits nesting",
                                    hint="use backend 'auto' or 'llguidance' for json_object")
        super().validate(constraint)
        if constraint.kind == "json_schema" and isinstance(constraint.value, dict):
            _check_structure(constraint.value)

    def compile(self, constraint: Constraint, deadline: float) -> "OutlinesCoreGrammar":
        regex = self._regex(constraint)
        payload = self._vocabulary_pickle + pickle.dumps((regex, self.spec.eos_token_ids[0], _MEMORY_CAP))
        try:
            done = subprocess.run([sys.executable, str(_WORKER)], input=payload, capture_output=True,
                                  timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise CompileTimeout("building the outlines-core index took longer than the deadline") from None
        if done.returncode != 0:
            raise CompileError(f"the outlines-core worker failed: {done.stderr.decode(errors='replace')[-500:]}")
        ok, result = pickle.loads(done.stdout)
        if not ok:
            raise CompileError(f"outlines-core could not build the index: {result}")
        index, terminal = result
        return OutlinesCoreGrammar(index, terminal, self.spec.eos_token_ids, self._eos_only)

    def load(self, data: bytes, deadline: float) -> "OutlinesCoreGrammar":
        index, terminal = pickle.loads(data)  # written by this backend's to_bytes into our own cache
        return OutlinesCoreGrammar(index, terminal, self.spec.eos_token_ids, self._eos_only)

    def _regex(self, constraint: Constraint) -> str:
        if constraint.kind == "regex":
            return constraint.value
        if constraint.kind == "choice":
            return choice_regex(constraint.value)
        try:
            return build_regex_from_schema(json.dumps(enforceable_schema(constraint.value, self.table)))
        except ValueError as exc:
            raise InvalidConstraint(f"outlines-core cannot convert it: {str(exc).splitlines()[0]}") from None


def _check_structure(schema: dict) -> None:
    """Refuse the shapes outlines-core converts wrongly or too slowly (beyond what the keyword table says)."""
    _refuse_recursion(schema)
    for pointer, _, node in reachable(schema):
        asserted = {key for key, value in node.items() if key in ASSERTIONS and not is_no_op(key, value)}
        for alone, allowed in (("$ref", {"$ref"}), ("anyOf", {"anyOf"}),
                               ("enum", {"enum", "type"}), ("const", {"const", "type"})):
            if alone in asserted and asserted - allowed:
                raise InvalidConstraint(f"outlines-core drops {sorted(asserted - allowed)} beside it", path=pointer,
                                        keyword=alone, hint="move them into the referenced/listed schemas, or use backend 'auto'")
        if "$ref" in node and resolve_local(schema, node["$ref"]) is None:
            raise InvalidConstraint("only references inside the schema (#/...)", path=pointer, keyword="$ref")
        if "type" in node and ("enum" in node or "const" in node):
            values = node.get("enum", []) + ([node["const"]] if "const" in node else [])
            if not all(jsonschema.Draft202012Validator({"type": node["type"]}).is_valid(v) for v in values):
                raise InvalidConstraint("outlines-core emits enum values that do not match type", path=pointer,
                                        keyword="enum", hint="drop the values of another type")
        properties = node.get("properties") or {}
        for name in properties:
            if _UNESCAPED_NAME_CHARS & set(name) or any(ord(c) < 32 for c in name):
                raise InvalidConstraint(f"property name {name!r} needs escaping, which outlines-core omits",
                                        path=pointer, keyword="properties", hint="use backend 'auto'")
        missing = set(node.get("required", [])) - set(properties)
        if missing:
            raise InvalidConstraint(f"outlines-core ignores required names without a property: {sorted(missing)}",
                                    path=pointer, keyword="required", hint="declare them in properties")
        types = node.get("type", [])
        types = {types} if isinstance(types, str) else set(types)
        if ("object" in types or not types and "properties" in node) and not properties:
            raise InvalidConstraint("an object without properties is generic JSON: 7.7 s to compile on outlines-core",
                                    path=pointer, keyword="type", hint="declare its properties, or use backend 'auto'")
        if ("array" in types or not types and "items" in node) and not isinstance(node.get("items"), dict):
            raise InvalidConstraint("an array needs a single items schema on outlines-core", path=pointer,
                                    keyword="items", hint="give items a schema, or use backend 'auto'")
        if not types and not asserted & {"enum", "const", "anyOf", "$ref", "properties", "items"}:
            raise InvalidConstraint("any JSON value is generic JSON: slow and depth-limited on outlines-core",
                                    path=pointer, keyword="type", hint="give it a type, or use backend 'auto'")


def _refuse_recursion(schema: dict) -> None:
    """Refuse a $ref that leads back to itself: outlines-core unrolls recursion 3 levels, then emits invalid JSON."""
    finished: set[str] = set()

    def visit(node: object, active: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        for suffix, child in children(node):
            if not suffix.startswith(("/$defs/", "/definitions/")):
                visit(child, active)
        target = resolve_local(schema, node["$ref"]) if isinstance(node.get("$ref"), str) else None
        if target is None or target[0] in finished:
            return
        if target[0] in active:
            raise InvalidConstraint("recursive schemas are cut at depth 3 by outlines-core, emitting invalid JSON",
                                    path=target[0], keyword="$ref", hint="use backend 'auto'")
        visit(target[1], (*active, target[0]))
        finished.add(target[0])

    visit(schema, ("",))


class OutlinesCoreGrammar(CompiledGrammar):
    backend = "outlines_core"

    def __init__(self, index: Index, terminal: frozenset[int], eos_token_ids: tuple[int, ...], eos_only: torch.Tensor):
        self._index = index
        self._terminal = terminal
        self._eos = eos_token_ids
        self._eos_only = eos_only

    def matcher(self) -> "OutlinesCoreMatcher":
        return OutlinesCoreMatcher(self._index, self._terminal, self._eos, self._eos_only)

    def to_bytes(self) -> bytes:
        return pickle.dumps((self._index, self._terminal))


class OutlinesCoreMatcher(EosMatcher):
    """A Guide writes the mask; EOS is handled here (the Guide has no EOS transition, and knows one EOS id)."""

    def __init__(self, index: Index, terminal: frozenset[int], eos_token_ids: tuple[int, ...], eos_only: torch.Tensor):
        super().__init__(eos_token_ids, eos_only)
        self._index = index
        self._guide = Guide(index, max_rollback=_MAX_ROLLBACK)
        self._terminal = terminal
        self._eos_ids = eos_token_ids

    def _consume(self, token_id: int) -> bool:
        if self._index.get_next_state(self._guide.get_state(), token_id) is None:
            return False
        self._guide.advance(token_id, return_tokens=False)
        return True

    def _validate(self, token_ids: list[int], eos_follows: bool) -> int:
        state = self._guide.get_state()
        for count, token_id in enumerate(token_ids):
            state = self._index.get_next_state(state, token_id)
            if state is None:
                return count
        return len(token_ids) + (eos_follows and self._index.is_final_state(state))

    def _rollback(self, num_tokens: int) -> None:
        self._guide.rollback_state(num_tokens)

    def _fill(self, target: torch.Tensor) -> None:
        self._guide.write_mask_into(target.data_ptr(), target.numel(), 4)  # zeroes the row first
        if self._accepting():
            set_bits(target.numpy(), self._eos_ids)

    def _accepting(self) -> bool:
        return self._index.is_final_state(self._guide.get_state())

    def _terminated(self) -> bool:
        return self._guide.get_state() in self._terminal
