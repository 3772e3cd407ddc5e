"""instructor over the openai SDK: one call per mode a server must carry, plus partial and iterable streaming."""

from __future__ import annotations

from collections.abc import Iterable

import instructor
import openai
from harness import (API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Address, Person, check_person,
                     require, run)

MESSAGES = [{"role": "user", "content": PROMPT}]
# max_retries=0: one request per call, so a validation failure is reported instead of re-asked.
ARGS = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "max_retries": 0}


def patched(mode: instructor.Mode) -> instructor.Instructor:
    return instructor.from_openai(openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0),
                                  mode=mode)


def person_in(mode: instructor.Mode) -> str:
    return check_person(patched(mode).chat.completions.create(response_model=Person, **ARGS))


def tools() -> str:
    return person_in(instructor.Mode.TOOLS)


def tools_strict() -> str:
    return person_in(instructor.Mode.TOOLS_STRICT)


def json_schema() -> str:
    return person_in(instructor.Mode.JSON_SCHEMA)


def responses_tools() -> str:
    return person_in(instructor.Mode.RESPONSES_TOOLS)


def parallel_tools() -> str:
    """instructor sends tool_choice "auto": seeded, as tiny-qwen3-json calls a tool in most seeds, not all."""
    results = list(patched(instructor.Mode.PARALLEL_TOOLS).chat.completions.create(
        response_model=Iterable[Person | Address], seed=0, **ARGS))
    require(results and all(isinstance(result, (Person, Address)) for result in results), f"results {results}")
    return "; ".join(f"{type(result).__name__} {result.model_dump_json()}" for result in results)


def create_partial() -> str:
    partials = list(patched(instructor.Mode.TOOLS).chat.completions.create_partial(response_model=Person, **ARGS))
    require(len(partials) > 1, f"{len(partials)} partial objects")
    return check_person(partials[-1])


# Not here: create_iterable. Its wrapper ({"tasks": [Pet]}, nothing required, other keys allowed) lets a random
# model answer `{}` or other keys, valid against the schema sent, which instructor's stream parser then reads
# as an empty Pet; a trained model writes "tasks". Run it by hand against a real model.
CALLS = (tools, tools_strict, json_schema, parallel_tools, create_partial, responses_tools)

if __name__ == "__main__":
    run(CALLS)
