"""The README's table of supported schema keywords, rendered from the keyword tables `check` uses.

The README holds the rendered text between two marker comments; `python -m constrained.check --readme`
rewrites it there, and a test fails when the two differ, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from constrained.compiler.compiler import AUTO
from constrained.compiler.keywords import ANNOTATIONS, ASSERTIONS, TABLES
from constrained.compiler.schema_check import LIMITS, refusal_hint

BEGIN = "<!-- schema-support:begin (generated: python -m constrained.check --readme) -->"
END = "<!-- schema-support:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"

_LIMITS = {
    "max_schema_chars": "characters of the serialized schema",
    "max_depth": "subschemas nested inside each other",
    "max_properties": "properties over the whole schema",
    "max_optional_properties": "optional properties in one object",
    "max_enum_values": "enum and const values over the whole schema",
    "max_value_chars": "characters of property names and enum/const strings",
    "max_regex_chars": "characters of a regex constraint",
    "max_grammar_chars": "characters of a grammar constraint (Lark or GBNF)",
}


def supported_keywords_markdown() -> str:
    """Keywords and formats per backend, what is ignored, and the size limits, as markdown."""
    default = TABLES[AUTO["json_schema"]]
    tables = [default, *(t for t in TABLES.values() if t is not default)]
    columns = " | ".join(f"`{t.backend}`" + " (default)" * (t is default) for t in tables)
    rule = "|" + " --- |" * (len(tables) + 2)
    first = [k for t in tables for k in t.keywords]
    keywords = sorted(ASSERTIONS, key=lambda k: (k not in first, first.index(k) if k in first else 0, k))
    rows = [f"| `{k}` | " + " | ".join(_cell(t.keywords.get(k)) for t in tables)
            + f" | {'' if k in default.keywords else refusal_hint(k, default)} |" for k in keywords]
    formats = sorted({f for t in tables for f in t.formats})
    format_rows = [f"| `{f}` | " + " | ".join(_cell(t.formats.get(f)) for t in tables) + " |" for f in formats]
    limits = [f"- {_LIMITS[f.name]}: at most {getattr(LIMITS, f.name):,}" for f in fields(LIMITS)]
    return "\n".join([
        "Assertion keywords, any draft from 4 to 2020-12 (`$schema` picks it; 2020-12 by default):", "",
        f"| keyword | {columns} | when refused, rewrite it |", rule, *rows, "",
        "`format` values. Another format a validator checks in some draft (e.g. `iri`, `json-pointer`, `regex`) is refused: "
        "give a `pattern` instead. A format it does not know (e.g. `int32`) is an annotation and is dropped.", "",
        f"| format | {columns} |", rule.removesuffix(" --- |"), *format_rows, "",
        "Accepted and ignored (they assert nothing): " + ", ".join(f"`{k}`" for k in sorted(ANNOTATIONS))
        + ", keywords no draft defines (`x-...` extensions included), and no-op values such as "
          "`\"uniqueItems\": false`.", "",
        "Size limits (OpenAI's, doubled or more):", "", *limits,
    ])


def update_readme(path: Path = README) -> bool:
    """Rewrite the generated section of `path` in place; True when it changed."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {BEGIN} ... {END} section")
    updated = pattern.sub(lambda _: f"{BEGIN}\n{supported_keywords_markdown()}\n{END}", text)
    path.write_text(updated, encoding="utf-8")
    return updated != text


def readme_section(path: Path = README) -> str:
    """What `path` holds between the markers now."""
    text = path.read_text(encoding="utf-8")
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n")


def _cell(how: str | None) -> str:
    """A table cell: "yes", "yes: <how>", or "refused" when the backend does not enforce it."""
    return "refused" if how is None else "yes" + (f": {how}" if how else "")
