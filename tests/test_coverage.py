"""The coverage harness (benchmarks/coverage): its accept logic can fail, and on a fixed sample of
JSONSchemaBench and the JSON-Schema-Test-Suite our compiler accepts no invalid instance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.coverage.cases import DEFAULT_DATA_DIR, Case
from benchmarks.coverage.evaluate import evaluate, serialisations

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}, "required": ["n"],
          "additionalProperties": False}
FIGURES = {"schemas", "compiled", "coverage", "refused", "timeouts", "errors", "passing", "valid",
           "validation_errors", "validation_error_rate", "validation_errors_as_written",
           "invalid", "invalidation_errors", "compile_ms",
           "cached_compile_ms", "mask_us"}


@pytest.fixture(scope="module", params=["constrained", pytest.param("llguidance", marks=pytest.mark.slow)])  # a peer
def adapter(request, tiny_vocab):
    from benchmarks.coverage.pool import adapter_class

    return adapter_class(request.param)(tiny_vocab, 10.0)  # tokenizer, vocab_rows, eos ids: no weights needed


def test_serialisations_cover_compact_and_spaced_forms():
    assert serialisations({"a": [1, "é"]}) == ['{"a":[1,"é"]}', '{"a":[1,"\\u00e9"]}',
                                                '{"a": [1, "é"]}', '{"a": [1, "\\u00e9"]}']
    assert serialisations(float("nan")) == []


def test_checker_accepts_valid_and_rejects_invalid(adapter):
    checker = adapter.compile(SCHEMA)
    encode = adapter.model.tokenizer.encode
    assert any(checker.accepts(encode(text)) for text in serialisations({"n": 5}))
    for wrong in ({"n": 2}, {"n": 5.5}, {"n": 5, "m": 1}, {}):
        assert not any(checker.accepts(encode(text)) for text in serialisations(wrong)), wrong
    assert not checker.accepts(encode('{"n": 5')), "an unfinished instance is not accepted"
    assert checker.mask_times(encode('{"n": 5}')), "masks are timed along the instance"


def test_mislabelled_instances_are_counted_as_errors(adapter):
    """The harness can fail: a valid instance labelled invalid is an invalidation error, and the reverse."""
    case = Case("hand", "n>=3", SCHEMA, ((True, {"n": 4}), (False, {"n": 1}), (False, {"n": 7}), (True, {"n": 0})))
    row = evaluate(adapter, case, lambda: None)
    assert row["status"] == "compiled"
    assert (row["valid"], row["valid_rejected"], row["invalid"], row["invalid_accepted"]) == (2, 1, 2, 1)
    assert {(m["test"], m["valid"]) for m in row["mistakes"]} == {(2, False), (3, True)}


def test_instances_are_tried_in_the_key_order_the_grammar_takes(adapter):
    """Grammars emit properties in the schema's order (key_order.py): a valid instance written in another order
    passes, counted apart; an invalid one in any order still does not."""
    schema = {"type": "object", "additionalProperties": False, "required": ["e"],
              "properties": {"a": {"type": "integer"}, "e": {"type": "string"},
                             "b": {"type": "object",
                                   "properties": {"c": {"type": "string"}, "d": {"type": "boolean"}}}}}
    tests = ((True, {"b": {"d": True, "c": "y"}, "e": "x", "a": 1}), (True, {"a": 1, "e": "x"}),
             (False, {"b": {"d": True, "c": 2}, "e": "x", "a": 1}), (False, {"b": {"d": True}, "a": 1}))
    row = evaluate(adapter, Case("hand", "order", schema, tests), lambda: None)
    assert (row["valid"], row["valid_rejected"], row["valid_reordered"]) == (2, 0, 1)
    assert (row["invalid"], row["invalid_accepted"]) == (2, 0)


def test_refusal_is_recorded_with_its_reason(adapter):
    row = evaluate(adapter, Case("hand", "not", {"not": {"type": "string", "pattern": "^(a)\\1"}}, ((True, 1),)),
                   lambda: None)
    assert row["status"] == "refused" and "not" in row["reason"]


@pytest.mark.slow  # a live `python -m benchmarks.coverage` with two worker processes; the adapters are tested above
@pytest.mark.skipif(not DEFAULT_DATA_DIR.exists(), reason="../shared/data is not beside the checkout")
def test_harness_on_a_fixed_sample_finds_no_invalidation_error():
    command = [sys.executable, "-m", "benchmarks.coverage", "--backend", "constrained", "--limit", "3",
               "--jobs", "2", "--test-suite"]  # every JSONSchemaBench file and the official suite, 3 per subset
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().split("\n")[-1])
    assert {"run", "json_object_compile_ms", "backends"} <= set(summary)
    ours = summary["backends"]["constrained"]
    assert FIGURES <= set(ours["overall"]) and FIGURES <= set(ours["suite overall"])
    assert len(ours["subsets"]) == 14 and ours["overall"]["schemas"] == 30
    assert ours["overall"]["compiled"] >= 20, ours["refusals"]
    assert ours["overall"]["invalid"] > 0 and ours["overall"]["invalidation_errors"] == 0
    assert ours["suite overall"]["invalidation_errors"] == 0
    assert "| overall | constrained |" in done.stdout.replace("**", "")
