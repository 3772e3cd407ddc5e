"""The engine-level compiler: one per tokenizer; validates, compiles with a deadline, caches, remembers failures.

`compile` is synchronous and thread-safe; `compile_async` runs it off the event loop unless the grammar is
cached. Equal constraints (same canonical key) compiled at the same time share one compilation.

Compiles run on the Compiler's own two lanes, not the event loop's default executor: llguidance builds
(bounded by llguidance's own limits) on a fast lane, outlines-core index builds (seconds to minutes, in a
child process killed at the deadline) on a slow lane with few workers, so a small schema never queues
behind runaway ones. A request's deadline starts when it asks, so a compile still queued at its deadline
is dropped without starting. The grammar cache is bounded by count and by an estimate of bytes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Sequence

from transformers import PreTrainedTokenizerFast

from constrained.compiler.backends import BACKENDS, Backend, Grammar, TokenizerSpec
from constrained.compiler.backends.base import CompiledGrammar
from constrained.compiler.disk_cache import DiskCache
from constrained.compiler.reasoning_grammar import ReasoningGrammar, think_token_ids
from constrained.compiler.vocabulary import tokenizer_hash
from constrained.constraints import Constraint
from constrained.engine.stats import CompileStats
from constrained.errors import CompileTimeout, ConstrainedError, InvalidConstraint

log = logging.getLogger(__name__)

# What "auto" picks, per constraint kind: llguidance everywhere. It compiles faster and enforces more (the
# figures: benchmarks/RESULTS.md, "Backend choice"); outlines-core stays available by name only.
AUTO = {"json_schema": "llguidance", "json_object": "llguidance", "regex": "llguidance", "choice": "llguidance",
        "grammar": "llguidance", "tool_calls": "llguidance"}


# Backends whose builds can run for seconds to minutes: compiled on the slow lane.
SLOW_BACKENDS = frozenset({"outlines_core"})
# Memory held by a cached grammar per byte of its `to_bytes()` (llguidance's lexer and parser tables, measured
# on large enums), plus a fixed part for the small ones.
_BYTES_PER_GRAMMAR_BYTE = 16
_GRAMMAR_OVERHEAD = 4096


def backend_name(constraint: Constraint) -> str:
    """The backend that compiles `constraint`: the one it names, or AUTO's pick for its kind."""
    return AUTO.get(constraint.kind, "llguidance") if constraint.backend == "auto" else constraint.backend


class Compiler:
    """Compiles constraints into shared Grammars for one tokenizer and the model's vocabulary rows."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, *, vocab_rows: int, eos_token_ids: Sequence[int],
                 deadline_s: float = 10.0, cache_size: int = 512, cache_bytes: int = 256 << 20,
                 workers: int = 4, slow_workers: int = 2, disk_cache: DiskCache | None = None):
        if not eos_token_ids:
            raise ValueError("eos_token_ids is empty: a constrained sequence could never finish")
        self.spec = TokenizerSpec(tokenizer, vocab_rows, tuple(eos_token_ids))
        self.deadline_s = deadline_s
        self.cache_size = cache_size  # grammars kept in memory, at most
        self.cache_bytes = cache_bytes  # and their estimated bytes (`grammar_bytes`), at most
        self.disk_cache = disk_cache  # compiled grammars kept across restarts; None: memory only
        self._tokenizer_hash = tokenizer_hash(tokenizer)
        self._backends: dict[str, Backend] = {}
        self._backends_lock = threading.Lock()  # building one takes ~1 s: once per backend
        self._lock = threading.Lock()
        self._grammars: OrderedDict[str, Grammar] = OrderedDict()
        self._grammar_bytes: dict[str, int] = {}
        self._cached_bytes = 0
        self._failures: OrderedDict[str, ConstrainedError] = OrderedDict()
        self._in_flight: dict[str, Future] = {}
        self.stats = CompileStats()  # updated under self._lock (api/metrics.py reads it)
        self._fast_lane = ThreadPoolExecutor(workers, thread_name_prefix="constrained-compile")
        self._slow_lane = ThreadPoolExecutor(slow_workers, thread_name_prefix="constrained-compile-slow")

    @property
    def bitmask_width(self) -> int:
        """int32 words per row of the token bitmask the matchers fill: ceil(vocab_rows / 32)."""
        return self.spec.bitmask_width

    def validate(self, constraint: Constraint) -> None:
        """Raise InvalidConstraint (with the path, keyword and a fix) unless `constraint` can be enforced. Cheap."""
        if constraint.kind == "reasoning":
            if think_token_ids(self.spec.tokenizer) is None:
                raise InvalidConstraint("the model's vocabulary has no <think> tokens: it cannot reason")
            if constraint.answer is not None:
                self.validate(constraint.answer)
            return
        self._select(constraint)

    def compile(self, constraint: Constraint, deadline: float | None = None) -> Grammar:
        """Return the compiled Grammar: cached, or built by `deadline` (`time.monotonic()`; default: the
        compiler's deadline from now).

        Raises InvalidConstraint, CompileTimeout or CompileError, the same one again at once for a
        constraint that failed before. A compile whose deadline passed before it started (it waited for
        a worker) is not remembered as failed: it never ran.
        """
        key = self._key(constraint)
        if deadline is None:
            deadline = time.monotonic() + self.deadline_s
        with self._lock:
            if (grammar := self._cached(key)) is not None:
                return grammar
            if key in self._failures:
                raise copy.copy(self._failures[key])
            if time.monotonic() >= deadline:
                raise CompileTimeout("the deadline passed while it waited for a compile worker")
            pending = self._in_flight.get(key)
            if pending is None:
                self._in_flight[key] = future = Future()
                self.stats.misses += 1
        if pending is not None:
            return pending.result()
        start = time.perf_counter()
        try:
            grammar = self._compile_uncached(constraint, deadline)
        except ConstrainedError as exc:
            with self._lock:
                self.stats.failures += 1
                self.stats.compile_seconds.observe(time.perf_counter() - start)
            self._remember(self._failures, key, exc)
            future.set_exception(exc)
            raise
        except BaseException as exc:
            with self._lock:
                self._in_flight.pop(key)
            future.set_exception(exc)
            raise
        with self._lock:
            self.stats.compile_seconds.observe(time.perf_counter() - start)
        self._remember(self._grammars, key, grammar)
        future.set_result(grammar)
        return grammar

    @staticmethod
    def grammar_bytes(grammar: Grammar) -> int:
        """Estimated memory of a cached grammar: proportional to its serialised size."""
        size = len(grammar.to_bytes()) if isinstance(grammar, CompiledGrammar) else 0
        return _GRAMMAR_OVERHEAD + _BYTES_PER_GRAMMAR_BYTE * size

    def forget(self, constraint: Constraint) -> None:
        """Drop the cached grammar of `constraint` (and of its answer): its matchers share one lexer, and a
        lexer that ran out of its budget would fail every later request; the next compile builds a fresh one."""
        with self._lock:
            key = self._key(constraint)
            self._grammars.pop(key, None)
            self._cached_bytes -= self._grammar_bytes.pop(key, 0)
        if constraint.kind == "reasoning" and constraint.answer is not None:
            self.forget(constraint.answer)

    async def compile_async(self, constraint: Constraint) -> Grammar:
        """`compile` on one of the compiler's lanes, so the event loop keeps serving while a schema compiles; a
        grammar in memory is returned at once (the hop to a thread waits for the GIL while the engine steps).
        The deadline counts from now: time spent waiting for a worker is part of it."""
        with self._lock:
            grammar = self._cached(self._key(constraint))
        if grammar is not None:
            return grammar
        deadline = time.monotonic() + self.deadline_s
        lane = self._slow_lane if self.is_slow(constraint) else self._fast_lane
        return await asyncio.wrap_future(lane.submit(self.compile, constraint, deadline))

    @staticmethod
    def is_slow(constraint: Constraint) -> bool:
        """Whether `constraint` compiles on the slow lane: its backend (its answer's, when it reasons) may
        take seconds. Checked again by `compile`; an unknown backend is refused there."""
        if constraint.kind == "reasoning":
            return constraint.answer is not None and Compiler.is_slow(constraint.answer)
        return backend_name(constraint) in SLOW_BACKENDS

    def shutdown(self) -> None:
        """Stop the lanes' idle workers; compiles in flight finish by their deadline."""
        self._fast_lane.shutdown(wait=False, cancel_futures=True)
        self._slow_lane.shutdown(wait=False, cancel_futures=True)

    def _key(self, constraint: Constraint) -> str:
        return f"{self._tokenizer_hash}:{constraint.key}"

    def _cached(self, key: str) -> Grammar | None:
        """The grammar compiled under `key`, now the most recently used; call with the lock held."""
        grammar = self._grammars.get(key)
        if grammar is not None:
            self._grammars.move_to_end(key)
            self.stats.hits += 1
        return grammar

    def _compile_uncached(self, constraint: Constraint, deadline: float) -> Grammar:
        """Built by the backend, or rebuilt from the disk cache without compiling.

        An entry the backend fails to load (checksum-valid but wrong: another build's bytes, a bug) is
        deleted and the constraint compiled again, so it cannot fail its constraint forever."""
        if constraint.kind == "reasoning":  # the think block wraps the answer's own (cached) grammar
            answer = constraint.answer
            return ReasoningGrammar(self.spec, constraint.value["budget"],
                                    None if answer is None else self.compile(answer, deadline))
        selected, start = self._select(constraint).name, time.monotonic()
        backend = self._backend(selected)
        deadline += time.monotonic() - start  # building a backend (once per tokenizer) is not this compile's time
        if self.disk_cache is None:
            return backend.compile(constraint, deadline)
        spec = self.spec
        disk_key = f"{self._tokenizer_hash}:{spec.vocab_rows}:{spec.eos_token_ids}:{backend.name}:{constraint.key}"
        data = self.disk_cache.get(disk_key)
        if data is not None:
            try:
                return backend.load(data, deadline)
            except CompileTimeout:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a bad entry raises, compiling is the answer
                log.warning("dropping a compile cache entry that failed to load (%s): compiling again", exc)
                self.disk_cache.delete(disk_key)
        grammar = backend.compile(constraint, deadline)
        self.disk_cache.put(disk_key, grammar.to_bytes())
        return grammar

    def _select(self, constraint: Constraint) -> type[Backend]:
        """The backend the constraint names ("auto": AUTO's pick for its kind), once it accepts the constraint."""
        name = backend_name(constraint)
        if name not in BACKENDS:
            raise InvalidConstraint(f"unknown backend {name!r}", hint=f"one of: auto, {', '.join(BACKENDS)}")
        BACKENDS[name].validate(constraint)
        return BACKENDS[name]

    def build_backends(self) -> None:
        """Build every backend now (each holds the tokenizer's vocabulary in its own form; the GIL is held
        for parts of a second), so that a server's first request of each kind does not stall the others."""
        for name in BACKENDS:
            self._backend(name)

    def _backend(self, name: str) -> Backend:
        with self._backends_lock:
            if name not in self._backends:
                self._backends[name] = BACKENDS[name](self.spec)
            return self._backends[name]

    def _remember(self, store: OrderedDict, key: str, value: object) -> None:
        """Keep `value`, dropping the least recently used beyond the count bound (and for grammars, beyond
        the byte bound, though the newest grammar stays even when it alone exceeds it)."""
        with self._lock:
            store[key] = value
            if store is self._grammars:
                size = self.grammar_bytes(value)
                self._cached_bytes += size - self._grammar_bytes.get(key, 0)
                self._grammar_bytes[key] = size
            while len(store) > self.cache_size or (
                    store is self._grammars and self._cached_bytes > self.cache_bytes and len(store) > 1):
                evicted, _ = store.popitem(last=False)
                if store is self._grammars:
                    self._cached_bytes -= self._grammar_bytes.pop(evicted)
                    self.stats.evictions += 1
            self._in_flight.pop(key)
