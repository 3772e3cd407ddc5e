"""What a request asks its output to match, as one immutable value with a canonical cache key."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from llguidance.gbnf_to_lark import any_to_lark

ConstraintKind = Literal["json_schema", "json_object", "regex", "choice", "grammar", "tool_calls", "reasoning"]


@dataclass(frozen=True)
class Constraint:
    """A constraint spec.

    - ``json_schema``: ``value`` is the schema (a dict, or ``True``/``False``);
    - ``json_object``: any JSON object, ``value`` is None;
    - ``regex``: ``value`` is a regular expression the whole output must match;
    - ``choice``: ``value`` is a tuple of strings, the output is exactly one of them;
    - ``grammar``: ``value`` is a context-free grammar in llguidance's Lark dialect (``Constraint.grammar``
      converts GBNF to it); the output is a sentence of it;
    - ``tool_calls``: ``value`` is ``{"tools": [[name, parameters schema], ...], "mode": "auto" | "required"
      | a tool's name, "parallel": bool, "answer": None | schema}``; the output is Qwen-style ``<tool_call>``
      blocks (see constrained/tool_calls.py); in "auto" mode the alternative is free text, or a JSON
      instance of the ``answer`` schema when one is given;
    - ``reasoning``: ``value`` is ``{"budget": int, "answer": [kind, value, backend] | None}``: a
      ``<think>`` block of at most ``budget`` tokens, then the ``answer`` constraint (None: free text),
      see constrained/compiler/reasoning_grammar.py.

    ``backend`` names the compiler backend ("auto" lets the compiler choose).
    """

    kind: ConstraintKind
    value: Any = None
    backend: str = "auto"
    _key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "choice":
            object.__setattr__(self, "value", tuple(self.value))
        canonical = json.dumps([self.kind, self.value, self.backend], sort_keys=True, ensure_ascii=False)
        object.__setattr__(self, "_key", hashlib.sha256(canonical.encode()).hexdigest())

    @property
    def key(self) -> str:
        """Content hash of the canonical (sorted-key) form: equal constraints share compiled grammars."""
        return self._key

    @classmethod
    def json_schema(cls, schema: Any, *, backend: str = "auto") -> "Constraint":
        return cls("json_schema", schema, backend)

    @classmethod
    def json_object(cls, *, backend: str = "auto") -> "Constraint":
        return cls("json_object", None, backend)

    @classmethod
    def regex(cls, pattern: str, *, backend: str = "auto") -> "Constraint":
        return cls("regex", pattern, backend)

    @classmethod
    def choice(cls, options: list[str] | tuple[str, ...], *, backend: str = "auto") -> "Constraint":
        return cls("choice", tuple(options), backend)

    @classmethod
    def grammar(cls, text: str, *, backend: str = "auto") -> "Constraint":
        """A grammar in Lark (llguidance's dialect) or GBNF, converted to Lark by llguidance's converter. Text
        the converter cannot read is kept as Lark (its detector misses Lark that starts with `?start:`, as
        Outlines' grammars do), and the compiler names its errors (a GBNF without `root` among them)."""
        try:
            lark = any_to_lark(text) if isinstance(text, str) else text
        except Exception:  # noqa: BLE001 - the converter raises bare Exceptions too ("No 'root' rule found")
            lark = text
        return cls("grammar", lark, backend)

    @classmethod
    def tool_calls(cls, tools: list[tuple[str, Any]], *, mode: str = "auto", parallel: bool = True,
                   answer: Any = None, backend: str = "auto") -> "Constraint":
        """Tool calls: `tools` are (name, parameters schema) pairs; `mode` "auto", "required" or a tool name;
        `answer`, a schema the text answer must match instead of being free (used in "auto" mode)."""
        value = {"tools": [[name, schema] for name, schema in tools], "mode": mode, "parallel": bool(parallel),
                 "answer": answer}
        return cls("tool_calls", value, backend)

    @classmethod
    def reasoning(cls, answer: "Constraint | None", *, budget: int) -> "Constraint":
        """A think block of at most `budget` tokens, then `answer` (None: free text)."""
        inner = None if answer is None else [answer.kind, answer.value, answer.backend]
        return cls("reasoning", {"budget": int(budget), "answer": inner})

    @property
    def answer(self) -> "Constraint | None":
        """What a reasoning constraint's answer must match (None: free text); the constraint itself otherwise."""
        if self.kind != "reasoning":
            return self
        inner = self.value["answer"]
        return None if inner is None else Constraint(*inner)
