"""Outlines' remote models on one openai client: from_openai (response_format), from_vllm (structured_outputs)."""

from __future__ import annotations

import re
from typing import Literal

import openai
import outlines
from harness import API_KEY, BASE_URL, MAX_TOKENS, MODEL, PROMPT, TIMEOUT_S, Person, check_person, require, run
from outlines.types import CFG, Regex

client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY, timeout=TIMEOUT_S, max_retries=0)
vllm = outlines.from_vllm(client, MODEL)
CODE = r"[A-Z]{2}-[0-9]{3}"
COLOURS = ("red", "green", "blue")
# Lark, as Outlines writes CFGs; its language is the regex below, so no parser is needed to check an answer.
ANSWERS = 'start: answer ("," answer)*\nanswer: "yes" | "no"\n'
ANSWERS_RE = r"(yes|no)(,(yes|no))*"


def matching(text: str, pattern: str) -> str:
    require(isinstance(text, str) and re.fullmatch(pattern, text) is not None, f"{text!r} does not match {pattern}")
    return repr(text)


def from_openai_pydantic() -> str:
    return check_person(outlines.from_openai(client, MODEL)(PROMPT, Person, max_tokens=MAX_TOKENS))


def from_vllm_pydantic() -> str:
    return check_person(vllm(PROMPT, Person, max_tokens=MAX_TOKENS))


def from_vllm_regex() -> str:
    return matching(vllm("A product code, please.", Regex(CODE), max_tokens=MAX_TOKENS), CODE)


def from_vllm_literal() -> str:
    return matching(vllm("Pick a colour.", Literal[COLOURS], max_tokens=MAX_TOKENS), "|".join(COLOURS))


def from_vllm_cfg() -> str:
    return matching(vllm("Answer yes or no, comma-separated.", CFG(ANSWERS), max_tokens=MAX_TOKENS), ANSWERS_RE)


CALLS = (from_openai_pydantic, from_vllm_pydantic, from_vllm_regex, from_vllm_literal, from_vllm_cfg)

if __name__ == "__main__":
    run(CALLS)
