"""Warm-up schemas: compiled at start, so the first request using one finds it compiled."""

from __future__ import annotations

import logging
from pathlib import Path

from constrained.compiler.compiler import Compiler
from constrained.constraints import Constraint
from constrained.errors import ConstrainedError
from constrained.jsonl import json_lines

log = logging.getLogger(__name__)


def compile_warmup_schemas(compiler: Compiler, path: Path) -> int:
    """Compile every JSON Schema of a JSON Lines file (one schema per line) as a json_schema constraint.

    Returns how many compiled. A schema that cannot be enforced is logged and skipped (its failure is
    remembered like any other); a line that is not JSON raises ValueError naming the line.
    """
    compiled = 0
    for number, schema in json_lines(Path(path).read_text(encoding="utf-8"), str(path)):
        try:
            compiler.compile(Constraint.json_schema(schema))
        except ConstrainedError as exc:
            log.warning("warm-up schema %s:%d not compiled: %s", path, number, exc)
            continue
        compiled += 1
    return compiled
