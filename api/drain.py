"""Graceful drain: on SIGTERM the server stops admitting (503 with Retry-After, /health not ready), lets the
requests in flight (`InFlight` counts them, streams until their last frame) finish for up to
`drain_timeout` seconds, then shuts down as uvicorn does. A second SIGTERM, or Ctrl-C, stops at once."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)


class InFlight:
    """ASGI middleware counting the /v1 requests being served, whole streams included, in `state.in_flight`
    (the app's state, which the draining server reads)."""

    def __init__(self, app: ASGIApp, state: State):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        counted = scope["type"] == "http" and scope["path"].startswith("/v1/")
        self.state.in_flight += counted
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.in_flight -= counted


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, *, drain_timeout: float):
        super().__init__(config)
        self._app = app
        self._drain_timeout = drain_timeout
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._draining:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._app.state.draining = True
        self._app.state.ready = False
        log.info("SIGTERM: draining (no new requests; up to %.0f s for those in flight)", self._drain_timeout)
        threading.Thread(target=self._exit_when_idle, name="constrained-drain", daemon=True).start()

    def _exit_when_idle(self) -> None:
        state = self._app.state
        start = time.monotonic()
        while state.in_flight and time.monotonic() - start < self._drain_timeout:
            time.sleep(0.05)
        log.info("drained in %.1f s%s", time.monotonic() - start,
                 f"; {state.in_flight} requests still in flight are cut" if state.in_flight else "")
        self.should_exit = True
