"""Compiler backends by name; `AUTO` lists, per constraint kind, which to try first (see compiler.py)."""

from constrained.compiler.backends.base import Backend, Grammar, TokenizerSpec
from constrained.compiler.backends.llguidance_backend import LlguidanceBackend
from constrained.compiler.backends.outlines_core_backend import OutlinesCoreBackend

BACKENDS: dict[str, type[Backend]] = {cls.name: cls for cls in (LlguidanceBackend, OutlinesCoreBackend)}

__all__ = ["BACKENDS", "Backend", "Grammar", "LlguidanceBackend", "OutlinesCoreBackend", "TokenizerSpec"]
