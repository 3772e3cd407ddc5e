"""Per-token facts the engine needs: the bytes each id decodes to, and which ids are real tokens."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerFast

from constrained.compiler.vocabulary import token_bytes


def token_byte_table(tokenizer: PreTrainedTokenizerFast, vocab_rows: int) -> list[bytes]:
    """Bytes of every logits row; special tokens and padding rows decode to nothing."""
    table = [b""] * vocab_rows
    special = set(tokenizer.all_special_ids)
    for token_id, data in token_bytes(tokenizer).items():
        if token_id < vocab_rows and token_id not in special:
            table[token_id] = data
    return table


def real_token_bitmask_row(tokenizer: PreTrainedTokenizerFast, vocab_rows: int) -> torch.Tensor:
    """Packed int32 row allowing every id the tokenizer knows (padding rows of the embedding excluded)."""
    allowed = torch.zeros((vocab_rows + 31) // 32 * 32, dtype=torch.bool)
    allowed[: min(len(tokenizer), vocab_rows)] = True
    weights = torch.tensor([1 << i for i in range(31)] + [-(1 << 31)], dtype=torch.int64)
    return (allowed.view(-1, 32).to(torch.int64) * weights).sum(dim=1).to(torch.int32)
