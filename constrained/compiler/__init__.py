"""Constraint compilation: JSON Schema / JSON object / regex / choice -> token masks for one tokenizer."""

from constrained.compiler.backends.base import Grammar
from constrained.compiler.compiler import Compiler

__all__ = ["Compiler", "Grammar"]
