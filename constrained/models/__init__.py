"""Models and tokenizers: any Hugging Face causal LM by hub id or local path, plus built-in offline models."""

from constrained.models.loaded import LoadedModel
from constrained.models.loader import DEFAULT_MODEL, load_model

__all__ = ["DEFAULT_MODEL", "LoadedModel", "load_model"]
