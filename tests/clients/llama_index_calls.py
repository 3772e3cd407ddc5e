"""llama-index's OpenAILike: complete (completions and chat), structured_predict by response_format and by a tool."""

from __future__ import annotations

from harness import API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Person, check_person, require, run
from llama_index.core import PromptTemplate
from llama_index.llms.openai_like import OpenAILike

TEMPLATE = PromptTemplate("{request}")


def llm(**kwargs) -> OpenAILike:
    return OpenAILike(model=MODEL, api_base=BASE_URL, api_key=API_KEY, max_tokens=MAX_TOKENS, timeout=TIMEOUT_S,
                      max_retries=0, **kwargs)


def completed(response) -> str:
    require(isinstance(response.text, str), f"response {response}")
    return repr(response.text)


def complete_text() -> str:
    """is_chat_model=False (OpenAILike's default): POST /v1/completions."""
    return completed(llm().complete("Once upon a time"))


def complete_chat() -> str:
    return completed(llm(is_chat_model=True).complete("Once upon a time"))


def structured_predict_response_format() -> str:
    """should_use_structured_outputs: a json_schema response_format from the openai SDK's own conversion."""
    model = llm(is_chat_model=True, should_use_structured_outputs=True)
    return check_person(model.structured_predict(Person, TEMPLATE, request=PROMPT))


def structured_predict_function_calling() -> str:
    """is_function_calling_model: one tool for the model, with tool_choice "required"."""
    model = llm(is_chat_model=True, is_function_calling_model=True)
    return check_person(model.structured_predict(Person, TEMPLATE, request=PROMPT))


CALLS = (complete_text, complete_chat, structured_predict_response_format, structured_predict_function_calling)

if __name__ == "__main__":
    run(CALLS)
