"""Plain outlines-core as shipped: `build_regex_from_schema` (default whitespace) and an Index over the
tokenizer's exact token bytes. No refusals of ours in front: what it converts, it compiles."""

from __future__ import annotations

import json
from typing import Any

import outlines_core
import torch
from outlines_core import Guide, Index
from outlines_core.json_schema import build_regex_from_schema

from benchmarks.coverage.adapter import Adapter, Checker, Refused
from constrained.compiler.vocabulary import added_token_ids, token_bytes


class OutlinesCoreAdapter(Adapter):
    name = "outlines_core"

    def __init__(self, model, deadline_s: float):
        super().__init__(model, deadline_s)
        added = added_token_ids(model.tokenizer)
        by_bytes: dict[bytes, list[int]] = {}
        for token_id, data in token_bytes(model.tokenizer).items():
            if token_id not in added and data:
                by_bytes.setdefault(data, []).append(token_id)
        self._vocabulary = outlines_core.Vocabulary(model.eos_token_ids[0], by_bytes)
        self._width = (model.vocab_rows + 31) // 32

    def compile(self, schema: Any) -> Checker:
        try:
            index = Index(build_regex_from_schema(json.dumps(schema)), self._vocabulary)
        except (ValueError, TypeError, MemoryError) as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        return OutlinesCoreChecker(index, self._width)


class OutlinesCoreChecker(Checker):
    def __init__(self, index: Index, width: int):
        self._index = index
        self._guide = Guide(index)
        self._bitmask = torch.zeros(width, dtype=torch.int32)

    def reset(self) -> None:
        self._guide = Guide(self._index)

    def advance(self, token_id: int) -> bool:
        if self._index.get_next_state(self._guide.get_state(), token_id) is None:
            return False
        self._guide.advance(token_id, return_tokens=False)
        return True

    def fill_mask(self) -> None:
        self._guide.write_mask_into(self._bitmask.data_ptr(), self._bitmask.numel(), 4)

    def is_accepting(self) -> bool:
        return self._index.is_final_state(self._guide.get_state())
