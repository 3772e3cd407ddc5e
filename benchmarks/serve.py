"""Service benchmark through the `openai` SDK: constrained vs unconstrained, side by side in one run.

    python -m benchmarks.serve [--model tiny-qwen3] [--device auto] [--dtype auto] [--concurrency 1,8,32]
                               [--rounds 2] [--requests-per-client 2] [--max-tokens 48]

Starts two `python -m api serve` subprocesses on the model (their own processes, so the clients' event
loop does not share an interpreter with a server): one as served (fast-forward on) and one with
--no-fast-forward. Waits for /health, then drives them with `AsyncOpenAI`: C clients send streamed
chat completions back to back (closed loop: C requests always in flight), C x requests-per-client
requests per cell. Cells of every workload alternate, round after round, so load from elsewhere on
the machine drifts into every workload alike; each workload's figures add up its rounds.

Workloads, on the same prompts, with the same max_tokens, temperature 1, a seed per request and the
same logit_bias (json_finishing_bias, so a random-weights model closes its JSON; --no-finishing-bias
drops it for a trained model, which closes its JSON itself):
- `unconstrained`: no response_format; runs to max_tokens.
- `string`: an object with one long string (minLength above max_tokens): runs to max_tokens like
  `unconstrained`, so the batch holds as many sequences: the like-for-like time per token.
- `schemas`: real JSONSchemaBench schemas that compile here, as strict json_schema, one per request
  in turn; these finish when the JSON is complete (usually before max_tokens).
- `keys`: JSONSchemaBench schemas with >= 6 top-level required keys; `keys_no_ff`: the same requests
  on the server without fast-forward. On random weights the grammar forces about a third of their
  tokens: the rest are free strings and numbers.
- `key_heavy`: benchmarks.engine's KEY_HEAVY (long required keys, enums, booleans), where the grammar
  forces most tokens: what fast-forward is for. Its JSON is longer than the default max_tokens, so
  like `unconstrained` it runs to max_tokens.
With `--workloads extract` (what extraction apps send), instead, per `--document-tokens` length N:
- `unconstrained_N`: the same system prompt (EXTRACT_SYSTEM), then a document of N tokens of real text
  (benchmarks/documents.py), a new one for every request, so only the system prompt can come from the prefix
  cache; `extract_N`: the same with EXTRACT_SCHEMA (10 fields) as strict json_schema; ratios against
  `unconstrained_N`. Use `--max-tokens 128 --concurrency 1,16`.
Per request: TTFT (request sent -> first content delta), time per output token (after the first, to the
end, over usage.completion_tokens) and latency (sent -> the stream's end: what an extraction app waits for);
per cell output tokens/s and requests/s over the wall time.
Ratios are against `unconstrained` at the same concurrency (`keys_no_ff` too: both servers decode
unconstrained requests alike). Shorter outputs finish sooner, so requests/s compares like for like
only between `unconstrained` and `string`. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import openai
import torch

from api.serve_options import DTYPES
from benchmarks.documents import corpus_ids, document_ids
from benchmarks.engine import KEY_HEAVY, STRING_SCHEMA, compiling_schemas
from constrained.compiler import Compiler
from constrained.models import load_model
from constrained.models.quantize import QUANTIZATIONS
from constrained.testing import json_finishing_bias

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [f"Reply with the JSON record number {i} for our catalogue." for i in range(16)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path | None = None) -> Iterator[str]:
    """An OpenAI-compatible server subprocess on `port`; yields its /v1 base URL once /health says ready.

    Shared with benchmarks.peers, which starts other services the same way (their chatty output into `log`)."""
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("w")) if log else None
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=output)
        stack.callback(process.wait, timeout=30)
        stack.callback(process.terminate)
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {' '.join(command)}" + (f" (see {log})" if log else ""))
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"


def server(model: str, device: str, dtype: str, *, fast_forward: bool,
           quantize: str = "none", torch_compile: bool = False) -> contextlib.AbstractContextManager[str]:
    """A `constrained serve` subprocess on a free port."""
    port = free_port()
    return running([sys.executable, "-m", "api", "serve", "--model", model, "--device", device, "--dtype", dtype,
                    "--quantize", quantize, "--port", str(port), "--log-level", "warning"]
                   + ([] if fast_forward else ["--no-fast-forward"]) + (["--torch-compile"] if torch_compile else []),
                   port)


def short_messages(i: int) -> list[dict]:
    return [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]


async def one_request(client: openai.AsyncOpenAI, model: str, i: int, schemas: list[dict], shared: dict,
                      messages: Callable[[int], list[dict]] = short_messages) -> dict:
    kwargs = dict(shared)
    if schemas:
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "record", "schema": schemas[i % len(schemas)], "strict": True}}
    start = time.perf_counter()
    first = None
    tokens = 0
    try:
        stream = await client.chat.completions.create(
            model=model, messages=messages(i), seed=i, stream=True,
            stream_options={"include_usage": True}, **kwargs)
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    except openai.APIError:  # a constraint failed (a 500, or an error frame mid-stream): counted, not timed
        return {"failed": True}
    end = time.perf_counter()
    first = first or end
    return {"ttft": first - start, "tpot": (end - first) / (tokens - 1) if tokens > 1 else None, "tokens": tokens,
            "latency": end - start}


async def run_cell(base_url: str, model: str, schemas: list[dict], concurrency: int, requests: int,
                   shared: dict, messages: Callable[[int], list[dict]] = short_messages) -> tuple[list[dict], float]:
    """Every request's figures and the wall time, C clients keeping C requests in flight.

    A client (connection pool) per cell: a connection left idle while the other server works would
    be closed by the server's keep-alive timeout, and reusing it could fail mid-request."""
    pending = iter(range(requests))
    results: list[dict] = []
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
        async def worker() -> None:
            for i in pending:
                results.append(await one_request(client, model, i, schemas, shared, messages))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results, time.perf_counter() - start


def shared_settings(tokenizer, max_tokens: int, finishing_bias: bool = True) -> dict:
    """Request fields every workload shares: a random-weights model needs json_finishing_bias to close its JSON."""
    bias = json_finishing_bias(tokenizer) if finishing_bias else {}
    return {"max_tokens": max_tokens, "temperature": 1.0, "logit_bias": {str(k): v for k, v in bias.items()}}


def summarise(runs: list[tuple[list[dict], float]]) -> dict:
    results = [r for rs, _ in runs for r in rs if not r.get("failed")]
    failed = sum(1 for rs, _ in runs for r in rs if r.get("failed"))
    wall = sum(w for _, w in runs)
    tpots = [r["tpot"] for r in results if r["tpot"] is not None]
    tokens = sum(r["tokens"] for r in results)
    ttfts, latencies = sorted(r["ttft"] for r in results), sorted(r["latency"] for r in results)
    return {"requests": len(results), "tokens": tokens,
            "ttft_ms": round(1000 * statistics.mean(ttfts), 2),
            "ttft_p50_ms": _percentile_ms(ttfts, 0.5), "ttft_p99_ms": _percentile_ms(ttfts, 0.99),
            "latency_p50_ms": _percentile_ms(latencies, 0.5), "latency_p99_ms": _percentile_ms(latencies, 0.99),
            "tpot_ms": round(1000 * statistics.mean(tpots), 3) if tpots else None,
            "tokens_per_s": round(tokens / wall, 1), "requests_per_s": round(len(results) / wall, 2),
            **({"failed": failed} if failed else {})}


def _percentile_ms(ordered: list[float], fraction: float) -> float:
    """The value at `fraction` of the sorted seconds (the upper middle for the median), in milliseconds."""
    index = len(ordered) // 2 if fraction == 0.5 else min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return round(1000 * ordered[index], 2)


class Workload(NamedTuple):
    """Requests of one cell: their schemas (none: unconstrained), which server (fast-forward or not), their
    messages, and the workload their ratios are against."""

    schemas: list[dict]
    fast_forward: bool = True
    messages: Callable[[int], list[dict]] = short_messages
    baseline: str = "unconstrained"


EXTRACT_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "required": ["title", "kind", "language", "license", "summary", "topics", "mentions_gpu", "python_versions",
                 "install_command", "sections"],
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "kind": {"enum": ["library", "framework", "tool", "service", "other"]},
        "language": {"enum": ["python", "c++", "rust", "mixed", "unknown"]},
        "license": {"type": "string", "maxLength": 30},
        "summary": {"type": "string", "maxLength": 160},
        "topics": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 4},
        "mentions_gpu": {"type": "boolean"},
        "python_versions": {"type": "array", "items": {"type": "string", "pattern": "^3\\.[0-9]{1,2}$"},
                            "maxItems": 3},
        "install_command": {"type": "string", "maxLength": 60},
        "sections": {"type": "integer", "minimum": 0, "maximum": 100},
    },
}
EXTRACT_SYSTEM = (
    "You are a careful information-extraction system. You read one document, the description of a software "
    "package, and you return a single JSON object that follows the schema you were given, and nothing else. Use "
    "only facts stated in the document. When the document does not state a value, use an empty string, an empty "
    "list, false or 0. Keep the summary to one sentence. Topics are short lowercase nouns. The install command is "
    "the exact command the document shows, if any. Count the document's top-level sections. Do not explain.")


def extract_messages(tokenizer, document_tokens: int, first: int) -> Callable[[int], list[dict]]:
    """The same system prompt on every request, then a document of about `document_tokens` tokens of its own: a
    new one at each call (numbered from `first`), so only the system prompt is ever in the prefix cache."""
    corpus = corpus_ids(tokenizer)
    numbers = itertools.count(first)

    def messages(i: int) -> list[dict]:
        document = tokenizer.decode(document_ids(corpus, document_tokens, next(numbers)))
        return [{"role": "system", "content": EXTRACT_SYSTEM},
                {"role": "user", "content": f"Document:\n{document}\n\nExtract the record."}]

    return messages


def extract_cells(lengths: list[int]) -> dict[str, tuple[list[dict], int, int]]:
    """Per document length N, `unconstrained_N` and `extract_N` as (schemas, N, the number of their first
    document): each cell reads documents of its own."""
    cells = {}
    for k, length in enumerate(lengths):
        cells[f"unconstrained_{length}"] = ([], length, 20_000 * k)
        cells[f"extract_{length}"] = ([EXTRACT_SCHEMA], length, 20_000 * k + 10_000)
    return cells


def add_ratios(cells: dict, workloads: dict[str, Workload]) -> None:
    """Each workload vs its baseline cell (an unconstrained one) of the same concurrency."""
    for name, cell in cells.items():
        base = cells[workloads[name].baseline]
        if base is not cell:
            cell["tpot_ratio"] = round(cell["tpot_ms"] / base["tpot_ms"], 3) if cell["tpot_ms"] else None
            cell["tokens_per_s_ratio"] = round(cell["tokens_per_s"] / base["tokens_per_s"], 3)
            cell["ttft_ratio"] = round(cell["ttft_ms"] / base["ttft_ms"], 3)


async def run_all(urls: dict[bool, str], args, workloads: dict[str, Workload], shared: dict) -> dict:
    """Per concurrency, per workload: the summary of its rounds, with ratios. Progress goes to stderr."""
    start = time.perf_counter()
    for workload in workloads.values():  # warm the compile caches: compiles are not timed
        for schema in workload.schemas:
            await run_cell(urls[workload.fast_forward], args.model, [schema], 1, 1, {**shared, "max_tokens": 1})
    print(f"compile caches warmed in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    figures = {}
    for concurrency in args.concurrency:
        runs: dict[str, list] = {name: [] for name in workloads}
        for _ in range(args.rounds):
            for name, workload in workloads.items():
                runs[name].append(await run_cell(urls[workload.fast_forward], args.model, workload.schemas,
                                                 concurrency, concurrency * args.requests_per_client, shared,
                                                 workload.messages))
                cell = json.dumps(summarise(runs[name][-1:]))
                print(f"{time.perf_counter() - start:.1f} s: C={concurrency} {name} {cell}", file=sys.stderr, flush=True)
        cells = {name: summarise(cell_runs) for name, cell_runs in runs.items()}
        add_ratios(cells, workloads)
        figures[str(concurrency)] = cells
    return figures


def extract_headline(figures: dict) -> dict:
    """Per concurrency and document length: TTFT p50 and p99, and the extraction's TPOT ratio."""
    return {f"{name}_c{c}_{field}": cell[key] for c, cells in figures.items() for name, cell in cells.items()
            for field, key in (("ttft_p50_ms", "ttft_p50_ms"), ("ttft_p99_ms", "ttft_p99_ms"),
                               ("tpot_ratio", "tpot_ratio")) if key in cell}


def headline(figures: dict) -> dict:
    """The issue's targets: TPOT ratios, fast-forward's tokens/s on key-heavy schemas, C_max/C_min throughput."""
    low, high = figures[min(figures, key=int)], figures[max(figures, key=int)]
    return {
        **{f"tpot_ratio_{name}_c{c}": figures[c][name]["tpot_ratio"] for c in figures for name in ("string", "schemas")},
        **{f"{name}_ff_tokens_per_s_ratio_c{c}": figures[c][name]["tokens_per_s_ratio"]
           for c in figures for name in ("keys", "key_heavy")},
        **{f"ff_gain_c{c}": round(figures[c]["keys"]["tokens_per_s"] / figures[c]["keys_no_ff"]["tokens_per_s"], 3)
           for c in figures},
        **{f"throughput_c{max(figures, key=int)}_over_c{min(figures, key=int)}_{name}":
           round(high[name]["tokens_per_s"] / low[name]["tokens_per_s"], 2) for name in ("unconstrained", "schemas")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", choices=tuple(DTYPES))
    parser.add_argument("--quantize", default="none", choices=QUANTIZATIONS)
    parser.add_argument("--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 8, 32],
                        help="comma-separated numbers of concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every workload")
    parser.add_argument("--requests-per-client", type=int, default=2, help="per cell and round")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--schemas", type=int, default=16, help="distinct schemas per real-schema workload")
    parser.add_argument("--no-finishing-bias", action="store_true",
                        help="send no logit_bias (for a trained model, which closes its JSON itself)")
    parser.add_argument("--workloads", default="short", choices=("short", "extract"),
                        help="short prompts (default), or extraction: long documents, short JSON (see above)")
    parser.add_argument("--document-tokens", type=lambda text: [int(n) for n in text.split(",")], default=[1024, 4096],
                        help="extract: comma-separated document lengths")
    args = parser.parse_args()

    # Only the tokenizer matters here (which schemas compile, the bias ids): bf16 on the CPU keeps it small.
    loaded = load_model(args.model, device="cpu", dtype=torch.bfloat16)
    compiler = Compiler(loaded.tokenizer, vocab_rows=loaded.vocab_rows, eos_token_ids=loaded.eos_token_ids)
    if args.workloads == "extract":
        workloads = {name: Workload(schemas, messages=extract_messages(loaded.tokenizer, length, first),
                                    baseline=f"unconstrained_{length}")
                     for name, (schemas, length, first) in extract_cells(args.document_tokens).items()}
    else:
        keys = compiling_schemas(compiler, args.schemas, min_required=6)
        workloads = {"unconstrained": Workload([]), "string": Workload([STRING_SCHEMA]),
                     "schemas": Workload(compiling_schemas(compiler, args.schemas)), "keys": Workload(keys),
                     "keys_no_ff": Workload(keys, fast_forward=False), "key_heavy": Workload([KEY_HEAVY])}
    shared = shared_settings(loaded.tokenizer, args.max_tokens, finishing_bias=not args.no_finishing_bias)
    del loaded, compiler

    with contextlib.ExitStack() as servers:
        started = time.perf_counter()
        urls = {ff: servers.enter_context(server(args.model, args.device, args.dtype, fast_forward=ff,
                                                 quantize=args.quantize))
                for ff in {workload.fast_forward for workload in workloads.values()}}
        print(f"servers ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        figures = asyncio.run(run_all(urls, args, workloads, shared))

    print(f"model {args.model}, device {args.device}, dtype {args.dtype}, quantize {args.quantize}, max_tokens {args.max_tokens}, {args.rounds} rounds x "
          f"{args.requests_per_client} requests per client; ratios vs unconstrained at the same concurrency"
          + ("" if not args.no_finishing_bias else "; no logit_bias"))
    print(f"{'C':>3} {'workload':>20} {'TTFT ms':>9} {'p50':>9} {'p99':>9} {'TPOT ms':>9} {'tok/s':>8} {'req/s':>7} "
          f"{'TPOT ratio':>10} {'tok/s ratio':>11}")
    for concurrency, cells in figures.items():
        for name, cell in cells.items():
            print(f"{concurrency:>3} {name:>20} {cell['ttft_ms']:>9} {cell['ttft_p50_ms']:>9} {cell['ttft_p99_ms']:>9} "
                  f"{cell['tpot_ms']:>9} {cell['tokens_per_s']:>8} {cell['requests_per_s']:>7} "
                  f"{cell.get('tpot_ratio', ''):>10} {cell.get('tokens_per_s_ratio', ''):>11}"
                  + (f"  ({cell['failed']} failed)" if cell.get("failed") else ""))
    summary = extract_headline(figures) if args.workloads == "extract" else headline(figures)
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    print(json.dumps({"model": args.model, "device": args.device, "dtype": args.dtype, "quantize": args.quantize,
                      "max_tokens": args.max_tokens,
                      "rounds": args.rounds, "workloads": args.workloads,
                      "finishing_bias": not args.no_finishing_bias,
                      "requests_per_client": args.requests_per_client, "headline": summary, "figures": figures}))


if __name__ == "__main__":
    main()
