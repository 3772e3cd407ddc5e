"""The compiled step for a batch whose every row takes one token (`--torch-compile`): the eager step's logits."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from constrained.engine.decode_program import DecodeProgram
from constrained.engine.model_runner import ModelRunner
from constrained.models import LoadedModel
from constrained.models.quantize import quantize_int8

pytestmark = pytest.mark.slow  # the decoder layers are compiled by AOTInductor: seconds on 2 cores, once a shape


def _batch_steps(loaded: LoadedModel, prompts: list[list[int]], steps: int,
                 program: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(eager, compiled) logits [rows, vocab] of each step after `prompts` (one packed eager step), every row fed
    the eager step's greedy token; through the batch's decode program, or the eager pass if not `program`."""
    eager, compiled = ModelRunner(loaded), ModelRunner(loaded, torch_compile=True)
    if not program:
        compiled.batch_decode.program = None
    caches = [runner.new_cache() for runner in (eager, compiled)]
    pairs = []
    with torch.inference_mode():
        for runner, cache in zip((eager, compiled), caches):
            cache.add_rows(len(prompts))
            logits = runner.forward(cache, prompts)
        tokens = logits.argmax(-1).tolist()
        for _ in range(steps):
            pairs.append((eager.forward(caches[0], [[t] for t in tokens]),
                          compiled.forward(caches[1], [[t] for t in tokens])))
            tokens = pairs[-1][0].argmax(-1).tolist()
    assert compiled.batch_decode.calls == (steps if program else 0)
    assert caches[1].lengths.tolist() == [len(prompt) + steps for prompt in prompts]
    return pairs


def test_rows_of_different_lengths_equal_the_eager_steps_past_a_grown_cache(tiny_model):
    """Three rows at columns 10, 45 and 60: 30 steps outgrow the cache's first 64 columns; each row attends its own
    columns only (a row that saw another's would differ)."""
    prompts = [list(range(1000, 1010)), list(range(2000, 2045)), list(range(3000, 3060))]
    for eager, compiled in _batch_steps(tiny_model, prompts, 30):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_batches_of_any_size_share_one_program(tiny_model):
    for rows in (2, 5):
        prompts = [list(range(1000 + 100 * row, 1020 + 100 * row)) for row in range(rows)]
        for eager, compiled in _batch_steps(tiny_model, prompts, 3):
            torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_the_program_holds_its_models_weights(tiny_model, monkeypatch):
    """The weights are the package's constants: a second runner of the same weights loads the cached package (no
    compile); a model of the same shapes with other weights gets a package of its own, and its own logits."""
    first = ModelRunner(tiny_model, torch_compile=True).batch_decode.program
    monkeypatch.setattr(DecodeProgram, "_compile", lambda *args: pytest.fail("compiled again"))
    assert ModelRunner(tiny_model, torch_compile=True).batch_decode.program.directory == first.directory
    monkeypatch.undo()
    other = dataclasses.replace(tiny_model, model=copy.deepcopy(tiny_model.model))
    with torch.no_grad():
        other.model.get_decoder().layers[0].mlp.up_proj.weight.mul_(2.0)
    assert ModelRunner(other, torch_compile=True).batch_decode.program.directory != first.directory
    for eager, compiled in _batch_steps(other, [list(range(1000, 1020)), list(range(2000, 2030))], 3):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_int8_weights_leave_batches_to_the_eager_pass(tiny_model):
    """int8 linears multiply up to SMALL_STEP rows by their int8 copy and more by the plain weight: no program."""
    model = copy.deepcopy(tiny_model.model)
    quantize_int8(model)
    loaded = dataclasses.replace(tiny_model, model=model)
    assert ModelRunner(loaded, torch_compile=True).batch_decode.program is None
    for eager, compiled in _batch_steps(loaded, [list(range(1000, 1020)), list(range(2000, 2030))], 2,
                                        program=False):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_without_a_program_the_eager_pass_takes_the_batch(tiny_model):
    for eager, compiled in _batch_steps(tiny_model, [list(range(1000, 1020)), list(range(2000, 2030))], 3,
                                        program=False):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)


def test_a_step_with_a_prompt_in_it_takes_the_eager_pass(tiny_model):
    eager, compiled = ModelRunner(tiny_model), ModelRunner(tiny_model, torch_compile=True)
    caches = [runner.new_cache() for runner in (eager, compiled)]
    with torch.inference_mode():
        for runner, cache in zip((eager, compiled), caches):
            cache.add_rows(2)
            runner.forward(cache, [list(range(1000, 1020)), list(range(2000, 2030))])
        mixed = [[5], [6, 7, 8]]  # a token beside a forced run
        torch.testing.assert_close(compiled.forward(caches[1], mixed), eager.forward(caches[0], mixed),
                                   rtol=1e-4, atol=1e-4)
    assert compiled.batch_decode.calls == 0

