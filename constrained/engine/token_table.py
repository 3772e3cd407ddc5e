"""The bytes each logits row decodes to, for incremental detokenisation."""

from __future__ import annotations

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

