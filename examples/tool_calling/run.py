"""Tool calling with two functions and a round trip: the model calls, we run the calls, it answers.

python examples/tool_calling/run.py --base-url http://localhost:8000/v1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openai import OpenAI

TOOLS = json.loads(Path(__file__).with_name("tools.json").read_text())
RATES = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067}  # in USD


def get_weather(city: str, unit: str) -> dict:
    return {"city": city, "temperature": 18 if unit == "celsius" else 64, "unit": unit, "sky": "cloudy"}


def convert_currency(amount: float, source: str, target: str) -> dict:
    return {"amount": round(amount * RATES[source] / RATES[target], 2), "currency": target}


FUNCTIONS = {"get_weather": get_weather, "convert_currency": convert_currency}


def run(client: OpenAI, model: str, question: str = "What's the weather in Paris, and what are 100 EUR in USD?",
        **options) -> dict:
    """{"calls": [(name, arguments, result)], "answer": text}. The first request must call a tool
    (tool_choice "required"); every call's arguments validate against its function's parameters."""
    messages = [{"role": "user", "content": question}]
    first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="required",
                                           max_tokens=150, **options).choices[0].message
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in first.tool_calls or []]
    results = [FUNCTIONS[name](**arguments) for name, arguments in calls]
    messages.append({"role": "assistant", "content": first.content, "tool_calls": [
        {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in first.tool_calls or []]})
    messages += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps(result)}
                 for c, result in zip(first.tool_calls or [], results)]
    final = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="none",
                                           max_tokens=100, **options).choices[0].message
    return {"calls": [(name, arguments, result) for (name, arguments), result in zip(calls, results)],
            "answer": final.content}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    trip = run(OpenAI(base_url=args.base_url, api_key="unused"), args.model)
    for name, arguments, result in trip["calls"]:
        print(f"{name}({arguments}) -> {result}")
    print("answer:", trip["answer"])
