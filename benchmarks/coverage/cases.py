"""The schemas and their test instances: JSONSchemaBench files and the official JSON-Schema-Test-Suite."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the repo
_SUITE_DRAFTS = {"draft2020-12": "https://json-schema.org/draft/2020-12/schema",
                 "draft7": "http://json-schema.org/draft-07/schema#"}


@dataclass(frozen=True)
class Case:
    """One schema with its labelled instances: (valid, data) pairs."""

    subset: str
    id: str
    schema: Any
    tests: tuple[tuple[bool, Any], ...]


def sample(cases: list[Case], limit: int | None, seed: int) -> list[Case]:
    """`limit` cases drawn with `random.Random(seed)`, or all of them (as tests/test_guarantee.py samples)."""
    if limit is None or limit >= len(cases):
        return cases
    return random.Random(seed).sample(cases, limit)


def load_jsonschemabench(path: Path) -> list[Case]:
    """Rows `{"id", "schema", "tests": [{"valid", "data"}]}`, split on "\\n" only (U+2028 occurs in strings)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [Case(path.stem, row["id"], row["schema"], tuple((t["valid"], t["data"]) for t in row["tests"]))
            for row in rows]


def load_test_suite(root: Path) -> dict[str, list[Case]]:
    """Each draft's groups, one subset per draft ("suite/draft7", "suite/draft7-optional", ...).

    A schema without `$schema` gets its draft's, since the suite assumes it (draft 7 `items` differ).
    """
    subsets: dict[str, list[Case]] = {}
    for draft, uri in _SUITE_DRAFTS.items():
        for path in sorted((root / draft).rglob("*.json")):
            relative = path.relative_to(root / draft)
            subset = f"suite/{draft}" + ("-optional" if relative.parts[0] == "optional" else "")
            for i, group in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                schema = group["schema"]
                if isinstance(schema, dict) and "$schema" not in schema:
                    schema = {"$schema": uri, **schema}
                tests = tuple((t["valid"], t["data"]) for t in group["tests"])
                subsets.setdefault(subset, []).append(Case(subset, f"{relative.with_suffix('')}/{i}", schema, tests))
    return subsets
