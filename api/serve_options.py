"""The `constrained serve` options, and the server they describe: model, compiler, engine and app. The CLI
serves it with uvicorn; on Ray Serve (api.ray_serve) every replica builds its own from the same options."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from fastapi import FastAPI

from api.app import DEFAULT_MAX_BODY_BYTES, create_app
from constrained.compiler import Compiler
from constrained.compiler.disk_cache import DiskCache, default_compile_cache_dir
from constrained.compiler.reasoning_grammar import THINKING_BUDGETS
from constrained.compiler.warmup import compile_warmup_schemas
from constrained.engine.async_engine import AsyncEngine
from constrained.errors import ModelLoadError
from constrained.models import DEFAULT_MODEL, load_model
from constrained.models.quantize import QUANTIZATIONS

log = logging.getLogger("constrained.serve")
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ServerSetupError(Exception):
    """The options describe no server that can start: the model does not load, the warm-up schemas cannot be
    read, or the model has no chat template."""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"built-in name, local dir or hub id (default {DEFAULT_MODEL}); also the name served")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("CONSTRAINED_API_KEY"),
                        help="require 'Authorization: Bearer KEY' (default: env CONSTRAINED_API_KEY, else none)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", choices=tuple(DTYPES),
                        help="weights and KV cache (auto: bfloat16 on CUDA, float32 on the CPU; bfloat16 is faster "
                             "on CPUs with AMX: 1.6x a batch-32 SmolLM2 step here, slower on CPUs without)")
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                        help="int8: weight-only int8 linears on the CPU, for faster decoding at small batches at a "
                             "small quality cost (benchmarks/SPEED.md, 'int8 weights')")
    parser.add_argument("--no-prepack", dest="prepack", action="store_false",
                        help="on the CPU, multiply by the weights as stored instead of a copy packed once for oneDNN "
                             "(saves the copy's memory: the linears' weights again; benchmarks/SPEED.md, 'The "
                             "head's kernel, timed; packed weights for batches')")
    parser.add_argument("--torch-compile", action="store_true",
                        help="a request running alone takes steps compiled by torch.compile (CPU; Llama, Qwen2 and "
                             "Qwen3 layers), each token's layers one C++ call compiled ahead of time, and a batch's "
                             "when every row takes one token, its weights packed in: about 2.8x one stream's "
                             "tokens/s, 1.6x a batch of 16's, compiled before serving and cached on disk "
                             "(benchmarks/SPEED.md, 'A compiled step for a lone row')")
    parser.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together")
    parser.add_argument("--max-waiting", type=int, default=256,
                        help="sequences waiting beyond the batch's free slots before 429")
    parser.add_argument("--compile-deadline", type=float, default=10.0, help="seconds to compile one schema")
    parser.add_argument("--compile-cache-dir", default=str(default_compile_cache_dir()),
                        help="where compiled grammars are kept across restarts (default %(default)s)")
    parser.add_argument("--no-compile-cache", dest="compile_cache_dir", action="store_const", const=None,
                        help="keep compiled grammars in memory only")
    parser.add_argument("--compile-cache-bytes", type=int, default=256 << 20,
                        help="estimated bytes of compiled grammars kept in memory (default %(default)s)")
    parser.add_argument("--compile-disk-cache-bytes", type=int, default=1 << 30,
                        help="bytes of the compile cache directory; least recently used entries go first "
                             "(default %(default)s)")
    parser.add_argument("--compile-workers", type=int, default=4,
                        help="threads compiling with llguidance (the fast lane; default %(default)s)")
    parser.add_argument("--compile-slow-workers", type=int, default=2,
                        help="threads compiling with outlines-core, whose builds take seconds (default %(default)s)")
    parser.add_argument("--warmup-schemas", metavar="FILE",
                        help="JSON Lines file of JSON Schemas to compile before serving")
    parser.add_argument("--prefix-cache-bytes", type=int, default=1 << 30,
                        help="keys and values of prompt blocks kept for prompts that start with them (0: off; "
                             "default %(default)s)")
    parser.add_argument("--max-step-tokens", type=int, default=512,
                        help="tokens one forward pass takes: a longer prompt joins in chunks while the others keep "
                             "decoding (0: whole prompts at once; default %(default)s)")
    parser.add_argument("--no-fast-forward", dest="fast_forward", action="store_false",
                        help="sample every token, even those the constraint forces (for comparisons)")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="larger bodies get 413")
    parser.add_argument("--reasoning-effort", default="none", choices=tuple(THINKING_BUDGETS),
                        help="for requests that set none: think first (low/medium/high) or not (default none)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="on SIGTERM, seconds the requests in flight may take to finish (default %(default)s)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", default="text", choices=("text", "json"),
                        help="text lines, or one JSON object a line (time, level, logger, request_id, message)")
    ray = parser.add_argument_group("scale-out on Ray Serve (pip install 'constrained[ray]')")
    ray.add_argument("--replicas", type=int, default=0,
                     help="serve this many replicas behind Ray Serve's proxy on --host:--port (0: one process, no Ray)")
    ray.add_argument("--ray-address", help="join this Ray cluster (e.g. 10.0.0.1:6379) instead of starting one here")
    ray.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves for each replica")
    ray.add_argument("--replica-gpus", type=float,
                     help="GPUs Ray reserves for each replica (default 1 with --device cuda, else 0)")


def parse_serve_options(argv: list[str]) -> argparse.Namespace:
    """`argv` as `constrained serve` reads it (for callers that are not the CLI: Ray's `serve run`)."""
    parser = argparse.ArgumentParser(prog="constrained serve")
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def build_server(args: argparse.Namespace, *, warm_before_serving: bool = False) -> tuple[FastAPI, AsyncEngine]:
    """The app and the engine it serves, as `args` describe them; the caller shuts the engine down.

    `warm_before_serving`: the app's startup waits for the warm-up generation (Ray routes to a replica once it
    has started), instead of starting at once with /health at 503 until warm."""
    try:
        with _progress(f"loading model {args.model} (device {args.device}, dtype {args.dtype}, "
                       f"quantize {args.quantize})"):
            loaded = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype], quantize=args.quantize,
                                prepack=args.prepack)
    except ModelLoadError as exc:
        raise ServerSetupError(str(exc)) from exc
    compiler = Compiler(loaded.tokenizer, vocab_rows=loaded.vocab_rows, eos_token_ids=loaded.eos_token_ids,
                        deadline_s=args.compile_deadline, cache_bytes=args.compile_cache_bytes,
                        workers=args.compile_workers, slow_workers=args.compile_slow_workers,
                        disk_cache=DiskCache(args.compile_cache_dir, max_bytes=args.compile_disk_cache_bytes)
                        if args.compile_cache_dir else None)
    if args.warmup_schemas:
        try:
            with _progress(f"compiling warm-up schemas from {args.warmup_schemas}"):
                log.info("%d warm-up schemas compiled", compile_warmup_schemas(compiler, args.warmup_schemas))
        except (OSError, ValueError) as exc:
            raise ServerSetupError(f"cannot read warm-up schemas: {exc}") from exc
    try:
        engine = AsyncEngine(loaded, compiler=compiler, max_batch_size=args.max_batch_size,
                             max_waiting=args.max_waiting, fast_forward=args.fast_forward,
                             prefix_cache_bytes=args.prefix_cache_bytes, max_step_tokens=args.max_step_tokens or None,
                             torch_compile=args.torch_compile)
    except ValueError as exc:  # --torch-compile on a model or device it has no step for
        raise ServerSetupError(f"--torch-compile: {exc}") from exc
    try:
        app = create_app(engine, model_name=args.model, api_key=args.api_key, max_body_bytes=args.max_body_bytes,
                         reasoning_effort=args.reasoning_effort, warm_before_serving=warm_before_serving)
    except ValueError as exc:  # no chat template
        raise ServerSetupError(str(exc)) from exc
    return app, engine


@contextmanager
def _progress(what: str) -> Iterator[None]:
    """A live "<what> ... 12s" line on a terminal (log lines otherwise), then how long it took."""
    log.info("%s ...", what)
    done = threading.Event()
    start = time.perf_counter()

    def tick() -> None:
        while not done.wait(0.5):
            sys.stderr.write(f"\r{what} ... {time.perf_counter() - start:.0f}s")
            sys.stderr.flush()
        sys.stderr.write("\n")

    ticker = threading.Thread(target=tick, daemon=True) if sys.stderr.isatty() else None
    if ticker is not None:
        ticker.start()
    try:
        yield
    finally:
        done.set()
        if ticker is not None:
            ticker.join()
    log.info("%s: done in %.1f s", what, time.perf_counter() - start)
