"""The strings a pattern rejects, written back from its automaton: never one Python's `re` matches (what jsonschema
checks), and all the others where the pattern reads the same in Python and ECMA-262."""

from __future__ import annotations

import random
import re

import pytest

from constrained.compiler.pattern_automata import automaton, endless, strings_not_matching, without_lookaheads

ALPHABET = "ab/*.-_ 09AF\n\t\u3000\u0663é{}()\\"  # ASCII, a Unicode digit and space, a letter, a newline


def as_python(regex: str) -> re.Pattern:
    """An llguidance-syntax pattern read by Python's `re` (its `\\x{...}` escapes respelled)."""
    return re.compile(re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: f"\\U{int(m.group(1), 16):08x}", regex))


def strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8))) for _ in range(count)]


EXACT = ["//", "customer", "^a", "b$", "^[A-F0-9]{4}$", "[^a-z]", ".*\\*.*\\*.*", "^(ab|a)*$", "^$", "^ab?c*$",
         "^[.,*\\\\-]+$"]
WIDENED = ["\\d", "^\\w+$", "^[a-f\\d]{2}$", "^[\\s*]+$", "\\s", "^\\S+$"]


@pytest.mark.parametrize("pattern", EXACT + WIDENED)
def test_the_complement_holds_no_string_the_pattern_matches(pattern):
    rejected = as_python(strings_not_matching(pattern))
    samples = strings(3000, sum(map(ord, pattern))) + ["", "a", "//", "ab\n", "\u0663", "\u3000"]
    wrong = [s for s in samples if rejected.fullmatch(s) and re.search(pattern, s)]
    assert wrong == []
    assert any(rejected.fullmatch(s) for s in samples), "the complement holds nothing: the test would prove little"


@pytest.mark.parametrize("pattern", EXACT)
def test_the_complement_holds_every_other_string_where_both_readings_agree(pattern):
    rejected = as_python(strings_not_matching(pattern))
    samples = [s for s in strings(3000, 7) if "\n" not in s]  # Python's `$` matches before a final newline
    assert [s for s in samples if not rejected.fullmatch(s) and not re.search(pattern, s)] == []


def test_python_unicode_classes_are_read_widely():
    """Python's \\d matches "٣" and its \\s "\u3000": the complements leave them out."""
    assert not as_python(strings_not_matching("^\\d$")).fullmatch("\u0663")
    assert not as_python(strings_not_matching("\\s")).fullmatch("a\u3000b")


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)b", "[^\\d]", "[^\\s]", "[]a]", "[^]a]", "a^b", "\\p{L}"])
def test_what_the_automaton_cannot_read_has_no_complement(pattern):
    assert automaton(pattern) is None and strings_not_matching(pattern) is None


def test_a_pattern_matching_every_string_has_an_empty_complement():
    assert strings_not_matching("") == "" and strings_not_matching("a?") == ""


def test_a_complement_too_long_to_write_is_refused():
    assert strings_not_matching("a.{40}b|c.{40}d|e.{40}f") is None


@pytest.mark.parametrize("pattern, expected", [
    ("^[a-z0-9_]+$", True), ("^[A-Za-z_][A-Za-z0-9_]*$", True), ("^[a-z]+(-[a-z]+)*$", True),
    ("^\\.[^/]+$", True),
    ("^[0-9]+x$", False),  # after "1x" nothing may follow
    ("^(any|[0-9]+)$", False), ("^[a-z]{2,5}$", False), ("^a$", False),
    ("^\\d+$", False),  # class escapes: not read here
    ("[a-z]+", False),  # unanchored: not read here
])
def test_endless_patterns_can_always_go_on(pattern, expected):
    assert endless(pattern) is expected


@pytest.mark.parametrize("pattern", ["^(?!@@)[@a-zA-Z0-9_-]+$", "^(?!tag|category)$", "^(?=ab)a",
                                     "^(?!(False|None|True|and))[a-z]+$", "^(?!x)", "^(?=[^=]+$)(?![ ]+$).+$"])
def test_a_pattern_without_its_lookaheads_matches_the_same_strings(pattern):
    regex = without_lookaheads(pattern)
    python = re.sub(r"\\x\{([0-9a-f]+)\}", lambda m: f"\\x{int(m.group(1), 16):02x}", regex)[:-1] + "\\Z"  # $: the end
    for text in ["", "@@x", "@x", "abc", "tag", "x", "ab", "None", "and", "andy", "a\n", "@@", "a=b", "  ", "y\n\n"]:
        assert bool(re.search(pattern, text)) is bool(re.search(python, text)), (pattern, text, regex)
    assert without_lookaheads("^(?!\\d)\\w+$") is None  # a class escape: the automaton would not be exact
