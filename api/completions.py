"""POST /v1/completions: raw prompts (text or token ids, no chat template) -> the shared pipeline -> a
completion or SSE chunks. Each prompt is one engine request; its n choices take the indices
prompt * n + j, as OpenAI numbers them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

from api.chat_stream import DONE, sse
from api.errors import APIError, to_api_error
from api.pipeline import EngineRequest, Pipeline
from api.protocol.base import new_id, now
from api.protocol.chat import Usage
from api.protocol.completions import (
    DEFAULT_MAX_TOKENS, Completion, CompletionChoice, CompletionLogprobs, CompletionRequest,
)
from constrained.engine.sampler import SampledToken
from constrained.engine.sequence import SequenceOutput

log = logging.getLogger(__name__)


def engine_requests(pipeline: Pipeline, body: CompletionRequest) -> tuple[str, list[EngineRequest]]:
    """The completion's id, and one engine request per prompt sharing the sampling params and the constraint."""
    pipeline.model_card(body.model)
    param, constraint = body.constraint()
    request_id = new_id("cmpl-")
    requests = []
    for i, prompt in enumerate(body.prompts()):
        prompt_ids = _prompt_ids(pipeline, prompt)
        max_tokens = pipeline.max_tokens(prompt_ids, body.max_tokens, default=DEFAULT_MAX_TOKENS,
                                         prompt_param="prompt")
        requests.append(pipeline.request(prompt_ids, body.sampling_params(max_tokens=max_tokens), constraint,
                                         request_id=f"{request_id}-{i}", constraint_param=param,
                                         schema_name=body.schema_name()))
    return request_id, requests


async def create_completion(pipeline: Pipeline, body: CompletionRequest) -> Completion:
    completion_id, requests = await pipeline.prepare(engine_requests, body)
    results = await asyncio.gather(*(pipeline.collect(r) for r in requests))
    choices = []
    for p, (request, collected) in enumerate(zip(requests, results)):
        echo = _echo(pipeline, request, body)
        for choice in collected:
            choices.append(CompletionChoice(
                index=p * request.params.n + choice.index, text=echo + choice.text, finish_reason=choice.finish_reason,
                logprobs=_logprobs(pipeline, choice.sampled, len(echo)) if body.logprobs is not None else None))
    prompt_tokens = sum(len(r.prompt_ids) for r in requests)
    completion_tokens = sum(c.completion_tokens for collected in results for c in collected)
    return Completion(id=completion_id, model=pipeline.model_name,
                      system_fingerprint=pipeline.fingerprint, choices=choices,
                      usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                  total_tokens=prompt_tokens + completion_tokens))


async def stream_completion(pipeline: Pipeline, body: CompletionRequest) -> AsyncIterator[str]:
    """SSE frames; errors before the first output of every prompt are raised here (HTTP errors)."""
    completion_id, requests = await pipeline.prepare(engine_requests, body)
    started = []
    try:
        for request in requests:
            started.append(await pipeline.start(request))
    except BaseException:
        for _, outputs in started:
            await outputs.aclose()
        raise
    header = {"id": completion_id, "created": now(), "model": pipeline.model_name,
              "system_fingerprint": pipeline.fingerprint}
    return _frames(pipeline, body, header, requests, started)


async def _frames(pipeline: Pipeline, body: CompletionRequest, header: dict, requests: list[EngineRequest],
                  started: list[tuple[SequenceOutput, AsyncGenerator[SequenceOutput, None]]]) -> AsyncIterator[str]:
    """Chunks of every prompt's choices as they come; the usage chunk; [DONE]. Closing this aborts them all."""
    echoed: set[int] = set()
    offsets: dict[int, int] = {}
    tokens: dict[int, int] = {}
    merged = _merge([_prepend(first, outputs) for first, outputs in started])
    try:
        async with aclosing(merged):
            async for p, out in merged:
                request = requests[p]
                index = p * request.params.n + out.index
                text = out.text
                if index not in echoed:
                    echoed.add(index)
                    text = _echo(pipeline, request, body) + text
                offset = offsets.get(index, 0)
                offsets[index] = offset + len(text)
                tokens[index] = out.completion_tokens
                if not text and out.finish_reason is None:
                    continue
                logprobs = _logprobs(pipeline, list(out.logprobs), offset + len(text) - len(out.text)) \
                    if body.logprobs is not None else None
                finish = out.finish_reason.value if out.finish_reason is not None else None
                chunk = Completion(**header, choices=[CompletionChoice(index=index, text=text, finish_reason=finish,
                                                                       logprobs=logprobs)])
                yield sse(chunk.model_dump_json(exclude={"usage"}))
        if body.include_usage:
            prompt_tokens = sum(len(r.prompt_ids) for r in requests)
            usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=sum(tokens.values()),
                          total_tokens=prompt_tokens + sum(tokens.values()))
            yield sse(Completion(**header, choices=[], usage=usage).model_dump_json())
    except Exception as exc:  # headers are sent: the error goes in the stream
        yield sse(json.dumps(to_api_error(exc).body()))
    yield DONE


async def _prepend(first: SequenceOutput,
                   rest: AsyncGenerator[SequenceOutput, None]) -> AsyncGenerator[SequenceOutput, None]:
    async with aclosing(rest):
        yield first
        async for out in rest:
            yield out


async def _merge(
    streams: list[AsyncGenerator[SequenceOutput, None]],
) -> AsyncGenerator[tuple[int, SequenceOutput], None]:
    """(stream number, output) from several streams as they come; closing this closes them all."""
    if len(streams) == 1:
        async with aclosing(streams[0]) as only:
            async for out in only:
                yield 0, out
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(number: int, stream: AsyncGenerator[SequenceOutput, None]) -> None:
        try:
            async with aclosing(stream):
                async for out in stream:
                    await queue.put((number, out))
        except Exception as exc:
            await queue.put((number, exc))
        await queue.put((number, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            number, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield number, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _prompt_ids(pipeline: Pipeline, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, str):
        ids = pipeline.tokenizer.encode(prompt)
        if not ids:
            raise APIError(400, "The prompt is empty: it has no tokens to continue.", param="prompt")
        return ids
    vocab = pipeline.engine.loaded.vocab_rows
    if any(not 0 <= token < vocab for token in prompt):
        raise APIError(400, f"The prompt has token ids outside the vocabulary [0, {vocab}).", param="prompt")
    return list(prompt)


def _echo(pipeline: Pipeline, request: EngineRequest, body: CompletionRequest) -> str:
    return pipeline.tokenizer.decode(request.prompt_ids) if body.echo else ""


def _logprobs(pipeline: Pipeline, sampled: list[SampledToken], start: int) -> CompletionLogprobs:
    """OpenAI's completions form: token strings, their logprobs, the top alternatives, text offsets."""
    entries = pipeline.logprobs.entries(sampled)
    offsets, offset = [], start
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return CompletionLogprobs(text_offset=offsets, token_logprobs=[e.logprob for e in entries],
                              tokens=[e.token for e in entries],
                              top_logprobs=[{t.token: t.logprob for t in e.top_logprobs} for e in entries])
