"""Command line of the coverage harness (see the package docstring); last line: one JSON object."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks.coverage.cases import DEFAULT_DATA_DIR, load_jsonschemabench, load_test_suite, sample
from benchmarks.coverage.pool import ADAPTERS, run_tasks
from benchmarks.coverage.report import figures, markdown

DEFAULT_BACKENDS = ["constrained", "llguidance", "xgrammar"]  # outlines_core on request: seconds per schema


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__)
    parser.add_argument("--data", action="append", default=[], help="a JSONSchemaBench .jsonl (repeatable); "
                        "default: every file in DATA_DIR/jsonschemabench")
    parser.add_argument("--no-jsonschemabench", action="store_true", help="no JSONSchemaBench file (with --test-suite)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="default: ../shared/data")
    parser.add_argument("--test-suite", action="store_true", help="also run DATA_DIR/json-schema-test-suite")
    parser.add_argument("--backend", action="append", choices=list(ADAPTERS), help=f"default: {DEFAULT_BACKENDS}")
    parser.add_argument("--limit", type=int, help="schemas per subset (a seeded sample); default all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--deadline", type=float, default=10.0, help="compile deadline per schema, seconds")
    parser.add_argument("--check-budget", type=float, default=120.0, help="seconds to check one schema's instances")
    parser.add_argument("--memory-cap-gb", type=float, default=8.0, help="address space per worker (0: none)")
    parser.add_argument("--details", type=Path, help="write every result row (JSONL) here")
    return parser.parse_args(argv)


def load_cases(args: argparse.Namespace) -> list:
    files = [Path(p) if Path(p).exists() else args.data_dir / "jsonschemabench" / p for p in args.data]
    if not files and not args.no_jsonschemabench:
        files = sorted((args.data_dir / "jsonschemabench").glob("*.jsonl"))
    subsets = [load_jsonschemabench(path) for path in files]
    if args.test_suite:
        subsets += list(load_test_suite(args.data_dir / "json-schema-test-suite").values())
    return [case for cases in subsets for case in sample(cases, args.limit, args.seed)]


def json_object_compile_ms() -> float:
    """Cold compile of the generic json_object grammar on our compiler (its backend already built)."""
    from constrained.compiler import Compiler
    from constrained.constraints import Constraint
    from constrained.models import load_model

    model = load_model("tiny-qwen3", device="cpu")
    compiler = Compiler(model.tokenizer, vocab_rows=model.vocab_rows, eos_token_ids=model.eos_token_ids)
    compiler.compile(Constraint.json_schema({"type": "integer"}))
    start = time.perf_counter()
    compiler.compile(Constraint.json_object())
    return round((time.perf_counter() - start) * 1e3, 3)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    backends = args.backend or DEFAULT_BACKENDS
    skipped = [b for b in backends if b == "xgrammar" and importlib.util.find_spec("xgrammar") is None]
    if skipped:
        print("xgrammar is not installed (pip install -e '.[bench]'): skipped", file=sys.stderr)
        backends = [b for b in backends if b not in skipped]
    cases = load_cases(args)
    start = time.perf_counter()
    tasks = [(backend, case) for case in cases for backend in backends]  # interleaved: same load on every backend
    rows = []
    for row in run_tasks(tasks, jobs=args.jobs, deadline_s=args.deadline, check_budget_s=args.check_budget,
                         memory_cap=int(args.memory_cap_gb * (1 << 30))):
        rows.append(row)
        if len(rows) % 50 == 0:
            print(f"{len(rows)} of {len(tasks)} done, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if args.details:
        args.details.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "mask_s"}) + "\n" for r in rows))
    results = figures(rows, backends)
    print(markdown(results))
    summary = {
        "run": {"command": "python -m benchmarks.coverage " + " ".join(sys.argv[1:] if argv is None else argv),
                "schemas": len(cases), "limit": args.limit, "seed": args.seed, "jobs": args.jobs,
                "deadline_s": args.deadline, "wall_s": round(time.perf_counter() - start, 1), "skipped": skipped,
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
                           f"{platform.python_version()}", "tokenizer": "Qwen3 (151,936 vocabulary rows)"},
        "json_object_compile_ms": json_object_compile_ms() if "constrained" in backends else None,
        "backends": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
