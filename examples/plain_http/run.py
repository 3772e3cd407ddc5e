"""The extraction example with no SDK: one POST with the standard library (curl.sh does it with curl).

python examples/plain_http/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

SCHEMA = json.loads((Path(__file__).parents[1] / "extraction" / "schema.json").read_text())
TEXT = ("Hi, Grace Hopper here from Remington Rand. Invoice 4471 was charged twice this month; "
        "please call me back on +1 555 0100 or write to grace@remington.example.")


def run(base_url: str, model: str, api_key: str = "unused", **options) -> dict | None:
    """The contact as a dict, or None when max_tokens cut it; an HTTP error raises urllib's HTTPError
    (its body is OpenAI's {"error": {"message", "param", ...}})."""
    body = {"model": model, "max_tokens": 200, **options,
            "messages": [{"role": "system", "content": "Extract the contact details from the user's message."},
                         {"role": "user", "content": TEXT}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "Contact", "strict": True, "schema": SCHEMA}}}
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        choice = json.load(response)["choices"][0]
    return json.loads(choice["message"]["content"]) if choice["finish_reason"] == "stop" else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    print(json.dumps(run(args.base_url, args.model), indent=2))
