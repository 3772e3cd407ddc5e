"""`json_object` mode: any JSON object, no schema. Say in the prompt which keys you want.

python examples/json_object/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import json

from openai import OpenAI


def run(client: OpenAI, model: str, **options) -> dict | None:
    """The object the model wrote, or None when max_tokens cut it (it always parses when finished)."""
    completion = client.chat.completions.create(
        model=model, max_tokens=120, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Describe the planet Mars as a JSON object with the keys "
                                              "name, moons (a number) and fun_fact."}],
        **options)
    choice = completion.choices[0]
    return json.loads(choice.message.content) if choice.finish_reason == "stop" else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    print(json.dumps(run(OpenAI(base_url=args.base_url, api_key="unused"), args.model), indent=2))
