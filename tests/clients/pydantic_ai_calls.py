"""pydantic-ai on OpenAIChatModel: output_type by its default output tool and by NativeOutput; an agent with a tool."""

from __future__ import annotations

from harness import API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Person, check_person, require, run
from openai import AsyncOpenAI
from pydantic_ai import Agent, NativeOutput, RunContext
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

saved: list[Person] = []


def save_person(person: Person) -> str:
    """Save the person described."""
    saved.append(person)
    return "saved"


def agent(**kwargs) -> Agent:
    """retries=0: one request per step, so a bad output is reported instead of re-asked."""
    client = AsyncOpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0)
    return Agent(OpenAIChatModel(MODEL, provider=OpenAIProvider(openai_client=client)), retries=0, **kwargs)


def tool_output() -> str:
    return check_person(agent(output_type=Person, model_settings={"max_tokens": MAX_TOKENS}).run_sync(PROMPT).output)


def native_output() -> str:
    result = agent(output_type=NativeOutput(Person), model_settings={"max_tokens": MAX_TOKENS}).run_sync(PROMPT)
    return check_person(result.output)


def first_step_calls_save_person(ctx: RunContext) -> dict:
    """The tool on the first request (a random model would rarely pick it), then the output tool, not it again."""
    return {"max_tokens": MAX_TOKENS, "tool_choice": ["save_person"] if ctx.run_step == 1 else "none"}


def agent_tool() -> str:
    saved.clear()
    tooled = agent(output_type=Person, tools=[save_person], model_settings=first_step_calls_save_person)
    result = tooled.run_sync(PROMPT)
    require(len(saved) == 1, f"save_person ran {len(saved)} times")
    return f"{check_person(saved[0])}, then {check_person(result.output)}"


CALLS = (tool_output, native_output, agent_tool)

if __name__ == "__main__":
    run(CALLS)
