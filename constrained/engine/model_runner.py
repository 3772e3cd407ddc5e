"""Model runner: token ids in, last-position logits out, for the whole batch in one forward pass."""

from __future__ import annotations

import torch

from constrained.engine.kv_cache import BatchKVCache
from constrained.models import LoadedModel


class ModelRunner:
    def __init__(self, loaded: LoadedModel):
        self.model = loaded.model
        self.decoder = loaded.model.get_decoder()  # the transformer without its vocabulary head
        self.lm_head = loaded.model.get_output_embeddings()
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.pad_id = 0
        impl = getattr(self.model.config, "_attn_implementation", "sdpa")
        self.bool_mask = impl != "eager"  # sdpa takes a boolean mask; eager an additive one

    def new_cache(self) -> BatchKVCache:
        return BatchKVCache(self.model.config, self.device)

    def forward(self, cache: BatchKVCache, inputs: list[list[int]]) -> torch.Tensor:
        """Run one step: row r appends `inputs[r]` (a prompt for a newcomer, one token otherwise).

        Returns float32 logits [rows, vocab_rows] of each row's last input token.
        """
        rows, past = len(inputs), cache.num_columns
        step = max(len(tokens) for tokens in inputs)
        input_ids = torch.full((rows, step), self.pad_id, dtype=torch.long)
        step_valid = torch.zeros(rows, step, dtype=torch.bool)
        for r, tokens in enumerate(inputs):  # right-aligned: every row's last column is real
            input_ids[r, step - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
            step_valid[r, step - len(tokens):] = True
        input_ids, step_valid = input_ids.to(self.device), step_valid.to(self.device)
        position_ids = cache.lengths[:, None] + torch.cumsum(step_valid, dim=1) - 1
        position_ids = position_ids.clamp(min=0)
        mask = self._attention_mask(cache.valid, step_valid, past)
        hidden = self.decoder(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache.kv,
            use_cache=True,
        ).last_hidden_state
        cache.commit(step_valid)
        # The vocabulary projection of each row's last position, as one [rows, hidden] matmul. (The
        # model's own `logits_to_keep` hands a [rows, 1, hidden] slice to the head, which after a wide
        # step -- a prompt, a forced run -- becomes a batched matmul over a copied weight, ~7x slower.)
        return self.lm_head(hidden[:, -1, :]).float()

    def _attention_mask(self, past_valid: torch.Tensor, step_valid: torch.Tensor, past: int) -> torch.Tensor:
        """[rows, 1, step, past+step]: a query sees real earlier tokens, and always itself.

        Seeing itself keeps padding queries from having no key at all (NaN in softmax).
        """
        step = step_valid.shape[1]
        keys_valid = torch.cat([past_valid, step_valid], dim=1)[:, None, :]  # [rows, 1, keys]
        query_pos = torch.arange(step, device=self.device)[:, None] + past  # [step, 1]
        key_pos = torch.arange(past + step, device=self.device)[None, :]  # [1, keys]
        allowed = (keys_valid & (key_pos <= query_pos)) | (key_pos == query_pos)
        allowed = allowed[:, None]
        if self.bool_mask:
            return allowed
        additive = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        return additive.masked_fill_(~allowed, torch.finfo(self.dtype).min)
