"""Model runner: token ids in, last-position logits out, for the whole batch in one packed forward pass."""

from __future__ import annotations

import itertools

import torch

from constrained.engine import packed_attention
from constrained.engine.batch_decode_step import BatchDecodeStep
from constrained.engine.kv_cache import BatchKVCache
from constrained.engine.lone_row_step import LoneRowStep
from constrained.engine.packed_attention import Group, packed
from constrained.models import LoadedModel


class ModelRunner:
    """`torch_compile`: a row running alone takes the compiled step (lone_row_step.py), and a batch whose every row
    takes one token its own (batch_decode_step.py); ValueError where the model has none."""

    def __init__(self, loaded: LoadedModel, *, torch_compile: bool = False):
        self.model = loaded.model
        self.decoder = loaded.model.get_decoder()  # the transformer without its vocabulary head
        self.lm_head = loaded.model.get_output_embeddings()
        self.device = loaded.device
        # Its attention layers then take a packed step (packed_attention.py); other calls get sdpa as before.
        self.model.config._attn_implementation = packed_attention.NAME
        self.lone_row = LoneRowStep(loaded.model) if torch_compile else None
        self.batch_decode = BatchDecodeStep(loaded.model, self.lone_row) if torch_compile else None

    def new_cache(self) -> BatchKVCache:
        return BatchKVCache(self.model.config, self.device)

    def forward(self, cache: BatchKVCache, inputs: list[list[int]], groups: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Run one step: row r appends `inputs[r]` (a prompt for a newcomer, a token and the run of
        tokens forced after it otherwise). Every row's tokens go side by side in one sequence; rows of
        each range of `groups` (default: all rows) attend together (groups.py).

        Returns float32 logits [rows, vocab_rows] of each row's last input token.
        """
        # once every layer has its storage (an earlier step's keys made it): one row, or one token in each row
        if self.lone_row is not None and cache.kv.is_initialized:
            if len(inputs) == 1:
                return self.lone_row(cache, inputs[0])
            if self.batch_decode.program is not None and all(len(tokens) == 1 for tokens in inputs):
                return self.batch_decode(cache, [tokens[0] for tokens in inputs])
        widths = [len(tokens) for tokens in inputs]
        ends = list(itertools.accumulate(widths))  # each row's tokens end here in the packed sequence
        row_of = torch.repeat_interleave(torch.arange(len(inputs)), torch.tensor(widths)).to(self.device)
        slot = torch.tensor([i for width in widths for i in range(width)], device=self.device)  # place in its row's run
        input_ids = torch.tensor([token for tokens in inputs for token in tokens], device=self.device)
        positions = cache.lengths[row_of] + slot  # also each token's column in its row of the cache
        extents = (cache.lengths + torch.tensor(widths, device=self.device)).tolist()  # columns in use after the step
        groups = [self._group(cache.lengths, widths, extents, start, end, ends, row_of, slot)
                  for start, end in groups or [(0, len(inputs))]]
        cache.begin_step(row_of, positions, max(extents))
        with packed(groups):
            hidden = self.decoder(
                input_ids=input_ids[None],
                position_ids=positions[None],
                past_key_values=cache.kv,
                use_cache=True,
            ).last_hidden_state[0]
        cache.commit(torch.tensor(widths, device=self.device))
        # The vocabulary projection of each row's last token only, as one [rows, hidden] matmul.
        return self.lm_head(hidden[torch.tensor(ends, device=self.device) - 1]).float()

    def _group(self, lengths: torch.Tensor, widths: list[int], extents: list[int], start: int, end: int,
               ends: list[int], row_of: torch.Tensor, slot: torch.Tensor) -> Group:
        """Rows start..end-1 as one attention group (packed_attention.Group)."""
        first, stop = ends[start - 1] if start else 0, ends[end - 1]
        width = max(widths[start:end])
        uniform = stop - first == (end - start) * width  # every row `width` wide: no padding in the block
        scatter = None if uniform else (row_of[first:stop] - start) * width + slot[first:stop]
        keys = max(extents[start:end])  # the group's longest row after the step
        return Group((start, end), (first, stop), width, keys, scatter, self._attention_mask(lengths[start:end], width, keys))

    def _attention_mask(self, lengths: torch.Tensor, width: int, keys: int) -> torch.Tensor:
        """[rows, 1, width, keys] bool: the query in a row's slot j sits at column lengths[row] + j and
        sees that row's columns up to itself. (A padding slot's query sees the same way, so it always
        has a key: no NaN in softmax; its output is dropped.)"""
        query_column = lengths[:, None] + torch.arange(width, device=self.device)  # [rows, width]
        return (torch.arange(keys, device=self.device) <= query_column[:, :, None])[:, None]
