"""Strings llguidance cannot write under its one-spelling escapes, refused with their path.

Our llguidance options allow only the escapes \\" \\\\ \\b \\f \\n \\r \\t (see llguidance_backend). A literal
that holds any other control character has no spelling there, and llguidance then drops the character: a
`const` of "a\\u0000b" accepted "ab". Such schemas are refused (real schemas almost never hold one). A pattern
may name them inside a negated class (`[^\\x00-\\x1f]`): that only keeps out characters never written anyway.
"""

from __future__ import annotations

import json
import re
from typing import Any

from constrained.compiler.schema_walk import reachable
from constrained.errors import InvalidConstraint

# a control character json.dumps writes as \u00XX (it writes \b \f \n \r \t short), or a regex escape for one
_UNSPELLABLE = re.compile(r"\\u00(?:0[0-7bef]|1[0-9a-f])|\\\\(?:x[01][0-9a-fA-F]|x\{|u00[01][0-9a-fA-F]|u\{|c[A-Za-z]|0)")
_NEGATED_CLASS = re.compile(r"\[\^(?:\\.|[^\]\\])*\]")
_LITERALS = ("const", "enum", "pattern", "properties", "patternProperties", "required", "dependentRequired",
             "dependencies")


def check_spellable(schema: Any) -> None:
    """InvalidConstraint at the first keyword whose strings (or names) need an escape llguidance cannot write."""

    for pointer, _, node in reachable(schema):
        for keyword in _LITERALS:
            if keyword in node and _UNSPELLABLE.search(json.dumps(_strings(node[keyword], keyword))):
                raise InvalidConstraint("a control character other than \\b \\f \\n \\r \\t is not enforced",
                                        path=pointer, keyword=keyword, hint="leave control characters out")


def _strings(value: Any, keyword: str) -> Any:
    """What the keyword spells: for a map of subschemas, its names only (the subschemas are checked on their own);
    a pattern without its negated classes."""
    if keyword in ("properties", "patternProperties") and isinstance(value, dict):
        value = list(value)
    if keyword == "pattern" and isinstance(value, str):
        return _NEGATED_CLASS.sub("", value)
    if keyword == "patternProperties":
        return [_NEGATED_CLASS.sub("", name) for name in value]
    return value
