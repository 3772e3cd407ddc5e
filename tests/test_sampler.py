"""The constrained draw (engine/sampler.py) on plain rows: real grammars and matchers, made-up logits, no model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from constrained.compiler.backends.base import bitmask_width
from constrained.constraints import Constraint
from constrained.engine.params import SamplingParams
from constrained.engine.sampler import CANDIDATES, Sampler
from constrained.matcher import Matcher
from tests.test_engine import SCHEMAS


@dataclass
class Row:
    """A plain row as the sampler reads it (sampler.SamplingRow)."""

    params: SamplingParams
    matcher: Matcher | None
    seed: int
    fast_forward: bool = True
    output_ids: list[int] = field(default_factory=list)
    logit_bias: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def seen_ids(self) -> torch.Tensor:
        return torch.tensor(self.output_ids, dtype=torch.long)

    def draw_uniforms(self, count: int = 1) -> torch.Tensor:
        return torch.rand(count, dtype=torch.float64, generator=self.generator)


def allowed(matcher: Matcher, vocab_rows: int) -> torch.Tensor:
    """The tokens `matcher` allows now, as a bool row."""
    bitmask = torch.zeros(1, bitmask_width(vocab_rows), dtype=torch.int32)
    matcher.fill_bitmask(bitmask, 0)
    ids = torch.arange(vocab_rows)
    return ((bitmask[0, ids // 32] >> (ids % 32)) & 1).bool()


def json_leaning_logits(rows: int, vocab_rows: int, tokenizer, generator: torch.Generator) -> torch.Tensor:
    """Random logits with JSON punctuation and digits raised, so that the grammar forbids about half the mass at
    some positions and the rows reach their ends."""
    logits = torch.randn(rows, vocab_rows, generator=generator) * 2
    for text in ('{"', '"', '}', ':', ',', '1', '2', ' true', ']', '["'):
        logits[:, tokenizer.encode(text)[0]] += 9.0
    return logits


@pytest.mark.parametrize("fast_forward", [True, False])
def test_every_drawn_token_is_inside_the_mask(compiler, fast_forward):
    """The token a row keeps is one its mask allows, whichever path drew it: kept unmasked draws (the matcher
    may accept splits of forced text that llguidance's mask leaves out, so without fast-forward those stretches
    draw under the mask), rejection candidates, redraws under the mask. Some draws are redrawn."""
    spec = compiler.spec
    grammars = [compiler.compile(Constraint.json_schema(schema)) for schema in SCHEMAS]
    rows = [Row(SamplingParams(temperature=(0.0 if i % 5 == 4 else 1.0)), grammars[i % 4].matcher(), seed=i,
                fast_forward=fast_forward) for i in range(16)]
    sampler = Sampler(max_rows=16, vocab_rows=spec.vocab_rows, real_vocab=spec.vocab_rows, device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    live, steps = list(rows), 0
    while live and steps < 60:
        steps += 1
        masks = [allowed(row.matcher, spec.vocab_rows) for row in live]
        logits = json_leaning_logits(len(live), spec.vocab_rows, spec.tokenizer, generator)
        for row, mask, drawn in zip(live, masks, sampler.sample(logits, live)):
            assert mask[drawn.token_id], (row.seed, drawn.token_id)
            assert row.matcher.accept_token(drawn.token_id)
            row.output_ids.append(drawn.token_id)
            if fast_forward:
                for token in row.matcher.forced_tokens():
                    assert row.matcher.accept_token(token)
        live = [row for row in live if not row.matcher.is_terminated()]
    assert not live, f"{len(live)} rows never finished"
    assert sampler.stats.redraws > 0 and sampler.masks.rows > 0


def test_a_rows_token_does_not_depend_on_its_batch(compiler):
    """The sampler keeps nothing between calls and reads each row's own uniforms: the same row (same seed,
    logits, matcher state) draws the same token alone and between other rows, constrained or not."""
    spec = compiler.spec
    grammar = compiler.compile(Constraint.json_schema(SCHEMAS[1]))
    sampler = Sampler(max_rows=4, vocab_rows=spec.vocab_rows, real_vocab=spec.vocab_rows, device=torch.device("cpu"))
    logits = json_leaning_logits(3, spec.vocab_rows, spec.tokenizer, torch.Generator().manual_seed(1))
    for seed in range(20):
        params = SamplingParams(top_k=50) if seed % 3 == 0 else SamplingParams()
        alone = sampler.sample(logits[1:2].clone(), [Row(params, grammar.matcher(), seed)])
        batch = [Row(SamplingParams(temperature=0.7), grammar.matcher(), 100 + seed),
                 Row(params, grammar.matcher(), seed), Row(SamplingParams(), None, 200 + seed)]
        together = sampler.sample(logits.clone(), batch)
        assert together[1] == alone[0]


def test_a_forbidden_draw_spends_the_candidates_uniforms(compiler):
    """A row whose first draw is forbidden consumes CANDIDATES more uniforms of its generator; a row whose
    first draw is allowed consumes one: what keeps seeded outputs aligned with and without fast-forward."""
    spec = compiler.spec
    grammar = compiler.compile(Constraint.regex("(cat|dog)"))
    sampler = Sampler(max_rows=1, vocab_rows=spec.vocab_rows, real_vocab=spec.vocab_rows, device=torch.device("cpu"))
    cat, pig = spec.tokenizer.encode("cat")[0], spec.tokenizer.encode("pig")[0]
    for favourite, spent in ((cat, 1), (pig, 1 + CANDIDATES)):
        logits = torch.full((1, spec.vocab_rows), -30.0)
        logits[0, favourite] = 30.0
        logits[0, cat] = max(float(logits[0, cat]), 0.0)
        row = Row(SamplingParams(), grammar.matcher(), seed=7)
        assert sampler.sample(logits, [row])[0].token_id == cat
        reference = torch.Generator().manual_seed(7)
        torch.rand(spent, dtype=torch.float64, generator=reference)
        assert torch.equal(row.draw_uniforms(), torch.rand(1, dtype=torch.float64, generator=reference))
