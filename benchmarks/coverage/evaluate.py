"""One schema on one backend: compile it, then check every labelled instance and time the masks.

An instance is tried in each serialisation a grammar may emit (compact or with ", "/": " separators,
ASCII-escaped or not), and where none passes, with its keys in an order the grammar takes (key_order.py):
a valid instance none of them passes is a *validation error*; an invalid instance any of them passes is an
*invalidation error*. Valid instances that pass only reordered are counted apart (`valid_reordered`). Masks
are timed along the first accepted form of each valid instance.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from benchmarks.coverage.adapter import Adapter, Refused
from benchmarks.coverage.cases import Case
from benchmarks.coverage.key_order import has_reorderable_object, names_in_schema_order, spelled_in_grammar_order

MAX_TIMED_TOKENS = 2000  # per schema: bounds the run on huge instances


FORMS = tuple((separators, ensure_ascii) for separators in ((",", ":"), (", ", ": ")) for ensure_ascii in (False, True))


def serialisations(data: Any) -> list[str]:
    """The distinct JSON spellings of `data` a grammar might emit (FORMS); none for values JSON cannot hold (NaN)."""
    forms = []
    for separators, ensure_ascii in FORMS:
        try:
            text = json.dumps(data, separators=separators, ensure_ascii=ensure_ascii, allow_nan=False)
        except ValueError:
            return []
        if text not in forms:
            forms.append(text)
    return forms


def spellings(tokenizer, data: Any) -> list[list[int]]:
    """Token ids of each serialisation the ids spell exactly (the tokenizer's NFC normalizer may not)."""
    out = []
    for text in serialisations(data):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if tokenizer.decode(ids) == text:
            out.append(ids)
    return out


def evaluate(adapter: Adapter, case: Case, compiled: Callable[[], None]) -> dict:
    """The result row of `case` on `adapter`; calls `compiled()` once the compile is done."""
    row = {"backend": adapter.name, "subset": case.subset, "id": case.id}
    start = time.perf_counter()
    try:
        checker = adapter.compile(case.schema)
    except Refused as exc:
        return {**row, "status": "refused", "reason": exc.reason, "detail": exc.detail[:500],
                "compile_s": time.perf_counter() - start}
    row.update(status="compiled", compile_s=time.perf_counter() - start, cached_s=adapter.cached_compile_s(case.schema))
    compiled()
    tokenizer = adapter.model.tokenizer
    counts = dict(valid=0, valid_rejected=0, invalid=0, invalid_accepted=0, unserialisable=0,
                  valid_reordered=0)
    mistakes, mask_times = [], []
    names = names_in_schema_order(case.schema)
    for i, (valid, data) in enumerate(case.tests):
        tokenised = spellings(tokenizer, data)
        if not tokenised:
            counts["unserialisable"] += 1
            continue
        accepted = next((ids for ids in tokenised if checker.accepts(ids)), None)
        if accepted is None and has_reorderable_object(data):
            accepted = next(filter(None, (spelled_in_grammar_order(checker, tokenizer, data, names, *form)
                                          for form in FORMS)), None)
            counts["valid_reordered"] += valid and accepted is not None
        counts["valid" if valid else "invalid"] += 1
        if valid and accepted is None:
            counts["valid_rejected"] += 1
            mistakes.append({"test": i, "valid": True, "text": tokenizer.decode(tokenised[0])[:300]})
        elif not valid and accepted is not None:
            counts["invalid_accepted"] += 1
            mistakes.append({"test": i, "valid": False, "text": tokenizer.decode(accepted)[:300]})
        elif valid and len(mask_times) < MAX_TIMED_TOKENS:
            mask_times.extend(checker.mask_times(accepted[:MAX_TIMED_TOKENS - len(mask_times)]))
    return {**row, **counts, "mistakes": mistakes, "mask_s": mask_times}
