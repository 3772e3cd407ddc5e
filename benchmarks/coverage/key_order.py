"""An instance spelled with its keys in an order the grammar takes.

JSON objects are unordered, but grammars emit properties in the schema's order (OpenAI's strict mode says so
too): `{"b": 1, "a": 2}` is the same value as `{"a": 2, "b": 1}`, and a grammar for `properties: {a, b}`
takes only the second. So an instance none of whose own spellings passes is tried once more, each object's
keys searched depth first, in the order their names first appear in the schema: a key the checker takes
next, then the rest after it. Values are written once (not revisited); the search gives up where a value
fails after its key was taken, or at a budget of tokens. So it may miss a passing order but never reports one
that does not pass; valid and invalid instances are tried alike.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.coverage.adapter import Checker

MAX_TOKENS_FED = 20_000  # per instance and spelling: bounds the search on wide objects and invalid instances


class _GiveUp(Exception):
    """The budget is spent, or a value failed where its key was taken (no other key order helps that)."""


def has_reorderable_object(data: Any) -> bool:
    """Whether some object in `data` has two keys or more (else no other key order exists)."""
    if isinstance(data, dict):
        return len(data) > 1 or any(has_reorderable_object(v) for v in data.values())
    if isinstance(data, list):
        return any(has_reorderable_object(v) for v in data)
    return False


def names_in_schema_order(schema: Any) -> dict[str, int]:
    """Each property name declared anywhere in `schema`, by its first appearance."""
    order: dict[str, int] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                for name in node["properties"]:
                    order.setdefault(name, len(order))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return order


def spelled_in_grammar_order(checker: Checker, tokenizer, data: Any, names: dict[str, int],
                             separators: tuple[str, str], ensure_ascii: bool) -> list[int] | None:
    """Token ids of `data` in one serialisation form, its keys in an order `checker` accepts; None if the
    search finds none, or if escaping to ASCII changes nothing (the form without it was searched).
    `names`: `names_in_schema_order` of the schema."""
    if ensure_ascii and json.dumps(data, ensure_ascii=False).isascii():
        return None
    text = _Walk(checker, tokenizer, separators, ensure_ascii, names).spell(data)
    if text is None:
        return None
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids if tokenizer.decode(ids) == text and checker.accepts(ids) else None  # canonical tokens, anew


class _Walk:
    """One search: text written so far, fed to the checker piece by piece, undone on a dead end."""

    def __init__(self, checker: Checker, tokenizer, separators: tuple[str, str], ensure_ascii: bool,
                 names: dict[str, int]):
        self.checker, self.tokenizer = checker, tokenizer
        self.item_separator, self.key_separator = separators
        self.ensure_ascii = ensure_ascii
        self.rank = lambda key: names.get(key, len(names))
        self.pieces: list[str] = []
        self.fed: list[int] = []
        self.spent = 0

    def spell(self, data: Any) -> str | None:
        self.checker.reset()
        try:
            return "".join(self.pieces) if self._value(data) else None
        except (_GiveUp, ValueError):  # ValueError: NaN, which JSON cannot hold
            return None

    def _write(self, piece: str) -> bool:
        ids = self.tokenizer.encode(piece, add_special_tokens=False)
        if self.tokenizer.decode(ids) != piece:
            return False
        self.spent += len(ids)
        if self.spent > MAX_TOKENS_FED:
            raise _GiveUp
        mark = self._mark()
        for token_id in ids:
            if not self.checker.advance(token_id):
                self._undo(mark)
                return False
            self.fed.append(token_id)
        self.pieces.append(piece)
        return True

    def _mark(self) -> tuple[int, int]:
        return len(self.pieces), len(self.fed)

    def _undo(self, mark: tuple[int, int]) -> None:
        pieces, tokens = mark
        if len(self.fed) > tokens:
            self.checker.rollback(len(self.fed) - tokens, self.fed)
        del self.fed[tokens:], self.pieces[pieces:]

    def _value(self, data: Any) -> bool:
        if isinstance(data, dict):
            keys = sorted(data, key=self.rank)  # stable: names the schema does not declare keep their order
            return self._write("{") and self._keys(data, keys, "") and self._write("}")
        if isinstance(data, list):
            return self._array(data)
        return self._write(json.dumps(data, ensure_ascii=self.ensure_ascii, allow_nan=False))

    def _array(self, items: list) -> bool:
        if not self._write("["):
            return False
        for i, item in enumerate(items):
            if i and not self._write(self.item_separator) or not self._value(item):
                return False
        return self._write("]")

    def _keys(self, data: dict, remaining: list[str], lead: str) -> bool:
        """Depth first: each remaining key the checker takes next, then the rest after it."""
        if not remaining:
            return True
        for key in remaining:
            mark = self._mark()
            if self._write(lead + json.dumps(key, ensure_ascii=self.ensure_ascii) + self.key_separator):
                if not self._value(data[key]):
                    raise _GiveUp
                if self._keys(data, [other for other in remaining if other != key], self.item_separator):
                    return True
            self._undo(mark)
        return False
