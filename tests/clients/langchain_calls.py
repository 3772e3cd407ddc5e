"""langchain-openai's ChatOpenAI: with_structured_output (json_schema, function calling), bind_tools, Responses API."""

from __future__ import annotations

from harness import API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Person, check_person, require, run
from langchain_openai import ChatOpenAI


def chat(**kwargs) -> ChatOpenAI:
    return ChatOpenAI(model=MODEL, base_url=BASE_URL, api_key=API_KEY, max_tokens=MAX_TOKENS, timeout=TIMEOUT_S,
                      max_retries=0, **kwargs)


def structured_json_schema() -> str:
    return check_person(chat().with_structured_output(Person, method="json_schema").invoke(PROMPT))


def structured_function_calling() -> str:
    return check_person(chat().with_structured_output(Person, method="function_calling").invoke(PROMPT))


def bind_tools() -> str:
    message = chat().bind_tools([Person], tool_choice="Person").invoke(PROMPT)
    calls = message.tool_calls
    require(len(calls) == 1 and calls[0]["name"] == "Person", f"tool calls {calls}")
    return check_person(calls[0]["args"])


def responses_structured() -> str:
    return check_person(chat(use_responses_api=True).with_structured_output(Person).invoke(PROMPT))


CALLS = (structured_json_schema, structured_function_calling, bind_tools, responses_structured)

if __name__ == "__main__":
    run(CALLS)
