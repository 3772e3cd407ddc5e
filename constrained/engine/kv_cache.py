"""KV cache of the running batch: one row per sequence, columns shared by all rows.

Rows join and leave between steps. A step appends the same number of columns to every row (the
longest input of the step); a row with fewer new tokens gets padding columns, marked invalid and
never attended to. `compact()` squeezes padding out once it outweighs the real tokens.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PretrainedConfig


class BatchKVCache:
    def __init__(self, config: PretrainedConfig, device: torch.device):
        self.device = device
        self.kv = DynamicCache(config=config)
        self.valid = torch.zeros(0, 0, dtype=torch.bool, device=device)  # [rows, columns]: real token?
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)  # [rows]: real tokens per row

    @property
    def num_rows(self) -> int:
        return self.valid.shape[0]

    @property
    def num_columns(self) -> int:
        return self.valid.shape[1]

    def add_rows(self, count: int) -> None:
        """Append `count` empty rows (all columns padding)."""
        self.valid = torch.cat([self.valid, self.valid.new_zeros(count, self.num_columns)])
        self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(count)])
        for layer in self._layers():
            layer.keys = torch.cat([layer.keys, layer.keys.new_zeros(count, *layer.keys.shape[1:])])
            layer.values = torch.cat([layer.values, layer.values.new_zeros(count, *layer.values.shape[1:])])

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only `rows`, in that order."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.valid, self.lengths = self.valid[index], self.lengths[index]
        for layer in self._layers():
            layer.keys, layer.values = layer.keys[index], layer.values[index]
        self.compact()

    def commit(self, step_valid: torch.Tensor) -> None:
        """Record the columns the last forward pass appended ([rows, step] real-token flags)."""
        self.valid = torch.cat([self.valid, step_valid], dim=1)
        self.lengths = self.lengths + step_valid.sum(dim=1)

    def compact(self) -> None:
        """Drop padding columns when they outnumber the longest row's real tokens."""
        longest = int(self.lengths.max()) if self.num_rows else 0
        if self.num_columns <= 2 * longest + 32:
            return
        # Stable sort puts each row's padding first and its real tokens, in order, last.
        order = torch.sort(self.valid.to(torch.int8), dim=1, stable=True).indices[:, self.num_columns - longest:]
        self.valid = torch.gather(self.valid, 1, order)
        for layer in self._layers():
            index = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
            layer.keys = torch.gather(layer.keys, 2, index)
            layer.values = torch.gather(layer.values, 2, index)

    def _layers(self):
        return [layer for layer in self.kv.layers if getattr(layer, "is_initialized", False)]
