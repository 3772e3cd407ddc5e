"""The model bundle the engine and compiler consume."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast


@dataclass(frozen=True)
class LoadedModel:
    """A causal LM ready to serve.

    `vocab_rows` is the width of the logits (embedding rows, e.g. 151,936 for Qwen3), which can
    exceed the tokenizer's vocabulary. `eos_token_ids` are all tokens that end an assistant turn
    (for Qwen: `<|im_end|>` and `<|endoftext|>`). The tokenizer carries the chat template.
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    device: torch.device
    dtype: torch.dtype
    vocab_rows: int
    eos_token_ids: tuple[int, ...]
