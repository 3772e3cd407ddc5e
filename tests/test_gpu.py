"""The engine on CUDA (bf16): same guarantees as on the CPU. Skipped without a GPU."""

from __future__ import annotations

import pytest

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.testing import json_finishing_bias, validation_errors

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

    def run(engine, submissions):
        for s in submissions:
            engine.submit(s)
        texts, tokens, finish = {}, {}, {}
        while engine.has_work():
            for out in engine.step():
                texts[out.request_id] = texts.get(out.request_id, "") + out.text
                tokens.setdefault(out.request_id, []).extend(out.token_ids)
                finish[out.request_id] = out.finish_reason or finish.get(out.request_id)
        return texts, tokens, finish

    texts, tokens, finish = run(Engine(cuda_model, max_batch_size=16), subs)
    stopped = [r for r in finish if finish[r] is FinishReason.STOP and int(r[1:]) % 2]
    assert stopped, "no constrained generation finished"
    for rid in stopped:
        assert validation_errors(SCHEMA, texts[rid]) == []
    if dtype == "float32":  # bf16 rounding differs with the batch shape; fp32 agrees
        for sub in subs[:4]:
            assert run(Engine(cuda_model, max_batch_size=1), [sub])[1] == {sub.request_id: tokens[sub.request_id]}
