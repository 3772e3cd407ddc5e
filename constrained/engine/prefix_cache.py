"""Prefix caching: the keys and values of prompt blocks already computed, reused by requests whose prompt starts
with the same tokens (an extraction app's system prompt and schema instructions, a document asked twice).

A prompt is cut into blocks of `block_tokens`; a block is known by a hash of its tokens and of every token
before it, so a hit on block i implies blocks 0..i-1 match too. Blocks are kept least recently used first out,
within `max_bytes`. A hit copies the blocks into the sequence's KV-cache row (kv_cache.BatchKVCache.load_prefix)
and the forward pass starts after them; at least one prompt token is always computed, for its logits.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class PrefixCacheStats:
    queried_tokens: int = 0  # prompt tokens of the sequences looked up
    hit_tokens: int = 0  # of those, served from the cache
    evictions: int = 0  # blocks dropped to stay within max_bytes


class PrefixCache:
    """`block_tokens`: 16 by default, as vLLM's, so that short prompts share a chat template's preamble too; a
    hit then loads more, smaller blocks (benchmarks/SPEED.md, "Prefix blocks of 16 tokens")."""

    def __init__(self, *, max_bytes: int, block_tokens: int = 16):
        self.max_bytes = max_bytes
        self.block_tokens = block_tokens
        self.bytes = 0
        self.stats = PrefixCacheStats()
        self._blocks: OrderedDict[bytes, torch.Tensor] = OrderedDict()  # key -> [layers, 2, heads, block, dim]

    def keys(self, token_ids: list[int]) -> list[bytes]:
        """The keys of the full blocks of `token_ids`, each hashing its block and every token before it."""
        keys, previous = [], b""
        tokens = np.asarray(token_ids, dtype=np.int64)
        for start in range(0, len(tokens) - self.block_tokens + 1, self.block_tokens):
            previous = hashlib.sha256(previous + tokens[start:start + self.block_tokens].tobytes()).digest()
            keys.append(previous)
        return keys

    def lookup(self, prompt_ids: list[int]) -> list[torch.Tensor]:
        """The cached blocks the prompt starts with, in order, leaving its last token to compute."""
        self.stats.queried_tokens += len(prompt_ids)
        found = []
        for key in self.keys(prompt_ids[:-1]):
            block = self._blocks.get(key)
            if block is None:
                break
            self._blocks.move_to_end(key)
            found.append(block)
        self.stats.hit_tokens += len(found) * self.block_tokens
        return found

    def __contains__(self, key: bytes) -> bool:
        return key in self._blocks

    def insert(self, key: bytes, block: torch.Tensor) -> None:
        """Keep `block` (owned from now on) under `key`; older blocks go to make room."""
        size = block.numel() * block.element_size()
        if key in self._blocks or size > self.max_bytes:
            return
        self._blocks[key] = block
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self._blocks.popitem(last=False)
            self.bytes -= dropped.numel() * dropped.element_size()
            self.stats.evictions += 1

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0
