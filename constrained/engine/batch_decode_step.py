"""A compiled step for a batch whose every row takes one token (`--torch-compile`, CPU).

Once a batch's prompts are in, each step feeds every row the one token it sampled. Eager PyTorch spends much of
such a step between kernels: at 16 SmolLM2 rows about as long as in its matmuls (benchmarks/SPEED.md). Here the
decoder layers of that step run as one C++ call compiled ahead of time (decode_program.py), each row writing and
attending its own columns of the cache, with the weights frozen into the program, packed once for the CPU's matmul
kernels; the vocabulary head stays the model's module, whose weights are packed for batches (prepack.py). A step
that carries a prompt, a chunk of one or a forced run keeps the eager packed pass.
"""

from __future__ import annotations

import torch
from torch import nn

from constrained.engine.decode_program import compile_decode_program
from constrained.engine.kv_cache import BatchKVCache
from constrained.engine.lone_row_step import LoneRowStep, layer_step, rms_norm
from constrained.models.quantize import Int8Linear

_EXAMPLE_ROWS = 3


class BatchDecodeStep:
    """`model`'s forward pass for one token in each row of a BatchKVCache, with the tensors `lone_row` reads."""

    def __init__(self, model: nn.Module, lone_row: LoneRowStep):
        self.embed, self.rotary, self.final_norm = lone_row.embed, lone_row.rotary, lone_row.final_norm
        self.head = model.get_output_embeddings()
        kv_heads, head_dim = lone_row.shape[1], lone_row.shape[2]
        weight = self.embed.weight
        # None where the compile fails, and with int8 weights, which multiply a batch of up to SMALL_STEP rows and
        # a larger one differently: the eager pass then takes such steps
        int8 = any(isinstance(module, Int8Linear) for module in model.modules())
        self.program = None if int8 else compile_decode_program(
            layer_step, lone_row.layers, lone_row.shape, weight.new_zeros(_EXAMPLE_ROWS, weight.shape[1]),
            weight.new_zeros(_EXAMPLE_ROWS, kv_heads, 8, head_dim), fallback="the eager pass", frozen=True)
        self.calls = 0  # steps taken (for tests and benchmarks)

    def __call__(self, cache: BatchKVCache, tokens: list[int]) -> torch.Tensor:
        """Float32 logits [rows, vocab_rows]: row r of the cache appends tokens[r]."""
        positions = cache.lengths
        hidden = self.embed.weight[torch.tensor(tokens)]
        cos, sin = self.rotary(hidden.float()[None], positions[None])
        columns = int(positions.max()) + 1
        hidden = self.program(hidden, cos[0], sin[0], positions, columns, cache.batch_stores(columns))
        cache.commit(torch.ones(len(tokens), dtype=torch.long))
        self.calls += 1
        return self.head(rms_norm(hidden, *self.final_norm)).float()

