"""`--quantize int8`: weight-only int8 linears, within their rounding bound, and a model that still serves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from api.cli import build_parser
from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.errors import ModelLoadError
from constrained.models import load_model
from constrained.models.quantize import SMALL_STEP, Int8Linear, quantize_int8
from constrained.testing import json_finishing_bias, run_until_idle, validation_errors


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [False, True])
def test_an_int8_linear_is_within_its_rounding_bound(dtype, bias):
    """Each weight moves by at most half its row's scale, so each output by at most sum|x| * scale / 2; a step of
    more rows than SMALL_STEP uses the original weight, exactly."""
    torch.manual_seed(0)
    linear = nn.Linear(96, 40, bias=bias).to(dtype)
    quantized = Int8Linear(linear)
    x = torch.randn(1, SMALL_STEP, 96, dtype=dtype)
    exact = nn.functional.linear(x.float(), linear.weight.float(), None if linear.bias is None else linear.bias.float())
    scales = linear.weight.float().abs().amax(dim=1) / 127
    bound = x.float().abs().sum(-1, keepdim=True) * scales / 2
    slack = 1e-5 if dtype == torch.float32 else 2e-2 * exact.abs() + 2e-2  # bfloat16 rounds the output itself
    assert quantized(x).shape == (1, SMALL_STEP, 40) and quantized(x).dtype == dtype
    assert ((quantized(x).float() - exact).abs() <= bound + slack).all()
    assert not torch.equal(quantized(x), linear(x))  # the int8 weights were used
    assert quantized.weight_int8.dtype == torch.int8 and quantized.weight_int8.abs().max() == 127
    wide = torch.randn(2, SMALL_STEP, 96, dtype=dtype)
    assert torch.equal(quantized(wide), linear(wide))


def test_every_linear_of_a_model_is_replaced_and_its_logits_stay_close(tiny_model):
    quantized = load_model("tiny-qwen3", device="cpu", quantize="int8")
    assert not any(isinstance(m, nn.Linear) for m in quantized.model.modules())
    assert quantized.vocab_rows == tiny_model.vocab_rows and quantized.eos_token_ids == tiny_model.eos_token_ids
    ids = tiny_model.tokenizer.encode("The quick brown fox jumps over the lazy dog and then the cat.")
    with torch.inference_mode():  # one token at a time, as a batch-1 decode step
        exact = torch.cat([tiny_model.model(torch.tensor([[t]])).logits for t in ids])
        approx = torch.cat([quantized.model(torch.tensor([[t]])).logits for t in ids])
    assert 0 < ((approx - exact).norm() / exact.norm()) < 0.02
    assert (approx.argmax(-1) == exact.argmax(-1)).float().mean() > 0.9


@pytest.mark.slow  # an engine run of its own; the logits test above keeps the fast tier's check
def test_an_int8_model_generates_valid_constrained_outputs(tiny_model, compiler):
    quantized = load_model("tiny-qwen3", device="cpu", quantize="int8")
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "n": {"type": "integer"}},
              "required": ["name", "n"], "additionalProperties": False}
    grammar = compiler.compile(Constraint.json_schema(schema))
    bias = json_finishing_bias(quantized.tokenizer)
    results = run_until_idle(Engine(quantized, max_batch_size=8), [
        Submission(quantized.tokenizer.encode("JSON:"), SamplingParams(max_tokens=40, seed=i, logit_bias=bias),
                   grammar, f"r{i}") for i in range(8)])
    stopped = [r for r in results.values() if r["finish"] is FinishReason.STOP]
    assert len(stopped) >= 6 and all(validation_errors(schema, r["text"]) == [] for r in stopped)


def test_quantization_is_a_serve_option_and_cpu_only():
    assert build_parser().parse_args(["serve"]).quantize == "none"
    assert build_parser().parse_args(["serve", "--quantize", "int8"]).quantize == "int8"
    with pytest.raises(ModelLoadError, match="unknown quantization"):
        load_model("tiny-qwen3", device="cpu", quantize="int4")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model("tiny-qwen3", device="cuda", quantize="int8")


def test_quantize_int8_counts_what_it_replaced():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2, bias=False)))
    assert quantize_int8(model) == 2 and isinstance(model[2][0], Int8Linear)
