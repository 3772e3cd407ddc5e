"""What the last line of defence costs: time validating each finished choice against the request's time.

    python -m benchmarks.output_check [--model tiny-qwen3] [--schemas 32] [--requests 96] [--max-tokens 96]

Runs the app in-process on the model and sends streamed-off chat completions, each with one of `--schemas`
real JSONSchemaBench schemas (those that compile here) as strict json_schema, the finishing bias on; then reads
`/metrics`: the validation seconds per checked choice (constrained/output_check.py: jsonschema-rs, formats on;
the first request of a schema builds its validator) against the mean end-to-end request time. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app, serving
from benchmarks.engine import compiling_schemas
from constrained.engine.async_engine import AsyncEngine
from constrained.models import load_model
from constrained.testing import json_finishing_bias


def samples(text: str) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples
            if not sample.labels or sample.labels.get("route") == "/v1/chat/completions"}


async def run(args) -> dict:
    loaded = load_model(args.model, device="cpu")
    engine = AsyncEngine(loaded, max_batch_size=16)
    schemas = compiling_schemas(engine.compiler, args.schemas)
    bias = {str(token): value for token, value in json_finishing_bias(loaded.tokenizer).items()}
    async with serving(create_app(engine, model_name=args.model)) as app:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test",
                                      timeout=300) as http:
            async def one(i: int) -> str | None:
                body = {"model": args.model, "messages": [{"role": "user", "content": f"Record {i} as JSON."}],
                        "max_tokens": args.max_tokens, "seed": i, "logit_bias": bias,
                        "response_format": {"type": "json_schema", "json_schema": {
                            "name": "record", "schema": schemas[i % len(schemas)], "strict": True}}}
                response = await http.post("/v1/chat/completions", json=body)
                return response.json()["choices"][0]["finish_reason"] if response.status_code == 200 else None

            semaphore = asyncio.Semaphore(8)

            async def bounded(i: int) -> str | None:
                async with semaphore:
                    return await one(i)

            finishes = await asyncio.gather(*(bounded(i) for i in range(args.requests)))
            figures = samples((await http.get("/metrics")).text)
    engine.shutdown()
    checks = figures["constrained_output_checks_total"]
    check_s = figures["constrained_output_check_seconds_total"]
    requests = figures["constrained_request_duration_seconds_count"]
    request_s = figures["constrained_request_duration_seconds_sum"] / requests
    return {"model": args.model, "requests": args.requests, "finished_stop": finishes.count("stop"),
            "checks": int(checks), "failures": int(figures["constrained_output_check_failures_total"]),
            "check_ms_per_choice": round(1000 * check_s / checks, 3), "request_ms_mean": round(1000 * request_s, 1),
            "check_share_of_request": round(check_s / checks / request_s, 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-qwen3")
    parser.add_argument("--schemas", type=int, default=32)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=96)
    result = asyncio.run(run(parser.parse_args()))
    print(f"{result['checks']} choices checked ({result['failures']} refused): {result['check_ms_per_choice']} ms "
          f"each, against {result['request_ms_mean']} ms a request: {100 * result['check_share_of_request']:.3f}%")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
