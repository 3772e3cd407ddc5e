"""LiteLLM's OpenAI route: completion with a pydantic response_format, completion with a named tool, responses."""

from __future__ import annotations

import json

import litellm
from harness import (API_KEY, BASE_URL, MAX_TOKENS, MODEL, PERSON_SCHEMA, PROMPT, TIMEOUT_S, Person, check_person,
                     require, run)

ARGS = {"model": f"openai/{MODEL}", "api_base": BASE_URL, "api_key": API_KEY, "timeout": TIMEOUT_S, "num_retries": 0}
MESSAGES = [{"role": "user", "content": PROMPT}]


def completion_response_format() -> str:
    response = litellm.completion(messages=MESSAGES, max_tokens=MAX_TOKENS, response_format=Person, **ARGS)
    require(response.choices[0].finish_reason == "stop", f"finish_reason {response.choices[0].finish_reason}")
    return check_person(response.choices[0].message.content)


def completion_tools() -> str:
    tool = {"type": "function", "function": {"name": "record_person", "parameters": PERSON_SCHEMA}}
    response = litellm.completion(messages=MESSAGES, max_tokens=MAX_TOKENS, tools=[tool],
                                  tool_choice={"type": "function", "function": {"name": "record_person"}}, **ARGS)
    calls = response.choices[0].message.tool_calls or []
    require(len(calls) == 1 and calls[0].function.name == "record_person", f"tool calls {calls}")
    return check_person(json.loads(calls[0].function.arguments))


def responses_text_format() -> str:
    response = litellm.responses(input=PROMPT, max_output_tokens=MAX_TOKENS, text_format=Person, **ARGS)
    require(response.status == "completed", f"status {response.status}")
    texts = [part.text for item in response.output if item.type == "message" for part in item.content]
    require(len(texts) == 1, f"output {response.output}")
    return check_person(texts[0])


CALLS = (completion_response_format, completion_tools, responses_text_format)

if __name__ == "__main__":
    run(CALLS)
