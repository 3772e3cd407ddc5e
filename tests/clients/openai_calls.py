"""The openai SDK: chat create/parse/stream, a pydantic tool, Responses create/parse/stream, legacy completions."""

from __future__ import annotations

import openai
from harness import (API_KEY, BASE_URL, MAX_TOKENS, MODEL, PERSON_SCHEMA, PROMPT, TIMEOUT_S, Person, check_person,
                     require, run)

client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0)
MESSAGES = [{"role": "user", "content": PROMPT}]


def chat_create_json_schema() -> str:
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS,
        response_format={"type": "json_schema", "json_schema": {"name": "Person", "schema": PERSON_SCHEMA}})
    require(completion.choices[0].finish_reason == "stop", f"finish_reason {completion.choices[0].finish_reason}")
    return check_person(completion.choices[0].message.content)


def chat_parse() -> str:
    completion = client.chat.completions.parse(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS,
                                               response_format=Person)
    return check_person(completion.choices[0].message.parsed)


def chat_stream_parse() -> str:
    with client.chat.completions.stream(model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS,
                                        response_format=Person) as stream:
        deltas = sum(event.type == "content.delta" for event in stream)
        completion = stream.get_final_completion()
    require(deltas > 1, f"{deltas} content deltas")
    return check_person(completion.choices[0].message.parsed)


def chat_tools_pydantic() -> str:
    completion = client.chat.completions.parse(
        model=MODEL, messages=MESSAGES, max_tokens=MAX_TOKENS, tools=[openai.pydantic_function_tool(Person)],
        tool_choice={"type": "function", "function": {"name": "Person"}})
    calls = completion.choices[0].message.tool_calls or []
    require(len(calls) == 1 and calls[0].function.name == "Person", f"tool calls {calls}")
    return check_person(calls[0].function.parsed_arguments)


def responses_create_json_schema() -> str:
    response = client.responses.create(
        model=MODEL, input=PROMPT, max_output_tokens=MAX_TOKENS,
        text={"format": {"type": "json_schema", "name": "Person", "schema": PERSON_SCHEMA}})
    require(response.status == "completed", f"status {response.status}")
    return check_person(response.output_text)


def responses_parse() -> str:
    response = client.responses.parse(model=MODEL, input=PROMPT, max_output_tokens=MAX_TOKENS, text_format=Person)
    return check_person(response.output_parsed)


def responses_stream() -> str:
    with client.responses.stream(model=MODEL, input=PROMPT, max_output_tokens=MAX_TOKENS, text_format=Person) as stream:
        deltas = sum(event.type == "response.output_text.delta" for event in stream)
        response = stream.get_final_response()
    require(deltas > 1, f"{deltas} output_text deltas")
    return check_person(response.output_parsed)


def completions_create() -> str:
    completion = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=32)
    choice = completion.choices[0]
    require(isinstance(choice.text, str) and choice.finish_reason in ("stop", "length"), f"choice {choice}")
    return repr(choice.text)


CALLS = (chat_create_json_schema, chat_parse, chat_stream_parse, chat_tools_pydantic, responses_create_json_schema,
         responses_parse, responses_stream, completions_create)

if __name__ == "__main__":
    run(CALLS)
