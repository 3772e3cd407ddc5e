"""`GET /metrics`: Prometheus metrics of the HTTP layer, the engine and the compiler (README "Metrics").

Each app has its own `CollectorRegistry` (tests build several apps in one process). Two sources feed it:

- the HTTP layer: `MetricsMiddleware` (pure ASGI) counts every request by route, status and constraint
  kind and times it; per-request generation timings (time to first token, time per output token) come
  from the pipeline, which reports them with `note_constraint` / `note_output` into the request's record
  (a context variable the middleware sets: no reference to the app needed, a no-op outside a request);
- the engine and compiler: plain counters they keep (constrained/engine/stats.py), read at scrape time by
  `EngineCollector`, so the hot path pays an integer add and nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from constrained.constraints import Constraint
from constrained.engine.async_engine import AsyncEngine
from constrained.engine.sequence import SequenceOutput
from constrained.engine.stats import Histogram as StatsHistogram

CONSTRAINT_KINDS = ("none", "json_object", "json_schema", "tools", "regex", "choice", "grammar")
OTHER_ROUTE = "other"  # requests no route matched (404s): one label value, whatever the path

# Bucket upper bounds in seconds (vLLM's, so dashboards carry over).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
                80.0)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                    60.0, 120.0, 240.0, 480.0, 960.0)


def constraint_kind(constraint: Constraint | None) -> str:
    """The request counter's `constraint` label of an engine constraint (a think block counts as its answer)."""
    if constraint is not None and constraint.kind == "reasoning":
        constraint = constraint.answer
    if constraint is None:
        return "none"
    return "tools" if constraint.kind == "tool_calls" else constraint.kind


@dataclass
class RequestRecord:
    """What one HTTP request reports while it runs; the middleware turns it into observations at its end."""

    start: float
    constraint: str = "none"
    first_token: float | None = None  # time.perf_counter() of the first output token
    last_token: float | None = None
    output_tokens: int = 0  # of its longest choice
    output_checks: int = 0  # finished choices validated by the last line of defence (constrained/output_check.py)
    output_check_failures: int = 0  # of those, refused
    output_check_seconds: float = 0.0


_current: ContextVar[RequestRecord | None] = ContextVar("constrained_request_metrics", default=None)


def note_constraint(constraint: Constraint | None) -> None:
    """Record the current request's constraint kind (call once its constraint is known). No-op outside a request."""
    record = _current.get()
    if record is not None:
        record.constraint = constraint_kind(constraint)


def note_output(output: SequenceOutput) -> None:
    """Record one engine output of the current request (for TTFT and TPOT). Idempotent per output; no-op
    outside a request."""
    record = _current.get()
    if record is None or not output.token_ids:
        return
    now = time.perf_counter()
    if record.first_token is None:
        record.first_token = now
    record.last_token = now
    record.output_tokens = max(record.output_tokens, output.completion_tokens)


def note_output_check(failed: bool, seconds: float) -> None:
    """Record one finished choice validated before it left (failed: refused). No-op outside a request."""
    record = _current.get()
    if record is not None:
        record.output_checks += 1
        record.output_check_failures += failed
        record.output_check_seconds += seconds


class Metrics:
    """The HTTP-layer metrics of one app, in its own registry (`registry`), beside the engine's collector."""

    def __init__(self, engine: AsyncEngine | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "constrained_requests", "HTTP requests by route template, status code and constraint kind.",
            ("route", "status", "constraint"), registry=self.registry)
        self.request_duration = Histogram(
            "constrained_request_duration_seconds",
            "End-to-end HTTP request latency: arrival to the last byte of the response (streams included).",
            ("route",), buckets=DURATION_BUCKETS, registry=self.registry)
        self.time_to_first_token = Histogram(
            "constrained_time_to_first_token_seconds", "Request arrival to its first output token.",
            buckets=TTFT_BUCKETS, registry=self.registry)
        self.time_per_output_token = Histogram(
            "constrained_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per request (its longest choice).",
            buckets=TPOT_BUCKETS, registry=self.registry)
        self.output_checks = Counter(
            "constrained_output_checks", "Finished choices validated against their constraint before they left.",
            registry=self.registry)
        self.output_check_failures = Counter(
            "constrained_output_check_failures", "Finished choices that failed that validation (never returned: HTTP "
            "500 constraint_failed). Zero unless a grammar backend has a bug.", registry=self.registry)
        self.output_check_seconds = Counter(
            "constrained_output_check_seconds", "Time spent validating finished choices.", registry=self.registry)
        if engine is not None:
            self.registry.register(EngineCollector(engine))

    def observe_request(self, route: str, status: int | str, constraint: str, seconds: float) -> None:
        self.requests.labels(route, str(status), constraint).inc()
        self.request_duration.labels(route).observe(seconds)

    def observe_first_token(self, seconds: float) -> None:
        self.time_to_first_token.observe(seconds)

    def observe_time_per_output_token(self, seconds: float) -> None:
        self.time_per_output_token.observe(seconds)

    def finish(self, route: str, status: int | str, record: RequestRecord) -> None:
        """Every observation of one finished request."""
        self.observe_request(route, status, record.constraint, time.perf_counter() - record.start)
        if record.output_checks:
            self.output_checks.inc(record.output_checks)
            self.output_check_failures.inc(record.output_check_failures)
            self.output_check_seconds.inc(record.output_check_seconds)
        if record.first_token is not None:
            self.observe_first_token(record.first_token - record.start)
            if record.output_tokens > 1:
                gap = (record.last_token - record.first_token) / (record.output_tokens - 1)
                self.observe_time_per_output_token(gap)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI: times each HTTP request, notes its status, and gives the pipeline a record to report into."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(time.perf_counter())
        status: int | None = None

        async def send_noting_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = _current.set(record)
        try:
            await self.app(scope, receive, send_noting_status)
        except asyncio.CancelledError:
            status = status or 499  # the client went away (nginx's "client closed request")
            raise
        except Exception:
            status = status or 500
            raise
        finally:
            _current.reset(token)
            route = scope.get("route")
            self.metrics.finish(getattr(route, "path", OTHER_ROUTE), status or 499, record)


class EngineCollector(Collector):
    """The engine's and compiler's counters (constrained/engine/stats.py), read at each scrape."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on nothing but are built at scrape time: skip the registration-time collect

    def collect(self) -> Iterator[Metric]:
        core = self.engine.engine
        stats = core.stats
        waiting, running, columns = core.occupancy()
        yield _gauge("constrained_sequences_waiting", "Sequences (choices) queued for a batch slot.", waiting)
        yield _gauge("constrained_sequences_running", "Sequences (choices) in the running batch.", running)
        yield _gauge("constrained_kv_cache_columns_used",
                     "KV-cache columns in use: tokens held for the running sequences, summed over rows.", columns)
        tokens = CounterMetricFamily("constrained_output_tokens", "Output tokens by how they were produced: drawn "
                                     "by the sampler, or forced by the constraint (fast-forward).", labels=("source",))
        tokens.add_metric(("sampled",), stats.tokens_sampled)
        tokens.add_metric(("forced",), stats.tokens_forced)
        yield tokens
        yield _counter("constrained_masked_redraws", "Constrained draws the matcher forbade, drawn again (rejection "
                       "candidates, then under the token mask).", stats.redraws)
        yield _counter("constrained_queue_rejections", "Submissions refused because the engine queue was full "
                       "(HTTP 429).", stats.rejected)
        yield _counter("constrained_aborted_requests", "Requests aborted before they finished (client gone, or a "
                       "sibling choice failed).", stats.aborted_requests)
        yield _counter("constrained_constraint_failures", "Requests failed because a matcher could not go on "
                       "(ConstraintFailed: a grammar backend limit).", stats.constraint_failures)
        prefixes = core.prefix_cache
        prefix_stats = prefixes.stats if prefixes is not None else None
        yield _counter("constrained_prefix_cache_queried_tokens", "Prompt tokens of the sequences looked up in the "
                       "prefix cache.", prefix_stats.queried_tokens if prefix_stats else 0)
        yield _counter("constrained_prefix_cache_hit_tokens", "Prompt tokens whose keys and values came from the "
                       "prefix cache (not computed).", prefix_stats.hit_tokens if prefix_stats else 0)
        yield _gauge("constrained_prefix_cache_bytes", "Bytes of keys and values the prefix cache holds.",
                     prefixes.bytes if prefixes is not None else 0)
        yield _histogram("constrained_engine_step_duration_seconds", "Duration of one engine step (a batched "
                         "forward pass and sampling).", stats.step_seconds)
        yield _histogram("constrained_queue_wait_seconds", "Time a sequence waited from submission to a batch slot.",
                         stats.queue_wait_seconds)
        compiler = self.engine.compiler
        memory = compiler.stats
        disk = compiler.disk_cache.stats if compiler.disk_cache is not None else None
        for name, what in (("hits", "Lookups served"), ("misses", "Lookups that found nothing (memory: compiles "
                           "started)"), ("failures", "Failures (memory: compiles that raised; disk: damaged or "
                           "unloadable entries, failed writes)"), ("evictions", "Entries dropped to stay within "
                           "the cache's bounds")):
            family = CounterMetricFamily(f"constrained_compile_cache_{name}", f"{what}, by cache (memory, disk).",
                                         labels=("cache",))
            family.add_metric(("memory",), getattr(memory, name))
            family.add_metric(("disk",), getattr(disk, name) if disk is not None else 0)
            yield family
        yield _histogram("constrained_compile_duration_seconds", "Duration of a constraint compile (a memory-cache "
                         "miss: built, or loaded from the disk cache), failed ones included.", memory.compile_seconds)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _histogram(name: str, documentation: str, histogram: StatsHistogram) -> HistogramMetricFamily:
    buckets, total = histogram.snapshot()
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def install_metrics(app: FastAPI, engine: AsyncEngine) -> Metrics:
    """Add the metrics middleware and `GET /metrics` (behind the API key when the app has one) to `app`, before
    it first runs; the Metrics object is `app.state.metrics`."""
    from api.routes import require_api_key  # here: api.pipeline imports this module, and api.routes imports it

    metrics = Metrics(engine)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def scrape() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False,
                      dependencies=[Depends(require_api_key)])
    return metrics
