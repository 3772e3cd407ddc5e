"""Classify support tickets: an enum label and a confidence in [0, 1], from a strict json_schema.

python examples/classification/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openai import OpenAI

SCHEMA = json.loads(Path(__file__).with_name("schema.json").read_text())
TICKETS = [
    "The export button crashes the app when the list is empty.",
    "Could you add a dark mode?",
    "How do I reset my password?",
]


def run(client: OpenAI, model: str, tickets: list[str] = TICKETS, **options) -> list[dict | None]:
    """One {"label", "confidence"} per ticket; None where max_tokens cut the answer."""
    labels = []
    for ticket in tickets:
        completion = client.chat.completions.create(
            model=model, max_tokens=30,
            messages=[{"role": "system", "content": "Label the support ticket: bug, feature_request, question "
                                                    "or praise, with your confidence."},
                      {"role": "user", "content": ticket}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "TicketLabel", "strict": True, "schema": SCHEMA}},
            **options)
        choice = completion.choices[0]
        labels.append(json.loads(choice.message.content) if choice.finish_reason == "stop" else None)
    return labels


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    for ticket, label in zip(TICKETS, run(OpenAI(base_url=args.base_url, api_key="unused"), args.model)):
        print(f"{label}  <- {ticket}")
