"""Prefix caching: time to first token of a prompt whose first tokens are cached, against the same prompts on an
engine without the cache, side by side in one run.

    python -m benchmarks.prefix_cache [--model tiny-qwen3] [--prefix-tokens 2048] [--requests 5]

The prefix is real text (benchmarks/documents.py); each request adds a few tokens of
its own after it and asks for one token, one request at a time. Each engine first serves one warm-up request
(which fills the cache on the caching engine). Reports the median TTFT of each and their ratio; the last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from benchmarks.documents import corpus_ids, document_ids
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.models import load_model
from constrained.testing import run_until_idle

def ttft(engine: Engine, prompt: list[int]) -> float:
    start = time.perf_counter()
    run_until_idle(engine, [Submission(prompt, SamplingParams(max_tokens=1, seed=0))])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    loaded = load_model(args.model, device=args.device)
    prefix = document_ids(corpus_ids(loaded.tokenizer), args.prefix_tokens)
    engines = {"no_cache": Engine(loaded, max_batch_size=4),
               "cache": Engine(loaded, max_batch_size=4, prefix_cache_bytes=4 << 30)}
    medians = {}
    for name, engine in engines.items():
        ttft(engine, prefix + loaded.tokenizer.encode(" warm-up"))
        medians[name] = statistics.median(ttft(engine, prefix + loaded.tokenizer.encode(f" question {i}"))
                                          for i in range(args.requests))
    ratio = medians["cache"] / medians["no_cache"]
    print(f"{args.model}: TTFT with {args.prefix_tokens} prompt tokens cached {1000 * medians['cache']:.1f} ms, "
          f"without {1000 * medians['no_cache']:.1f} ms: ratio {ratio:.3f}")
    print(json.dumps({"model": args.model, "device": str(loaded.device), "prefix_tokens": args.prefix_tokens,
                      "requests": args.requests,
                      "ttft_ms": {k: round(1000 * v, 1) for k, v in medians.items()}, "ratio": round(ratio, 4)}))


if __name__ == "__main__":
    main()
