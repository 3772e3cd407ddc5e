"""Server-sent events for a streamed chat completion, frame by frame as OpenAI sends them.

Every choice first gets a delta with `role: "assistant"` (all of them up front, in index order, which
the SDK's stream helper relies on), then content deltas, the last carrying `finish_reason`. With
`include_usage`, one chunk with `choices: []` and the usage precedes `[DONE]`. An error after the
response started can only travel in the stream: one `{"error": ...}` frame, then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from api.errors import to_api_error
from api.logprobs import LogprobFormatter
from api.protocol import (
    ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, Delta, DeltaFunction, DeltaToolCall, Usage,
)
from constrained.tool_calls import CLOSE, OPEN, parse_tool_calls
from constrained.engine.sequence import SequenceOutput

log = logging.getLogger(__name__)

DONE = "data: [DONE]\n\n"


def sse(data: str) -> str:
    return f"data: {data}\n\n"


@dataclass
class ChoiceStream:
    """What one choice has sent: its finish reason once done, and how many tokens it produced."""

    index: int
    finish_reason: str | None = None
    completion_tokens: int = 0
    tools: bool = False  # calls are parsed out of the text once `<tool_call>` opens
    pending: str | None = None  # text since the first `<tool_call>`, not yet sent as calls
    calls: int = 0

    def opening(self) -> ChunkChoice:
        return ChunkChoice(index=self.index, delta=Delta(role="assistant", content=""))

    def advance(self, out: SequenceOutput, logprobs: LogprobFormatter | None) -> list[ChunkChoice]:
        """The deltas for one engine output; none when it carries nothing (bytes of a split character)."""
        self.completion_tokens = out.completion_tokens
        entries = logprobs.entries(out.logprobs) if logprobs is not None and out.logprobs else None
        text, tool_deltas = self._split_calls(out.text) if self.tools else (out.text, [])
        if out.finish_reason is not None:
            self.finish_reason = out.finish_reason.value
            if self.calls and self.finish_reason == "stop":
                self.finish_reason = "tool_calls"
        elif not text and not entries and not tool_deltas:
            return []
        chunks = [ChunkChoice(index=self.index, delta=Delta(tool_calls=[d])) for d in tool_deltas]
        if text or entries or out.finish_reason is not None:
            chunks.append(ChunkChoice(
                index=self.index,
                delta=Delta(content=text or ("" if entries else None)),
                finish_reason=self.finish_reason,
                logprobs=ChoiceLogprobs(content=entries) if entries else None,
            ))
        return chunks

    def _split_calls(self, text: str) -> tuple[str, list[DeltaToolCall]]:
        """Content to send, and deltas (header with id and name, then the arguments) of calls now complete."""
        if self.pending is None:
            if OPEN not in text:
                return text, []
            text, self.pending = text.split(OPEN, 1)[0], OPEN + text.split(OPEN, 1)[1]
        else:
            self.pending += text
            text = ""
        deltas = []
        while (end := self.pending.find(CLOSE)) >= 0:
            block, self.pending = self.pending[:end + len(CLOSE)], self.pending[end + len(CLOSE):].lstrip("\n")
            for call in parse_tool_calls(block)[1]:
                deltas.append(DeltaToolCall(index=self.calls, id=f"call_{uuid.uuid4().hex[:24]}", type="function",
                                            function=DeltaFunction(name=call.name, arguments="")))
                deltas.append(DeltaToolCall(index=self.calls, function=DeltaFunction(arguments=call.arguments)))
                self.calls += 1
        return text, deltas


async def chat_completion_frames(
    first: SequenceOutput, outputs: AsyncGenerator[SequenceOutput, None], *, header: dict[str, Any], n: int,
    include_usage: bool, logprobs: LogprobFormatter | None, tools: bool = False,
) -> AsyncIterator[str]:
    """Frames from the engine's outputs (`first` already received). Closing this aborts the request.
    With `tools`, calls leave as tool-call deltas, each once complete."""
    choices = [ChoiceStream(i, tools=tools) for i in range(n)]

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
