"""Extract a typed record from free text: a pydantic model and the SDK's `parse`.

python examples/extraction/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
from typing import Literal, Optional

from openai import OpenAI
from pydantic import BaseModel, Field

TEXT = ("Hi, Grace Hopper here from Remington Rand. Invoice 4471 was charged twice this month; "
        "please call me back on +1 555 0100 or write to grace@remington.example.")


class Contact(BaseModel):
    """Who wrote a support message, and what about."""

    name: str = Field(max_length=40, description="the writer's full name")
    company: Optional[str] = Field(max_length=40, description="null when not mentioned")
    email: Optional[str] = Field(max_length=60)
    phone: Optional[str] = Field(max_length=20)
    topic: Literal["sales", "support", "billing", "other"]


def run(client: OpenAI, model: str, text: str = TEXT, **options) -> Contact:
    """The contact in `text`. `parse` sends Contact's strict schema (schema.json) and parses the answer;
    it raises LengthFinishReasonError when max_tokens cuts the JSON."""
    completion = client.chat.completions.parse(
        model=model, response_format=Contact, max_tokens=200,
        messages=[{"role": "system", "content": "Extract the contact details from the user's message."},
                  {"role": "user", "content": text}],
        **options)
    return completion.choices[0].message.parsed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    print(run(OpenAI(base_url=args.base_url, api_key="unused"), args.model).model_dump_json(indent=2))
