"""`patternProperties` whose patterns overlap, as disjoint ones (llguidance refuses overlapping patterns).

A name matching several patterns must satisfy each of their schemas. So the patterns that overlap become one
pattern per set of them a name can match together: `a*` and `aaa*` become "matches both" (schema: allOf of the
two) and "`a*` alone". Built from the patterns' automata (pattern_automata.py) where they read exactly what
Python's `re` reads (no `\\d`, `\\w` or `\\s`, which the automata widen): a widened one could put a name no
pattern matches under a pattern's schema, where `additionalProperties` applies.
"""

from __future__ import annotations

from itertools import combinations

import llguidance

from constrained.compiler.pattern_automata import may_overlap, strings_matching_only

_MAX_OVERLAPPING = 4  # patterns split into the sets of them a name matches: 2**4 - 1 at most


def with_disjoint_patterns(node: dict) -> dict | None:
    """`node` with its overlapping patternProperties made disjoint; None when they cannot be (a pattern the
    automata cannot read exactly, or too many overlapping)."""
    patterns = node.get("patternProperties")
    if not isinstance(patterns, dict) or len(patterns) < 2 or _llguidance_takes(patterns):
        return node
    overlapping = [name for name in patterns if any(other != name and may_overlap(name, other) for other in patterns)]
    if not overlapping:
        return node
    if len(overlapping) > _MAX_OVERLAPPING:
        return None
    split = {name: schema for name, schema in patterns.items() if name not in overlapping}
    for size in range(len(overlapping), 0, -1):
        for together in combinations(overlapping, size):
            regex = strings_matching_only(list(together), [name for name in overlapping if name not in together])
            if regex is None:
                return None
            if regex:
                schemas = [patterns[name] for name in together]
                split[regex] = schemas[0] if size == 1 else {"allOf": schemas}
    return {**node, "patternProperties": split}


def _llguidance_takes(patterns: dict) -> bool:
    """Whether llguidance finds the patterns disjoint itself (in well under a millisecond; their automata here take
    up to a second to build)."""
    grammar = llguidance.LLMatcher.grammar_from_json_schema({"type": "object",
                                                              "patternProperties": {name: {} for name in patterns}})
    failed, _ = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    return not failed
