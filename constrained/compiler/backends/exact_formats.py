"""Exact patterns for the date, time and hostname formats, replacing llguidance's own.

llguidance's `date-time`, `date` and `time` admit Feb 29 of any year, year 0000 and second 60; the
validator (RFC 3339, as jsonschema checks it) refuses those, and a random walk hit them in 14% of
date-times. These patterns are exact: leap years included, years 0001-9999, no leap second.
Its `hostname` has no overall length limit (the validator's is 253) and admits any label with "--" in
3rd and 4th position, which RFC 5891 reserves for A-labels (punycode) that must decode to valid IDNA:
ours refuses those labels (valid punycode names are rejected, an invalid one is never emitted).
`idn-hostname` is the same (narrower: ASCII labels only, which `idna` and jsonschema-rs take), and `idn-email`
is `email` (jsonschema checks both alike).
llguidance has no `json-pointer`, `relative-json-pointer` or `uri-template`: ours are what both validators
(jsonschema, jsonschema-rs) accept, narrowed where they disagree: a relative pointer's number has no "0"
before another digit (jsonschema refuses "201"), a template's variable names are spelled without
percent-escapes, and its operators are the RFC 6570 ones in use (not the reserved "=,!@|"). `uri-reference`,
`iri-reference` and `iri` are RFC 3986 in ASCII without IP-literal hosts (every URI is an IRI). A `regex` is
one that both validators compile, from a regular part of the language: groups nest at most three deep.
"""

from __future__ import annotations

from constrained.compiler.schema_walk import map_document

_YEAR = r"(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
              r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
              r"|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_DATE = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"

_ALNUM, _LDH = "[A-Za-z0-9]", "[A-Za-z0-9-]"
# 1 to 63 letters, digits and hyphens, no hyphen first or last, not "--" in 3rd and 4th position
_LABEL = rf"{_ALNUM}(?:{_ALNUM}|{_LDH}{_ALNUM}|{_LDH}{{2}}{_ALNUM}|{_LDH}(?:{_ALNUM}{_LDH}|-{_ALNUM}){_LDH}{{0,58}}{_ALNUM})?"

_POINTER = r"(?:/(?:[^~/]|~[01])*)*"
_VARCHAR = r"[A-Za-z0-9_]"
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\*)?"
_TEMPLATE_LITERAL = r"(?:[!#$&()*+,\-./0-9:;=?@A-Z\[\]_a-z~]|%[0-9A-Fa-f]{2})"

# RFC 3986 references in ASCII (so IRIs too), no IP-literal hosts; a relative path's first segment has no ":"
_UNRESERVED = r"\-A-Za-z0-9._~!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}:@]|{_PCT})"
_PATH = rf"(?:/{_PCHAR}*)*"
_AUTHORITY = rf"(?:(?:[{_UNRESERVED}:]|{_PCT})*@)?(?:[{_UNRESERVED}]|{_PCT})*(?::[0-9]*)?"
_HIER = rf"(?://{_AUTHORITY}{_PATH}|/(?:{_PCHAR}+{_PATH})?|{_PCHAR}+{_PATH}|)"
_RELATIVE = rf"(?://{_AUTHORITY}{_PATH}|/(?:{_PCHAR}+{_PATH})?|(?:[{_UNRESERVED}@]|{_PCT})+{_PATH}|)"
_QUERY_FRAGMENT = rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"
_REFERENCE = rf"^(?:{_SCHEME}:{_HIER}|{_RELATIVE}){_QUERY_FRAGMENT}$"

# Regular expressions both validators compile (Python's re for jsonschema, ECMA-262 for jsonschema-rs), groups
# nested at most three deep: literals, the escapes both read alike, classes with the ranges 0-9, 1-9, a-z, A-Z,
# a-f, A-F, "." and anchors, quantifiers (lazy too) whose bounds are in order.
_RX_LITERAL = r"[^\x00-\x1f\\^$.|?*+()\[\]{}]"
_RX_ESCAPE = r"\\[dDwWsSnrtfv\\^$.|?*+()\[\]{}/\-]"
_RX_CLASS = r"\[\^?(?:0-9|1-9|a-z|A-Z|a-f|A-F|[^\x00-\x1f\\\]\[^\-]|\\[dDwWsSnrtfvb\\\]\[^\-])+\]"
_RX_BOUNDS = "|".join([r"[0-9]{1,3},?", r"0,[0-9]{1,3}", r"1,[1-9][0-9]{0,2}", r"[0-9],[1-9][0-9]{1,2}",
                       r"[1-9][0-9],[1-9][0-9]{2}", *(f"{low},{high}" for low in range(10) for high in range(low, 10))])
_RX_QUANTIFIER = rf"(?:[*+?]|\{{(?:{_RX_BOUNDS})\}})\??"
_RX_ASSERTION = r"(?:\^|\$|\\[bB])"


def _regex_alternation(depth: int) -> str:
    """Alternatives of terms whose groups nest at most `depth` deep."""
    atom = rf"{_RX_LITERAL}|{_RX_ESCAPE}|{_RX_CLASS}|\."
    if depth:
        atom += rf"|\((?:\?:)?{_regex_alternation(depth - 1)}\)"
    sequence = rf"(?:(?:{atom})(?:{_RX_QUANTIFIER})?|{_RX_ASSERTION})*"
    return rf"{sequence}(?:\|{sequence})*"


REPLACEMENTS = {
    "date": {"pattern": f"^{_DATE}$"},
    "time": {"pattern": f"^{_TIME}$"},
    "date-time": {"pattern": f"^{_DATE}[Tt]{_TIME}$"},
    "hostname": {"pattern": rf"^{_LABEL}(?:\.{_LABEL})*$", "maxLength": 253},
    "idn-hostname": {"pattern": rf"^{_LABEL}(?:\.{_LABEL})*$", "maxLength": 253},
    "idn-email": {"format": "email"},
    "json-pointer": {"pattern": f"^{_POINTER}$"},
    "relative-json-pointer": {"pattern": f"^(?:0|[1-9]+0?)(?:#|{_POINTER})$"},
    "uri-reference": {"pattern": _REFERENCE},
    "iri-reference": {"pattern": _REFERENCE},
    "iri": {"pattern": rf"^{_SCHEME}:{_HIER}{_QUERY_FRAGMENT}$"},
    "regex": {"pattern": f"^{_regex_alternation(3)}$"},
    "uri-template": {"pattern": rf"^(?:{_TEMPLATE_LITERAL}|\{{[+#./;?&]?{_VARSPEC}(?:,{_VARSPEC})*\}})*$"},
}


def with_exact_formats(schema: object) -> object:
    """Return `schema` with each `format` of REPLACEMENTS turned into the equivalent exact keywords."""

    def rewrite(node: dict) -> dict:
        replacement = REPLACEMENTS.get(node.get("format"))
        if replacement is None:
            return node
        out = {key: value for key, value in node.items() if key != "format"}
        if out.keys() & replacement.keys():  # both must hold
            out["allOf"] = [*out.get("allOf", []), replacement]
        else:
            out.update(replacement)
        return out

    return map_document(schema, rewrite)
