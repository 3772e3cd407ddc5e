"""Chunked prefill: the pace of decoding streams while a long prompt joins the batch, with and without chunks,
side by side in one run.

    python -m benchmarks.chunked_prefill [--model tiny-qwen3] [--dtype auto] [--streams 15] [--prompt-tokens 4096]
                                         [--chunks 0,512,256]

In the engine, no HTTP: `--streams` requests decode (unconstrained, 1 token a step) until a window of steps is
measured; in one setup nothing else arrives, in the others a `--prompt-tokens` prompt (real text) arrives at the
window's start, its prefill whole (chunk 0) or in chunks of at most N tokens a step (`max_step_tokens`). Each
engine first serves one prompt of that length, so its KV storage has grown as a warm server's has.
Per setup: the p50 and p99 time between two tokens of a stream (TPOT) over the window, its ratio to the setup
without the long prompt, and the long prompt's time to first token. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from api.serve_options import DTYPES
from benchmarks.documents import corpus_ids, document_ids
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.models import load_model
from constrained.testing import run_until_idle


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(loaded, streams: int, prompt: list[int] | None, chunk: int, window: int, warm_up: list[int]) -> dict:
    """Token gaps of the decoding streams over `window` steps (plus the long prompt's prefill, when it is)."""
    engine = Engine(loaded, max_batch_size=streams + 1, max_step_tokens=chunk or None)
    run_until_idle(engine, [Submission(warm_up, SamplingParams(max_tokens=1))])  # KV storage grown, as when warm
    short = loaded.tokenizer.encode("Tell me a long story.")
    ids = {engine.submit(Submission(short, SamplingParams(max_tokens=100_000, seed=i))) for i in range(streams)}
    for _ in range(3):  # all streams decoding
        engine.step()
    if prompt is not None:
        engine.submit(Submission(prompt, SamplingParams(max_tokens=1, seed=0), None, "long"))
    start = last = time.perf_counter()
    gaps, ttft, steps = [], None, 0
    while steps < window or (prompt is not None and ttft is None):
        outputs = engine.step()
        now = time.perf_counter()
        steps += 1
        gaps += [now - last] * sum(1 for out in outputs if out.request_id in ids and out.token_ids)
        if ttft is None and any(out.request_id == "long" for out in outputs):
            ttft = now - start
        last = now
    return {"tpot_p50_ms": round(1000 * statistics.median(gaps), 2),
            "tpot_p99_ms": round(1000 * percentile(gaps, 0.99), 2), "steps": steps,
            **({"long_ttft_ms": round(1000 * ttft, 1)} if ttft is not None else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--dtype", default="auto", choices=tuple(DTYPES), help="auto: float32 on the CPU")
    parser.add_argument("--streams", type=int, default=15)
    parser.add_argument("--prompt-tokens", type=int, default=4096)
    parser.add_argument("--chunks", type=lambda text: [int(c) for c in text.split(",")], default=[0, 512, 256])
    parser.add_argument("--window", type=int, default=24, help="steps measured (at least; the prefill's all)")
    args = parser.parse_args()
    loaded = load_model(args.model, device="cpu", dtype=DTYPES[args.dtype])
    corpus = corpus_ids(loaded.tokenizer)
    prompt, warm_up = document_ids(corpus, args.prompt_tokens), document_ids(corpus, args.prompt_tokens, 1)
    setups = {"no_long_prompt": measure(loaded, args.streams, None, 0, args.window, warm_up)}
    for chunk in args.chunks:
        setups[f"chunk_{chunk or 'off'}"] = measure(loaded, args.streams, prompt, chunk, args.window, warm_up)
    base = setups["no_long_prompt"]["tpot_p99_ms"]
    for name, figures in setups.items():
        figures["tpot_p99_ratio"] = round(figures["tpot_p99_ms"] / base, 2)
        print(f"{name:>16}: TPOT p50 {figures['tpot_p50_ms']} ms, p99 {figures['tpot_p99_ms']} ms "
              f"({figures['tpot_p99_ratio']}x)" + (f", long prompt TTFT {figures['long_ttft_ms']} ms"
                                                    if "long_ttft_ms" in figures else ""))
    print(json.dumps({"model": args.model, "dtype": str(loaded.dtype).removeprefix("torch."), "streams": args.streams, "prompt_tokens": args.prompt_tokens,
                      "setups": setups}))


if __name__ == "__main__":
    main()
