"""`constrained check`: whether a schema will be accepted, what is enforced, how fast it compiles, what
outputs look like, and whether example instances are accepted or rejected as they should be."""

from constrained.check.report import CheckReport
from constrained.check.runner import run_check
from constrained.check.sources import Source, load_instances, load_source

__all__ = ["CheckReport", "Source", "load_instances", "load_source", "run_check"]
