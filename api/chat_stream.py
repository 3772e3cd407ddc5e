"""Server-sent events for a streamed chat completion, frame by frame as OpenAI sends them.

Every choice first gets a delta with `role: "assistant"` (all of them up front, in index order, which
the SDK's stream helper relies on), then reasoning, tool-call and content deltas, the last carrying
`finish_reason`. With
`include_usage`, one chunk with `choices: []` and the usage precedes `[DONE]`. An error after the
response started can only travel in the stream: one `{"error": ...}` frame, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from api.call_fields import chat_finish_reason, tool_call_id
from api.errors import to_api_error
from api.logprobs import LogprobFormatter
from api.pipeline import EngineRequest
from api.protocol.chat import (
    ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, Delta, DeltaFunction, DeltaToolCall, Usage,
)
from constrained.answer import AnswerParser
from constrained.engine.sequence import SequenceOutput
from constrained.tool_calls import CallDelta

log = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"


def sse(data: str) -> str:
    return f"data: {data}\n\n"


@dataclass
class ChoiceStream:
    """What one choice has sent: its finish reason once done, and how many tokens it produced. Its parser
    turns the text into reasoning, content and tool-call deltas (id and name once a call's name is
    complete, then argument fragments as they are generated)."""

    index: int
    parser: AnswerParser
    finish_reason: str | None = None
    completion_tokens: int = 0

    def opening(self) -> ChunkChoice:
        return ChunkChoice(index=self.index, delta=Delta(role="assistant", content=""))

    def advance(self, out: SequenceOutput, logprobs: LogprobFormatter | None) -> list[ChunkChoice]:
        """The deltas for one engine output; none when it carries nothing (bytes of a split character)."""
        self.completion_tokens = out.completion_tokens
        entries = logprobs.entries(out.logprobs) if logprobs is not None and out.logprobs else None
        piece = self.parser.feed(out.text, final=out.finish_reason is not None)
        if out.finish_reason is not None:
            self.finish_reason = chat_finish_reason(out.finish_reason.value, bool(self.parser.calls))
        chunks = [ChunkChoice(index=self.index, delta=Delta(reasoning_content=piece.reasoning))] \
            if piece.reasoning else []
        chunks += [ChunkChoice(index=self.index, delta=Delta(tool_calls=[_tool_delta(d)])) for d in piece.calls]
        if piece.content or entries or out.finish_reason is not None:
            chunks.append(ChunkChoice(
                index=self.index,
                delta=Delta(content=piece.content or ("" if entries else None)),
                finish_reason=self.finish_reason,
                logprobs=ChoiceLogprobs(content=entries) if entries else None,
            ))
        return chunks


def _tool_delta(delta: CallDelta) -> DeltaToolCall:
    """The SDK's form: a call's first delta has id, type, name and empty arguments; later ones fragments."""
    if delta.name is not None:
        return DeltaToolCall(index=delta.index, id=tool_call_id(), type="function",
                             function=DeltaFunction(name=delta.name, arguments=""))
    return DeltaToolCall(index=delta.index, function=DeltaFunction(arguments=delta.arguments))


async def chat_completion_frames(
    first: SequenceOutput, outputs: AsyncGenerator[SequenceOutput, None], request: EngineRequest, *,
    header: dict[str, Any], include_usage: bool, logprobs: LogprobFormatter | None,
) -> AsyncIterator[str]:
    """Frames from the engine's outputs of `request` (`first` already received). Closing this aborts
    the request."""
    choices = [ChoiceStream(i, request.parser()) for i in range(request.params.n)]

    def frame(chunk_choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        return sse(ChatCompletionChunk(**header, choices=chunk_choices, usage=usage).model_dump_json())

    try:
        for choice in choices:
            yield frame([choice.opening()])
        out: SequenceOutput | None = first
        while out is not None:
            for delta in choices[out.index].advance(out, logprobs):
                yield frame([delta])
            out = await anext(outputs, None)
        completion_tokens = sum(c.completion_tokens for c in choices)
        log.info("%s: stream done, %d completion tokens, finish %s", header["id"], completion_tokens,
                 [c.finish_reason for c in choices])
        if include_usage:
            yield frame([], Usage(prompt_tokens=first.prompt_tokens, completion_tokens=completion_tokens,
                                  total_tokens=first.prompt_tokens + completion_tokens))
    except Exception as exc:  # headers are sent: the error goes in the stream
        yield sse(json.dumps(to_api_error(exc).body()))
    except (asyncio.CancelledError, GeneratorExit):
        log.info("%s: client disconnected, request aborted", header["id"])
        raise
    finally:
        await outputs.aclose()
    yield DONE
