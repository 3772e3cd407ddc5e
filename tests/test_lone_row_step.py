"""The compiled step for a row decoding alone (`--torch-compile`): the eager step's logits, and the engine's output."""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Callable

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine import lone_row_step
from constrained.engine.decode_program import DecodeProgram
from constrained.engine.lone_row_step import LoneRowStep, fastest_head_kernel, unsupported
from constrained.engine.model_runner import ModelRunner
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.models import LoadedModel
from constrained.models.quantize import quantize_int8
from constrained.testing import run_until_idle, validation_errors

pytestmark = pytest.mark.slow  # each model's layer is compiled by inductor: seconds on 2 cores


def _steps(loaded: LoadedModel, prompt: list[int], steps: int, head_kernel: Callable | None = None,
           program: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(eager, compiled) logits of each decode step after `prompt`, both fed the eager step's greedy tokens; the
    compiled step's head through `head_kernel` if given; each token through the decode program compiled ahead of
    time (checked), or through the compiled blocks if not `program`."""
    eager, compiled = ModelRunner(loaded), ModelRunner(loaded, torch_compile=True)
    if head_kernel is not None:
        compiled.lone_row.head_kernel = head_kernel
    program_calls = []
    if program:
        compiled.lone_row.decode = _counted(compiled.lone_row.decode, program_calls)
    else:
        compiled.lone_row.decode = None
    caches = [runner.new_cache() for runner in (eager, compiled)]
    for cache in caches:
        cache.add_rows(1)
    pairs = []
    with torch.inference_mode():
        token = int(eager.forward(caches[0], [prompt]).argmax())
        compiled.forward(caches[1], [prompt])
        for _ in range(steps):
            pairs.append((eager.forward(caches[0], [[token]]), compiled.forward(caches[1], [[token]])))
            token = int(pairs[-1][0].argmax())
    assert compiled.lone_row.calls == steps  # the prompt took the eager step, every decode step the compiled one
    assert len(program_calls) == (steps if program else 0)
    return pairs


def _counted(function: Callable, calls: list) -> Callable:
    def counted(*args):
        calls.append(args)
        return function(*args)
    return counted


def test_qwen3_logits_equal_the_eager_steps(tiny_model):
    for eager, compiled in _steps(tiny_model, list(range(1000, 1040)), 12):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", ["mv", "reduction"])
def test_either_head_kernel_gives_the_eager_logits(tiny_model, kernel):
    """The head multiplies by torch.mv or by a compiled reduction, whichever is faster on the CPU: each gives the
    eager step's logits, and each step goes through it."""
    chosen = torch.mv if kernel == "mv" else torch.compile(lone_row_step._matrix_vector, dynamic=False)
    calls = []

    def counted(weight: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        calls.append(vector.shape)
        return chosen(weight, vector)

    for eager, compiled in _steps(tiny_model, list(range(1000, 1030)), 4, head_kernel=counted):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert len(calls) == 4  # each decode step (the prompt, the first step of a cache, is eager)


def _slowed(kernel: Callable) -> Callable:
    def slow(weight: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)  # far above either kernel, even on a busy machine
        return kernel(weight, vector)
    return slow


def test_the_head_takes_the_faster_kernel(monkeypatch):
    weight, vector = torch.randn(256, 32), torch.randn(32)
    monkeypatch.setattr(torch, "mv", _slowed(torch.mv))
    reduction = fastest_head_kernel(weight)
    assert reduction is not torch.mv
    torch.testing.assert_close(reduction(weight, vector), weight @ vector)
    monkeypatch.undo()
    monkeypatch.setattr(lone_row_step, "_matrix_vector", _slowed(lone_row_step._matrix_vector))
    assert fastest_head_kernel(weight) is torch.mv


def test_the_timed_head_reduction_is_not_compiled_again_by_the_steps(tiny_model, monkeypatch):
    """The timing compiles the reduction on a vector like the steps' (an inference tensor): their calls reuse it."""
    monkeypatch.setattr(torch, "mv", _slowed(torch.mv))  # the reduction wins the timing
    torch._dynamo.reset()  # the blocks' first compile for this model is not a recompilation
    with torch._dynamo.config.patch(error_on_recompile=True):
        _steps(tiny_model, list(range(1000, 1010)), 3)


def test_prompts_and_runs_of_tokens_equal_the_eager_steps(tiny_model):
    """Once the storage exists, a row alone takes the compiled step for any number of tokens: a new prompt in an
    emptied row, a prompt's later chunk, a token with the run its constraint forces, one token."""
    eager, compiled = ModelRunner(tiny_model), ModelRunner(tiny_model, torch_compile=True)
    caches = [runner.new_cache() for runner in (eager, compiled)]
    runs = [list(range(2000, 2040)), list(range(3000, 3025)), [7, 8, 9], [11], [12, 13], [14]]
    with torch.inference_mode():
        for runner, cache in zip((eager, compiled), caches):
            cache.add_rows(1)
            runner.forward(cache, [list(range(1000, 1010))])  # makes the storage: the eager step
            cache.keep_rows([])
            cache.add_rows(1)
        for run in runs:
            torch.testing.assert_close(compiled.forward(caches[1], [run]), eager.forward(caches[0], [run]),
                                       rtol=1e-4, atol=1e-4)
    assert compiled.lone_row.calls == len(runs)
    assert caches[1].lengths.tolist() == [sum(map(len, runs))]


def _tiny_qwen2(tiny_model: LoadedModel, seed: int = 0) -> LoadedModel:
    """3 random Qwen2 layers with q/k/v biases (the first layer's large enough to matter)."""
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    model = Qwen2ForCausalLM(config).eval()
    for proj in ("q_proj", "k_proj", "v_proj"):
        torch.nn.init.normal_(getattr(model.model.layers[0].self_attn, proj).bias, std=0.5)
    return LoadedModel("tiny-qwen2", model, tiny_model.tokenizer, torch.device("cpu"), torch.float32, 512, (0,))


@pytest.mark.parametrize("program", [True, False], ids=["decode-program", "blocks"])
def test_qwen2_with_biases_a_grown_cache_and_a_shorter_last_block(tiny_model, monkeypatch, program):
    """Qwen2's q/k/v biases; 80 steps past a 40-token prompt outgrow the cache's first 64 columns (storage
    doubles while the compiled step runs, with the cache length a dynamic size); each token through the decode
    program, or through 3 layers in blocks of 2 and 1."""
    monkeypatch.setattr(lone_row_step, "BLOCK_LAYERS", 2)
    loaded = _tiny_qwen2(tiny_model)
    assert [len(block) for block in LoneRowStep(loaded.model).blocks] == [2, 1]
    for eager, compiled in _steps(loaded, list(range(40)), 80, program=program):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_the_lone_rows_cached_program_serves_other_weights_of_the_same_shapes(tiny_model, monkeypatch):
    """The lone row's package holds no weights: a second model of the same shapes loads it from the disk cache (no
    compile) and gets its own logits, not the first model's. (A batch's package holds its weights:
    test_batch_decode_step.py.)"""
    first, second = _tiny_qwen2(tiny_model, seed=0), _tiny_qwen2(tiny_model, seed=1)
    LoneRowStep(first.model)  # compiles the lone row's package, or finds it cached
    compile_package = DecodeProgram._compile

    def only_frozen(program, *args):
        assert program.frozen, "the lone row's package was compiled again"
        compile_package(program, *args)

    monkeypatch.setattr(DecodeProgram, "_compile", only_frozen)
    pairs = _steps(second, list(range(20)), 4)
    for eager, compiled in pairs:
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    others = _steps(first, list(range(20)), 1)
    assert not torch.allclose(others[0][0], pairs[0][0], atol=1e-2)  # the two models differ


def test_a_failed_ahead_of_time_compile_leaves_single_tokens_to_the_blocks(tiny_model, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CONSTRAINED_CACHE_DIR", str(tmp_path))  # nothing cached: the export runs, and fails
    monkeypatch.setattr(torch.export, "export", _raises)
    eager, compiled = ModelRunner(tiny_model), ModelRunner(tiny_model, torch_compile=True)
    assert compiled.lone_row.decode is None
    assert ("no decode step compiled ahead of time for a lone row (RuntimeError: export broke); such steps go to the "
            "compiled blocks") in caplog.text
    assert not any(tmp_path.glob("decode-programs/*"))  # no half-built package left to load
    caches = [runner.new_cache() for runner in (eager, compiled)]
    with torch.inference_mode():
        for runner, cache in zip((eager, compiled), caches):
            cache.add_rows(1)
            runner.forward(cache, [list(range(1000, 1020))])
        for token in (5, 6, 7):
            torch.testing.assert_close(compiled.forward(caches[1], [[token]]), eager.forward(caches[0], [[token]]),
                                       rtol=1e-4, atol=1e-4)
    assert compiled.lone_row.calls == 3


def _raises(*args, **kwargs):
    raise RuntimeError("export broke")


def test_int8_weights_and_head_as_the_eager_int8_step(tiny_model):
    """`--quantize int8`: the compiled step multiplies every linear, the head too, by the int8 weights."""
    model = copy.deepcopy(tiny_model.model)
    quantize_int8(model)
    loaded = dataclasses.replace(tiny_model, model=model)
    for eager, compiled in _steps(loaded, list(range(1000, 1030)), 6):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_other_architectures_are_refused_by_name():
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert "gpt2" in unsupported(model)
    with pytest.raises(ValueError, match="gpt2"):
        LoneRowStep(model)


@pytest.mark.parametrize("requests", [1, 4], ids=["lone", "batch"])
def test_requests_under_a_schema_validate(tiny_model, compiler, finishing_bias, requests):
    """A request alone takes the lone row's compiled steps; four at once the batch's (batch_decode_step.py)."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "count": {"type": "integer"}}, "required": ["name", "count"]}
    grammar = compiler.compile(Constraint.json_schema(schema))
    engine = Engine(tiny_model, torch_compile=True)
    prompt = tiny_model.tokenizer.encode("Give a name and a count as JSON.")
    stopped = 0
    for first in range(0, 3 * requests, requests):
        results = run_until_idle(engine, [Submission(prompt, SamplingParams(max_tokens=64, seed=seed,
                                                                            logit_bias=finishing_bias), grammar)
                                          for seed in range(first, first + requests)])
        for result in results.values():
            if result["finish"] is FinishReason.STOP:
                assert validation_errors(schema, result["text"]) == [], result["text"]
                stopped += 1
    compiled = engine.runner.lone_row if requests == 1 else engine.runner.batch_decode
    assert stopped and compiled.calls > 0
