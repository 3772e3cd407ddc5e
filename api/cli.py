"""`constrained serve`: load a model, start the engine, serve the OpenAI-compatible API with uvicorn.
`constrained check`: report on a schema before shipping it (see constrained/check/)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys

import uvicorn

from api.drain import DrainingServer
from api.http_protocol import JSONErrorH11Protocol
from api.log_format import configure_logging
from api.serve_options import ServerSetupError, add_serve_arguments, build_server
from constrained.check import load_instances, load_source, run_check
from constrained.compiler.backends import BACKENDS
from constrained.errors import InvalidCheckInput, ModelLoadError
from constrained.models import DEFAULT_MODEL, load_model

log = logging.getLogger("constrained.serve")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check(args)
    configure_logging(args.log_level, args.log_format)
    if args.replicas or args.ray_address:
        from api.ray_serve import serve_on_ray  # Ray is an optional extra

        return serve_on_ray(args)
    try:
        app, engine = build_server(args)
    except ServerSetupError as exc:
        log.error("%s", exc)
        return 1
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
    add_serve_arguments(serve)
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

