"""asyncio front of the engine: a worker thread runs `step()`; callers await their outputs.

`generate()` compiles the constraint off the event loop, submits, and yields each step's
`SequenceOutput`s for the request. Leaving the iterator early (a client disconnect closes it)
aborts the request in the engine, which frees its batch slot at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from typing import AsyncIterator

from constrained.compiler import Compiler
from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason, SequenceOutput
from constrained.errors import ConstraintFailed, InvalidSamplingParams
from constrained.models import LoadedModel

log = logging.getLogger(__name__)


def release_openmp_workers() -> None:
    """Free the calling thread's OpenMP worker threads (OpenMP 5.0's `omp_pause_resource_all`), where
    the runtime torch loaded has it.

    Each thread that runs parallel torch ops keeps a team of OpenMP workers. The thread that loaded
    the model keeps one idle; beside the engine thread's own, the process then holds more OpenMP
    threads than cores, so libgomp stops spin-waiting between parallel regions, and each of a forward
    pass's hundreds of regions pays for waking a sleeping worker, which made the server's steps much
    slower than a script's (figures in benchmarks/SPEED.md, "The engine thread and OpenMP").
    """
    with contextlib.suppress(AttributeError, OSError, TypeError):  # no OpenMP runtime, or an older one
        ctypes.CDLL(None).omp_pause_resource_all(1)  # 1: omp_pause_soft


class AsyncEngine:
    def __init__(self, loaded: LoadedModel, *, compiler: Compiler | None = None, max_batch_size: int = 32,
                 max_waiting: int = 256, compile_deadline_s: float = 10.0, fast_forward: bool = True,
                 prefix_cache_bytes: int = 0, max_step_tokens: int | None = None, torch_compile: bool = False):
        self.loaded = loaded
        self.engine = Engine(loaded, max_batch_size=max_batch_size, max_waiting=max_waiting, fast_forward=fast_forward,
                             prefix_cache_bytes=prefix_cache_bytes, max_step_tokens=max_step_tokens,
                             torch_compile=torch_compile)
        self.compiler = compiler or Compiler(
            loaded.tokenizer, vocab_rows=loaded.vocab_rows, eos_token_ids=loaded.eos_token_ids,
            deadline_s=compile_deadline_s,
        )
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker thread (idempotent), once the calling thread's idle OpenMP workers are
        released (release_openmp_workers): the worker runs every forward pass from then on."""
        if self._thread is None:
            release_openmp_workers()
            self._thread = threading.Thread(target=self._run, name="constrained-engine", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """The worker thread is alive (started and not shut down)."""
        return self._thread is not None and self._thread.is_alive()

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    async def generate(self, prompt_ids: list[int], params: SamplingParams,
                       constraint: Constraint | None = None, *, request_id: str = "") -> AsyncIterator[SequenceOutput]:
        """Yield outputs until every choice of the request has finished.

        Raises InvalidConstraint / CompileTimeout / InvalidSamplingParams before any output, and
        ConstraintFailed when a choice's matcher fails (its other choices are then aborted).
        """
        if not prompt_ids:  # nothing to condition on: a forward pass of no tokens would fail the whole batch
            raise InvalidSamplingParams("the prompt has no tokens", param="prompt")
        params.validate(vocab_rows=self.loaded.vocab_rows, constrained=constraint is not None)
        grammar = await self.compiler.compile_async(constraint) if constraint is not None else None
        self.start()
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            request_id = self.engine.submit(Submission(prompt_ids, params, grammar, request_id))
            self._queues[request_id] = (asyncio.get_running_loop(), queue)
        self._wake.set()
        remaining = params.n
        try:
            while remaining:
                output: SequenceOutput | BaseException = await queue.get()
                if isinstance(output, BaseException):
                    raise output
                if output.finish_reason is FinishReason.FAILED:
                    self.engine.stats.constraint_failures += 1
                    self.compiler.forget(constraint)
                    raise ConstraintFailed(f"choice {output.index}: the constraint's matcher failed on a token its "
                                           "own mask or forced run gave (a grammar backend limit was hit)")
                remaining -= output.finish_reason is not None
                yield output
        finally:
            with self._lock:
                self._queues.pop(request_id, None)
            if remaining:
                self.engine.abort(request_id)
                self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            if not self.engine.has_work():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                start = time.perf_counter()
                outputs = self.engine.step()
                self.engine.stats.step_seconds.observe(time.perf_counter() - start)
            except Exception as exc:  # a bug must fail the requests in flight, not hang them
                log.exception("engine step failed")
                self._fail_all(exc)
                continue
            self._deliver(outputs)

    def _deliver(self, outputs: list[SequenceOutput]) -> None:
        with self._lock:
            for output in outputs:
                target = self._queues.get(output.request_id)
                if target is not None:
                    loop, queue = target
                    loop.call_soon_threadsafe(queue.put_nowait, output)

    def _fail_all(self, exc: Exception) -> None:
        with self._lock:
            for loop, queue in self._queues.values():
                loop.call_soon_threadsafe(queue.put_nowait, exc)
        self.engine.reset()
