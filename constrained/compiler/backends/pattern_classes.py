"""Patterns as llguidance must read them for the guarantee, which `jsonschema` checks with Python's `re`.

llguidance reads `\\d` and `\\w` as ASCII classes (as ECMA-262 does); Python's are Unicode. A `pattern` must
admit only strings both readings match: plain `\\d` and `\\w` already do, but `\\D`, `\\W` and negated classes
holding `\\d` or `\\w` admit "٣" or "é", which Python reads as a digit or a word character. Those become the
classes both readings share (`\\W` and `[^\\w]` narrowed to ASCII). A `patternProperties` name decides which
schema applies to a key, so it must read exactly as Python does: its four escapes become Python's classes.

llguidance (1.9.1) lets a JSON string's `\\"` and `\\\\` through any class that holds U+0000, so `[^"]` and
`[^\\\\]` admitted the very characters they exclude. Every negated class here also excludes U+0000, which a
string cannot hold here anyway (JSON_OPTIONS allows no `\\u` escape), so nothing else changes.
"""

from __future__ import annotations

import re
from functools import cache

from constrained.compiler.schema_walk import map_document

Spans = list[tuple[int, int]]


def _python_spans(escape: str, characters: str) -> Spans:
    """The `characters` Python's `re` matches with `escape`, as (first, last) code point spans."""
    return [(ord(m.group()[0]), ord(m.group()[-1])) for m in re.finditer(escape + "+", characters)]


def _complement(spans: Spans) -> Spans:
    """Every character outside `spans`, surrogates left out."""
    gaps, start = [], 0
    for first, last in [*spans, (0xD800, 0xDFFF), (0x110000, 0x110000)]:
        if first > start:
            gaps.append((start, first - 1))
        start = max(start, last + 1)
    return sorted(gaps)


def _body(spans: Spans) -> str:
    """A class body in llguidance's regex syntax."""
    return "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" if hi > lo else f"\\x{{{lo:x}}}" for lo, hi in spans)


@cache
def replacement_tables() -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    """Replacement class bodies: (pattern outside a class, pattern in a class, pattern in a negated class,
    patternProperties name anywhere)."""
    characters = "".join(map(chr, [*range(0xD800), *range(0xE000, 0x110000)]))  # surrogates are no characters
    digits, word = _python_spans(r"\d", characters), _python_spans(r"\w", characters)
    ascii_digits, ascii_word = [(0x30, 0x39)], [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
    ascii_non_word = [(lo, min(hi, 0x7F)) for lo, hi in _complement(ascii_word) if lo < 0x80]
    shared = {"\\D": _body(_complement(digits)), "\\W": _body(ascii_non_word)}  # what both readings admit
    outside = {escape: f"[{body}]" for escape, body in shared.items()}
    negated = {"\\d": _body(digits), "\\w": _body(_complement(ascii_non_word)),  # Python's \d; all non-ASCII too
               "\\D": _body(_complement(ascii_digits)), "\\W": _body(_complement(ascii_word))}  # ECMA's: wider
    exact = {"\\d": _body(digits), "\\D": _body(_complement(digits)), "\\w": _body(word),
             "\\W": _body(_complement(word))}
    return outside, shared, negated, exact


def read_as_python(pattern: str, *, exact: bool) -> str:
    """`pattern` with its digit and word escapes replaced: `exact` for a patternProperties name, else for a
    `pattern` (only strings both readings match)."""
    outside, inside, negated_inside, exact_table = replacement_tables()
    out, i, in_class, negated = [], 0, False, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            piece = pattern[i:i + 2]
            if exact:
                body = exact_table.get(piece)
                out.append(piece if body is None else body if in_class else f"[{body}]")
            else:
                out.append((negated_inside if negated else inside).get(piece, piece) if in_class
                           else outside.get(piece, piece))
            i += 2
            continue
        if not in_class and char == "[":
            negated = pattern[i + 1:i + 2] == "^"
            opening = "[^" if negated else "["
            out.append(opening)
            i += len(opening)
            if pattern[i:i + 1] == "]":  # a "]" first is a literal
                out.append("\\]")
                i += 1
            if negated:
                out.append("\\x00")  # see the module docstring
            in_class = True
            continue
        if in_class and char == "]":
            in_class = negated = False
        out.append(char)
        i += 1
    return "".join(out)


def with_python_classes(schema: object) -> object:
    """`schema` with every `pattern` and `patternProperties` name read through `read_as_python`."""

    def rewrite(node: dict) -> dict:
        out = dict(node)
        if isinstance(node.get("pattern"), str):
            out["pattern"] = read_as_python(node["pattern"], exact=False)
        if isinstance(node.get("patternProperties"), dict):
            out["patternProperties"] = {read_as_python(name, exact=True): value
                                        for name, value in node["patternProperties"].items()}
        return out

    return map_document(schema, rewrite)
