"""Worker processes that run (backend, case) tasks, each killed and replaced when it passes its deadline.

A worker loads the model's tokenizer once and each backend's adapter on first use, then reports each task
in three steps: "ready" (adapter built: the compile clock starts), "compiled", "done". The parent kills a
worker whose compile runs past the deadline (plus a grace for our own in-process deadline to fire first),
or whose checks run past `check_budget_s`, and records the task as a timeout: no schema hangs the run.
"""

from __future__ import annotations

import importlib
import multiprocessing
import resource
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Iterable, Iterator

from benchmarks.coverage.cases import Case

ADAPTERS = {
    "constrained": "benchmarks.coverage.ours:OursAdapter",
    "llguidance": "benchmarks.coverage.llguidance_peer:LlguidanceAdapter",
    "xgrammar": "benchmarks.coverage.xgrammar_peer:XgrammarAdapter",
    "outlines_core": "benchmarks.coverage.outlines_core_peer:OutlinesCoreAdapter",
}
SETUP_BUDGET_S = 600.0  # loading the tokenizer and building a backend's vocabulary
GRACE_S = 2.0
WARM_UP_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}  # first compiles build lazy tables


def adapter_class(name: str) -> type:
    module, cls = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _serve(conn, deadline_s: float, memory_cap: int) -> None:
    from benchmarks.coverage.evaluate import evaluate
    from constrained.models import load_model

    if memory_cap:  # outlines-core index builds can take tens of GB
        resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))
    model = load_model("tiny-qwen3", device="cpu")
    adapters = {}
    while (task := conn.recv()) is not None:
        backend, case = task
        try:
            if backend not in adapters:
                adapters[backend] = adapter_class(backend)(model, deadline_s)
                adapters[backend].compile(WARM_UP_SCHEMA)
            conn.send(("ready",))
            row = evaluate(adapters[backend], case, lambda: conn.send(("compiled",)))
        except Exception as exc:  # a harness or backend bug on one schema: recorded, the run goes on
            row = _failure(backend, case, "error", f"{type(exc).__name__}: {exc}")
        conn.send(("done", row))


def _failure(backend: str, case: Case, status: str, reason: str) -> dict:
    from benchmarks.coverage.adapter import reason_key

    return {"backend": backend, "subset": case.subset, "id": case.id, "status": status,
            "reason": reason_key(reason), "detail": reason[:500]}


class _Worker:
    def __init__(self, context, deadline_s: float, memory_cap: int):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, deadline_s, memory_cap), daemon=True)
        self.process.start()
        child.close()
        self.task: tuple[str, Case] | None = None
        self.phase = ""
        self.until = 0.0

    def assign(self, task: tuple[str, Case]) -> None:
        self.task, self.phase, self.until = task, "setup", time.monotonic() + SETUP_BUDGET_S
        self.conn.send(task)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            self.conn.send(None)
        self.process.join(10)


def run_tasks(tasks: Iterable[tuple[str, Case]], *, jobs: int, deadline_s: float, check_budget_s: float,
              memory_cap: int) -> Iterator[dict]:
    """Yield one result row per task, in completion order."""
    context = multiprocessing.get_context("spawn")
    queue = deque(tasks)
    workers = [_Worker(context, deadline_s, memory_cap) for _ in range(max(1, min(jobs, len(queue))))]
    try:
        while queue or any(w.task for w in workers):
            for i, worker in enumerate(workers):
                if worker.task is None and queue:
                    worker.assign(queue.popleft())
            busy = [w for w in workers if w.task]
            ready = wait([w.conn for w in busy], timeout=max(0.0, min(w.until for w in busy) - time.monotonic()))
            for i, worker in enumerate(workers):
                if worker.task is None:
                    continue
                row, dead = _advance(worker, deadline_s, check_budget_s) if worker.conn in ready else (None, False)
                if row is None and time.monotonic() > worker.until:
                    status = "timeout" if worker.phase == "compile" else "error"
                    row, dead = _failure(*worker.task, status, f"killed in the {worker.phase} phase at its deadline"), True
                if dead:
                    worker.stop(kill=True)
                    workers[i] = _Worker(context, deadline_s, memory_cap)
                if row is not None:
                    worker.task = None
                    yield row
    finally:
        for worker in workers:
            worker.stop(kill=True)


def _advance(worker: _Worker, deadline_s: float, check_budget_s: float) -> tuple[dict | None, bool]:
    """Read one message from a busy worker: (the finished row or None while the task goes on, worker died)."""
    try:
        message = worker.conn.recv()
    except EOFError:  # a native crash or the memory cap
        return _failure(*worker.task, "error", f"worker died (exit code {worker.process.exitcode}) in {worker.phase}"), True
    if message[0] == "ready":
        worker.phase, worker.until = "compile", time.monotonic() + deadline_s + GRACE_S
    elif message[0] == "compiled":
        worker.phase, worker.until = "check", time.monotonic() + check_budget_s
    else:
        return message[1], False
    return None, False
