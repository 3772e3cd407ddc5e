"""The chat-completions use case: a validated request -> engine inputs -> a completion or SSE frames."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from api.errors import APIError, invalid_schema
from api.logprobs import LogprobFormatter
from api.prompt import render_prompt
from api.protocol import (
    AssistantMessage, ChatCompletion, ChatCompletionRequest, ChatMessage, Choice, ChoiceLogprobs, ModelCard,
    ResponseFunction, ResponseToolCall, TokenLogprob, Usage, completion_id,
)
from api.streaming import chat_completion_frames
from constrained.answer import AnswerParser
from constrained.constraints import Constraint
from constrained.engine.async_engine import AsyncEngine
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import SequenceOutput
from constrained.errors import InvalidConstraint
from constrained.reasoning import THINKING_BUDGETS, think_token_ids, thinking_budget

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 4096  # when the request sets no limit: the rest of the context, at most this


@dataclass(frozen=True)
class Prepared:
    """What the engine needs for one request."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    constraint: Constraint | None
    reasoning: bool  # a think block comes first
    tools: bool  # calls may be made

    def parser(self) -> AnswerParser:
        """Splits one choice's text into reasoning, content and calls."""
        return AnswerParser(reasoning=self.reasoning, tools=self.tools)


@dataclass
class _Collected:
    """One choice of a non-streamed completion, gathered from the engine's outputs."""

    parser: AnswerParser
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0

    def message(self, *, reasoning: bool) -> dict:
        """finish_reason and message: the thoughts as reasoning_content, calls parsed out of the answer."""
        piece = self.parser.feed("".join(self.text), final=True)
        calls = [ResponseToolCall(id=f"call_{uuid.uuid4().hex[:24]}",
                                  function=ResponseFunction(name=c.name, arguments=c.arguments))
                 for c in self.parser.calls]
        finish = "tool_calls" if calls and self.finish_reason == "stop" else self.finish_reason
        content = (piece.content or None) if calls else piece.content
        return {"finish_reason": finish, "message": AssistantMessage(
            content=content, tool_calls=calls or None, reasoning_content=piece.reasoning if reasoning else None)}


class ChatService:
    """Serves one loaded model under `model_name` (and aliases: the engine's model name, path basenames).

    `reasoning_effort` applies to requests that do not set one ("none": answer at once, no think block).
    """

    def __init__(self, engine: AsyncEngine, *, model_name: str, reasoning_effort: str = "none"):
        self.engine = engine
        self.model_name = model_name
        loaded = engine.loaded
        self.can_reason = think_token_ids(loaded.tokenizer) is not None
        if reasoning_effort not in THINKING_BUDGETS:
            raise ValueError(f"reasoning_effort {reasoning_effort!r} is not one of {', '.join(THINKING_BUDGETS)}")
        if thinking_budget(reasoning_effort) and not self.can_reason:
            raise ValueError(f"model '{model_name}' has no <think> tokens: it cannot reason "
                             f"(reasoning_effort {reasoning_effort!r})")
        self.reasoning_effort = reasoning_effort
        names = {model_name, loaded.name}
        self.accepted_names = names | {Path(name).name for name in names}
        self.context_length: int | None = getattr(loaded.model.config, "max_position_embeddings", None)
        config = f"{model_name}|{version('constrained')}|{loaded.dtype}|{loaded.device}"
        self.fingerprint = "fp_" + hashlib.sha256(config.encode()).hexdigest()[:10]
        self.logprobs = LogprobFormatter(loaded.tokenizer, engine.engine.token_bytes)

    def model_card(self, name: str) -> ModelCard:
        """The card of a served model name; 404 model_not_found otherwise."""
        if name not in self.accepted_names:
            raise APIError(404, f"The model `{name}` does not exist. This server serves `{self.model_name}`.",
                           param="model", code="model_not_found")
        return ModelCard(id=self.model_name)

    def prepare(self, request: ChatCompletionRequest) -> Prepared:
        """Prompt ids, sampling params and constraint; 4xx for anything we cannot serve as asked."""
        self.model_card(request.model)
        tools = [t.model_dump(exclude_none=True) for t in request.tools] if request.tool_mode() else None
        budget = thinking_budget(request.reasoning_effort or self.reasoning_effort)
        if budget and not self.can_reason:
            raise APIError(400, f"The model `{self.model_name}` does not reason: its vocabulary has no <think> "
                                "tokens. Send 'reasoning_effort': 'none' or leave it out.", param="reasoning_effort")
        prompt_ids = render_prompt(self.engine.loaded.tokenizer, request.messages, tools,
                                   thinking=bool(budget) if self.can_reason else None)
        max_tokens = request.max_new_tokens()
        default = DEFAULT_MAX_TOKENS
        if self.context_length is not None:
            room = self.context_length - len(prompt_ids)
            if room < 1 or (max_tokens is not None and max_tokens > room):
                asked = len(prompt_ids) + (max_tokens or 0)
                raise APIError(400, f"This model's maximum context length is {self.context_length} tokens. However, "
                                    f"you requested {asked} tokens ({len(prompt_ids)} in the messages, "
                                    f"{max_tokens or 0} in the completion). Please reduce the length of the "
                                    "messages or completion.", param="messages", code="context_length_exceeded")
            default = min(default, room)
        constraint = request.constraint()
        if budget:
            constraint = Constraint.reasoning(constraint, budget=budget)
        prepared = Prepared(completion_id(), prompt_ids, request.sampling_params(
            max_tokens=default if max_tokens is None else max_tokens), constraint, reasoning=bool(budget),
            tools=request.tool_mode() is not None)
        kind = prepared.constraint.kind if prepared.constraint else "free text"
        log.info("%s: %d prompt tokens, n=%d, max_tokens=%d, %s%s", prepared.request_id, len(prompt_ids),
                 prepared.params.n, prepared.params.max_tokens, kind, ", streamed" if request.stream else "")
        if request.user or request.metadata:
            log.debug("%s: user=%r metadata=%r", prepared.request_id, request.user, request.metadata)
        return prepared

    async def complete(self, request: ChatCompletionRequest) -> ChatCompletion:
        """The whole completion, every choice finished."""
        prepared = self.prepare(request)
        start = time.perf_counter()
        choices = [_Collected(prepared.parser()) for _ in range(prepared.params.n)]
        prompt_tokens = len(prepared.prompt_ids)
        async with aclosing(self._outputs(request, prepared)) as outputs:
            async for out in outputs:
                choice = choices[out.index]
                choice.text.append(out.text)
                if request.logprobs:
                    choice.logprobs += self.logprobs.entries(out.logprobs)
                choice.completion_tokens = out.completion_tokens
                if out.finish_reason is not None:
                    choice.finish_reason = out.finish_reason.value
        completion_tokens = sum(c.completion_tokens for c in choices)
        log.info("%s: done in %.2f s, %d completion tokens, finish %s", prepared.request_id,
                 time.perf_counter() - start, completion_tokens, [c.finish_reason for c in choices])
        return ChatCompletion(
            id=prepared.request_id,
            model=self.model_name,
            system_fingerprint=self.fingerprint,
            choices=[
                Choice(index=i, logprobs=ChoiceLogprobs(content=c.logprobs) if request.logprobs else None,
                       **c.message(reasoning=prepared.reasoning))
                for i, c in enumerate(choices)
            ],
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
        )

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE frames. Errors before the first output are raised here, so they are still HTTP errors."""
        prepared = self.prepare(request)
        outputs = self._outputs(request, prepared)
        first = await anext(outputs)
        return chat_completion_frames(
            first, outputs,
            header={"id": prepared.request_id, "created": int(time.time()), "model": self.model_name,
                    "system_fingerprint": self.fingerprint},
            parsers=[prepared.parser() for _ in range(prepared.params.n)], include_usage=request.include_usage,
            logprobs=self.logprobs if request.logprobs else None,
        )

    async def warm_up(self) -> None:
        """One short constrained generation, so the first client does not pay for lazy initialisation
        (the model's first forward pass, and ~1 s building the grammar backend's token trie)."""
        prompt_ids = render_prompt(self.engine.loaded.tokenizer, [ChatMessage(role="user", content="hi")])
        generation = self.engine.generate(prompt_ids, SamplingParams(max_tokens=1), Constraint.json_object())
        async with aclosing(generation) as outputs:
            async for _ in outputs:
                pass

    async def _outputs(self, request: ChatCompletionRequest,
                       prepared: Prepared) -> AsyncGenerator[SequenceOutput, None]:
        """The engine's outputs; closing this aborts the request. A bad schema is named as OpenAI names it."""
        outputs = self.engine.generate(prepared.prompt_ids, prepared.params, prepared.constraint,
                                       request_id=prepared.request_id)
        try:
            async with aclosing(outputs):
                async for out in outputs:
                    yield out
        except InvalidConstraint as exc:
            if prepared.tools and (exc.path.startswith("/tools/") or request.response_format is None):
                raise APIError(400, f"Invalid tools: {str(exc).splitlines()[0]}", param="tools") from exc
            raise invalid_schema(exc, request.schema_name()) from exc
