"""The bytes behind every token id of a Hugging Face fast tokenizer, and a stable tokenizer hash.

Masks are computed over bytes, so every token must map to its exact bytes. `convert_tokens_to_string`
is not usable for that: it collapses tokens holding part of a UTF-8 character onto U+FFFD.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

_BYTE_LEVEL_CHARS = {char: byte for byte, char in bytes_to_unicode().items()}
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SENTENCEPIECE_SPACE = "\u2581"


def token_bytes(tokenizer: PreTrainedTokenizerFast) -> dict[int, bytes]:
    """Return the bytes of every token id: model tokens decoded exactly, added tokens as their UTF-8 text."""
    decode = _decoder_for(tokenizer)
    added = added_token_ids(tokenizer)
    table = {
        token_id: decode(token)
        for token, token_id in tokenizer.backend_tokenizer.get_vocab(with_added_tokens=False).items()
        if token_id not in added
    }
    for token, token_id in tokenizer.get_added_vocab().items():
        table[token_id] = token.encode()
    return table


def added_token_ids(tokenizer: PreTrainedTokenizerFast) -> frozenset[int]:
    """Ids of added and special tokens (<|im_end|>, <tool_call>, ...): kept apart from the model's byte vocabulary."""
    return frozenset(tokenizer.get_added_vocab().values())


def tokenizer_hash(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of the backend tokenizer's JSON: equal for tokenizers that tokenise identically, for cache keys."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def _decoder_for(tokenizer: PreTrainedTokenizerFast):
    """Pick how a vocabulary entry spells its bytes, from the tokenizer's own decoder configuration."""
    kinds = _decoder_kinds(json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder"))
    if "ByteLevel" in kinds:
        return _byte_level_bytes
    if kinds & {"ByteFallback", "Metaspace", "Replace"}:
        return _sentencepiece_bytes
    return str.encode


def _decoder_kinds(decoder: Any) -> set[str]:
    if not isinstance(decoder, dict):
        return set()
    kinds = {decoder.get("type", "")}
    for child in decoder.get("decoders") or []:
        kinds |= _decoder_kinds(child)
    return kinds


def _byte_level_bytes(token: str) -> bytes:
    """GPT-2 ByteLevel: each character stands for one byte (inverse of `bytes_to_unicode`)."""
    if all(char in _BYTE_LEVEL_CHARS for char in token):
        return bytes(_BYTE_LEVEL_CHARS[char] for char in token)
    return token.encode()


def _sentencepiece_bytes(token: str) -> bytes:
    """SentencePiece: '▁' is a space and `<0xNN>` is the raw byte NN (byte fallback)."""
    match = _BYTE_FALLBACK.fullmatch(token)
    if match:
        return bytes([int(match.group(1), 16)])
    return token.replace(_SENTENCEPIECE_SPACE, " ").encode()
