"""The guarantee on real-world schemas: refused with a precise error, or every finished output validates.

A fixed seeded sample of JSONSchemaBench (all subsets; 3 schemas each in the fast tier, 21 in the `slow`
one) runs through the compiler and the engine on tiny-qwen3 (random weights: the guarantee must hold
for any model). Generations are biased toward JSON punctuation so most of them finish; the test counts
them, since outputs cut by max_tokens prove nothing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.engine.sequence import FinishReason
from constrained.errors import CompileError, CompileTimeout, InvalidConstraint
from constrained.testing import json_finishing_bias, run_until_idle, validation_errors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench"
SUBSETS = 10


def sample_schemas(per_subset: int) -> list[tuple[str, dict]]:
    picked = []
    for path in sorted(DATA.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().split("\n") if line.strip()]
        for row in random.Random(0).sample(rows, min(per_subset, len(rows))):
            picked.append((f"{path.stem}/{row['id']}", row["schema"]))
    return picked


@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("per_subset", [2, pytest.param(21, marks=pytest.mark.slow)])  # 20 schemas, or the full 210
def test_every_finished_output_validates(tiny_model, compiler, per_subset):
    schemas = sample_schemas(per_subset)
    assert len(schemas) >= SUBSETS * per_subset * 0.95
    compiled, refused = [], []
    for name, schema in schemas:
        try:
            compiled.append((name, schema, compiler.compile(Constraint.json_schema(schema))))
        except (InvalidConstraint, CompileError, CompileTimeout) as exc:
            assert str(exc), name
            refused.append((name, type(exc).__name__, str(exc)))
    bias = json_finishing_bias(tiny_model.tokenizer)
    prompt = tiny_model.tokenizer.encode(tiny_model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Answer in JSON."}], add_generation_prompt=True, tokenize=False
    ))
    results = run_until_idle(Engine(tiny_model, max_batch_size=32), [
        Submission(prompt, SamplingParams(max_tokens=160, seed=i, logit_bias=bias), grammar, name)
        for i, (name, _, grammar) in enumerate(compiled)])
    failures = []
    stopped = 0
    for name, schema, _ in compiled:
        out = results[(name, 0)]
        if out["finish"] is FinishReason.STOP:
            stopped += 1
            errors = validation_errors(schema, out["text"])
            if errors:
                failures.append((name, errors[:2], out["text"][:200]))
    print(f"\n{len(schemas)} schemas: {len(compiled)} compiled, {len(refused)} refused; "
          f"{stopped} generations finished with stop, {len(failures)} invalid")
    assert failures == []
    assert stopped >= len(compiled) // 2, f"only {stopped} of {len(compiled)} finished: the test would prove little"
