"""KV cache of the running batch: one row per sequence, columns shared by all rows, written in place.

Each layer keeps its keys and values in storage allocated ahead ([rows, heads, columns, head_dim],
doubled when outgrown), so a step writes only its new columns. Growing the tensors by concatenation
copies the whole cache every step: at batch 32 and 400 columns that was half of a SmolLM2 step.

A step appends the same columns to every row; a row with fewer new tokens leaves padding columns,
marked invalid and never attended to. A step is one packed forward pass (packed_attention.py): the
layers write each new token at its row and column (`begin_step`) and hand attention the batch's keys.
`compact()` squeezes padding out once it outweighs the real tokens.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig
from transformers.cache_utils import Cache, DynamicLayer


class BatchKVCache:
    def __init__(self, config: PretrainedConfig, device: torch.device):
        self.device = device
        self.valid = torch.zeros(0, 0, dtype=torch.bool, device=device)  # [rows, columns]: real token?
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)  # [rows]: real tokens per row
        self.step_rows = self.step_columns = torch.zeros(0, dtype=torch.long, device=device)  # per new token
        self.step_end = 0  # columns once the running step is committed
        layers = config.get_text_config(decoder=True).num_hidden_layers
        self.kv = Cache(layers=[_InPlaceLayer(self) for _ in range(layers)])

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

    def begin_step(self, rows: torch.Tensor, columns: torch.Tensor, end: int) -> None:
        """The next forward pass feeds packed tokens: token t's keys go to row rows[t], column columns[t]
        (after the committed columns, all below `end`)."""
        self.step_rows, self.step_columns, self.step_end = rows, columns, end

    def commit(self, step_valid: torch.Tensor) -> None:
        """Record the columns the step appended ([rows, step] real-token flags)."""
        self.valid = torch.cat([self.valid, step_valid], dim=1)
        self.lengths = self.lengths + step_valid.sum(dim=1)

    def keep_rows(self, rows: list[int]) -> None:
        """Row i becomes former row rows[i]; rows not listed are dropped. Only rows that move are copied."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.valid, self.lengths = self.valid[index], self.lengths[index]
        moved = [i for i, row in enumerate(rows) if row != i]
        if moved:
            destination = torch.tensor(moved, dtype=torch.long, device=self.device)
            for layer in self._layers():
                layer.move_rows(destination, index[destination])
        self.compact()

    def compact(self) -> None:
        """Drop padding columns when they outnumber the longest row's real tokens."""
        longest = int(self.lengths.max()) if self.num_rows else 0
        if self.num_columns <= 2 * longest + 32:
            return
        # Stable sort puts each row's padding first and its real tokens, in order, last.
        order = torch.sort(self.valid.to(torch.int8), dim=1, stable=True).indices[:, self.num_columns - longest:]
        for layer in self._layers():
            layer.gather_columns(order, self.num_columns)
        self.valid = torch.gather(self.valid, 1, order)

    def _layers(self) -> list[_InPlaceLayer]:
        return [layer for layer in self.kv.layers if layer.is_initialized]


class _InPlaceLayer(DynamicLayer):
    """One layer's keys and values in preallocated storage; `update` writes the running step's packed
    tokens and hands attention a view of every row, committed columns plus the new ones."""

    def __init__(self, cache: BatchKVCache):
        super().__init__()
        self.cache = cache

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.key_store = key_states.new_zeros(0, key_states.shape[1], 0, key_states.shape[3])
        self.value_store = value_states.new_zeros(0, value_states.shape[1], 0, value_states.shape[3])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        cache = self.cache
        rows, end = cache.num_rows, cache.step_end
        self._reserve(rows, end)
        self.key_store[cache.step_rows, :, cache.step_columns] = key_states[0].transpose(0, 1)  # [tokens, heads, dim]
        self.value_store[cache.step_rows, :, cache.step_columns] = value_states[0].transpose(0, 1)
        return self.key_store[:rows, :, :end], self.value_store[:rows, :, :end]

    def get_seq_length(self) -> int:
        return self.cache.num_columns

    def move_rows(self, destination: torch.Tensor, source: torch.Tensor) -> None:
        self.key_store[destination] = self.key_store[source]  # the source rows are read (copied) first
        self.value_store[destination] = self.value_store[source]

    def gather_columns(self, order: torch.Tensor, columns: int) -> None:
        """Row r keeps columns order[r] of its first `columns`, as its first order.shape[1] columns."""
        rows, kept = order.shape
        for store in (self.key_store, self.value_store):
            index = order[:, None, :, None].expand(-1, store.shape[1], -1, store.shape[3])
            store[:rows, :, :kept] = torch.gather(store[:rows, :, :columns], 2, index)

    def _reserve(self, rows: int, columns: int) -> None:
        """Grow the storage (doubling) to hold `rows` rows of `columns` columns; new room is zero,
        so a padding column never holds NaN for attention to multiply by its zero weight."""
        have_rows, have_columns = self.key_store.shape[0], self.key_store.shape[2]
        if rows <= have_rows and columns <= have_columns:
            return
        new_rows, new_columns = max(rows, 2 * have_rows), max(columns, 2 * have_columns, 64)
        for name in ("key_store", "value_store"):
            old = getattr(self, name)
            grown = old.new_zeros(new_rows, old.shape[1], new_columns, old.shape[3])
            grown[:have_rows, :, :have_columns] = old
            setattr(self, name, grown)
