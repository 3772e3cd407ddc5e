"""Typed errors of the library. Each carries what a caller needs to answer a client precisely."""

from __future__ import annotations


class ConstrainedError(Exception):
    """Base class of every error `constrained` raises on purpose."""


class InvalidConstraint(ConstrainedError):
    """The constraint cannot be accepted: invalid, too large, or uses a keyword we cannot enforce.

    `path` is a JSON pointer into the schema (``""`` for the root), `keyword` the offending keyword; `tool`
    the index of the tool whose parameters schema failed (None: not a tool's schema).
    """

    def __init__(self, message: str, *, path: str = "", keyword: str | None = None, hint: str | None = None,
                 tool: int | None = None):
        self.path = path
        self.keyword = keyword
        self.hint = hint
        self.tool = tool
        where = f" at '{path or '/'}'" if keyword or path else ""
        what = f"'{keyword}'{where}: " if keyword else (f"at '{path}': " if path else "")
        super().__init__(f"{what}{message}" + (f" ({hint})" if hint else ""))

    @classmethod
    def in_tool(cls, index: int, name: str, exc: InvalidConstraint) -> InvalidConstraint:
        """`exc`, raised by the parameters schema of tool number `index` (function `name`), placed in the tools."""
        return cls(f"function '{name}': {exc}", path=f"/tools/{index}/parameters{exc.path}", tool=index)


class CompileTimeout(ConstrainedError):
    """Compiling the constraint took longer than the deadline; the failure is remembered."""


class CompileError(ConstrainedError):
    """The backend failed to compile a constraint that passed validation."""


class InvalidSamplingParams(ConstrainedError):
    """A sampling parameter is out of range or conflicts with the constraint, or the prompt is empty; `param`
    names it."""

    def __init__(self, message: str, *, param: str):
        self.param = param
        super().__init__(message)


class ModelLoadError(ConstrainedError):
    """The model or its tokenizer could not be loaded (unknown name, missing files, no network)."""


class ConstraintFailed(ConstrainedError):
    """A matcher failed mid-generation (a backend resource limit, such as llguidance's lexer budget on a
    pathological pattern): the choice cannot be completed under its schema, so its request fails."""


class EngineOverloaded(ConstrainedError):
    """The engine's queue is full; retry later."""


class InvalidCheckInput(ConstrainedError):
    """`constrained check` was given something it cannot read: a missing file, a bad model path, a bad line."""
