"""A nested document: arrays, optional fields (summary, subsections), $defs and a recursive section.

python examples/nested_document/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openai import OpenAI

SCHEMA = json.loads(Path(__file__).with_name("schema.json").read_text())


def run(client: OpenAI, model: str, **options) -> dict | None:
    """The document, or None when max_tokens cut it."""
    completion = client.chat.completions.create(
        model=model, max_tokens=600,
        messages=[{"role": "user", "content": "Write a short technical note on caching HTTP responses, "
                                              "with two sections and one subsection."}],
        response_format={"type": "json_schema", "json_schema": {"name": "Document", "schema": SCHEMA}},
        **options)
    choice = completion.choices[0]
    return json.loads(choice.message.content) if choice.finish_reason == "stop" else None


def outline(document: dict) -> list[str]:
    """Headings indented by depth: the recursive part, walked."""
    def walk(sections: list[dict], depth: int) -> list[str]:
        return [line for s in sections for line in
                ["  " * depth + f"- {s['heading']} ({len(s['paragraphs'])} paragraphs)",
                 *walk(s.get("subsections", []), depth + 1)]]

    return [f"{document['title']} by {', '.join(document['authors'])}", *walk(document["sections"], 0)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    document = run(OpenAI(base_url=args.base_url, api_key="unused"), args.model)
    print("\n".join(outline(document)) if document else "cut by max_tokens")
