"""Reliability: a bounded schemathesis run against the live app (uvicorn on a free port, tiny-qwen3).

The schema comes from the server's own `/openapi.json`. Every operation is fuzzed with valid (positive) and
invalid (negative) data, deterministically (derandomized Hypothesis, no example database), for well over
1,000 requests. Generation cost is capped by a `map_body` hook: completion budgets clamped to a few tokens
(and set when a body names none, since the default is the rest of the context) and `n`/`best_of` <= 2.

Asserted for every request: no 5xx (nor an unexpected error logged by the server, nor a server error frame
inside a 200 stream), a documented status code and content type, a body that matches the documented
response schema, and OpenAI's error shape `{"error": {"message", "type", "param", "code"}}` on every error.
After the run an ordinary chat request still succeeds. The request count and the statuses seen are printed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.slow

MAX_TOKENS = 4  # per request: a few ms a token on the tiny model, so 1,081 requests take ~80 s on 2 cores
MAX_N = 2
MODEL = "tiny-qwen3"  # what the server_url fixture serves
# (method, path) -> examples per generation mode; Hypothesis stops early once a strategy is exhausted
EXAMPLES = {
    ("POST", "/v1/chat/completions"): 170,
    ("POST", "/v1/responses"): 170,
    ("POST", "/v1/completions"): 170,
    ("GET", "/v1/models/{model}"): 25,
    ("GET", "/v1/models"): 5,
    ("GET", "/health"): 5,
}
MIN_REQUESTS = 1000
REQUEST_TIMEOUT_S = 30  # a few tokens take well under a second: longer is a hang
_BUDGET_FIELDS = {
    "/v1/chat/completions": ("max_tokens", "max_completion_tokens"),
    "/v1/responses": ("max_output_tokens",),
    "/v1/completions": ("max_tokens",),
}
_SERVER_ERROR_MESSAGE = "The server had an error while processing your request."


def clamp_body(path: str, body: Any) -> Any:
    """The body with its completion budget at most MAX_TOKENS (set when absent) and `n`/`best_of` at most
    MAX_N, and a string `model` naming the served model (random names only reach the 404, which
    GET /v1/models/{model} covers). Values of the wrong type are left alone: they are what negative cases test."""
    if not isinstance(body, dict) or path not in _BUDGET_FIELDS:
        return body
    if isinstance(body.get("model"), str):
        body["model"] = MODEL
    fields = _BUDGET_FIELDS[path]
    for field in (*fields, "n", "best_of"):
        value = body.get(field)
        cap = MAX_N if field in ("n", "best_of") else MAX_TOKENS
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
            body[field] = cap
    if all(body.get(field) is None for field in fields):  # absent or null: the default is up to 4,096 tokens
        body[fields[0]] = MAX_TOKENS
    return body


class _Records(logging.Handler):
    """Every WARNING+ record the server logs (the app's loggers and uvicorn's), in order."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def since(self, start: int) -> list[logging.LogRecord]:
        with self._lock:
            return self.records[start:]


def _root_cause(records: list[logging.LogRecord]) -> str:
    """The exception behind the first logged error ("RuntimeError: ..."), or its message."""
    for record in records:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return records[0].getMessage()[:200] if records else ""


def _traceback_tail(records: list[logging.LogRecord], lines: int = 24) -> str:
    """The last lines of the first logged traceback (where it was raised)."""
    for record in records:
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info).splitlines()
            return f"{record.name}: {record.getMessage()}\n" + "\n".join(text[-lines:])
    return ""


def _openai_error_shape(body: Any) -> str | None:
    """Why `body` is not OpenAI's error body, or None when it is."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return f"not {{'error': {{...}}}}: {body!r:.200}"
    error = body["error"]
    if set(error) != {"message", "type", "param", "code"}:
        return f"error keys {sorted(error)} are not ['code', 'message', 'param', 'type']"
    if not isinstance(error["message"], str) or not error["message"]:
        return "error.message is not a non-empty string"
    if not isinstance(error["type"], str):
        return "error.type is not a string"
    for key in ("param", "code"):
        if error[key] is not None and not isinstance(error[key], str):
            return f"error.{key} is neither a string nor null"
    return None


def _stream_server_errors(text: str) -> list[str]:
    """Server errors carried inside an SSE body (after the 200 was sent)."""
    found = []
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            continue
        try:
            frame = json.loads(payload)
        except ValueError:
            found.append(f"SSE frame is not JSON: {payload[:200]}")
            continue
        error = frame.get("error") if isinstance(frame, dict) else None
        if isinstance(error, dict) and (error.get("type") == "server_error"
                                        or error.get("message") == _SERVER_ERROR_MESSAGE):
            found.append(f"server error frame: {payload[:300]}")
        if isinstance(frame, dict) and frame.get("type") == "error" and frame.get("message") == _SERVER_ERROR_MESSAGE:
            found.append(f"server error event: {payload[:300]}")
    return found


def test_fuzz_live_app_never_answers_5xx_and_conforms(server_url):
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance, negative_data_rejection, response_schema_conformance, status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")

    @schema.hook("map_body")
    def _cap_cost(context, body):
        return clamp_body(context.operation.path, body)

    operations = {(op.method.upper(), op.path): op for op in (r.ok() for r in schema.get_all_operations())}
    assert set(EXAMPLES) <= set(operations), f"the document lacks {set(EXAMPLES) - set(operations)}"
    assert set(operations) <= set(EXAMPLES), f"new operations to fuzz: {set(operations) - set(EXAMPLES)}"

    records = _Records()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(records)
    session = requests.Session()
    statuses: Counter[tuple[str, str, int]] = Counter()
    informational: Counter[tuple[str, str]] = Counter()  # not asserted: negative data accepted, valid data refused
    noted: dict[tuple[str, str], list[str]] = {}  # their smallest body
    failures: dict[tuple, dict] = {}  # distinct (operation, kind, cause) -> its smallest request
    count = 0

    def fail(label: str, mode: str, kind: str, cause: str, case, response, logs: list[logging.LogRecord]) -> None:
        """Record a failure under (operation, kind, cause), keeping its smallest request."""
        key = (label, kind, cause)
        body = _jsonable(case.body)
        size = len(json.dumps(body, default=str))
        seen = failures.get(key)
        if seen is not None:
            seen["times"] += 1
            if size >= seen["size"]:
                return
        failures[key] = {"operation": label, "mode": mode, "kind": kind, "cause": cause,
                         "status": None if response is None else response.status_code,
                         "request": {"method": case.method, "path": case.formatted_path, "query": case.query,
                                     "headers": dict(case.headers or {}), "body": body},
                         "traceback": _traceback_tail(logs), "size": size,
                         "times": 1 if seen is None else seen["times"]}

    def note(label: str, what: str, case) -> None:
        informational[(label, what)] += 1
        examples = noted.setdefault((label, what), [])
        body = json.dumps(_jsonable(case.body), default=str)
        if not examples or len(body) < len(examples[0]):
            examples[:] = [body]

    def exercise(label: str, mode: GenerationMode, case) -> None:
        nonlocal count
        start = len(records.records)
        count += 1
        try:
            response = case.call(base_url=server_url, session=session, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as exc:  # a hang or a dropped connection is as bad as a 5xx
            statuses[(label, mode.value, 0)] += 1
            fail(label, mode.value, "no response", type(exc).__name__, case, None, records.since(start))
            return
        statuses[(label, mode.value, response.status_code)] += 1
        if response.status_code >= 500:  # uvicorn logs the traceback just after the answer: keep it with this one
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline and not any(
                    r.name == "uvicorn.error" for r in records.since(start)):
                time.sleep(0.01)
        logs = records.since(start)
        errors = [r for r in logs if r.levelno >= logging.ERROR]
        content_type = (response.headers.get("content-type") or [""])[0]  # lowercased name -> values
        stream_errors = _stream_server_errors(response.text) if content_type.startswith("text/event-stream") else []
        if response.status_code >= 500 or errors or stream_errors:  # one failure per root cause
            cause = _root_cause(errors) or (stream_errors[0] if stream_errors else response.text[:200])
            kind = f"HTTP {response.status_code}" if response.status_code >= 500 else (
                "error inside a 200 stream" if stream_errors else f"server error logged, HTTP {response.status_code}")
            fail(label, mode.value, kind, cause, case, response, logs)
        if response.status_code >= 400:
            try:
                problem = _openai_error_shape(response.json())
            except ValueError:
                problem = f"error body is not JSON ({content_type}): {response.text[:200]!r}"
            if problem is not None:
                fail(label, mode.value, "not OpenAI's error body", problem, case, response, logs)
        try:  # documented status, documented content type, body valid against the documented schema
            case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                     response_schema_conformance])
        except FailureGroup as group:
            for failure in group.exceptions:
                cause = f"{failure.title}: {(failure.message or '').splitlines()[0][:160] if failure.message else ''}"
                fail(label, mode.value, "non-conforming response", cause, case, response, logs)
        if mode is GenerationMode.NEGATIVE and response.status_code < 400:
            try:
                case.validate_response(response, checks=[negative_data_rejection])
            except FailureGroup:
                note(label, f"negative data accepted with {response.status_code}", case)
        if mode is GenerationMode.POSITIVE and 400 <= response.status_code < 500:
            try:
                error = response.json()["error"]
                field = re.split(r"[.\[]", error["param"] or "")[0] or None  # top-level field, not generated keys
                note(label, f"valid data refused: {response.status_code} {error['code']} param={field}", case)
            except (ValueError, KeyError, TypeError):
                pass

    def fuzz(label: str, mode: GenerationMode, strategy, examples: int) -> None:
        @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck), print_blob=False)
        @given(case=strategy)
        def run(case) -> None:
            exercise(label, mode, case)

        run()

    started = time.monotonic()
    try:
        for (method, path), examples in EXAMPLES.items():
            operation = operations[(method, path)]
            label = f"{method} {path}"
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    fuzz(label, mode, operation.as_strategy(generation_mode=mode), examples)
                except Exception as exc:  # noqa: BLE001 - e.g. nothing negative to generate for GET /health
                    if type(exc).__name__ not in ("Unsatisfiable",) and "negative" not in str(exc):
                        raise
                    informational[(label, f"{mode.value}: no cases ({type(exc).__name__})")] += 1
        elapsed = time.monotonic() - started

        # After the run the server still serves an ordinary request.
        after = session.post(f"{server_url}/v1/chat/completions", timeout=REQUEST_TIMEOUT_S, json={
            "model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "Hi"}]})
        assert after.status_code == 200, after.text
        assert after.json()["choices"][0]["message"]["role"] == "assistant"
        after = session.post(f"{server_url}/v1/chat/completions", timeout=REQUEST_TIMEOUT_S, json={
            "model": MODEL, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": "JSON?"}],
            "response_format": {"type": "json_object"}})
        assert after.status_code == 200, after.text
    finally:
        for logger in loggers:
            logger.removeHandler(records)
        session.close()

    by_status = Counter()
    for (_, _, status), n in statuses.items():
        by_status[status] += n
    print(f"\nfuzz: {count} requests in {elapsed:.0f}s; statuses {dict(sorted(by_status.items()))}")
    for (label, mode, status), n in sorted(statuses.items()):
        print(f"  {label:28} {mode:8} {status}: {n}")
    for (label, what), n in sorted(informational.items()):
        example = "".join(f"\n      e.g. {body[:200]}" for body in noted.get((label, what), []))
        print(f"  note: {label}: {what} x{n}{example}")
    for failure in failures.values():
        request = failure["request"]
        print(f"\nFAILURE x{failure['times']} ({failure['mode']}) {request['method']} {request['path']} -> "
              f"{failure['kind']}: {failure['cause']}\n  body: {json.dumps(request['body'], default=str)[:1500]}")
        if request["query"]:
            print(f"  query: {request['query']}")
        if failure["traceback"]:
            print("  " + failure["traceback"].replace("\n", "\n  "))

    assert count >= MIN_REQUESTS, f"only {count} requests were made"
    assert not failures, f"{len(failures)} distinct failures (printed above): " + "; ".join(
        f"{f['operation']} -> {f['kind']}: {f['cause'][:120]}" for f in failures.values())


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
