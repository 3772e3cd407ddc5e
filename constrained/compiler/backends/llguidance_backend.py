"""The llguidance backend: an Earley parser over a lazily built lexer, compiles in milliseconds.

JSON Schema goes through llguidance's own converter with fixed separators (", " and ": ") and no free
whitespace, so a model cannot loop on spaces; `lenient` is off, so a keyword it does not implement is an
error, never silently ignored. Grammar construction releases the GIL and is bounded by llguidance's
own resource limits, so a thread with a deadline is enough.
"""

from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable

import llguidance
import llguidance.hf
import torch

from constrained.compiler.backends.base import (
    Backend, CompiledGrammar, EosMatcher, TokenizerSpec, call_with_deadline, choice_regex,
)
from constrained.compiler.backends.exact_formats import with_exact_formats
from constrained.compiler.backends.pattern_classes import replacement_tables, with_python_classes
from constrained.compiler.backends.spelling import check_spellable
from constrained.compiler.backends.tool_grammar import tool_calls_lark
from constrained.compiler.backends.unique_matcher import UniqueItemsMatcher, VocabularyBytes
from constrained.compiler.keywords import LLGUIDANCE
from constrained.compiler.local_refs import with_local_refs
from constrained.compiler.recursive_refs import without_recursive_intersections
from constrained.compiler.rewrites import llguidance_equivalent
from constrained.compiler.schema_check import enforceable_schema
from constrained.compiler.unique_items import Track, UniqueRoots, split_unique_items
from constrained.constraints import Constraint
from constrained.errors import InvalidConstraint
from constrained.matcher import Matcher
from constrained.tool_calls import CLOSE, OPEN

JSON_OPTIONS = {
    "item_separator": ", ",
    "key_separator": ": ",
    "whitespace_flexible": False,
    "lenient": False,
    # One spelling per string: no \uXXXX escape (nor \/). llguidance excludes declared property names from an
    # additional key by its spelling, so with escapes `{"\u0061": "x"}` slipped past `properties: {a: integer}`.
    # Text is written as UTF-8 instead; control characters other than \b \f \n \r \t cannot be emitted.
    "json_allowed_escapes": '"\\bfnrt',
    "json_allow_general_unicode_escapes": False,
}


# llguidance's refusals that recursive_refs.py's rewrites avoid.
_RECURSIVE_INTERSECTION = ("circular references with sibling keys", "Schema intersection stack level exceeded")

# Room in the parser's rows for an object's optional properties (about 4 items each) up to the schema
# limit (schema_check.Limits.max_optional_properties); llguidance's default row of 2,000 items holds ~500.
PARSER_LIMITS = llguidance.LLParserLimits(max_items_in_row=10_000)


class LlguidanceBackend(Backend):
    name = "llguidance"
    table = LLGUIDANCE

    def __init__(self, spec: TokenizerSpec):
        self.spec = spec
        # ~1 s: llguidance's token trie over the tokenizer's bytes, one per tokenizer.
        self._tokenizer = llguidance.hf.from_tokenizer(
            spec.tokenizer, n_vocab=spec.vocab_rows, eos_token=list(spec.eos_token_ids)
        )
        self._eos_only = spec.eos_only_row()
        added = spec.tokenizer.get_added_vocab()
        self._tool_tags_are_tokens = OPEN in added and CLOSE in added  # Qwen: yes; SmolLM2: plain text
        replacement_tables()  # built once here, not in a first request's compile
        self._vocabulary: VocabularyBytes | None = None  # built by the first grammar with uniqueItems
        self._vocabulary_lock = threading.Lock()

    @classmethod
    def validate(cls, constraint: Constraint) -> None:
        super().validate(constraint)
        if constraint.kind == "json_schema":
            _prepared_schema(constraint)
        elif constraint.kind == "tool_calls":
            for i, (name, schema) in enumerate(constraint.value["tools"]):
                try:
                    prepare_schema(schema)
                except InvalidConstraint as exc:
                    raise InvalidConstraint.in_tool(i, name, exc) from exc
            _tool_call_roots(constraint.value)

    def compile(self, constraint: Constraint, deadline: float) -> "LlguidanceGrammar":
        """Built from the prepared schemas; where llguidance refuses to intersect a recursive reference, built
        again with those references taken out of intersections (recursive_refs.py): only then, since that
        grows the grammar."""
        what = f"a {constraint.kind} constraint"
        try:
            return self._build(*self._grammar_text(constraint, _identity), deadline, what)
        except InvalidConstraint as exc:
            if not any(reason in str(exc) for reason in _RECURSIVE_INTERSECTION):
                raise
        return self._build(*self._grammar_text(constraint, without_recursive_intersections), deadline, what)

    def load(self, data: bytes, deadline: float) -> "LlguidanceGrammar":
        """From the grammar text: skips the schema rewriting and llguidance's schema conversion."""
        text, unique = data.decode(), None
        if text.startswith(_UNIQUE_HEADER):
            header, text = text.split("\n", 1)
            unique = UniqueRoots.from_json(json.loads(header[len(_UNIQUE_HEADER):]))
        return self._build(text, unique, deadline, "a cached grammar")

    def vocabulary_bytes(self) -> VocabularyBytes:
        """The vocabulary by bytes, for the uniqueItems check (~0.1 s, once per tokenizer)."""
        with self._vocabulary_lock:
            if self._vocabulary is None:
                tokens = self._tokenizer.vocab_size
                self._vocabulary = VocabularyBytes([self._tokenizer.decode_bytes([i]) for i in range(tokens)])
            return self._vocabulary

    def _build(self, grammar_text: str, unique: UniqueRoots | None, deadline: float,
               what: str) -> "LlguidanceGrammar":
        def build() -> tuple[llguidance.LLMatcher, str]:
            """The prototype and its error ("" if none). The lexer is lazy: its errors surface (and it warms
            up) here, the opening forced run included, where a pathological pattern (`a{1000000}`) exhausts
            its budget; a later forced run doing so fails its request alone (ConstraintFailed)."""
            matcher = llguidance.LLMatcher(self._tokenizer, grammar_text, log_level=0, limits=PARSER_LIMITS)
            if matcher.is_error():
                return matcher, matcher.get_error()
            matcher.compute_bitmask()
            forced, walker = matcher.compute_ff_tokens(), matcher.deep_copy()
            if walker.try_consume_tokens(forced) < len(forced):
                return matcher, walker.get_error()
            return matcher, matcher.get_error() if matcher.is_error() else ""

        prototype, error = call_with_deadline(build, deadline, f"{what} with llguidance")
        if error:  # its first line; the rest is the parser's internal state
            raise InvalidConstraint(f"llguidance cannot enforce it: {error.splitlines()[0]}",
                                    hint="smaller bounded repetitions and fewer alternatives stay within its limits")
        return LlguidanceGrammar(grammar_text, prototype, self.spec.eos_token_ids, self._eos_only,
                                 None if unique is None else (unique, self.vocabulary_bytes()))

    def _grammar_text(self, constraint: Constraint, finish: Callable[[Any], Any]) -> tuple[str, UniqueRoots | None]:
        """The grammar text and where its unique arrays are; `finish` maps each prepared schema to what
        llguidance gets."""
        if constraint.kind == "json_schema":
            schema, track = _prepared_schema(constraint)
            text = llguidance.LLMatcher.grammar_from_json_schema(finish(schema), overrides=JSON_OPTIONS)
            return text, None if track is None else UniqueRoots(start=track)
        if constraint.kind == "tool_calls":
            lark = tool_calls_lark(constraint.value, lambda schema: finish(prepare_schema(schema)), JSON_OPTIONS,
                                   tags_are_tokens=self._tool_tags_are_tokens)
            return llguidance.LLMatcher.grammar_from_lark(lark), _tool_call_roots(constraint.value)
        if constraint.kind == "json_object":
            lark = resources.files("grammars").joinpath("json_object.lark").read_text(encoding="utf-8")
            return llguidance.LLMatcher.grammar_from_lark(lark), None
        if constraint.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(constraint.value), None
        if constraint.kind == "grammar":
            return llguidance.LLMatcher.grammar_from_lark(constraint.value), None
        return llguidance.LLMatcher.grammar_from_regex(choice_regex(constraint.value)), None


def _identity(schema: Any) -> Any:
    return schema


def prepare_schema(schema: object) -> object:
    """The schema llguidance gets inside the tool-call grammar; uniqueItems is left to `_tool_call_roots`."""
    return _prepared_tool_schema(schema)[0]


def _prepared_tool_schema(schema: object) -> tuple[object, Track | None]:
    """`prepare_with_unique_items` of a tool's schema, once for its validation, grammar text and Track."""
    return _prepare_keyed(_Keyed(json.dumps(schema, sort_keys=True), schema))


def _tool_call_roots(value: dict) -> UniqueRoots | None:
    """Where unique arrays are in the tools' arguments, by tool name (None: nowhere). An answer schema sent with
    tools, whose JSON is not followed yet, is refused when it has some."""
    answer = value.get("answer")
    if answer is not None and _prepared_tool_schema(answer)[1] is not None:
        raise InvalidConstraint("uniqueItems is not yet enforced in an answer schema sent with tools",
                                keyword="uniqueItems", hint="drop it, or ask for the value without tools")
    calls = {name: track for name, schema in value["tools"] if (track := _prepared_tool_schema(schema)[1])}
    return UniqueRoots(calls=calls) if calls else None


def prepare_with_unique_items(schema: object) -> tuple[object, Track | None]:
    """The schema llguidance gets: references as pointers from the root, annotations dropped, unimplemented keywords
    rewritten, uniqueItems taken out (and where it applies), exact date formats, patterns' digit and word classes
    read as jsonschema reads them."""
    enforceable = enforceable_schema(with_local_refs(schema), LLGUIDANCE)
    check_spellable(enforceable)
    rewritten, unique = split_unique_items(llguidance_equivalent(enforceable))
    return with_python_classes(with_exact_formats(rewritten)), unique


@dataclass(frozen=True)
class _Keyed:
    """A schema under its constraint's key (the hash of its canonical JSON): equal and hashed by the key."""

    key: str
    schema: object = field(compare=False)


def _prepared_schema(constraint: Constraint) -> tuple[object, Track | None]:
    """`prepare_with_unique_items` of a json_schema constraint, kept for the compile that follows its validation."""
    return _prepare_keyed(_Keyed(constraint.key, constraint.value))


@functools.lru_cache(maxsize=64)  # rewrites take ~1 ms; thread-safe, and a schema that raises is not kept
def _prepare_keyed(keyed: _Keyed) -> tuple[object, Track | None]:
    return prepare_with_unique_items(keyed.schema)


_UNIQUE_HEADER = "%unique-items "  # the first line of a cached grammar with uniqueItems: its Track, as JSON


class LlguidanceGrammar(CompiledGrammar):
    backend = "llguidance"

    def __init__(self, grammar_text: str, prototype: llguidance.LLMatcher, eos_token_ids: tuple[int, ...],
                 eos_only: torch.Tensor, unique: tuple[UniqueRoots, VocabularyBytes] | None = None):
        self._grammar_text = grammar_text
        self._prototype = prototype  # at the start state; never advanced, only copied
        self._eos = eos_token_ids
        self._eos_only = eos_only
        self._unique = unique  # where uniqueItems applies, and the vocabulary by bytes

    def matcher(self) -> Matcher:
        matcher = LlguidanceMatcher(self._prototype.deep_copy(), self._eos, self._eos_only)  # ~2 µs, shares the lexer
        return matcher if self._unique is None else UniqueItemsMatcher(matcher, *self._unique)

    def to_bytes(self) -> bytes:
        if self._unique is None:
            return self._grammar_text.encode()
        return f"{_UNIQUE_HEADER}{json.dumps(self._unique[0].to_json())}\n{self._grammar_text}".encode()


class LlguidanceMatcher(EosMatcher):
    """EOS is handled here, not by llguidance: a token llguidance rejects would put it in a permanent
    error state, so tokens are tried with `try_consume_tokens`, which leaves the state unchanged."""

    def __init__(self, matcher: llguidance.LLMatcher, eos_token_ids: tuple[int, ...], eos_only: torch.Tensor):
        super().__init__(eos_token_ids, eos_only)
        self._m = matcher

    def _consume(self, token_id: int) -> bool:
        return self._m.try_consume_tokens([token_id]) == 1

    def _validate(self, token_ids: list[int], eos_follows: bool) -> int:
        valid = self._m.validate_tokens(token_ids)
        if valid < len(token_ids) or not eos_follows:
            return valid
        self._m.consume_tokens(token_ids)  # EOS is valid after them iff they reach an accepting state
        accepting = self._m.is_accepting()
        self._m.rollback(len(token_ids))
        return len(token_ids) + accepting

    def _rollback(self, num_tokens: int) -> None:
        if not self._m.rollback(num_tokens):
            raise ValueError(f"cannot roll back {num_tokens} tokens: {self._m.get_error()}")

    def _fill(self, target: torch.Tensor) -> None:
        # writes the whole row: EOS bits iff accepting, ids past the tokenizer cleared
        self._m.unsafe_compute_mask_ptr(target.data_ptr(), target.numel() * 4)

    def _accepting(self) -> bool:
        return self._m.is_accepting()

    def _terminated(self) -> bool:
        return self._m.is_stopped()

    def forced_tokens(self) -> list[int]:
        # llguidance stops the run where a longer token could still cross the forced text's end. Its forced
        # tokens are its forced bytes tokenised, and testing for those bytes first costs 0.06 us against
        # 4.5 us for the tokens: most states of a free string or number force nothing.
        if self._ended or not self._m.compute_ff_bytes():
            return []
        return self._m.compute_ff_tokens()
