"""`constrained serve`: load a model, start the engine, serve the OpenAI-compatible API with uvicorn.
`constrained check`: report on a schema before shipping it (see constrained/check/)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import uvicorn

from api.app import DEFAULT_MAX_BODY_BYTES, create_app
from api.drain import DrainingServer
from api.http_protocol import JSONErrorH11Protocol
from api.log_format import configure_logging
from constrained.check import load_instances, load_source, run_check
from constrained.compiler import Compiler
from constrained.compiler.backends import BACKENDS
from constrained.compiler.disk_cache import DiskCache, default_compile_cache_dir
from constrained.compiler.warmup import compile_warmup_schemas
from constrained.engine.async_engine import AsyncEngine
from constrained.errors import InvalidCheckInput, ModelLoadError
from constrained.models import DEFAULT_MODEL, load_model
from constrained.reasoning import THINKING_BUDGETS

log = logging.getLogger("constrained.serve")
DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check(args)
    configure_logging(args.log_level, args.log_format)
    try:
        with _progress(f"loading model {args.model} (device {args.device}, dtype {args.dtype})"):
            loaded = load_model(args.model, device=args.device, dtype=DTYPES[args.dtype])
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 1
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
            log.error("cannot read warm-up schemas: %s", exc)
            return 1
    engine = AsyncEngine(loaded, compiler=compiler, max_batch_size=args.max_batch_size,
                         max_waiting=args.max_waiting, fast_forward=args.fast_forward)
    app = create_app(engine, model_name=args.model, api_key=args.api_key, max_body_bytes=args.max_body_bytes,
                     reasoning_effort=args.reasoning_effort)
    log.info("serving %s on http://%s:%d/v1 (docs at /docs; API key %s; batch %d, queue %d)", args.model,
             args.host, args.port, "required" if args.api_key else "not required", args.max_batch_size,
             args.max_waiting)
    try:
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                http=JSONErrorH11Protocol, timeout_graceful_shutdown=5,
                                log_config=None)  # uvicorn's loggers go through ours: one format, request ids
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it once it has stopped
            DrainingServer(config, app, drain_timeout=args.drain_timeout).run()
    finally:
        engine.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="constrained", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the OpenAI-compatible HTTP API")
    serve.add_argument("--model", default=DEFAULT_MODEL,
                       help=f"built-in name, local directory or hub id (default {DEFAULT_MODEL}); also the served name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", default=os.environ.get("CONSTRAINED_API_KEY"),
                       help="require 'Authorization: Bearer KEY' (default: env CONSTRAINED_API_KEY, else none)")
    serve.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    serve.add_argument("--dtype", default="auto", choices=tuple(DTYPES),
                       help="weights and KV cache (auto: bfloat16 on CUDA, float32 on the CPU; bfloat16 is faster "
                            "on CPUs with AMX: 1.6x a batch-32 SmolLM2 step here, slower on CPUs without)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together")
    serve.add_argument("--max-waiting", type=int, default=256,
                       help="sequences waiting beyond the batch's free slots before 429")
    serve.add_argument("--compile-deadline", type=float, default=10.0, help="seconds to compile one schema")
    serve.add_argument("--compile-cache-dir", default=str(default_compile_cache_dir()),
                       help="where compiled grammars are kept across restarts (default %(default)s)")
    serve.add_argument("--no-compile-cache", dest="compile_cache_dir", action="store_const", const=None,
                       help="keep compiled grammars in memory only")
    serve.add_argument("--compile-cache-bytes", type=int, default=256 << 20,
                       help="estimated bytes of compiled grammars kept in memory (default %(default)s)")
    serve.add_argument("--compile-disk-cache-bytes", type=int, default=1 << 30,
                       help="bytes of the compile cache directory; least recently used entries go first "
                            "(default %(default)s)")
    serve.add_argument("--compile-workers", type=int, default=4,
                       help="threads compiling with llguidance (the fast lane; default %(default)s)")
    serve.add_argument("--compile-slow-workers", type=int, default=2,
                       help="threads compiling with outlines-core, whose builds take seconds (default %(default)s)")
    serve.add_argument("--warmup-schemas", metavar="FILE",
                       help="JSON Lines file of JSON Schemas to compile before serving")
    serve.add_argument("--no-fast-forward", dest="fast_forward", action="store_false",
                       help="sample every token, even those the constraint forces (for comparisons)")
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="larger bodies get 413")
    serve.add_argument("--reasoning-effort", default="none", choices=tuple(THINKING_BUDGETS),
                       help="for requests that set none: think first (low/medium/high) or not (default none)")
    serve.add_argument("--drain-timeout", type=float, default=30.0,
                       help="on SIGTERM, seconds the requests in flight may take to finish (default %(default)s)")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--log-format", default="text", choices=("text", "json"),
                       help="text lines, or one JSON object a line (time, level, logger, request_id, message)")
    check = commands.add_parser("check", help="report on a schema: enforced keywords, refusals, compile time, "
                                              "samples; exit 1 when the server would refuse it")
    check.add_argument("source", help="SCHEMA.json, an OpenAI tool definition file, or module:name (a pydantic "
                                      "model or an Outlines output type)")
    check.add_argument("--model", default=DEFAULT_MODEL, help=f"model whose tokenizer compiles and that samples "
                                                               f"(default {DEFAULT_MODEL})")
    check.add_argument("--samples", type=int, default=3, help="outputs to generate (0: none)")
    check.add_argument("--max-tokens", type=int, default=256, help="per sample")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--instances", metavar="FILE.jsonl", help='lines {"valid": bool, "data": ...} to walk')
    check.add_argument("--backend", default="auto", choices=("auto", *BACKENDS))
    check.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def check(args: argparse.Namespace) -> int:
    """0: accepted and every check passed; 1: refused or a check failed; 2: unreadable input."""
    try:
        source = load_source(args.source)
        instances = load_instances(args.instances) if args.instances else []
        report = run_check(source, load_model(args.model, device=args.device), backend=args.backend,
                           samples=args.samples, max_tokens=args.max_tokens, seed=args.seed, instances=instances)
    except (InvalidCheckInput, ModelLoadError) as exc:
        print(f"constrained check: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), ensure_ascii=False) if args.json else report.render())
    return report.exit_code


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
