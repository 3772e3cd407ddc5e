"""Quickstart: schema-valid JSON through the official `openai` SDK (create, parse, stream).

Start the server first (`.venv/bin/constrained serve`), then: `python examples/quickstart.py [BASE_URL] [MODEL]`.
"""

from __future__ import annotations

import sys
from typing import Literal, Optional

from openai import OpenAI
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int
    role: Literal["engineer", "designer", "manager"]
    email: Optional[str]


def main(base_url: str = "http://127.0.0.1:8000/v1", model: str = "smollm2-135m-instruct") -> None:
    client = OpenAI(base_url=base_url, api_key="unused-unless-the-server-sets---api-key")
    text = "Ada is a 36 year old engineer; write to ada@example.com."

    # 1. create() with a JSON Schema: the content parses and validates, or finish_reason says "length".
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 130}},
              "required": ["name", "age"], "additionalProperties": False}
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Extract name and age: {text}"}], max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": schema}},
    )
    print("create:", completion.choices[0].finish_reason, completion.choices[0].message.content)

    # 2. parse() with a pydantic model: the SDK sends the strict schema and parses the answer.
    try:
        parsed = client.chat.completions.parse(
            model=model, messages=[{"role": "user", "content": f"Extract the person: {text}"}],
            response_format=Person, max_tokens=96,
        )
        print("parse:", parsed.choices[0].message.parsed)
    except Exception as exc:  # the SDK raises LengthFinishReasonError when max_tokens cut the JSON
        print("parse: cut by max_tokens:", type(exc).__name__)

    # 3. A stream: JSON text arrives in deltas; the concatenation is the same guaranteed JSON.
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": f"Extract name and age: {text}"}], max_tokens=64,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}, stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    print("stream:", "".join(pieces))


if __name__ == "__main__":
    main(*sys.argv[1:])
