"""Compiled grammars on disk: a second compiler (a restarted server) loads them without compiling."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import torch

from constrained.compiler import Compiler, Grammar
from constrained.compiler.backends import llguidance_backend, outlines_core_backend
from constrained.compiler.disk_cache import DiskCache
from constrained.compiler.warmup import compile_warmup_schemas
from constrained.constraints import Constraint

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b"]}}},
          "required": ["id", "tags"], "additionalProperties": False}


def new_compiler(tiny_vocab, directory) -> Compiler:
    return Compiler(tiny_vocab.tokenizer, vocab_rows=tiny_vocab.vocab_rows, eos_token_ids=tiny_vocab.eos_token_ids,
                    disk_cache=DiskCache(directory))


def walk(grammar: Grammar, loaded, text: str) -> tuple[bool, list[torch.Tensor]]:
    """Whether the tokenised `text` is accepted and ends accepting, and the mask before each token."""
    matcher, masks = grammar.matcher(), []
    for token in loaded.tokenizer.encode(text):
        mask = torch.zeros(1, (loaded.vocab_rows + 31) // 32, dtype=torch.int32)
        matcher.fill_bitmask(mask, 0)
        masks.append(mask)
        if not matcher.accept_token(token):
            return False, masks
    return matcher.is_accepting(), masks


def refuse_to_compile(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("compiled although the disk cache holds the grammar")

    monkeypatch.setattr(llguidance_backend.LlguidanceBackend, "_grammar_text", fail)
    monkeypatch.setattr(outlines_core_backend.subprocess, "run", fail)


@pytest.mark.parametrize("constraint, good, bad", [
    (Constraint.json_schema(SCHEMA), '{"id": 7, "tags": ["a", "b"]}', '{"id": 7, "tags": ["c"]}'),
    pytest.param(Constraint.regex(r"[a-z]{2,5}-[0-9]{1,3}", backend="outlines_core"), "abc-42", "abc-4242",
                 marks=pytest.mark.slow),  # each new compiler builds its backend: seconds apiece
])
def test_a_second_compiler_loads_from_disk_without_compiling(tiny_vocab, tmp_path, monkeypatch, constraint, good, bad):
    compiled = new_compiler(tiny_vocab, tmp_path).compile(constraint)
    assert len(list(tmp_path.rglob("*"))) == 2  # a shard folder and one entry
    refuse_to_compile(monkeypatch)
    reloaded = new_compiler(tiny_vocab, tmp_path).compile(constraint)
    assert reloaded is not compiled and reloaded.backend == compiled.backend
    accepted, masks = walk(reloaded, tiny_vocab, good)
    assert accepted and not walk(reloaded, tiny_vocab, bad)[0]
    assert all(torch.equal(a, b) for a, b in zip(masks, walk(compiled, tiny_vocab, good)[1]))


@pytest.mark.slow  # two compilers, each building its backend
def test_a_damaged_entry_is_compiled_again(tiny_vocab, tmp_path):
    constraint = Constraint.json_schema(SCHEMA)
    new_compiler(tiny_vocab, tmp_path).compile(constraint)
    (entry,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    entry.write_bytes(entry.read_bytes()[:-3])
    assert DiskCache(tmp_path).get("anything") is None
    grammar = new_compiler(tiny_vocab, tmp_path).compile(constraint)
    assert walk(grammar, tiny_vocab, '{"id": 1, "tags": []}')[0]
    assert entry.read_bytes()[32:] == grammar.to_bytes()  # written again, whole, after its checksum


@pytest.mark.slow  # two more compilers, each building its backend
def test_disk_entries_depend_on_the_tokenizer_setup(tiny_vocab, tmp_path):
    """Another EOS set (or tokenizer, or vocabulary size) must not reuse the entry."""
    constraint = Constraint.json_schema(SCHEMA)
    new_compiler(tiny_vocab, tmp_path).compile(constraint)
    other = Compiler(tiny_vocab.tokenizer, vocab_rows=tiny_vocab.vocab_rows, eos_token_ids=tiny_vocab.eos_token_ids[:1],
                     disk_cache=DiskCache(tmp_path))
    other.compile(constraint)
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 2


def test_warmup_schemas_are_compiled_and_unenforceable_ones_skipped(compiler, tmp_path):
    unenforceable = {"type": "array", "uniqueItems": True, "items": {"type": "boolean"}}
    path = tmp_path / "warmup.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in (SCHEMA, {"type": "boolean"}, unenforceable)) + "\n")
    assert compile_warmup_schemas(compiler, path) == 2
    before = len(compiler._grammars)
    compiler.compile(Constraint.json_schema({"type": "boolean"}))
    assert len(compiler._grammars) == before  # already compiled
    path.write_text('{"type": "object"}\nnot json\n')
    with pytest.raises(ValueError, match="warmup.jsonl:2"):
        compile_warmup_schemas(compiler, path)


# --- bounds in bytes, stale temp files, entries that fail to load -------------------------------------------


def test_memory_cache_evicts_by_estimated_bytes(tiny_vocab, compiler):
    constraints = [Constraint.regex(r"[a-z]{2}"), Constraint.choice([f"option {i}" for i in range(200)]),
                   Constraint.regex(r"[0-9]{3}")]
    sizes = [Compiler.grammar_bytes(compiler.compile(c)) for c in constraints]
    assert sizes[1] > 4 * sizes[0]  # the estimate grows with the grammar
    bounded = Compiler(tiny_vocab.tokenizer, vocab_rows=tiny_vocab.vocab_rows, eos_token_ids=tiny_vocab.eos_token_ids,
                       cache_bytes=sizes[1] + sizes[2])
    grammars = [bounded.compile(c) for c in constraints]
    assert len(bounded._grammars) == 2 and bounded._cached_bytes == sizes[1] + sizes[2]
    assert bounded.compile(constraints[0]) is not grammars[0]  # evicted: compiled again
    assert bounded.compile(constraints[2]) is grammars[2] and bounded._cached_bytes <= bounded.cache_bytes
    bounded.cache_bytes = 1  # the newest grammar stays even alone over the bound
    alone = bounded.compile(Constraint.regex("x+"))
    assert list(bounded._grammars.values()) == [alone] and bounded._cached_bytes == Compiler.grammar_bytes(alone)
    bounded.forget(Constraint.regex("x+"))
    assert bounded._cached_bytes == 0 and not bounded._grammars


def test_disk_cache_prunes_least_recently_used_to_its_byte_bound(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=1000)
    entry_bytes = 32 + 200  # checksum and data
    for i in range(4):
        cache.put(f"k{i}", bytes([i]) * 200)
        os.utime(cache._path(f"k{i}"), (time.time() - 100 + i,) * 2)  # k0 oldest
    assert cache.get("k0") == bytes([0]) * 200  # read: now the most recently used
    cache.put("k4", b"\x04" * 200)  # 5 entries > 1000 bytes: pruned to 900 at most
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 900 and len(files) == 900 // entry_bytes
    assert cache.get("k1") is None and cache.get("k2") is None
    assert cache.get("k0") is not None and cache.get("k3") is not None and cache.get("k4") is not None
    reopened = DiskCache(tmp_path, max_bytes=entry_bytes)  # a smaller bound applies at start
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 0 and reopened.get("k4") is None


def test_stale_temp_files_are_removed_at_start(tmp_path):
    shard = tmp_path / "ab"
    shard.mkdir()
    stale, fresh = shard / ".abc.123.tmp", shard / ".abd.456.tmp"  # a writer killed long ago; one writing now
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 100)
    os.utime(stale, (time.time() - 3600,) * 2)
    DiskCache(tmp_path)
    assert not stale.exists() and fresh.exists()


@pytest.mark.slow  # three compilers, each building its backend
def test_an_entry_that_fails_to_load_is_dropped_and_compiled_again(tiny_vocab, tmp_path, monkeypatch):
    """Checksum-valid but wrong bytes must not fail the constraint (with a 400) forever."""
    constraint = Constraint.json_schema(SCHEMA)
    new_compiler(tiny_vocab, tmp_path).compile(constraint)
    (entry,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    bad = b"start: this is not ( a grammar"
    entry.write_bytes(hashlib.sha256(bad).digest() + bad)
    grammar = new_compiler(tiny_vocab, tmp_path).compile(constraint)
    assert walk(grammar, tiny_vocab, '{"id": 1, "tags": ["a"]}')[0]
    assert entry.read_bytes()[32:] == grammar.to_bytes()  # replaced by the compiled grammar
    refuse_to_compile(monkeypatch)
    assert new_compiler(tiny_vocab, tmp_path).compile(constraint).to_bytes() == grammar.to_bytes()
