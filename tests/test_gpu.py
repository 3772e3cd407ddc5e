"""The engine on CUDA (bf16): same guarantees as on the CPU. Skipped without a GPU."""

from __future__ import annotations

import pytest

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.testing import json_finishing_bias, run_until_idle, validation_errors

pytestmark = pytest.mark.gpu

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99},
                                           "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
          "required": ["n", "tags"], "additionalProperties": False}


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_batch_on_cuda_validates_and_matches_alone(dtype):
    import torch

    from constrained.models import load_model

    cuda_model = load_model("tiny-qwen3", device="cuda", dtype=getattr(torch, dtype))
    from constrained.compiler import Compiler

    compiler = Compiler(cuda_model.tokenizer, vocab_rows=cuda_model.vocab_rows, eos_token_ids=cuda_model.eos_token_ids)
    grammar = compiler.compile(Constraint.json_schema(SCHEMA))
    bias = json_finishing_bias(cuda_model.tokenizer)
    prompt = cuda_model.tokenizer.encode("JSON please")
    subs = [Submission(prompt, SamplingParams(max_tokens=48, seed=s, logit_bias=bias), grammar if s % 2 else None, f"g{s}")
            for s in range(16)]

    batched = run_until_idle(Engine(cuda_model, max_batch_size=16), subs)
    stopped = [key for key, out in batched.items() if out["finish"] is FinishReason.STOP and int(key[0][1:]) % 2]
    assert stopped, "no constrained generation finished"
    for key in stopped:
        assert validation_errors(SCHEMA, batched[key]["text"]) == []
    if dtype == "float32":  # bf16 rounding differs with the batch shape; fp32 agrees
        for sub in subs[:4]:
            alone = run_until_idle(Engine(cuda_model, max_batch_size=1), [sub])
            assert alone[(sub.request_id, 0)]["tokens"] == batched[(sub.request_id, 0)]["tokens"]
