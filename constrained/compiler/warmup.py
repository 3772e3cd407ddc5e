"""Warm-up schemas: compiled at start, so the first request using one finds it compiled."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from constrained.compiler.compiler import Compiler
from constrained.constraints import Constraint
from constrained.errors import ConstrainedError

log = logging.getLogger(__name__)


def compile_warmup_schemas(compiler: Compiler, path: Path) -> int:
    """Compile every JSON Schema of a JSON Lines file (one schema per line) as a json_schema constraint.

    Returns how many compiled. A schema that cannot be enforced is logged and skipped (its failure is
    remembered like any other); a line that is not JSON raises ValueError naming the line.
    """
    compiled = 0
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            schema = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        try:
            compiler.compile(Constraint.json_schema(schema))
        except ConstrainedError as exc:
            log.warning("warm-up schema %s:%d not compiled: %s", path, number, exc)
            continue
        compiled += 1
    return compiled
