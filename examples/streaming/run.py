"""Stream a long JSON object and render it as it arrives: raw text live, then each day once complete.

python examples/streaming/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from openai import OpenAI

SCHEMA = json.loads(Path(__file__).with_name("schema.json").read_text())


def run(client: OpenAI, model: str, out: TextIO = sys.stdout, **options) -> dict:
    """Write the deltas to `out` as they come; {"chunks", "finish_reason", "text", "itinerary"} at the end
    (itinerary: the parsed object when the stream finished with "stop", else None)."""
    stream = client.chat.completions.create(
        model=model, max_tokens=800, stream=True,
        messages=[{"role": "user", "content": "Plan a five-day trip to Lisbon, day by day."}],
        response_format={"type": "json_schema", "json_schema": {"name": "Itinerary", "strict": True, "schema": SCHEMA}},
        **options)
    pieces, finish_reason = [], None
    for chunk in stream:
        for choice in chunk.choices:
            out.write(choice.delta.content or "")
            out.flush()
            pieces.append(choice.delta.content or "")
            finish_reason = choice.finish_reason or finish_reason
    out.write("\n")
    text = "".join(pieces)
    return {"chunks": len(pieces), "finish_reason": finish_reason, "text": text,
            "itinerary": json.loads(text) if finish_reason == "stop" else None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    result = run(OpenAI(base_url=args.base_url, api_key="unused"), args.model)
    for day in (result["itinerary"] or {}).get("days", []):
        print(f"Day {day['day']}: {day['title']}: {'; '.join(day['activities'])}")
