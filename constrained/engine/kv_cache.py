"""KV cache of the running batch: one row per sequence, each row's tokens in its own first columns.

Each layer keeps its keys and values in storage allocated ahead ([rows, heads, columns, head_dim],
doubled when outgrown), so a step writes only its new tokens. Growing the tensors by concatenation
copies the whole cache every step: at batch 32 and 400 columns that was half of a SmolLM2 step.

Row r holds its `lengths[r]` tokens in columns 0..lengths[r]-1, and a step writes each new token after
its own row's (`begin_step`): rows never pad each other, so no padding builds up and none needs
squeezing out. Attention reads a row's first columns, and its mask stops at the row's own length
(model_runner.py); columns past a row's length hold stale values that no query sees.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig
from transformers.cache_utils import Cache, DynamicLayer


class BatchKVCache:
    def __init__(self, config: PretrainedConfig, device: torch.device):
        self.device = device
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)  # [rows]: tokens per row
        self.step_rows = self.step_columns = torch.zeros(0, dtype=torch.long, device=device)  # per new token
        self.step_end = 0  # columns in use once the running step is committed
        layers = config.get_text_config(decoder=True).num_hidden_layers
        self.kv = Cache(layers=[_InPlaceLayer(self) for _ in range(layers)])

    @property
    def num_rows(self) -> int:
        return self.lengths.shape[0]

    def add_rows(self, count: int) -> None:
        """Append `count` empty rows."""
        self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(count)])

    def begin_step(self, rows: torch.Tensor, columns: torch.Tensor, end: int) -> None:
        """The next forward pass feeds packed tokens: token t's keys go to row rows[t], column columns[t]
        (each right after its row's earlier tokens; all below `end`)."""
        self.step_rows, self.step_columns, self.step_end = rows, columns, end

    def commit(self, widths: torch.Tensor) -> None:
        """Record the step: row r gained widths[r] tokens."""
        self.lengths = self.lengths + widths

    def load_prefix(self, row: int, blocks: list[torch.Tensor]) -> None:
        """Fill the empty row `row` with cached blocks of keys and values (prefix_cache.py; each [layers, 2, heads,
        block, dim]) as its first columns."""
        prefix = torch.cat(blocks, dim=3).to(self.device)
        for layer, kv in zip(self.kv.layers, prefix):
            layer.write_columns(row, self.num_rows, kv)
        self.lengths[row] = prefix.shape[3]

    def row_stores(self, row: int, columns: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's key and value storage of row `row` ([heads, capacity, dim] views, written in place), with
        room for more than `columns` columns (lone_row_step.py writes and reads them there; storage exactly
        `columns` wide would make the columns read a contiguous tensor, which compiled code treats as another case
        and compiles again)."""
        for layer in self.kv.layers:
            layer._reserve(self.num_rows, columns + 1)
        return [(layer.key_store[row], layer.value_store[row]) for layer in self.kv.layers]

    def batch_stores(self, columns: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's key and value storage of every row ([rows, heads, capacity, dim] views, written in place),
        with room for `columns` columns."""
        for layer in self.kv.layers:
            layer._reserve(self.num_rows, columns)
        return [(layer.key_store[:self.num_rows], layer.value_store[:self.num_rows]) for layer in self.kv.layers]

    def read_columns(self, row: int, start: int, end: int) -> torch.Tensor:
        """A copy of row `row`'s columns start..end: [layers, 2, heads, end - start, dim]."""
        return torch.stack([torch.stack([layer.key_store[row, :, start:end], layer.value_store[row, :, start:end]])
                            for layer in self.kv.layers])

    def keep_rows(self, rows: list[int]) -> None:
        """Row i becomes former row rows[i]; rows not listed are dropped. Only rows that move and hold tokens are
        copied (a newcomer's empty row may lie past the storage, which grows at the next forward pass), and only
        their columns in use."""
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        lengths = self.lengths.tolist()
        moved = [i for i, row in enumerate(rows) if row != i and lengths[row] > 0]
        if moved:
            destination = torch.tensor(moved, dtype=torch.long, device=self.device)
            columns = int(self.lengths[index[destination]].max())
            for layer in self.kv.layers:
                if layer.is_initialized:
                    layer.move_rows(destination, index[destination], columns)
        self.lengths = self.lengths[index]


class _InPlaceLayer(DynamicLayer):
    """One layer's keys and values in preallocated storage; `update` writes the running step's packed
    tokens and hands attention a view of every row's columns in use."""

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
        return int(self.cache.lengths.max()) if self.cache.num_rows else 0

    def write_columns(self, row: int, rows: int, kv: torch.Tensor) -> None:
        """Keys kv[0] and values kv[1] ([heads, columns, dim]) as row `row`'s first columns, of `rows` rows."""
        if not self.is_initialized:
            self.lazy_initialization(kv[0][None], kv[1][None])
        self._reserve(rows, kv.shape[2])
        self.key_store[row, :, : kv.shape[2]] = kv[0]
        self.value_store[row, :, : kv.shape[2]] = kv[1]

    def move_rows(self, destination: torch.Tensor, source: torch.Tensor, columns: int) -> None:
        """Rows `source` to rows `destination`: their first `columns` columns."""
        self._reserve(int(destination.max()) + 1, columns)
        for store in (self.key_store, self.value_store):
            store[destination, :, :columns] = store[source, :, :columns]  # the sources are read (copied) first

    def _reserve(self, rows: int, columns: int) -> None:
        """Grow the storage to hold `rows` rows of `columns` columns, doubling each dimension that is outgrown
        (only that one: a row growing longer must not double the rows); new room is zero, so a column no query sees
        never holds NaN for attention to multiply by its zero weight."""
        have_rows, have_columns = self.key_store.shape[0], self.key_store.shape[2]
        if rows <= have_rows and columns <= have_columns:
            return
        new_rows = have_rows if rows <= have_rows else max(rows, 2 * have_rows)
        new_columns = have_columns if columns <= have_columns else max(columns, 2 * have_columns, 64)
        for name in ("key_store", "value_store"):
            old = getattr(self, name)
            grown = old.new_zeros(new_rows, old.shape[1], new_columns, old.shape[3])
            grown[:have_rows, :, :have_columns] = old
            setattr(self, name, grown)
