"""Both backends' matchers against the contract in constrained/matcher.py, on the real Qwen vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from constrained.constraints import Constraint

BACKENDS = ["llguidance", "outlines_core"]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}, "ok": {"type": "boolean"}},
    "required": ["name", "age", "ok"],
    "additionalProperties": False,
}
PERSON_TEXT = '{"name": "Bob", "age": 42, "ok": true}'


def allowed(bitmask: torch.Tensor, row: int = 0) -> np.ndarray:
    """Boolean per token id of one packed bitmask row."""
    return np.unpackbits(bitmask[row].numpy().view(np.uint8), bitorder="little").astype(bool)


@pytest.fixture(params=BACKENDS)
def person(request, compiler):
    return compiler.compile(Constraint.json_schema(PERSON, backend=request.param))


@pytest.fixture
def bitmask(compiler):
    return torch.zeros(3, compiler.bitmask_width, dtype=torch.int32)


def test_eos_allowed_exactly_when_accepting(person, compiler, qwen_tokenizer, bitmask):
    eos = list(compiler.spec.eos_token_ids)
    matcher = person.matcher()
    for token in qwen_tokenizer.encode(PERSON_TEXT):
        matcher.fill_bitmask(bitmask, 0)
        assert not matcher.is_accepting() and not allowed(bitmask)[eos].any()
        assert not matcher.accept_token(eos[0])  # refused while incomplete, state unchanged
        assert matcher.accept_token(token)
    matcher.fill_bitmask(bitmask, 0)
    assert matcher.is_accepting() and allowed(bitmask)[eos].all()
    assert matcher.is_terminated()  # after "}" nothing but EOS can follow
    assert np.flatnonzero(allowed(bitmask)).tolist() == sorted(eos)
    assert matcher.accept_token(eos[1])
    assert matcher.is_terminated() and not matcher.accept_token(qwen_tokenizer.encode(" ")[0])
    assert not matcher.accept_token(eos[0])
    matcher.fill_bitmask(bitmask, 0)
    assert np.flatnonzero(allowed(bitmask)).tolist() == sorted(eos)


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepting_but_open_allows_both_eos_and_more(compiler, qwen_tokenizer, bitmask, backend):
    matcher = compiler.compile(Constraint.regex("[0-9]+", backend=backend)).matcher()
    assert matcher.accept_token(qwen_tokenizer.encode("7")[0])
    matcher.fill_bitmask(bitmask, 1)
    bits = allowed(bitmask, 1)
    assert matcher.is_accepting() and not matcher.is_terminated()
    assert bits[list(compiler.spec.eos_token_ids)].all() and bits[qwen_tokenizer.encode("8")[0]]


def test_forced_end_is_terminated(compiler, qwen_tokenizer, bitmask):
    matcher = compiler.compile(Constraint.choice(["yes", "no"])).matcher()
    for token in qwen_tokenizer.encode("yes"):
        assert not matcher.is_terminated()
        assert matcher.accept_token(token)
    assert matcher.is_terminated() and matcher.is_accepting()
    matcher.fill_bitmask(bitmask, 2)
    assert np.flatnonzero(allowed(bitmask, 2)).tolist() == sorted(compiler.spec.eos_token_ids)


def test_rejected_token_leaves_state_unchanged(person, qwen_tokenizer, bitmask):
    matcher = person.matcher()
    tokens = qwen_tokenizer.encode(PERSON_TEXT)
    assert all(matcher.accept_token(t) for t in tokens[:3])  # '{"name":' -- a letter cannot follow
    matcher.fill_bitmask(bitmask, 1)
    reference = bitmask[1].clone()
    bitmask[0] = 12345
    assert not matcher.accept_token(qwen_tokenizer.encode("x")[0])
    assert not matcher.accept_token(151700)  # an embedding row past the tokenizer's ids
    matcher.fill_bitmask(bitmask, 1)
    assert torch.equal(bitmask[1], reference)
    assert (bitmask[0] == 12345).all()  # a row is written, its neighbours are not
    assert all(matcher.accept_token(t) for t in tokens[3:])


def test_validate_tokens_is_a_dry_run(person, compiler, qwen_tokenizer, bitmask):
    eos = compiler.spec.eos_token_ids[0]
    tokens = qwen_tokenizer.encode(PERSON_TEXT)
    matcher = person.matcher()
    matcher.fill_bitmask(bitmask, 0)
    start = bitmask[0].clone()
    assert matcher.validate_tokens(tokens) == len(tokens)
    assert matcher.validate_tokens(tokens + [eos]) == len(tokens) + 1
    assert matcher.validate_tokens(tokens + [eos, tokens[0]]) == len(tokens) + 1
    assert matcher.validate_tokens(tokens[:4] + [eos]) == 4
    broken = tokens[:3] + qwen_tokenizer.encode("x") + tokens[3:]
    assert matcher.validate_tokens(broken) == 3
    matcher.fill_bitmask(bitmask, 0)
    assert torch.equal(bitmask[0], start) and not matcher.is_accepting()


def test_rollback_restores_earlier_states(person, compiler, qwen_tokenizer, bitmask):
    eos = compiler.spec.eos_token_ids[0]
    tokens = qwen_tokenizer.encode(PERSON_TEXT)
    matcher = person.matcher()
    masks = []
    for token in tokens:
        matcher.fill_bitmask(bitmask, 0)
        masks.append(bitmask[0].clone())
        assert matcher.accept_token(token)
    assert matcher.accept_token(eos)
    matcher.rollback(1)  # the EOS alone
    assert matcher.is_accepting() and matcher.accept_token(eos)
    matcher.rollback(4)  # EOS and three tokens
    matcher.fill_bitmask(bitmask, 0)
    assert torch.equal(bitmask[0], masks[-3]) and not matcher.is_terminated()
    matcher.rollback(len(tokens) - 3)
    matcher.fill_bitmask(bitmask, 0)
    assert torch.equal(bitmask[0], masks[0])
    assert all(matcher.accept_token(t) for t in tokens) and matcher.is_accepting()


def test_matchers_of_one_grammar_are_independent(person, qwen_tokenizer, bitmask):
    first, second = person.matcher(), person.matcher()
    assert all(first.accept_token(t) for t in qwen_tokenizer.encode(PERSON_TEXT))
    second.fill_bitmask(bitmask, 0)
    assert not second.is_accepting() and allowed(bitmask)[qwen_tokenizer.encode('{"')[0]]


def test_bitmask_is_the_set_of_tokens_accepted_one_by_one(person, compiler, qwen_tokenizer, bitmask):
    """Every masked token is accepted; where no bytes are forced, every accepted token is masked too.

    Where the grammar forces bytes (a key, a separator) llguidance masks only the canonical token
    ('{"', not '{'), though `accept_token` takes the others as well: outputs stay the same strings.
    """
    tokens = qwen_tokenizer.encode(PERSON_TEXT)
    vocab = np.arange(compiler.spec.vocab_rows)
    past_tokenizer = vocab >= len(qwen_tokenizer)
    matcher = person.matcher()
    free_states = {4, 5, 10, 11}  # after '{"name": "', inside "Bob", after '"age": ', after '4'
    for step, token in enumerate(tokens):
        if step in free_states or step == 0:
            bitmask[0] = -1
            matcher.fill_bitmask(bitmask, 0)
            bits = allowed(bitmask)
            accepted = np.array([matcher.validate_tokens([t]) == 1 for t in vocab])
            assert not bits[past_tokenizer].any() and not accepted[past_tokenizer].any()
            assert not (bits & ~accepted).any(), step
            if step in free_states or person.backend == "outlines_core":
                assert np.array_equal(bits, accepted), step
        assert matcher.accept_token(token)


def test_llguidance_forced_tokens_are_its_own_at_every_state(compiler, qwen_tokenizer, bitmask):
    """forced_tokens tests llguidance's forced bytes before asking for its forced tokens: along random
    walks through key-heavy and free-text schemas it must return exactly llguidance's compute_ff_tokens."""
    import random

    schemas = [PERSON, {"type": "object", "properties": {
        "shipping_method": {"enum": ["standard_ground", "express_overnight"]},
        "notes": {"type": "string"}, "count": {"type": "integer"}}, "required": ["shipping_method", "notes", "count"]}]
    rng = random.Random(0)
    states = forcing = 0
    for schema in schemas:
        grammar = compiler.compile(Constraint.json_schema(schema, backend="llguidance"))
        for _ in range(4):
            matcher = grammar.matcher()
            for _ in range(40):
                expected = matcher._m.compute_ff_tokens()  # llguidance's own answer, from the wrapped matcher
                assert matcher.forced_tokens() == expected
                states, forcing = states + 1, forcing + bool(expected)
                if matcher.is_terminated():
                    break
                matcher.fill_bitmask(bitmask, 0)
                choices = np.flatnonzero(allowed(bitmask)[: len(qwen_tokenizer)])
                assert matcher.accept_token(int(rng.choice(choices)))
    assert forcing > 10 and states - forcing > 10, (states, forcing)  # both kinds of state were seen
