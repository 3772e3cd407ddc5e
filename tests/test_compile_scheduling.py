"""Compile scheduling: slow compiles neither starve small ones nor keep burning CPU past their deadline."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from constrained.compiler import Compiler
from constrained.compiler.backends import outlines_core_backend
from constrained.constraints import Constraint
from constrained.errors import CompileTimeout

SMALL = Constraint.json_schema({"type": "object", "properties": {"name": {"type": "string"}}})


def runaway(i: int) -> Constraint:
    """An outlines-core regex whose automaton has 2^20 states or more: its build runs far past any deadline."""
    return Constraint.regex(f"(a|b)*a(a|b){{{20 + i}}}", backend="outlines_core")


def live_children() -> list[int]:
    """Processes whose parent is this one (the outlines-core build workers)."""
    me, children = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == me and stat[0] != "Z":
            children.append(int(pid))
    return children


@pytest.fixture
def slow_compiler(tiny_vocab):
    compiler = Compiler(tiny_vocab.tokenizer, vocab_rows=tiny_vocab.vocab_rows, eos_token_ids=tiny_vocab.eos_token_ids,
                        deadline_s=2.0, slow_workers=2)
    compiler._backend("llguidance"), compiler._backend("outlines_core")  # built once each, before timing
    compiler.compile(Constraint.regex("[0-9]", backend="outlines_core"))
    yield compiler
    compiler.shutdown()


@pytest.mark.slow  # builds a compiler of its own and waits out a deadline
def test_slow_compiles_neither_starve_a_small_one_nor_run_past_their_deadline(slow_compiler, monkeypatch):
    """Eight runaway builds in flight: a one-property schema compiles at once, the builds stop at their
    requests' deadline, and those still queued then never start (on the default executor, the small one
    waited for a whole deadline and queued builds started after their requests had timed out)."""
    started = []
    run = outlines_core_backend.subprocess.run

    def counted(*args, **kwargs):
        started.append(time.monotonic())
        return run(*args, **kwargs)

    monkeypatch.setattr(outlines_core_backend.subprocess, "run", counted)

    async def scenario() -> tuple[float, list, float]:
        begin = time.perf_counter()
        slow = [asyncio.ensure_future(slow_compiler.compile_async(runaway(i))) for i in range(8)]
        await asyncio.sleep(0.3)
        start = time.perf_counter()
        await slow_compiler.compile_async(SMALL)
        small = time.perf_counter() - start
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
        return small, outcomes, time.perf_counter() - begin

    small, outcomes, elapsed = asyncio.run(scenario())
    assert small < 1.0
    assert all(isinstance(o, CompileTimeout) for o in outcomes) and elapsed < 2.0 + 1.5
    assert len(started) == 2  # the slow lane's two workers; the six queued past their deadline never started
    assert live_children() == []  # the builds were killed: nothing keeps using CPU


@pytest.mark.slow  # each slow_compiler builds both backends first
def test_a_compile_that_waited_past_its_deadline_is_not_remembered(slow_compiler):
    constraint = Constraint.regex("(red|green|blue)")
    with pytest.raises(CompileTimeout, match="waited for a compile worker"):
        slow_compiler.compile(constraint, time.monotonic() - 0.1)
    assert slow_compiler.compile(constraint).backend == "llguidance"


@pytest.mark.slow  # each slow_compiler builds both backends first
def test_a_runaway_build_past_its_deadline_is_killed(slow_compiler):
    children_cpu = os.times().children_user + os.times().children_system
    start = time.perf_counter()
    with pytest.raises(CompileTimeout):
        slow_compiler.compile(runaway(0))
    assert 2.0 <= time.perf_counter() - start < 3.0
    assert live_children() == []
    spent = os.times().children_user + os.times().children_system - children_cpu
    time.sleep(0.5)
    assert os.times().children_user + os.times().children_system - children_cpu == spent  # no CPU after it
