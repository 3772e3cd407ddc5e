"""The engine's small pure pieces: detokenizer, stop strings, sampler functions, bitmask packing."""

import pytest
import torch

from constrained.engine.detokenizer import IncrementalDetokenizer
from constrained.engine.masks import FEW_WORDS, BatchMasks, apply_mask_bias_
from constrained.engine.distributions import DistributionBuffers, Truncation, top_p_filter_
from constrained.engine.penalties import apply_logit_bias_, apply_penalties_
from constrained.engine.stops import StopStringMatcher
from constrained.matcher import Matcher


def test_detokenizer_never_splits_a_character():
    text = "héllo 世界 🎉!"
    data = text.encode()
    table = [bytes([b]) for b in data]  # one byte per token: every multi-byte character is split
    detok = IncrementalDetokenizer(table)
    deltas = [detok.push(i) for i in range(len(data))]
    assert "".join(deltas) + detok.flush() == text
    assert all("\ufffd" not in d for d in deltas)
    assert deltas[1] == "" and deltas[2] == "é"  # held back until the character is complete


def test_detokenizer_flushes_a_cut_character_as_replacement():
    detok = IncrementalDetokenizer(["🎉".encode()[:2]])
    assert detok.push(0) == ""
    assert detok.flush() == "\ufffd"


def test_stop_strings_hold_back_partial_matches():
    stops = StopStringMatcher(("END", "\n\n"))
    assert stops.push("abc E") == ("abc ", False)
    assert stops.push("N") == ("", False)
    assert stops.push("Dxyz") == ("", True)
    stops = StopStringMatcher(("END",))
    assert stops.push("EN") == ("", False)
    assert stops.push("o") == ("ENo", False)
    assert stops.flush() == ""
    stops = StopStringMatcher(("stop",))
    assert stops.push("one st") == ("one ", False)
    assert stops.flush() == "st"


class BitsMatcher(Matcher):
    """Allows a fixed set of token ids: enough to check how masks are filled and applied."""

    def __init__(self, allowed: set[int]):
        self.allowed = allowed

    def fill_bitmask(self, bitmask, row):
        bitmask[row] = 0
        for i in self.allowed:
            word, bit = divmod(i, 32)
            bitmask[row, word] |= torch.tensor(1 << bit if bit < 31 else -(1 << 31), dtype=torch.int32)

    accept_token = validate_tokens = rollback = is_accepting = is_terminated = None  # not used by masks


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_masks_apply_bit_for_bit_to_the_listed_rows(device):
    vocab = 70
    allowed = [{0, 31, 32, 69}, set(range(vocab)), {7, 8, 40, 63, 64}]
    masks = BatchMasks(max_rows=4, vocab_rows=vocab, device=torch.device(device))
    for rows in ([0, 1, 2], [1, 3, 4]):  # every row constrained; some rows of a larger batch
        logits = torch.zeros(5, vocab, device=device)
        apply_mask_bias_(logits, masks.bias([BitsMatcher(ids) for ids in allowed]), rows)
        for row, ids in zip(rows, allowed):
            assert set(torch.nonzero(logits[row] == 0).flatten().tolist()) == ids
        assert all((logits[row] == 0).all() for row in set(range(5)) - set(rows))
    assert masks.rows == 6 and masks.seconds > 0


def test_allowed_tokens_list_each_rows_tokens_in_order():
    """Sparse extraction: bit 31 (a negative word) and tokens past the vocabulary (the packed row's
    last word is partly outside it) included; few_allowed tells sparse rows from full ones."""
    vocab = 32 * (FEW_WORDS + 4) + 7
    allowed = [{0, 31, 32, 63, vocab - 1}, set(range(vocab)), {5}]
    masks = BatchMasks(max_rows=4, vocab_rows=vocab, device=torch.device("cpu"))
    packed = masks.fill([BitsMatcher(ids) for ids in allowed])
    packed[2, -1] = -1  # the last word: its 7 tokens in the vocabulary count, its 25 bits past it do not
    allowed[2] |= set(range(vocab - 7, vocab))
    owners, tokens = masks.allowed_tokens(packed)
    expected = [(row, token) for row, ids in enumerate(allowed) for token in sorted(ids)]
    assert list(zip(owners.tolist(), tokens.tolist())) == expected
    assert masks.few_allowed(packed).tolist() == [True, False, True]


def test_redraw_among_allowed_tokens_draws_what_the_full_redraw_draws():
    """The two ways to draw from probabilities restricted to a mask agree token for token, on the same
    uniforms: over the whole vocabulary times the 0/1 mask, and among the allowed tokens alone."""
    generator = torch.Generator().manual_seed(0)
    vocab, rows = 3000, 5
    buffers = DistributionBuffers(max_rows=rows, vocab_rows=vocab, device=torch.device("cpu"))
    logits = torch.randn(rows, vocab, generator=generator) * 3
    _, distributions = buffers.draw(logits, torch.ones(rows), [Truncation()] * rows,
                                    torch.rand(rows, generator=generator))
    allowed = [set(torch.randint(vocab, (size,), generator=generator).tolist()) for size in (1, 3, 40, 700)]
    masks = BatchMasks(max_rows=rows, vocab_rows=vocab, device=torch.device("cpu"))
    packed = masks.fill([BitsMatcher(ids) for ids in allowed]).clone()
    index = torch.tensor([4, 0, 2, 1])
    owners, tokens = masks.allowed_tokens(packed)
    for _ in range(250):
        uniforms = torch.rand(len(allowed), generator=generator, dtype=torch.float64)
        among, among_ok = distributions.redraw_among(index, owners, tokens, uniforms)
        full, full_ok = distributions.redraw(index, masks.kept(packed), uniforms)
        assert among.tolist() == full.tolist() and among_ok.all() and full_ok.all()
        assert all(token in ids for token, ids in zip(among.tolist(), allowed))


def test_penalties_and_bias():
    logits = torch.zeros(5)
    apply_penalties_(logits, [1, 1, 3], presence=0.5, frequency=0.25)
    assert logits.tolist() == [0.0, -1.0, 0.0, -0.75, 0.0]
    apply_logit_bias_(logits, (torch.tensor([4, 0]), torch.tensor([100.0, -100.0])))
    assert logits[4] == 100.0 and logits[0] == -100.0


def test_top_p_keeps_the_smallest_head_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    top_p_filter_(probs, 0.75)
    assert torch.nonzero(probs).flatten().tolist() == [0, 1]


def test_reordering_moves_rows_past_the_storage_and_keeps_their_state(tiny_model):
    """Rows added since the last forward pass (no storage yet, no tokens) may be reordered before it, beside
    rows that hold tokens: the held rows keep their keys and values wherever they land."""
    from constrained.engine.model_runner import ModelRunner

    runner = ModelRunner(tiny_model)
    reference, cache = runner.new_cache(), runner.new_cache()
    for kv in (reference, cache):
        kv.add_rows(2)
        runner.forward(kv, [[11, 12, 13], [14, 15]])
    cache.add_rows(3)
    cache.keep_rows([4, 1, 0, 2, 3])  # an empty newcomer first, the first held row to the middle
    assert cache.lengths.tolist() == [0, 2, 3, 0, 0]
    after = runner.forward(cache, [[7, 8], [16], [17], [9], [10]])
    expected = runner.forward(reference, [[17], [16]])
    assert torch.allclose(after[2], expected[0], atol=1e-4) and torch.allclose(after[1], expected[1], atol=1e-4)


def test_the_storage_grows_only_the_dimension_outgrown(tiny_model):
    """A row growing longer doubles the columns, not the rows (doubling both made one 1k-token row hold 32 rows of
    storage: 1.5 GB for SmolLM2, seconds of zeroing); more rows double the rows, not the columns."""
    from constrained.engine.model_runner import ModelRunner

    runner = ModelRunner(tiny_model)
    cache = runner.new_cache()
    cache.add_rows(1)
    runner.forward(cache, [list(range(100, 110))])
    layer = cache.kv.layers[0]
    rows = layer.key_store.shape[0]
    for length in (200, 500, 700):
        runner.forward(cache, [list(range(100, 100 + length - int(cache.lengths[0])))])
    grown = layer.key_store.shape[2]
    assert layer.key_store.shape[0] == rows and grown > 701  # room left for the next token
    cache.add_rows(rows + 1 - cache.num_rows)
    runner.forward(cache, [[5]] + [[6, 7]] * rows)
    assert layer.key_store.shape[0] == 2 * rows and layer.key_store.shape[2] == grown


def test_a_packed_step_attends_without_cudnn_and_leaves_the_backends_as_they_were(tiny_model, monkeypatch):
    """cuDNN's attention plans per shape, and a step's key length grows every step: the packed step keeps it out
    (the flag is global, so this holds on the CPU too) and restores the process's choice after."""
    from constrained.engine import packed_attention
    from constrained.engine.model_runner import ModelRunner

    seen = []
    original = packed_attention.sdpa_attention_forward

    def spy(*args, **kwargs):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(packed_attention, "sdpa_attention_forward", spy)
    runner = ModelRunner(tiny_model)
    cache = runner.new_cache()
    cache.add_rows(2)
    assert torch.backends.cuda.cudnn_sdp_enabled()
    runner.forward(cache, [[11, 12, 13], [14, 15]])
    assert seen and not any(seen) and torch.backends.cuda.cudnn_sdp_enabled()
