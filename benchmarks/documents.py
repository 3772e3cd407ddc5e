"""Real text for long-prompt workloads: the package descriptions of installed dependencies (they ship with any
install of the project), cut into documents of a given number of tokens."""

from __future__ import annotations

from importlib.metadata import metadata

TEXT_SOURCES = ("fastapi", "pydantic", "transformers", "torch", "uvicorn", "jsonschema", "openai")


def corpus_ids(tokenizer) -> list[int]:
    return tokenizer.encode("\n\n".join(metadata(name).get_payload() or "" for name in TEXT_SOURCES))


def document_ids(corpus: list[int], count: int, index: int = 0) -> list[int]:
    """`count` tokens of the corpus starting at a place that depends on `index` (wrapping around)."""
    start = (index * 977) % len(corpus)
    return [corpus[(start + k) % len(corpus)] for k in range(count)]
