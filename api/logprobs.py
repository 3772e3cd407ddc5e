"""Sampled-token log probabilities in OpenAI's shape: token text, its exact bytes, the top alternatives."""

from __future__ import annotations

import math
from collections.abc import Sequence

from transformers import PreTrainedTokenizerFast

from api.protocol.chat import TokenLogprob, TopLogprob
from constrained.engine.sampler import SampledToken


class LogprobFormatter:
    """Names tokens by their bytes; a token that ends mid-character shows as `\\xNN` escapes, as OpenAI does."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, token_bytes: Sequence[bytes]):
        self._tokenizer = tokenizer
        self._token_bytes = token_bytes

    def entries(self, sampled: Sequence[SampledToken]) -> list[TokenLogprob]:
        """One entry per token; alternatives the constraint forbids (logprob -inf) are left out."""
        return [
            TokenLogprob(**self._describe(s.token_id), logprob=s.logprob, top_logprobs=[
                TopLogprob(**self._describe(t.token_id), logprob=t.logprob) for t in s.top if t.logprob > -math.inf
            ])
            for s in sampled
        ]

    def _describe(self, token_id: int) -> dict:
        data = self._token_bytes[token_id] if token_id < len(self._token_bytes) else b""
        if not data:  # special tokens (end of turn) have no bytes of text
            return {"token": self._tokenizer.convert_ids_to_tokens(token_id) or "", "bytes": None}
        return {"token": data.decode("utf-8", errors="backslashreplace"), "bytes": list(data)}
