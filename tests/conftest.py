"""Shared fixtures: the real Qwen tokenizer, the tiny random Qwen3 on it, a compiler, an engine."""

from __future__ import annotations

import pytest
import torch



def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model():
    """tiny-qwen3: random weights (seed 0) on the real Qwen vocabulary, CPU fp32."""
    from constrained.models import load_model

    return load_model("tiny-qwen3", device="cpu")


@pytest.fixture(scope="session")
def qwen_tokenizer(tiny_model):
    return tiny_model.tokenizer


@pytest.fixture(scope="session")
def compiler(tiny_model):
    from constrained.compiler import Compiler

    return Compiler(tiny_model.tokenizer, vocab_rows=tiny_model.vocab_rows, eos_token_ids=tiny_model.eos_token_ids)
