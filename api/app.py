"""`create_app`: the FastAPI application around a running engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from api.body_limit import BodyLimit
from api.drain import InFlight
from api.errors import ERROR_STATUSES, ErrorBody, install_error_handler
from api.metrics import install_metrics
from api.pipeline import Pipeline
from api.request_ids import RequestIds
from api.routes import health_router, require_api_key, router
from constrained.engine.async_engine import AsyncEngine

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

_DESCRIPTION = """OpenAI-compatible chat completions whose output is guaranteed to match `response_format`
(`json_schema`, strict or not, or `json_object`). Point the official `openai` SDK at `/v1`."""


def create_app(engine: AsyncEngine, *, model_name: str, api_key: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, reasoning_effort: str = "none",
               warm_before_serving: bool = False) -> FastAPI:
    """An app serving `engine` under `model_name`; `api_key` guards every /v1 route; `reasoning_effort`
    is the default of requests that set none ("none": no think block, the JSON comes at once).

    Requests may name the model `model_name`, the loaded model's own name, or the last path component
    of either (`--model /models/Qwen3-0.6B` also answers to `Qwen3-0.6B`); other names get 404.

    The app starts the engine and warms it up in the background (/health says 503 until then), or before
    its startup completes with `warm_before_serving` (raising if the warm-up fails); the caller owns the
    engine and shuts it down after the server stops.
    """
    if not engine.loaded.tokenizer.chat_template:
        raise ValueError(f"model '{model_name}' has no chat template: serve an instruct/chat model")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        warm_up = asyncio.create_task(_warm_up(app))
        if warm_before_serving and not await warm_up:
            raise RuntimeError("the warm-up generation failed (logged above)")
        yield
        app.state.ready = False
        warm_up.cancel()

    docs = {} if api_key is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}  # behind the key
    app = FastAPI(title="constrained", version=version("constrained"), description=_DESCRIPTION, lifespan=lifespan,
                  **docs)
    app.openapi = lambda: _openapi(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    install_metrics(app, engine)  # GET /metrics; its middleware wraps the body limit, so 413s are counted
    app.add_middleware(InFlight, state=app.state)  # what a drain waits for
    app.add_middleware(RequestIds)  # outermost: every response carries the id, the body limit's 413 too
    app.state.pipeline = Pipeline(engine, model_name=model_name, reasoning_effort=reasoning_effort)
    app.state.api_key = api_key
    app.state.ready = False
    app.state.draining = False  # set on SIGTERM (api.drain)
    app.state.in_flight = 0  # /v1 requests being served (api.drain.InFlight)
    install_error_handler(app)
    app.include_router(router)
    app.include_router(health_router)
    if api_key is not None:
        app.add_api_route("/openapi.json", lambda: app.openapi(), include_in_schema=False,
                          dependencies=[Depends(require_api_key)])
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's document with the statuses the API really answers: each error as OpenAI's error body,
    and no 422 (validation errors are 400s here)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for operation in (op for path, item in document["paths"].items() if path.startswith("/v1/")
                          for op in item.values()):
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in ERROR_STATUSES.items():
                if status != 401 or app.state.api_key is not None:
                    responses.setdefault(str(status), {"description": description, **error})
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        body = TypeAdapter(ErrorBody).json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs"), ErrorBody=body)
        app.openapi_schema = document
    return app.openapi_schema


@asynccontextmanager
async def serving(app: FastAPI, *, timeout_s: float = 60.0) -> AsyncIterator[FastAPI]:
    """`app` as uvicorn runs it, in-process (tests, benchmarks): lifespan entered and warm-up done."""
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + timeout_s
        while not app.state.ready:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not warm up within {timeout_s} s")
            await asyncio.sleep(0.01)
        yield app


async def _warm_up(app: FastAPI) -> bool:
    try:
        await app.state.pipeline.warm_up()
    except Exception:
        log.exception("warm-up generation failed: the server stays unready (/health 503)")
        return False
    app.state.ready = True
    log.info("ready: serving %s", app.state.pipeline.model_name)
    return True
