"""Thin HTTP handlers: each returns a response model, raises an APIError, or hands back SSE frames."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.chat import create_chat_completion, stream_chat_completion
from api.completions import create_completion, stream_completion
from api.responses import create_response, stream_response
from api.errors import RETRY_AFTER_S, APIError
from api.pipeline import Pipeline
from api.protocol.base import ModelCard, ModelList
from api.protocol.chat import ChatCompletion, ChatCompletionRequest
from api.protocol.completions import Completion, CompletionRequest
from api.protocol.responses import Response as ResponseObject, ResponseRequest

T = TypeVar("T")
log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="The server's API key, when it was started with one.")


def require_api_key(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """401 unless the server has no key or `Authorization: Bearer <key>` matches it (constant-time)."""
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    if credentials is None:
        raise APIError(401, "You didn't provide an API key. Provide it in an Authorization header using Bearer "
                            "auth (i.e. Authorization: Bearer YOUR_KEY).")
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")


def ready_pipeline(request: Request) -> Pipeline:
    """The pipeline to the engine, or 503 while the engine is starting or stopping."""
    if not request.app.state.ready:
        reason = "The server is shutting down" if request.app.state.draining else "The model is not ready yet"
        raise APIError(503, f"{reason}; retry shortly.", type="server_error",
                       headers={"Retry-After": str(RETRY_AFTER_S)})
    return request.app.state.pipeline


router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
health_router = APIRouter()

_SSE = {200: {"content": {"text/event-stream": {}}, "description": "A completion, or SSE chunks when stream=true."}}


@router.post("/chat/completions", response_model=ChatCompletion, responses=_SSE)
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           pipeline: Pipeline = Depends(ready_pipeline)) -> ChatCompletion | Response:
    """A completion whose content matches `response_format`; SSE chunks when `stream` is true."""
    if body.stream:
        return _event_stream(await stream_chat_completion(pipeline, body))
    return await _unless_disconnected(request, create_chat_completion(pipeline, body))


@router.post("/responses", response_model=ResponseObject, responses=_SSE)
async def responses(body: ResponseRequest, request: Request,
                    pipeline: Pipeline = Depends(ready_pipeline)) -> ResponseObject | Response:
    """A response whose output matches `text.format` or calls the tools; SSE events when `stream` is true.
    Stateless: nothing is stored."""
    if body.stream:
        return _event_stream(await stream_response(pipeline, body))
    return await _unless_disconnected(request, create_response(pipeline, body))


@router.post("/completions", response_model=Completion, responses=_SSE)
async def completions(body: CompletionRequest, request: Request,
                      pipeline: Pipeline = Depends(ready_pipeline)) -> Completion | Response:
    """Text after a raw prompt (no chat template), constrained by `response_format` or a vLLM/SGLang field."""
    if body.stream:
        return _event_stream(await stream_completion(pipeline, body))
    return await _unless_disconnected(request, create_completion(pipeline, body))


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The one served model."""
    pipeline: Pipeline = request.app.state.pipeline
    return ModelList(data=[pipeline.model_card(pipeline.model_name)])


@router.get("/models/{model}", response_model=ModelCard)
async def retrieve_model(model: str, request: Request) -> ModelCard:
    return request.app.state.pipeline.model_card(model)


@health_router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 once the engine is warm, 503 before and while draining. Needs no API key."""
    state = request.app.state
    status = "ok" if state.ready else "draining" if state.draining else "starting"
    return JSONResponse({"status": status}, status_code=200 if state.ready else 503,
                        headers=None if state.ready else {"Retry-After": str(RETRY_AFTER_S)})


def _event_stream(frames: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T | Response:
    """Await `work`, cancelling it (and so aborting its engine request) if the client goes away first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # no-op when done; otherwise the engine request is aborted as the task unwinds
    if not task.done() or task.cancelled():
        log.info("client disconnected before its completion was ready: request aborted")
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it, the log shows it
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
