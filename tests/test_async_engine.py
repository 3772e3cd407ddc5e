"""The asyncio interface: streaming deltas, UTF-8 safety, disconnects freeing slots, compile errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from constrained.constraints import Constraint
from constrained.engine.params import SamplingParams
from constrained.errors import InvalidConstraint


@pytest.fixture
def engine(api_engine):
    """The session's running AsyncEngine (tests/conftest.py)."""
    return api_engine


def prompt_text(tiny_model):
    return tiny_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )


async def collect(engine, ids, params, constraint=None):
    outs = [o async for o in engine.generate(ids, params, constraint)]
    return outs


async def test_utf8_deltas_never_split_a_character(engine, tiny_model):
    text = "héllo 世界 🎉 Ωmega"
    ids = tiny_model.tokenizer.encode(prompt_text(tiny_model))
    # logprobs turn fast-forward off: one output per token, so characters do get cut across outputs
    outs = await collect(engine, ids, SamplingParams(max_tokens=64, seed=0, logprobs=True), Constraint.choice([text]))
    deltas = [o.text for o in outs]
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert outs[-1].finish_reason.value == "stop"
    assert len(outs) > len([d for d in deltas if d])  # some tokens ended mid-character and were held back


async def test_concurrent_requests_and_disconnect_free_slots(engine, tiny_model):
    ids = tiny_model.tokenizer.encode(prompt_text(tiny_model))

    async def leave_early():
        gen = engine.generate(ids, SamplingParams(max_tokens=500, seed=1))
        async for out in gen:
            if out.completion_tokens >= 3:
                break
        await gen.aclose()  # what the HTTP layer does when the client disconnects

    results = await asyncio.gather(
        leave_early(), *[collect(engine, ids, SamplingParams(max_tokens=10, seed=s)) for s in range(6)]
    )
    for outs in results[1:]:
        assert outs[-1].finish_reason.value == "length" and outs[-1].completion_tokens == 10
    for _ in range(100):  # the abort lands at the engine's next step
        if not engine.engine.has_work():
            break
        await asyncio.sleep(0.02)
    assert not engine.engine.scheduler.running and engine.engine.cache.num_rows == 0


async def test_invalid_constraint_raises_before_any_output(engine, tiny_model):
    ids = tiny_model.tokenizer.encode(prompt_text(tiny_model))
    with pytest.raises(InvalidConstraint):
        await collect(engine, ids, SamplingParams(), Constraint.json_schema({"type": "object", "uniqueItems": "yes"}))


async def test_a_failing_matcher_fails_its_request_with_a_400(tiny_model, compiler):
    from api.errors import to_api_error
    from constrained.engine.async_engine import AsyncEngine
    from constrained.errors import ConstraintFailed
    from tests.test_engine import SCHEMAS, FailingGrammar

    constraint = Constraint.json_schema(SCHEMAS[3])
    grammar = FailingGrammar(compiler.compile(constraint), after=3, eos=tuple(tiny_model.eos_token_ids))

    class OneGrammar:
        forgotten = []

        async def compile_async(self, constraint):
            return grammar

        def forget(self, constraint):
            self.forgotten.append(constraint)

    engine = AsyncEngine(tiny_model, compiler=OneGrammar(), fast_forward=False)
    try:
        with pytest.raises(ConstraintFailed) as failed:
            await collect(engine, tiny_model.tokenizer.encode(prompt_text(tiny_model)),
                          SamplingParams(max_tokens=20, n=2, seed=1), constraint)
    finally:
        engine.shutdown()
    assert OneGrammar.forgotten == [constraint]  # a lexer out of budget is not served again
    error = to_api_error(failed.value)
    assert (error.status, error.param, error.code) == (400, "response_format", "constraint_failed")


async def test_a_lexer_that_gives_up_mid_string_fails_its_request(engine, tiny_model):
    """llguidance's lexer can give up inside a value (a word-count pattern beside a length bound: "too many
    expressions constructed"): its matcher then stops where no EOS may follow. That is a failure, never a
    finished output."""
    from constrained.errors import ConstraintFailed

    words = Constraint.json_schema({"type": "object", "required": ["q"], "properties": {
        "q": {"type": "string", "pattern": "^(?:\\S+\\s+){0,99}\\S+$", "maxLength": 5000}}})
    with pytest.raises(ConstraintFailed):
        await collect(engine, tiny_model.tokenizer.encode(prompt_text(tiny_model)),
                      SamplingParams(max_tokens=40, seed=1), words)


async def test_an_empty_prompt_is_refused_before_it_reaches_the_batch(engine):
    from constrained.errors import InvalidSamplingParams

    with pytest.raises(InvalidSamplingParams, match="no tokens"):
        await collect(engine, [], SamplingParams(max_tokens=2))


async def test_a_constraint_past_the_backend_limits_fails_its_request_alone(engine, tiny_model, compiler):
    """A forced run the grammar backend cannot lex (`a{100000}`, reached after a free boolean) fails its own
    request; the requests batched beside it finish. One forced from the start is refused at compile."""
    from constrained.errors import ConstraintFailed

    ids = tiny_model.tokenizer.encode(prompt_text(tiny_model))
    late = Constraint.json_schema({"type": "object", "properties": {
        "k": {"type": "boolean"}, "s": {"type": "string", "pattern": "^a{100000}$"}},
        "required": ["k", "s"], "additionalProperties": False})
    results = await asyncio.gather(
        collect(engine, ids, SamplingParams(max_tokens=40, seed=1), late),
        *(collect(engine, ids, SamplingParams(max_tokens=30, seed=i)) for i in range(4)), return_exceptions=True)
    assert isinstance(results[0], ConstraintFailed), results[0]
    assert all(outs[-1].finish_reason is not None for outs in results[1:]), results[1:]
    with pytest.raises(InvalidConstraint, match="too many expressions"):
        compiler.compile(Constraint.regex("((a{100}){100}){100}"))


@pytest.mark.slow  # a fresh Python process importing torch
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
def test_starting_releases_the_callers_idle_openmp_workers():
    """The thread that loaded the model leaves OpenMP workers behind; they must be gone once the engine
    starts, so that the engine thread's team alone holds the cores (release_openmp_workers). In a fresh
    process: the caller's parallel op creates workers, releasing them ends those threads."""
    script = """
import os, torch
from constrained.engine.async_engine import release_openmp_workers
torch.set_num_threads(2)
torch.ones(4_000_000).exp_()  # a parallel op: the calling thread's OpenMP team starts
before = len(os.listdir("/proc/self/task"))
release_openmp_workers()
print(before, len(os.listdir("/proc/self/task")))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    before, after = map(int, result.stdout.split())
    assert after < before, (before, after)
