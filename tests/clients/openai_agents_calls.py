"""The OpenAI Agents SDK on its Responses and Chat Completions models: pydantic output_type, pydantic-argument tool."""

from __future__ import annotations

import asyncio

from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, function_tool,
                    set_tracing_disabled)
from harness import API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Person, check_person, require, run
from openai import AsyncOpenAI

set_tracing_disabled(True)  # tracing would upload to OpenAI
saved: list[Person] = []


@function_tool
def save_person(person: Person) -> str:
    """Save the person described."""
    saved.append(person)
    return "saved"


def run_agent(model_class, tool_choice: str | None = None, **agent_args):
    """One Runner.run on a fresh client (its connections belong to this event loop)."""
    async def go():
        client = AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0)
        agent = Agent(name="describer", instructions="Describe people.", model=model_class(MODEL, openai_client=client),
                      model_settings=ModelSettings(max_tokens=MAX_TOKENS, tool_choice=tool_choice), **agent_args)
        try:
            return await Runner.run(agent, PROMPT, max_turns=3)
        finally:
            await client.close()
    return asyncio.run(go())


def output_of(model_class) -> str:
    return check_person(run_agent(model_class, output_type=Person).final_output)


def tool_call_with(model_class) -> str:
    """The agent stops at the tool's result: after it the SDK resets tool_choice to "auto", where a random
    model may call the tool again until max_turns."""
    saved.clear()
    result = run_agent(model_class, tool_choice="save_person", tools=[save_person],
                       tool_use_behavior="stop_on_first_tool")
    require(len(saved) == 1, f"save_person ran {len(saved)} times")
    return f"{check_person(saved[0])}, then {result.final_output!r}"


def responses_output_type() -> str:
    return output_of(OpenAIResponsesModel)


def chat_output_type() -> str:
    return output_of(OpenAIChatCompletionsModel)


def responses_function_tool() -> str:
    return tool_call_with(OpenAIResponsesModel)


def chat_function_tool() -> str:
    return tool_call_with(OpenAIChatCompletionsModel)


CALLS = (responses_output_type, chat_output_type, responses_function_tool, chat_function_tool)

if __name__ == "__main__":
    run(CALLS)
