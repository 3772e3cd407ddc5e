"""Linears packed once for oneDNN (prepack.py): the plain linear's outputs, packing only where it is timed faster."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn

from api.serve_options import parse_serve_options
from constrained.models import load_model
from constrained.models import prepack
from constrained.models.prepack import PackedLinear, prepack_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this PyTorch has no oneDNN")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_linear_gives_the_plain_outputs(dtype, bias):
    torch.manual_seed(0)
    linear = nn.Linear(48, 80, bias=bias, dtype=dtype)
    packed = PackedLinear(linear, one_row=True, more_rows=True)
    assert packed.weight is linear.weight and packed.bias is linear.bias
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    with torch.inference_mode():
        for shape in [(1, 48), (3, 48), (2, 5, 48), (1, 1, 48)]:
            x = torch.randn(shape, dtype=dtype)
            torch.testing.assert_close(packed(x), linear(x), rtol=tolerance, atol=tolerance)


def _slowed(function):
    def slow(*args, **kwargs):
        time.sleep(0.05)  # far above either kernel, even on a busy machine
        return function(*args, **kwargs)
    return slow


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.SiLU(), nn.Linear(64, 32, bias=False), nn.Linear(32, 64))


def test_linears_pack_only_where_packing_is_timed_faster(monkeypatch):
    monkeypatch.setattr(nn.functional, "linear", _slowed(nn.functional.linear))
    model = _model()
    assert prepack_linears(model) == 3
    assert all(isinstance(layer, PackedLinear) and layer.one_row and layer.more_rows
               for layer in (model[0], model[2], model[3]))
    monkeypatch.undo()
    monkeypatch.setattr(prepack, "packed_linear", _slowed(prepack.packed_linear))
    model = _model()
    assert prepack_linears(model) == 0
    assert all(type(layer) is nn.Linear for layer in (model[0], model[2], model[3]))


def test_where_plain_is_faster_a_packed_linear_multiplies_by_the_plain_weight(monkeypatch):
    calls = []
    monkeypatch.setattr(prepack, "packed_linear", lambda x, packed, bias: calls.append(1) or torch.zeros(x.shape[0], 4))
    layer = PackedLinear(nn.Linear(8, 4), one_row=False, more_rows=True)
    with torch.inference_mode():
        layer(torch.randn(1, 8))
        assert calls == []
        layer(torch.randn(2, 1, 8))  # two rows: the packed weight
    assert calls == [1]


def test_a_copy_packs_its_own_weight():
    model = nn.Sequential(PackedLinear(nn.Linear(16, 8), one_row=True, more_rows=True))
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied[0].weight.mul_(2)
    copied = copy.deepcopy(copied)  # packs the doubled weight
    x = torch.randn(3, 16)
    with torch.inference_mode():
        torch.testing.assert_close(copied(x) - copied[0].bias, 2 * (model(x) - model[0].bias))


def test_load_model_packs_on_the_cpu_unless_told_not_to(monkeypatch):
    monkeypatch.setattr(nn.functional, "linear", _slowed(nn.functional.linear))  # packing wins every shape
    packed = load_model("tiny-qwen3", device="cpu")
    head = packed.model.get_output_embeddings()
    assert isinstance(head, PackedLinear)
    assert head.weight is packed.model.get_input_embeddings().weight  # still tied
    monkeypatch.undo()
    plain = load_model("tiny-qwen3", device="cpu", prepack=False)
    assert not any(isinstance(module, PackedLinear) for module in plain.model.modules())
    prompt = torch.tensor([list(range(1000, 1020))])
    with torch.inference_mode():
        torch.testing.assert_close(packed.model(prompt).logits, plain.model(prompt).logits, rtol=1e-4, atol=1e-4)
    assert parse_serve_options([]).prepack and not parse_serve_options(["--no-prepack"]).prepack
