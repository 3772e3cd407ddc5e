"""POST /v1/chat/completions: a chat request -> the shared pipeline -> a completion or SSE frames."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from api.call_fields import chat_finish_reason, tool_call_id
from api.chat_stream import chat_completion_frames
from api.pipeline import CollectedChoice, EngineRequest, Pipeline
from api.protocol.base import new_id
from api.protocol.chat import (
    AssistantMessage, ChatCompletion, ChatCompletionRequest, Choice, ChoiceLogprobs, ResponseFunction,
    ResponseToolCall, Usage,
)

log = logging.getLogger(__name__)


def engine_request(pipeline: Pipeline, body: ChatCompletionRequest) -> EngineRequest:
    """Prompt ids, sampling params and constraint; 4xx for anything we cannot serve as asked."""
    pipeline.model_card(body.model)
    param, constraint = body.constraint()
    mode = body.tool_mode()
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if mode else None
    budget = pipeline.thinking_budget(body.reasoning_effort, param="reasoning_effort")
    prompt_ids = pipeline.render(body.messages, tools, budget=budget)
    max_tokens = pipeline.max_tokens(prompt_ids, body.max_new_tokens())
    if body.user or body.metadata:
        log.debug("user=%r metadata=%r", body.user, body.metadata)
    return pipeline.request(prompt_ids, body.sampling_params(max_tokens=max_tokens), constraint,
                            request_id=new_id("chatcmpl-"), budget=budget, constraint_param=param,
                            schema_name=body.schema_name(), tools_param="tools" if mode else None)


async def create_chat_completion(pipeline: Pipeline, body: ChatCompletionRequest) -> ChatCompletion:
    """The whole completion, every choice finished."""
    request = await pipeline.prepare(engine_request, body)
    choices = await pipeline.collect(request)
    prompt_tokens = len(request.prompt_ids)
    completion_tokens = sum(c.completion_tokens for c in choices)
    return ChatCompletion(
        id=request.request_id,
        model=pipeline.model_name,
        system_fingerprint=pipeline.fingerprint,
        choices=[_choice(c, request, pipeline if body.logprobs else None) for c in choices],
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                    total_tokens=prompt_tokens + completion_tokens),
    )


async def stream_chat_completion(pipeline: Pipeline, body: ChatCompletionRequest) -> AsyncIterator[str]:
    """SSE frames. Errors before the first output are raised here, so they are still HTTP errors."""
    request = await pipeline.prepare(engine_request, body)
    first, outputs = await pipeline.start(request)
    return chat_completion_frames(
        first, outputs, request,
        header={"id": request.request_id, "created": int(time.time()), "model": pipeline.model_name,
                "system_fingerprint": pipeline.fingerprint},
        include_usage=body.include_usage, logprobs=pipeline.logprobs if body.logprobs else None,
    )


def _choice(choice: CollectedChoice, request: EngineRequest, pipeline: Pipeline | None) -> Choice:
    """One choice's message: the thoughts as reasoning_content, calls parsed out of the answer. A call cut
    by max_tokens is returned as far as it got, with finish_reason "length", as OpenAI does."""
    parser = request.parser()
    piece = parser.feed(choice.text, final=True)
    made = parser.calls + ([parser.unfinished_call] if parser.unfinished_call is not None else [])
    calls = [ResponseToolCall(id=tool_call_id(), function=ResponseFunction(name=c.name, arguments=c.arguments))
             for c in made]
    finish = chat_finish_reason(choice.finish_reason, bool(calls))
    message = AssistantMessage(content=(piece.content or None) if calls else piece.content, tool_calls=calls or None,
                               reasoning_content=piece.reasoning if request.reasoning else None)
    logprobs = ChoiceLogprobs(content=pipeline.logprobs.entries(choice.sampled)) if pipeline is not None else None
    return Choice(index=choice.index, finish_reason=finish, message=message, logprobs=logprobs)
