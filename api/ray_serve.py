"""Scale-out on Ray Serve: every replica is a whole `constrained` server (model, engine, app) behind Ray's HTTP
proxy, which sends each request to the replica with the shorter queue and replaces a replica that dies.

    constrained serve --replicas 2                      # a Ray cluster on this machine, proxy on --host:--port
    constrained serve --ray-address HEAD:6379 --replicas 4 --device cuda
    serve run api.ray_serve:app_builder model=tiny-qwen3-json replicas=2   # each key a `constrained serve` option

Needs `pip install 'constrained[ray]'` on every node. Each response names its replica in `x-constrained-replica`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

import ray
from ray import serve
from ray.serve import Application
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.serve_options import build_server, parse_serve_options

log = logging.getLogger("constrained.serve")

APP_NAME = "constrained"
REPLICA_HEADER = "x-constrained-replica"


class ReplicaHeaders:
    """ASGI middleware: names the replica that answered on every response, and leaves `x-request-id` to Ray's
    proxy, which sets it on every response (the client's id, else its own, handed to the app with the request)."""

    def __init__(self, app: ASGIApp, replica: str):
        self.app = app
        self.replica = replica.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [header for header in message.get("headers", []) if header[0].lower() != b"x-request-id"]
                message["headers"] = [*headers, (REPLICA_HEADER.encode(), self.replica)]
            await send(message)

        await self.app(scope, receive, send_named if scope["type"] == "http" else send)


@serve.deployment
@serve.ingress()
class Replica:
    """One replica: builds its server from the `constrained serve` options; Ray starts the app (engine and
    warm-up) before routing to it, and stops it (the engine too) when the replica goes."""

    def __init__(self, args: argparse.Namespace):
        self._app, self._engine = build_server(args, warm_before_serving=True)
        self._app.add_middleware(ReplicaHeaders, replica=serve.get_replica_context().replica_id.unique_id)

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return self._app

    def check_health(self) -> None:
        """Ray replaces a replica whose check raises."""
        if not self._engine.running:
            raise RuntimeError("the engine thread has stopped")

    def __del__(self) -> None:
        self._engine.shutdown()


def deployment(args: argparse.Namespace) -> Application:
    """The application Ray runs: `args.replicas` copies of the server, each with its CPUs and GPUs reserved."""
    gpus = args.replica_gpus if args.replica_gpus is not None else float(args.device == "cuda")
    return Replica.options(
        num_replicas=max(args.replicas, 1),
        max_ongoing_requests=args.max_batch_size + args.max_waiting,  # the engine's own queue answers 429 past it
        graceful_shutdown_timeout_s=args.drain_timeout,
        ray_actor_options={"num_cpus": args.replica_cpus, "num_gpus": gpus},
        logging_config={"log_level": args.log_level.upper()},
    ).bind(args)


def app_builder(options: dict[str, str]) -> Application:
    """For `serve run api.ray_serve:app_builder key=value ...`: each key a `constrained serve` option, with
    underscores or dashes (`max_batch_size=8`, `no_fast_forward=true`)."""
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value.lower() == "true" else [] if value.lower() == "false" else [flag, value]
    return deployment(parse_serve_options(argv))


def serve_on_ray(args: argparse.Namespace) -> int:
    """`constrained serve --replicas N` / `--ray-address ADDR`: deploy, serve until SIGTERM or Ctrl-C, then let
    Ray drain every replica (up to --drain-timeout) and stop."""
    ray.init(address=args.ray_address, include_dashboard=False, logging_level=args.log_level.upper())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(deployment(args), name=APP_NAME, route_prefix="/")
        log.info("serving %s on http://%s:%d/v1 with %d replicas on Ray Serve", args.model, args.host, args.port,
                 max(args.replicas, 1))
        _wait_for_signal()
        log.info("stopping: draining the replicas (up to %.0f s)", args.drain_timeout)
        serve.delete(APP_NAME)
        if args.ray_address is None:
            serve.shutdown()
    finally:
        ray.shutdown()
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
