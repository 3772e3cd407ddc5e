"""One id per HTTP request, on its response (`x-request-id`) and on every log line written while serving it.

The id is the client's `x-request-id` when it sends a usable one, else the completion id the endpoint makes
(`chatcmpl-...`, `resp_...`, `cmpl-...`), else one made here. It lives in a context variable holding a
mutable slot, so the endpoint can fill it from the worker thread that prepares the request (threads get a
copy of the context, which shares the slot).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_USABLE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")  # printable, bounded: it goes into logs and a header


@dataclass
class _Slot:
    value: str | None = None


_current: ContextVar[_Slot | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    slot = _current.get()
    return slot.value if slot is not None else None


def claim_request_id(request_id: str) -> None:
    """The completion id becomes the request's id, unless the client gave one."""
    slot = _current.get()
    if slot is not None and slot.value is None:
        slot.value = request_id


class RequestIds:
    """ASGI middleware: sets the request's slot, and puts its id on the response's headers."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        slot = _Slot(given if _USABLE.fullmatch(given) else None)
        token = _current.set(slot)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                slot.value = slot.value or f"req-{uuid.uuid4().hex}"
                message["headers"] = [*message.get("headers", []), (b"x-request-id", slot.value.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Gives every log record a `request_id` ("-" outside a request) for the log formats to print."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True
