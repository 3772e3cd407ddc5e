"""POST /v1/responses: a Responses API request -> the shared pipeline -> a Response or its SSE events.

`OutputItems` turns the answer (thoughts, text, calls) into output items and the events that build them,
in the order the Responses API streams them; a whole response is the same items, its events unsent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from api.call_fields import tool_call_id
from api.errors import to_api_error
from api.pipeline import EngineRequest, Pipeline
from api.protocol.base import new_id
from api.protocol.responses import OutputTokensDetails, Response, ResponseRequest, ResponseUsage
from constrained.answer import AnswerPiece
from constrained.engine.sequence import SequenceOutput

log = logging.getLogger(__name__)


def engine_request(pipeline: Pipeline, body: ResponseRequest) -> EngineRequest:
    """Prompt ids, sampling params and constraint; 4xx for anything we cannot serve as asked."""
    pipeline.model_card(body.model)
    param, constraint = body.constraint()
    effort = body.reasoning.effort if body.reasoning is not None else None
    budget = pipeline.thinking_budget(effort, param="reasoning.effort")
    prompt_ids = pipeline.render(body.messages(), body.chat_tools(), budget=budget)
    max_tokens = pipeline.max_tokens(prompt_ids, body.max_output_tokens, prompt_param="input")
    return pipeline.request(prompt_ids, body.sampling_params(max_tokens=max_tokens), constraint,
                            request_id=new_id("resp_"), budget=budget, constraint_param=param,
                            schema_name=body.schema_name(), tools_param="tools" if body.tool_mode() else None)


class OutputItems:
    """One answer's output items (reasoning, message, function_call), built from answer pieces; `feed`
    and `close` return the stream events (without sequence numbers) that build them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._text = ""  # of the open reasoning or message item

    def feed(self, piece: AnswerPiece) -> list[dict[str, Any]]:
        events = []
        if piece.reasoning:
            events += self._ensure("reasoning") + [self._text_delta("response.reasoning_text.delta", piece.reasoning)]
        if piece.content:
            events += self._ensure("message") + [self._text_delta("response.output_text.delta", piece.content)]
        for delta in piece.calls:
            if delta.name is not None:
                events += self._close("completed") + self._add({
                    "id": new_id("fc_"), "type": "function_call", "status": "in_progress", "call_id": tool_call_id(),
                    "name": delta.name, "arguments": ""})
            else:
                self._open["arguments"] += delta.arguments
                events.append({"type": "response.function_call_arguments.delta", **self._where(),
                               "delta": delta.arguments})
        return events

    def close(self, status: str) -> list[dict[str, Any]]:
        """Close the last item with `status` ("incomplete": cut by max_output_tokens); an answer with no item
        at all gets an empty message."""
        events = [] if self.items else self._ensure("message")
        return events + self._close(status)

    def _ensure(self, kind: str) -> list[dict[str, Any]]:
        """Events opening an item of `kind`, unless it is the open one."""
        if self._open is not None and self._open["type"] == kind:
            return []
        events = self._close("completed")
        if kind == "reasoning":
            return events + self._add({"id": new_id("rs_"), "type": "reasoning", "summary": [], "content": [],
                                       "status": "in_progress"})
        events += self._add({"id": new_id("msg_"), "type": "message", "status": "in_progress", "role": "assistant",
                             "content": []})
        return events + [{"type": "response.content_part.added", **self._where(), "content_index": 0,
                          "part": _output_text("")}]

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self.items.append(item)
        self._open, self._text = item, ""
        return [{"type": "response.output_item.added", "output_index": len(self.items) - 1, "item": dict(item)}]

    def _text_delta(self, kind: str, delta: str) -> dict[str, Any]:
        self._text += delta
        extra = {"logprobs": []} if kind == "response.output_text.delta" else {}
        return {"type": kind, **self._where(), "content_index": 0, "delta": delta, **extra}

    def _close(self, status: str) -> list[dict[str, Any]]:
        item, self._open = self._open, None
        if item is None:
            return []
        item["status"] = status
        where = {"item_id": item["id"], "output_index": self.items.index(item)}
        if item["type"] == "reasoning":
            item["content"] = [{"type": "reasoning_text", "text": self._text}]
            events = [{"type": "response.reasoning_text.done", **where, "content_index": 0, "text": self._text}]
        elif item["type"] == "message":
            item["content"] = [_output_text(self._text)]
            events = [{"type": "response.output_text.done", **where, "content_index": 0, "text": self._text,
                       "logprobs": []},
                      {"type": "response.content_part.done", **where, "content_index": 0, "part": item["content"][0]}]
        else:
            events = [{"type": "response.function_call_arguments.done", **where, "name": item["name"],
                       "arguments": item["arguments"]}]
        return events + [{"type": "response.output_item.done", "output_index": where["output_index"],
                          "item": dict(item)}]

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._open["id"], "output_index": len(self.items) - 1}


async def create_response(pipeline: Pipeline, body: ResponseRequest) -> Response:
    request = await pipeline.prepare(engine_request, body)
    choice, = await pipeline.collect(request)
    parser, output = request.parser(), OutputItems()
    piece = parser.feed(choice.text, final=True)
    output.feed(piece)
    output.close(_status(choice.finish_reason))
    return _response(pipeline, body, request, output.items, choice.finish_reason, choice.completion_tokens,
                     piece.reasoning)


async def stream_response(pipeline: Pipeline, body: ResponseRequest) -> AsyncIterator[str]:
    """SSE events. Errors before the first output are raised here, so they are still HTTP errors."""
    request = await pipeline.prepare(engine_request, body)
    first, outputs = await pipeline.start(request)
    return _events(pipeline, body, request, first, outputs)


async def _events(pipeline: Pipeline, body: ResponseRequest, request: EngineRequest, first: SequenceOutput,
                  outputs: AsyncGenerator[SequenceOutput, None]) -> AsyncIterator[str]:
    """response.created, in_progress, the items' events, then response.completed (or .incomplete)."""
    sequence = 0

    def event(data: dict[str, Any]) -> str:
        nonlocal sequence
        frame = f"event: {data['type']}\ndata: {json.dumps({**data, 'sequence_number': sequence})}\n\n"
        sequence += 1
        return frame

    started = _response(pipeline, body, request, [], None, 0, "").model_dump(mode="json")
    yield event({"type": "response.created", "response": started})
    yield event({"type": "response.in_progress", "response": started})
    parser, output, reasoning = request.parser(), OutputItems(), ""
    finish, tokens = None, 0
    try:
        async with aclosing(outputs):
            out: SequenceOutput | None = first
            while out is not None:
                piece = parser.feed(out.text, final=out.finish_reason is not None)
                reasoning += piece.reasoning
                for data in output.feed(piece):
                    yield event(data)
                if out.finish_reason is not None:
                    finish, tokens = out.finish_reason.value, out.completion_tokens
                out = await anext(outputs, None)
        for data in output.close(_status(finish)):
            yield event(data)
        final = _response(pipeline, body, request, output.items, finish, tokens, reasoning)
        kind = "response.completed" if final.status == "completed" else "response.incomplete"
        yield event({"type": kind, "response": final.model_dump(mode="json")})
    except Exception as exc:  # headers are sent: the error goes in the stream
        error = to_api_error(exc)
        yield event({"type": "error", "code": error.code, "message": error.message, "param": error.param})


def _status(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason == "length" else "completed"


def _response(pipeline: Pipeline, body: ResponseRequest, request: EngineRequest, items: list[dict[str, Any]],
              finish_reason: str | None, completion_tokens: int, reasoning: str) -> Response:
    """The Response: in progress while `finish_reason` is None, incomplete when cut by max_output_tokens."""
    status = "in_progress" if finish_reason is None else _status(finish_reason)
    usage = None
    if finish_reason is not None:
        prompt_tokens = len(request.prompt_ids)
        thought = len(pipeline.tokenizer.encode(reasoning, add_special_tokens=False)) if reasoning else 0
        usage = ResponseUsage(input_tokens=prompt_tokens, output_tokens=completion_tokens,
                              output_tokens_details=OutputTokensDetails(reasoning_tokens=thought),
                              total_tokens=prompt_tokens + completion_tokens)
    return Response(id=request.request_id, status=status, model=pipeline.model_name, output=items, usage=usage,
                    incomplete_details={"reason": "max_output_tokens"} if status == "incomplete" else None,
                    **body.echo())


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
