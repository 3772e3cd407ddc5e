"""A batch's sampling distributions and inverse-CDF draws from them, one uniform per row: a row's token never
depends on the rest of its batch. Pure tensor work; the constrained draw that uses it is in sampler.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# A redraw from kept probabilities (Distributions.redraw) is trusted when the allowed tokens hold at least this
# much of the first draw's mass: an allowed token whose probability underflowed float32 (below 1.4e-45)
# then had a masked probability below 1.4e-15, far below what a 27-bit uniform can pick.
MIN_KEPT_MASS = 1e-30
BLOCK = 1024  # tokens per block of the inverse CDF (_block_cdf)


@dataclass(frozen=True)
class Truncation:
    """How much of one row's tail to cut: vLLM's min_p, top_k and top_p. The defaults cut nothing."""

    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    @property
    def active(self) -> bool:
        return self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0.0


def truncate_(weights: torch.Tensor, cut: Truncation) -> None:
    """Zero the tail of one row of probabilities (normalised or not) in vLLM's order: min_p, then
    top_k, then top_p of the mass those two kept (vLLM renormalises after its top-k, before its top-p).
    min_p and top_k commute: both keep a head of the sorted row."""
    min_p_filter_(weights, cut.min_p)
    top_k_filter_(weights, cut.top_k)
    top_p_filter_(weights, cut.top_p)


def min_p_filter_(weights: torch.Tensor, min_p: float) -> None:
    """Zero the tokens of one row less probable than min_p times its most probable one: a cut that
    keeps few tokens where the model is sure and many where it is not."""
    if min_p > 0.0:
        weights.masked_fill_(weights < min_p * weights.max(), 0.0)


def top_k_filter_(weights: torch.Tensor, top_k: int) -> None:
    """Zero the tokens of one row less probable than its k-th most probable one. Tokens tied with
    the k-th are kept, as in vLLM, so the cut does not depend on how a sort orders ties."""
    if 0 < top_k < weights.shape[-1]:
        weights.masked_fill_(weights < torch.topk(weights, top_k, sorted=False).values.min(), 0.0)


def top_p_filter_(weights: torch.Tensor, top_p: float) -> None:
    """Zero the tail of one row (probabilities, normalised or not) outside the smallest set whose
    mass reaches top_p of the row's total."""
    if top_p >= 1.0:
        return
    sorted_weights, order = torch.sort(weights, descending=True)
    outside = torch.cumsum(sorted_weights, dim=-1) - sorted_weights >= top_p * sorted_weights.sum()
    outside[0] = False  # the most probable token stays, even when top_p times the mass underflows to 0
    weights[order[outside]] = 0.0


def split_uniforms(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent uniforms in [0, 1) from each float64 draw: its top 26 bits and its other 27."""
    scaled = draws * 2.0**26
    high = torch.floor(scaled)
    return high / 2.0**26, scaled - high


@dataclass(frozen=True)
class Distributions:
    """The probabilities a batch's rows drew from (`weights`, [rows, vocab], not necessarily normalised) and
    their block CDFs: what a redraw draws from again. Views of DistributionBuffers, valid until its next draw."""

    weights: torch.Tensor
    block_cdf: torch.Tensor
    kept_buffer: torch.Tensor  # scratch for `redraw`

    def candidates(self, rows: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """More tokens [len(rows), k] from the distributions of `rows`, one per uniform of `uniforms`
        [len(rows), k], and whether each has a positive probability (float rounding at the top of a CDF can
        land on a zero)."""
        drawn = _inverse_cdf(self.weights, self.block_cdf[rows], uniforms.to(self.weights.device), rows)
        return drawn, self.weights[rows[:, None], drawn] > 0

    def redraw(self, rows: torch.Tensor, kept: torch.Tensor,
               uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw again for `rows` (temperature > 0, no truncation) from their probabilities times `kept` (1
        allowed, 0 not): the masked distribution, without a second softmax. Returns the tokens and, per row,
        whether the kept mass reached MIN_KEPT_MASS; below it float32 underflow may have erased allowed
        tokens, and the row must draw from its masked logits instead."""
        weights = torch.index_select(self.weights, 0, rows, out=self.kept_buffer[: rows.numel()]).mul_(kept)
        return _draw(weights, _block_cdf(weights), uniforms), weights.sum(dim=-1) >= MIN_KEPT_MASS

    def redraw_among(self, rows: torch.Tensor, owners: torch.Tensor, tokens: torch.Tensor,
                     uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`redraw` for rows that allow few tokens, drawn among those alone: `owners` and `tokens` list
        each allowed token's index into `rows` and its id, by row, then id (BatchMasks.allowed_tokens).
        A row's draw is trusted when its allowed mass reached MIN_KEPT_MASS and the token drawn has
        a positive probability."""
        counts = torch.bincount(owners, minlength=len(rows))
        column = torch.arange(len(owners), device=owners.device) - (torch.cumsum(counts, 0) - counts)[owners]
        shape = (len(rows), max(int(counts.max()), 1))
        mass = torch.zeros(shape, dtype=torch.float64, device=owners.device)
        mass[owners, column] = self.weights[rows[owners], tokens].double()
        ids = torch.zeros(shape, dtype=torch.long, device=owners.device)
        ids[owners, column] = tokens
        cdf = torch.cumsum(mass, dim=1)
        targets = uniforms.to(cdf.device, torch.float64)[:, None] * cdf[:, -1:]
        drawn = torch.minimum(torch.searchsorted(cdf, targets, right=True), (counts - 1).clamp(min=0)[:, None])
        landed = mass.gather(1, drawn).squeeze(1) > 0
        return ids.gather(1, drawn).squeeze(1), landed & (cdf[:, -1] >= MIN_KEPT_MASS)


class DistributionBuffers:
    """Draws one token per row from softmax(logits / temperature), tails cut, by inverse CDF. Works in scratch
    buffers allocated once (a fresh [rows, vocab] tensor per step costs page faults on the CPU), so the
    logits are left as they were. Rows with temperature 0 take the argmax."""

    def __init__(self, *, max_rows: int, vocab_rows: int, device: torch.device):
        self._weights = torch.empty(max_rows, vocab_rows, device=device)
        self._kept = torch.empty(max_rows, vocab_rows, device=device)

    def draw(self, logits: torch.Tensor, temperatures: torch.Tensor, truncations: Sequence[Truncation],
             uniforms: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, Distributions | None]:
        """Token ids, one per row of `logits` or per row listed in `rows` (the other arguments then describe
        those rows alone), and the distributions they were drawn from (None when every row is greedy). Rows
        that cut nothing cost nothing more."""
        weights = self._weights[: len(truncations)]
        source = logits if rows is None else torch.index_select(logits, 0, rows, out=weights)
        sampling = temperatures > 0
        greedy = None if bool(sampling.all()) else torch.argmax(source, dim=-1)
        if greedy is not None and not bool(sampling.any()):
            return greedy, None
        scales = torch.where(sampling, temperatures, 1.0)
        if not bool((scales == 1.0).all()):  # at the default temperature, a pass over [rows, vocab] saved
            source = torch.div(source, scales[:, None], out=weights)
        torch.softmax(source, dim=-1, out=weights)  # its exp is fast on -inf (masked) logits; exp_ is slower there
        for row, cut in enumerate(truncations):
            if cut.active:
                truncate_(weights[row], cut)
        distributions = Distributions(weights, _block_cdf(weights), self._kept)
        drawn = _draw(weights, distributions.block_cdf, uniforms)
        return (drawn if greedy is None else torch.where(sampling, drawn, greedy)), distributions


def _draw(weights: torch.Tensor, block_cdf: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Token ids [rows] drawn from `weights` (probabilities, not necessarily normalised, with block
    CDFs `block_cdf`), one uniform per row."""
    drawn = _inverse_cdf(weights, block_cdf, uniforms[:, None].to(weights.device)).squeeze(1)
    landed = weights.gather(1, drawn[:, None]).squeeze(1) > 0
    if not bool(landed.all()):  # float rounding at the very top of the CDF hit a zero-probability token
        drawn = torch.where(landed, drawn, torch.argmax(weights, dim=-1))
    return drawn


def _block_cdf(weights: torch.Tensor) -> torch.Tensor:
    """[rows, blocks] float64 running sums of the masses of BLOCK-token blocks.

    A float32 running sum over 150k entries drifts enough that logits equal to 1e-7 (batched vs
    alone) pick different tokens; running sums here are float64 over block masses, then over one
    block (_inverse_cdf), which keeps that exactness for a fraction of a full float64 CDF. The last
    block may be short: it is summed apart, never padded (a padded copy costs a pass over the batch).
    """
    vocab = weights.shape[1]
    full = vocab - vocab % BLOCK
    block_mass = weights[:, :full].unflatten(1, (-1, BLOCK)).sum(dim=-1)
    if full < vocab:
        block_mass = torch.cat([block_mass, weights[:, full:].sum(dim=-1, keepdim=True)], dim=1)
    return torch.cumsum(block_mass.double(), dim=-1)


def _inverse_cdf(weights: torch.Tensor, block_cdf: torch.Tensor, uniforms: torch.Tensor,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
    """Token ids [n, k] at `uniforms` [n, k] of the CDFs of `weights` rows (all, or `rows`), whose
    block CDFs are `block_cdf` [n, blocks]: the block first, then the token within it."""
    vocab = weights.shape[1]
    targets = uniforms.to(torch.float64) * block_cdf[:, -1:]  # [n, k]
    chosen = torch.searchsorted(block_cdf, targets, right=True).clamp_(max=block_cdf.shape[1] - 1)
    before = torch.where(chosen > 0, block_cdf.gather(1, (chosen - 1).clamp(min=0)), 0.0)
    # Each chosen block is read as one window of BLOCK tokens, a view of `weights`: the short last block's
    # window starts early, and the tokens before the block are zeroed.
    window = min(BLOCK, vocab)
    start = (chosen * BLOCK).clamp_(max=vocab - window)
    row = torch.arange(len(block_cdf), device=weights.device) if rows is None else rows
    inside = weights.unfold(1, window, 1)[row[:, None], start].double()  # [n, k, window]
    inside.masked_fill_(torch.arange(window, device=weights.device) < (chosen * BLOCK - start)[:, :, None], 0.0)
    inner_cdf = torch.cumsum(inside, dim=-1)
    inner = torch.searchsorted(inner_cdf, (targets - before)[:, :, None], right=True).clamp_(max=window - 1)
    return start + inner.squeeze(2)
