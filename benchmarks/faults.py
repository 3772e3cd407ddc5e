"""Load with faults and overload, bounded in time: does the server stay responsive, answer everything, free its slots?

    python -m benchmarks.faults [--model tiny-qwen3-json] [--max-batch-size 8] [--max-waiting 8]
                                [--duration 20] [--stream-clients 12] [--disconnect-rate 0.2]
                                [--bursts 3] [--burst-size 32] [--pathological-clients 3] [--normal-clients 4]

Starts `constrained serve --no-compile-cache --max-batch-size B --max-waiting W` as a subprocess and drives
it through the `openai` SDK (no retries) with three scenarios, one after the other:
- `streams`: C clients send streamed chat completions back to back for --duration seconds; a fraction
  (--disconnect-rate, 20%) close the connection after a few chunks, mid-stream.
- `burst`: --bursts times, --burst-size requests at once (default 2 x (B + W): past the batch and the
  queue), half streamed; the ones past B + W should get 429 with Retry-After, the rest be served.
- `pathological`: for --duration seconds, some clients send constraints that are slow or refused to
  compile (the exponential-DFA pattern `(a|b)*a(a|b){20}` on outlines-core, which runs to the compile
  deadline, and in a JSON Schema on llguidance; huge enums; anyOf nested 40 deep; each made unique so no
  cache answers), while others send normal small-schema requests.
Throughout, a prober (its own process, so the clients' event loop does not delay it) sends GET /health
every 20 ms. Per scenario: /health p50/p99/max; normal-request (served, not disconnected) end-to-end
latency p50/p99; requests sent, served (200), 4xx by status (429s with Retry-After counted apart), 5xx;
lost requests: sent but never answered (a client timeout or a dropped connection), or a stream that
ended without a finish_reason and without an error frame; leaked slots: after the scenario the server
must come back to idle: of B + W + 1 requests sent at once, each running to max_tokens, B + W must be
admitted and complete and one refused (429); each further 429 (after up to --settle-s seconds of
retries) is a leaked slot.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import multiprocessing
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx2
import openai

from benchmarks.serve import free_port, running

NORMAL_SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                                  "count": {"type": "integer"}},
                 "required": ["name", "count"], "additionalProperties": False}
LONG_SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "minLength": 2000}},
               "required": ["text"]}  # runs to max_tokens: holds its slot for the whole idle check
PROMPT = "Reply with one JSON record for our catalogue."
HEALTH_STALL_MS = 50.0


def pathological_request(i: int) -> tuple[str, dict]:
    """The i-th slow or refused constraint as request fields, unique (a nonce) so no compile cache answers it.

    - `outlines_regex`: (a|b)*a(a|b){20} (a DFA of 2^20 states) on the outlines-core backend (vLLM's
      guided_regex + guided_decoding_backend): its index build runs until the compile deadline (a 400).
    - `pattern`: the same pattern in a JSON Schema on the default backend (llguidance, lazy: compiles).
    - `enum`: 2,400 values (under the 2,500 limit: compiles); `enum_refused`: 5,000 values (a 400).
    - `anyof`: anyOf nested 40 deep (refused: a 400)."""
    kind = ("outlines_regex", "pattern", "enum", "anyof", "enum_refused")[i % 5]
    if kind == "outlines_regex":
        return kind, {"extra_body": {"guided_regex": f"x{i}(a|b)*a(a|b){{20}}", "guided_decoding_backend": "outlines"}}
    if kind == "pattern":
        return kind, {"response_format": response_format({"type": "string", "pattern": f"^x{i}(a|b)*a(a|b){{20}}$"})}
    if kind in ("enum", "enum_refused"):
        values = [f"value-{i}-{j}-{j * 7919 % 10007}" for j in range(2400 if kind == "enum" else 5000)]
        return kind, {"response_format": response_format({"type": "string", "enum": values})}
    inner: dict = {"type": "integer"}
    for depth in range(40):  # each level holds the one below once: a 40-deep chain, not a 2^40 tree
        inner = {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 3}, {"type": "array", "maxItems": 2},
                           {"type": "object", "properties": {f"k{i}_{depth}": inner}, "required": [f"k{i}_{depth}"]}]}
    return kind, {"response_format": response_format(inner)}


def response_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "record", "schema": schema, "strict": True}}


# ---------------------------------------------------------------- the /health prober (its own process)

def probe_health(port: int, interval_s: float, ready, stop, results) -> None:
    """GET /health every interval_s until `stop` is set; sends back [(monotonic start, seconds, status)].
    time.monotonic is system-wide, so the parent cuts these into its scenarios' windows."""
    records = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while not stop.is_set():
        start = time.monotonic()
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = 0  # no answer: counted as a failed probe
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        elapsed = time.monotonic() - start
        records.append((start, elapsed, status))
        ready.set()
        time.sleep(max(0.0, interval_s - elapsed))
    connection.close()
    results.send(records)


# ---------------------------------------------------------------- one request

async def chat(client: openai.AsyncOpenAI, model: str, kind: str, *, schema: dict | None, stream: bool,
               max_tokens: int, seed: int, disconnect_after: int | None = None, fields: dict | None = None) -> dict:
    """One chat completion: {kind, status, seconds, lost, disconnected, retry_after, finish}.

    status: the HTTP status (200 also for a stream that ended in an error frame: `error` says so), or
    None when nothing came back (lost). A stream is lost too when it ends with no finish_reason and no
    error frame. disconnect_after: close the stream after that many chunks (a client going away)."""
    kwargs = {"response_format": response_format(schema)} if schema is not None else {}
    kwargs.update(fields or {})
    record = {"kind": kind, "status": None, "seconds": None, "lost": False, "disconnected": False,
              "retry_after": None, "finish": None, "error": None}
    start = time.perf_counter()
    try:
        if not stream:
            completion = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, seed=seed,
                **kwargs)
            record.update(status=200, finish=completion.choices[0].finish_reason)
        else:
            response = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, seed=seed,
                stream=True, **kwargs)
            record["status"] = 200
            chunks = 0
            try:
                async for chunk in response:
                    chunks += 1
                    if chunk.choices and chunk.choices[0].finish_reason:
                        record["finish"] = chunk.choices[0].finish_reason
                    if disconnect_after is not None and chunks >= disconnect_after and record["finish"] is None:
                        record["disconnected"] = True
                        break
            finally:
                await response.close()
            if record["finish"] is None and not record["disconnected"]:
                record["lost"] = True  # the stream ended with neither a finish_reason nor an error frame
    except openai.APIStatusError as exc:
        record["status"] = exc.status_code
        record["retry_after"] = exc.response.headers.get("retry-after")
    except (openai.APIError, httpx2.HTTPError) as exc:  # an error frame mid-stream, or no (complete) answer
        if record["status"] == 200 and isinstance(exc, openai.APIError) \
                and not isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            record["error"] = str(exc)[:200]
        else:
            record.update(lost=True, error=f"{type(exc).__name__}: {exc}"[:200])
    record["seconds"] = time.perf_counter() - start
    return record


# ---------------------------------------------------------------- scenarios

async def streams_scenario(client, args, rng: random.Random) -> list[dict]:
    """C streaming clients for --duration seconds; --disconnect-rate of the streams are closed mid-stream."""
    deadline = time.perf_counter() + args.duration
    results: list[dict] = []
    seeds = iter(range(10**9))

    async def worker(w: int) -> None:
        while time.perf_counter() < deadline:
            disconnect = rng.random() < args.disconnect_rate
            results.append(await chat(client, args.model, "disconnect" if disconnect else "normal",
                                      schema=NORMAL_SCHEMA if w % 2 == 0 else None, stream=True,
                                      max_tokens=args.max_tokens, seed=next(seeds),
                                      disconnect_after=rng.randint(2, 5) if disconnect else None))

    await asyncio.gather(*(worker(w) for w in range(args.stream_clients)))
    return results


async def burst_scenario(client, args, rng: random.Random) -> list[dict]:
    """--bursts bursts of --burst-size requests at once (half streamed), each drained before the next."""
    results: list[dict] = []
    for b in range(args.bursts):
        results += await asyncio.gather(*(
            chat(client, args.model, "normal", schema=NORMAL_SCHEMA, stream=i % 2 == 1, max_tokens=args.max_tokens,
                 seed=b * 1000 + i) for i in range(args.burst_size)))
        await asyncio.sleep(0.5)
    return results


async def pathological_scenario(client, args, rng: random.Random) -> list[dict]:
    """For --duration seconds: pathological-schema clients beside normal small-schema clients."""
    deadline = time.perf_counter() + args.duration
    results: list[dict] = []
    counter = iter(range(10**9))
    nonce = rng.randrange(10**6)

    async def pathological() -> None:
        while time.perf_counter() < deadline:
            kind, fields = pathological_request(nonce + next(counter))
            results.append(await chat(client, args.model, f"pathological_{kind}", schema=None, fields=fields,
                                      stream=False, max_tokens=args.max_tokens, seed=0))

    async def normal(w: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            results.append(await chat(client, args.model, "normal", schema=NORMAL_SCHEMA, stream=w % 2 == 1,
                                      max_tokens=args.max_tokens, seed=w * 10**6 + i))
            i += 1

    await asyncio.gather(*(pathological() for _ in range(args.pathological_clients)),
                         *(normal(w) for w in range(args.normal_clients)))
    return results


async def idle_check(client, args) -> dict:
    """B + W + 1 requests at once, each running to max_tokens: an idle server admits B + W and refuses one
    (429); each further 429 is a slot (or queue place) still held by an earlier request: leaked. None
    refused means the requests finished before the last arrived, so the check could not tell (`sensitive`
    false). Retried (up to --settle-s) while more than one is refused, as aborts may land a little late."""
    capacity = args.max_batch_size + args.max_waiting
    start = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        records = await asyncio.gather(*(
            chat(client, args.model, "idle_check", schema=LONG_SCHEMA, stream=i % 2 == 1,
                 max_tokens=args.idle_max_tokens, seed=i) for i in range(capacity + 1)))
        refused = sum(1 for r in records if r["status"] == 429)
        failed = sum(1 for r in records if r["lost"] or r["error"] or (r["status"] not in (200, 429)))
        if (refused <= 1 and failed == 0) or time.perf_counter() - start > args.settle_s:
            return {"leaked_slots": max(0, refused - 1), "sensitive": refused >= 1, "failed": failed,
                    "attempts": attempts, "seconds": round(time.perf_counter() - start, 2)}
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- figures

def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(1000 * value, 2)


def summarise(records: list[dict], health: list[tuple[float, float, int]], idle: dict, seconds: float) -> dict:
    statuses = Counter(r["status"] for r in records if r["status"] is not None)
    health_s = [elapsed for _, elapsed, _ in health]
    normal = [r["seconds"] for r in records if r["kind"] == "normal" and r["status"] == 200
              and not r["lost"] and not r["error"]]
    too_many = [r for r in records if r["status"] == 429]
    figures = {
        "seconds": round(seconds, 2),
        "health_probes": len(health),
        "health_failed": sum(1 for _, _, status in health if status != 200),
        "health_p50_ms": ms(percentile(health_s, 50)), "health_p99_ms": ms(percentile(health_s, 99)),
        "health_max_ms": ms(max(health_s, default=None)),
        "health_over_50ms": sum(1 for s in health_s if s * 1000 > HEALTH_STALL_MS),
        "normal_p50_ms": ms(percentile(normal, 50)), "normal_p99_ms": ms(percentile(normal, 99)),
        "sent": len(records),
        "served": statuses.get(200, 0),
        "4xx": {str(s): n for s, n in sorted(statuses.items()) if 400 <= s < 500},
        "429_with_retry_after": sum(1 for r in too_many if r["retry_after"]),
        "5xx": sum(n for s, n in statuses.items() if s >= 500),
        "stream_errors": sum(1 for r in records if r["error"] and not r["lost"]),
        "disconnected": sum(1 for r in records if r["disconnected"]),
        "lost": sum(1 for r in records if r["lost"]),
        "leaked_slots": idle["leaked_slots"],
        "idle_check": idle,
    }
    by_kind = Counter((r["kind"], r["status"] if not r["lost"] else "lost") for r in records)
    figures["by_kind"] = {f"{kind}:{status}": n for (kind, status), n in sorted(by_kind.items(), key=str)}
    examples = [r["error"] for r in records if r["lost"] or r["error"]][:3]
    if examples:
        figures["error_examples"] = examples
    return figures


async def run_all(base_url: str, args, port: int) -> dict:
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    receive, send = context.Pipe(duplex=False)
    prober = context.Process(target=probe_health, args=(port, args.health_interval_ms / 1000, ready, stop, send),
                             daemon=True)
    prober.start()
    if not ready.wait(60):
        raise RuntimeError("the /health prober did not start")
    rng = random.Random(args.seed)
    windows: dict[str, tuple[float, float]] = {}
    outcomes: dict[str, tuple[list[dict], dict, float]] = {}
    scenarios = {"streams": streams_scenario, "burst": burst_scenario, "pathological": pathological_scenario}
    try:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                      timeout=args.request_timeout) as client:
            for name in args.scenarios:
                print(f"[faults] {name}...", file=sys.stderr, flush=True)
                begin, wall = time.monotonic(), time.perf_counter()
                records = await scenarios[name](client, args, rng)
                end, seconds = time.monotonic(), time.perf_counter() - wall
                windows[name] = (begin, end)
                outcomes[name] = (records, await idle_check(client, args), seconds)
    finally:
        stop.set()
        health = receive.recv() if receive.poll(30) else []
        prober.join(timeout=10)
    return {name: summarise(records, [h for h in health if windows[name][0] <= h[0] <= windows[name][1]],
                            idle, seconds)
            for name, (records, idle, seconds) in outcomes.items()}


def alarms(figures: dict) -> list[str]:
    found = []
    for name, cell in figures.items():
        for key in ("5xx", "lost", "leaked_slots", "health_failed"):
            if cell[key]:
                found.append(f"{name}: {key}={cell[key]}")
        if cell["health_p99_ms"] is not None and cell["health_p99_ms"] > HEALTH_STALL_MS:
            found.append(f"{name}: /health p99 {cell['health_p99_ms']} ms > {HEALTH_STALL_MS:g} ms")
        if cell["idle_check"]["failed"]:
            found.append(f"{name}: idle check failed={cell['idle_check']['failed']}")
        if not cell["idle_check"]["sensitive"]:
            found.append(f"{name}: idle check insensitive (nothing refused; raise --idle-max-tokens)")
        missing_retry_after = cell["4xx"].get("429", 0) - cell["429_with_retry_after"]
        if missing_retry_after:
            found.append(f"{name}: {missing_retry_after} 429s without Retry-After")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3-json")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-waiting", type=int, default=8)
    parser.add_argument("--compile-deadline", type=float, default=None, help="the server's (default: its own)")
    parser.add_argument("--scenarios", type=lambda text: text.split(","), default=["streams", "burst", "pathological"],
                        help="comma-separated, from streams,burst,pathological")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of the streams and pathological scenarios")
    parser.add_argument("--stream-clients", type=int, default=12)
    parser.add_argument("--disconnect-rate", type=float, default=0.2)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--burst-size", type=int, default=None, help="default 2 x (batch + queue)")
    parser.add_argument("--pathological-clients", type=int, default=3)
    parser.add_argument("--normal-clients", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--idle-max-tokens", type=int, default=24, help="per request of the idle check")
    parser.add_argument("--settle-s", type=float, default=5.0, help="how long the idle check retries")
    parser.add_argument("--health-interval-ms", type=float, default=20.0)
    parser.add_argument("--request-timeout", type=float, default=60.0, help="a request unanswered by then is lost")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.burst_size = args.burst_size or 2 * (args.max_batch_size + args.max_waiting)
    unknown = set(args.scenarios) - {"streams", "burst", "pathological"}
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    port = free_port()
    command = [sys.executable, "-m", "api", "serve", "--model", args.model, "--device", args.device,
               "--port", str(port), "--log-level", "warning", "--no-compile-cache",
               "--max-batch-size", str(args.max_batch_size), "--max-waiting", str(args.max_waiting)]
    if args.compile_deadline is not None:
        command += ["--compile-deadline", str(args.compile_deadline)]
    started = time.perf_counter()
    log = Path(f"/tmp/constrained-faults-{port}.log")
    with running(command, port, log) as base_url:
        figures = asyncio.run(run_all(base_url, args, port))
    total = time.perf_counter() - started

    print(f"model {args.model}, device {args.device}, batch {args.max_batch_size}, queue {args.max_waiting}, "
          f"max_tokens {args.max_tokens}, {args.duration:g} s scenarios, {args.stream_clients} stream clients "
          f"({args.disconnect_rate:.0%} disconnect), {args.bursts} bursts of {args.burst_size}, "
          f"{args.pathological_clients} pathological + {args.normal_clients} normal clients; server log {log}")
    print(f"{'scenario':>12} {'health p50':>10} {'p99':>7} {'max':>8} {'>50ms':>6} {'normal p50':>10} {'p99':>8} "
          f"{'sent':>5} {'200':>5} {'4xx':>16} {'5xx':>4} {'disc':>5} {'lost':>5} {'leaked':>6}")
    for name, c in figures.items():
        four = ",".join(f"{s}:{n}" for s, n in c["4xx"].items()) or "-"
        print(f"{name:>12} {c['health_p50_ms']!s:>10} {c['health_p99_ms']!s:>7} {c['health_max_ms']!s:>8} "
              f"{c['health_over_50ms']:>6} {c['normal_p50_ms']!s:>10} {c['normal_p99_ms']!s:>8} {c['sent']:>5} "
              f"{c['served']:>5} {four:>16} {c['5xx']:>4} {c['disconnected']:>5} {c['lost']:>5} {c['leaked_slots']:>6}")
    found = alarms(figures)
    print("alarms: " + ("; ".join(found) if found else "none") + f"  (total {total:.1f} s)")
    print(json.dumps({"model": args.model, "device": args.device, "max_batch_size": args.max_batch_size,
                      "max_waiting": args.max_waiting, "seconds": round(total, 1), "alarms": found, **figures}))


if __name__ == "__main__":
    main()
