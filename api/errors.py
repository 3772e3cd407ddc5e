"""Every failure becomes OpenAI's error body `{"error": {"message", "type", "param", "code"}}`.

`to_api_error` is the one mapping from any exception (ours, the library's, FastAPI's, unexpected)
to an `APIError`; `handle_error` is the one exception handler, and the SSE stream uses the same
mapping for errors raised after the response started. FastAPI's 422 never reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from constrained.errors import (
    CompileError, CompileTimeout, ConstrainedError, ConstraintFailed, EngineOverloaded, InvalidConstraint,
    InvalidSamplingParams,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}  # pydantic puts these in union error locs


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """What every error answer holds (documented in the OpenAPI document for each status below)."""

    error: ErrorDetail


ERROR_STATUSES = {
    400: "Invalid request: bad JSON, an unknown or malformed field, a schema or constraint that cannot be enforced.",
    401: "Missing or wrong API key.",
    404: "Unknown model.",
    413: "Request body too large.",
    429: "The queue is full; retry after Retry-After seconds.",
    500: "Server error.",
    503: "The model is not ready yet, or the server is stopping; retry after Retry-After seconds.",
}


class APIError(Exception):
    """An error answer: HTTP status plus OpenAI's type, param and code."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_schema(exc: InvalidConstraint, param: str = "response_format", name: str | None = None) -> APIError:
    """A schema we cannot enforce, named in `param`, in OpenAI's wording: "Invalid schema for
    response_format 'NAME': In context=('properties', 'x'), ..."."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in exc.path.split("/")[1:]] if exc.path else []
    context = "(" + ", ".join(repr(p) for p in parts) + ")"
    subject = f"{param} '{name}'" if name else param
    return APIError(400, f"Invalid schema for {subject}: In context={context}, {exc}", param=param)


def to_api_error(exc: Exception, *, constraint_param: str = "response_format",
                 schema_name: str | None = None) -> APIError:
    """Map any exception to the error the client sees; unexpected ones become a 500 without details.
    A constraint's errors name `constraint_param`, the request field it came from."""
    match exc:
        case APIError():
            return exc
        case RequestValidationError():
            return _from_validation(exc.errors())
        case HTTPException():
            return _from_http(exc)
        case InvalidConstraint():
            return invalid_schema(exc, constraint_param, schema_name)
        case InvalidSamplingParams():
            return APIError(400, str(exc), param=exc.param)
        case CompileTimeout():
            return APIError(400, f"Compiling the '{constraint_param}' constraint timed out: {exc}. Simplify it "
                                 "(fewer alternatives, bounded repetitions) or raise the server's compile deadline.",
                            param=constraint_param, code="compile_timeout")
        case CompileError():
            return APIError(400, f"The '{constraint_param}' constraint could not be compiled into a grammar: {exc}",
                            param=constraint_param)
        case ConstraintFailed():  # the grammar backend ran past its own limits on this request's constraint
            log.warning("constraint failed mid-generation: %s", exc)
            return APIError(400, f"The '{constraint_param}' constraint failed while generating: {exc}. Simpler "
                                 "patterns (fewer bounded repetitions) avoid it.", param=constraint_param,
                            code="constraint_failed")
        case EngineOverloaded():
            return APIError(429, f"The server is at capacity: {exc}. Retry after {RETRY_AFTER_S}s.",
                            type="rate_limit_error", code="rate_limit_exceeded",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
        case _:
            log.error("unexpected error while serving a request", exc_info=exc)
            return APIError(500, "The server had an error while processing your request.", type="server_error")


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The single exception handler: every error leaves as OpenAI's error body."""
    error = to_api_error(exc)
    if error.status >= 500 or error.status == 429:
        log.warning("%s %s -> %d %s", request.method, request.url.path, error.status, error.message)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def install_error_handler(app: FastAPI) -> None:
    for exc_type in (APIError, RequestValidationError, HTTPException, ConstrainedError, Exception):
        app.add_exception_handler(exc_type, handle_error)


def _from_http(exc: HTTPException) -> APIError:
    if exc.status_code == 413:
        return APIError(413, "The request body is larger than this server accepts (see --max-body-bytes).",
                        code="request_too_large")
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return APIError(exc.status_code, str(exc.detail), type=kind, headers=exc.headers)


def _from_validation(errors: list[dict[str, Any]]) -> APIError:
    """One 400 naming the first decisive problem: bad JSON, an unknown field, a refusal, or the deepest error."""
    first = _pick(errors)
    kind, loc, msg = first["type"], first["loc"], first["msg"]
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        return APIError(400, "We could not parse the JSON body of your request: "
                             f"{reason} at position {loc[-1]}. The API expects a JSON object.")
    param = _param(loc)
    if param is None:
        if isinstance(first.get("input"), (bytes, str)):
            return APIError(400, "The request body must be a JSON object sent with Content-Type: application/json.")
        if kind == "missing":
            return APIError(400, "The request body is missing: send a JSON object.")
        return APIError(400, f"The request body must be a JSON object: {msg}.")
    if kind == "extra_forbidden":
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param, code="unknown_parameter")
    if kind == "unsupported":
        return APIError(400, msg, param=param, code="unsupported_parameter")
    if kind == "missing":
        return APIError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    msg = msg.removeprefix("Value error, ")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return APIError(400, f"Invalid type for '{param}': {msg}.", param=param, code="invalid_type")
    return APIError(400, f"Invalid value for '{param}': {msg}.", param=param, code="invalid_value")


def _pick(errors: list[dict[str, Any]]) -> dict[str, Any]:
    for kind in ("json_invalid", "extra_forbidden", "unsupported"):
        for error in errors:
            if error["type"] == kind:
                return error
    return max(errors, key=lambda e: len(e["loc"]))  # in a union, the branch that got furthest


def param_of(path: list[str | int]) -> str | None:
    """A request field's path as OpenAI names it: ["messages", 0, "content"] -> "messages[0].content"."""
    return _param(("body", *path))


def _param(loc: tuple[Any, ...]) -> str | None:
    """('body', 'messages', 0, 'content') -> 'messages[0].content'; None for the body itself."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or any(c in part for c in "[-:"):
            continue
        else:
            out += f".{part}" if out else part
    return out or None
