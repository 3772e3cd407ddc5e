"""Ray Serve scale-out: the plain server beside 1 and 2 replicas behind Ray's proxy, same workload, one run.

    python -m benchmarks.scale_out [--model tiny-qwen3] [--replicas 1,2] [--concurrency 8] [--rounds 2]
                                   [--requests-per-client 4] [--max-tokens 48] [--cpus N]

The plain `constrained serve` runs the whole time; each Ray deployment (`constrained serve --replicas N`, a
local Ray cluster, each replica reserving cpus/N CPUs so every setup has the machine's cores) runs in turn
beside it, and their cells alternate round after round, so drift on the machine reaches both alike.
Workloads are benchmarks.serve's (its client code drives every server): `unconstrained` and `schemas` (real
JSONSchemaBench schemas as strict json_schema), C clients keeping C requests in flight. Throughput ratios are
Ray over the plain server of the same rounds. The proxy's overhead is the p50 latency of a one-token request
from one client through 1 replica minus the plain server's. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

import openai
import torch

from benchmarks.engine import compiling_schemas
from benchmarks.serve import free_port, run_cell, running, shared_settings, summarise
from constrained.compiler import Compiler
from constrained.models import load_model


def serve_command(model: str, port: int, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "api", "serve", "--model", model, "--device", "cpu", "--port", str(port),
            "--log-level", "warning", "--no-compile-cache", *extra]


async def one_token_latencies(base_url: str, model: str, n: int) -> list[float]:
    """Seconds per request of `n` sequential one-token, unconstrained, unstreamed requests."""
    latencies = []
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        for i in range(n):
            start = time.perf_counter()
            await client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"hi {i}"}],
                                                 max_tokens=1, seed=i)
            latencies.append(time.perf_counter() - start)
    return latencies


async def compare(urls: dict[str, str], args, workloads: dict[str, list[dict]], shared: dict) -> dict:
    """Per server, per workload: the summary of its rounds; and the one-token latency p50 of each server."""
    for url in urls.values():  # warm the compile caches: compiles are not timed
        for schema in workloads["schemas"]:
            await run_cell(url, args.model, [schema], 1, 1, {**shared, "max_tokens": 1})
    runs: dict[str, dict[str, list]] = {server: {name: [] for name in workloads} for server in urls}
    latencies: dict[str, list[float]] = {server: [] for server in urls}
    for _ in range(args.rounds):
        for server, url in urls.items():
            for name, schemas in workloads.items():
                runs[server][name].append(await run_cell(url, args.model, schemas, args.concurrency,
                                                         args.concurrency * args.requests_per_client, shared))
            latencies[server] += await one_token_latencies(url, args.model, 20)
    return {server: {**{name: summarise(cell) for name, cell in cells.items()},
                     "one_token_p50_ms": round(1000 * statistics.median(latencies[server]), 2)}
            for server, cells in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--replicas", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--schemas", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs shared among each setup's replicas")
    args = parser.parse_args()

    loaded = load_model(args.model, device="cpu", dtype=torch.bfloat16)  # the tokenizer: schemas, bias ids
    compiler = Compiler(loaded.tokenizer, vocab_rows=loaded.vocab_rows, eos_token_ids=loaded.eos_token_ids)
    workloads = {"unconstrained": [], "schemas": compiling_schemas(compiler, args.schemas)}
    shared = shared_settings(loaded.tokenizer, args.max_tokens)
    del loaded, compiler

    figures = {}
    plain_port = free_port()
    with running(serve_command(args.model, plain_port, []), plain_port) as plain_url:
        for replicas in args.replicas:
            port = free_port()
            ray = ["--replicas", str(replicas), "--replica-cpus", str(args.cpus / replicas)]
            with running(serve_command(args.model, port, ray), port) as ray_url:
                figures[replicas] = asyncio.run(compare({"plain": plain_url, "ray": ray_url}, args, workloads, shared))

    print(f"model {args.model}, C={args.concurrency}, max_tokens {args.max_tokens}, {args.rounds} rounds x "
          f"{args.requests_per_client} requests per client, {args.cpus} CPUs per setup")
    print(f"{'replicas':>8} {'server':>6} {'workload':>13} {'TTFT ms':>9} {'tok/s':>8} {'req/s':>7} "
          f"{'1-token p50 ms':>15}")
    headline = {}
    for replicas, servers in figures.items():
        for server, cells in servers.items():
            for name in workloads:
                cell = cells[name]
                print(f"{replicas:>8} {server:>6} {name:>13} {cell['ttft_ms']:>9} {cell['tokens_per_s']:>8} "
                      f"{cell['requests_per_s']:>7} {cells['one_token_p50_ms']:>15}"
                      + (f"  ({cell['failed']} failed)" if cell.get("failed") else ""))
        for name in workloads:
            headline[f"ray{replicas}_over_plain_{name}_requests_per_s"] = round(
                servers["ray"][name]["requests_per_s"] / servers["plain"][name]["requests_per_s"], 3)
    if 1 in figures:
        headline["proxy_overhead_ms"] = round(figures[1]["ray"]["one_token_p50_ms"]
                                              - figures[1]["plain"]["one_token_p50_ms"], 2)
    if {1, 2} <= figures.keys():
        for name in workloads:
            headline[f"ray2_over_ray1_{name}_requests_per_s"] = round(
                figures[2]["ray"][name]["requests_per_s"] / figures[1]["ray"][name]["requests_per_s"], 3)
    print(" ".join(f"{k}={v}" for k, v in headline.items()))
    print(json.dumps({"model": args.model, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                      "rounds": args.rounds, "cpus": args.cpus, "headline": headline,
                      "figures": {str(k): v for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
