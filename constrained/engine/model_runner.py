"""Model runner: token ids in, last-position logits out, for the whole batch in one packed forward pass."""

from __future__ import annotations

import torch

from constrained.engine import packed_attention
from constrained.engine.kv_cache import BatchKVCache
from constrained.engine.packed_attention import Group, PackedStep, packed
from constrained.models import LoadedModel


class ModelRunner:
    def __init__(self, loaded: LoadedModel):
        self.model = loaded.model
        self.decoder = loaded.model.get_decoder()  # the transformer without its vocabulary head
        self.lm_head = loaded.model.get_output_embeddings()
        self.device = loaded.device
        self.dtype = loaded.dtype
        # Its attention layers then take a packed step (packed_attention.py); other calls get sdpa as before.
        self.model.config._attn_implementation = packed_attention.NAME

    def new_cache(self) -> BatchKVCache:
        return BatchKVCache(self.model.config, self.device)

    def forward(self, cache: BatchKVCache, inputs: list[list[int]], groups: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Run one step: row r appends `inputs[r]` (a prompt for a newcomer, a token and the run of
        tokens forced after it otherwise). Every row's tokens go side by side in one sequence; rows of
        each range of `groups` (default: all rows) attend together (groups.py).

        Returns float32 logits [rows, vocab_rows] of each row's last input token.
        """
        groups = groups or [(0, len(inputs))]
        widths = torch.tensor([len(tokens) for tokens in inputs])
        ends = torch.cumsum(widths, dim=0)  # each row's tokens end here in the packed sequence
        row_of = torch.repeat_interleave(torch.arange(len(inputs)), widths)
        slot = torch.arange(int(ends[-1])) - (ends - widths)[row_of]  # a token's place among its row's new ones
        step_valid = torch.zeros(len(inputs), int(widths.max()), dtype=torch.bool)
        step_valid[row_of, slot] = True
        input_ids = torch.tensor([token for tokens in inputs for token in tokens])
        input_ids, row_of, slot, step_valid = (t.to(self.device) for t in (input_ids, row_of, slot, step_valid))
        past = cache.num_columns
        step = PackedStep([self._group(cache, start, end, widths, ends, row_of, slot, step_valid)
                           for start, end in groups], past)
        cache.begin_step(row_of, past + slot, past + int(widths.max()))
        with packed(step):
            hidden = self.decoder(
                input_ids=input_ids[None],
                position_ids=(cache.lengths[row_of] + slot)[None],
                past_key_values=cache.kv,
                use_cache=True,
            ).last_hidden_state[0]
        cache.commit(step_valid)
        # The vocabulary projection of each row's last token only, as one [rows, hidden] matmul.
        return self.lm_head(hidden[(ends - 1).to(self.device)]).float()

    def _group(self, cache: BatchKVCache, start: int, end: int, widths: torch.Tensor, ends: torch.Tensor,
               row_of: torch.Tensor, slot: torch.Tensor, step_valid: torch.Tensor) -> Group:
        width = int(widths[start:end].max())
        first, stop = int(ends[start] - widths[start]), int(ends[end - 1])
        uniform = stop - first == (end - start) * width  # every row `width` wide: no padding in the block
        scatter = None if uniform else (row_of[first:stop] - start) * width + slot[first:stop]
        mask = self._attention_mask(cache.valid[start:end], step_valid[start:end, :width])
        return Group((start, end), (first, stop), width, scatter, mask)

    def _attention_mask(self, past_valid: torch.Tensor, step_valid: torch.Tensor) -> torch.Tensor:
        """[rows, 1, step, past+step] bool: a query sees real earlier tokens, and always itself.

        Seeing itself keeps padding queries from having no key at all (NaN in softmax).
        """
        past, step = past_valid.shape[1], step_valid.shape[1]
        keys_valid = torch.cat([past_valid, step_valid], dim=1)[:, None, :]  # [rows, 1, keys]
        query_pos = torch.arange(step, device=self.device)[:, None] + past  # [step, 1]
        key_pos = torch.arange(past + step, device=self.device)[None, :]  # [1, keys]
        allowed = (keys_valid & (key_pos <= query_pos)) | (key_pos == query_pos)
        return allowed[:, None]
