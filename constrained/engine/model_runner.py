"""Model runner: token ids in, last-position logits out, for the whole batch in one or a few passes."""

from __future__ import annotations

import statistics
import time

import torch

from constrained.engine.kv_cache import BatchKVCache
from constrained.models import LoadedModel

CALIBRATION_WIDTH = 128  # tokens of the wide pass that measure what one more position costs


class ModelRunner:
    """`pass_cost`: what one more forward pass costs, in positions of padding (passes.py); None
    measures it here, on the model and device at hand."""

    def __init__(self, loaded: LoadedModel, pass_cost: float | None = None):
        self.model = loaded.model
        self.decoder = loaded.model.get_decoder()  # the transformer without its vocabulary head
        self.lm_head = loaded.model.get_output_embeddings()
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.pad_id = 0
        impl = getattr(self.model.config, "_attn_implementation", "sdpa")
        self.bool_mask = impl != "eager"  # sdpa takes a boolean mask; eager an additive one
        self.pass_cost = self.measure_pass_cost() if pass_cost is None else pass_cost

    def new_cache(self) -> BatchKVCache:
        return BatchKVCache(self.model.config, self.device)

    def forward(self, cache: BatchKVCache, inputs: list[list[int]], passes: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """Run one step: row r appends `inputs[r]` (a prompt for a newcomer, a token and the run of
        tokens forced after it otherwise), as one forward pass per row range of `passes` (default: one).

        Returns float32 logits [rows, vocab_rows] of each row's last input token.
        """
        passes = passes or [(0, len(inputs))]
        step_valid = torch.zeros(len(inputs), max(len(tokens) for tokens in inputs), dtype=torch.bool, device=self.device)
        last_hidden = []
        for start, end in passes:
            cache.begin_pass(start, end)
            hidden, valid = self._pass(cache, inputs[start:end], cache.valid[start:end], cache.lengths[start:end])
            step_valid[start:end, : valid.shape[1]] = valid
            last_hidden.append(hidden[:, -1, :])
        cache.commit(step_valid)
        # The vocabulary projection of each row's last position, as one [rows, hidden] matmul. (The
        # model's own `logits_to_keep` hands a [rows, 1, hidden] slice to the head, which after a wide
        # step -- a prompt, a forced run -- becomes a batched matmul over a copied weight, ~7x slower.)
        return self.lm_head(torch.cat(last_hidden)).float()

    def _pass(self, cache: BatchKVCache, inputs: list[list[int]], past_valid: torch.Tensor,
              lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass over some rows, padded to their widest input. Returns the last hidden
        states and which of the pass's columns hold real tokens."""
        rows, width = len(inputs), max(len(tokens) for tokens in inputs)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        step_valid = torch.zeros(rows, width, dtype=torch.bool)
        for r, tokens in enumerate(inputs):  # right-aligned: every row's last column is real
            input_ids[r, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
            step_valid[r, width - len(tokens):] = True
        input_ids, step_valid = input_ids.to(self.device), step_valid.to(self.device)
        position_ids = (lengths[:, None] + torch.cumsum(step_valid, dim=1) - 1).clamp(min=0)
        hidden = self.decoder(
            input_ids=input_ids,
            attention_mask=self._attention_mask(past_valid, step_valid),
            position_ids=position_ids,
            past_key_values=cache.kv,
            use_cache=True,
        ).last_hidden_state
        return hidden, step_valid

    def _attention_mask(self, past_valid: torch.Tensor, step_valid: torch.Tensor) -> torch.Tensor:
        """[rows, 1, step, past+step]: a query sees real earlier tokens, and always itself.

        Seeing itself keeps padding queries from having no key at all (NaN in softmax).
        """
        past, step = past_valid.shape[1], step_valid.shape[1]
        keys_valid = torch.cat([past_valid, step_valid], dim=1)[:, None, :]  # [rows, 1, keys]
        query_pos = torch.arange(step, device=self.device)[:, None] + past  # [step, 1]
        key_pos = torch.arange(past + step, device=self.device)[None, :]  # [1, keys]
        allowed = (keys_valid & (key_pos <= query_pos)) | (key_pos == query_pos)
        allowed = allowed[:, None]
        if self.bool_mask:
            return allowed
        additive = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        return additive.masked_fill_(~allowed, torch.finfo(self.dtype).min)

    @torch.inference_mode()
    def measure_pass_cost(self) -> float:
        """A pass's fixed cost in positions: a pass costs about a + b * positions, timed on one row
        fed 1 and CALIBRATION_WIDTH tokens (median of 3, after a warm-up); returns a / b."""
        def seconds(width: int) -> float:
            times = []
            for _ in range(3):
                cache = self.new_cache()
                cache.add_rows(1)
                start = time.perf_counter()
                self.forward(cache, [[self.pad_id] * width])[0, 0].item()  # .item() waits for the device
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        seconds(CALIBRATION_WIDTH)
        one = seconds(1)
        per_position = (seconds(CALIBRATION_WIDTH) - one) / (CALIBRATION_WIDTH - 1)
        return one / per_position if per_position > 0 else float("inf")
