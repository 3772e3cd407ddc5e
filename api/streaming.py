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
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from api.errors import to_api_error
from api.logprobs import LogprobFormatter
from api.protocol import ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, Delta, Usage
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

    def opening(self) -> ChunkChoice:
        return ChunkChoice(index=self.index, delta=Delta(role="assistant", content=""))

    def advance(self, out: SequenceOutput, logprobs: LogprobFormatter | None) -> ChunkChoice | None:
        """The delta for one engine output, or None when it carries nothing (bytes of a split character)."""
        self.completion_tokens = out.completion_tokens
        entries = logprobs.entries(out.logprobs) if logprobs is not None and out.logprobs else None
        if out.finish_reason is not None:
            self.finish_reason = out.finish_reason.value
        elif not out.text and not entries:
            return None
        return ChunkChoice(
            index=self.index,
            delta=Delta(content=out.text or ("" if entries else None)),
            finish_reason=self.finish_reason,
            logprobs=ChoiceLogprobs(content=entries) if entries else None,
        )


async def chat_completion_frames(
    first: SequenceOutput, outputs: AsyncGenerator[SequenceOutput, None], *, header: dict[str, Any], n: int,
    include_usage: bool, logprobs: LogprobFormatter | None,
) -> AsyncIterator[str]:
    """Frames from the engine's outputs (`first` already received). Closing this aborts the request."""
    choices = [ChoiceStream(i) for i in range(n)]

    def frame(chunk_choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        return sse(ChatCompletionChunk(**header, choices=chunk_choices, usage=usage).model_dump_json())

    try:
        for choice in choices:
            yield frame([choice.opening()])
        out: SequenceOutput | None = first
        while out is not None:
            delta = choices[out.index].advance(out, logprobs)
            if delta is not None:
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
