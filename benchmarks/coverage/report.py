"""Figures per subset and overall, as markdown tables (for RESULTS.md) and one JSON object."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np

SUITE_PREFIX = "suite/"


def group_of(subset: str) -> str:
    """Which overall a subset counts in: JSONSchemaBench and the official test suite are kept apart."""
    return "suite overall" if subset.startswith(SUITE_PREFIX) else "overall"


def _percentiles(values: list[float], points: Iterable[int]) -> dict[str, float] | None:
    if not values:
        return None
    return {f"p{p}": round(float(np.percentile(values, p)), 4) for p in points} | {"max": round(max(values), 4)}


def summarise(rows: list[dict]) -> dict:
    """The figures of one backend on a set of schemas."""
    compiled = [r for r in rows if r["status"] == "compiled"]
    total = lambda key: sum(r.get(key, 0) for r in compiled)  # noqa: E731
    valid, invalid = total("valid"), total("invalid")
    cached = [r["cached_s"] * 1e3 for r in compiled if r.get("cached_s") is not None]
    return {
        "schemas": len(rows),
        "compiled": len(compiled),
        "coverage": round(len(compiled) / len(rows), 4) if rows else None,
        "refused": sum(r["status"] == "refused" for r in rows),
        "timeouts": sum(r["status"] == "timeout" for r in rows),
        "errors": sum(r["status"] == "error" for r in rows),
        "passing": sum(r.get("valid_rejected", 0) == r.get("invalid_accepted", 0) == 0 for r in compiled),
        "valid": valid, "validation_errors": total("valid_rejected"),
        "validation_error_rate": round(total("valid_rejected") / valid, 4) if valid else None,
        "validation_errors_as_written": total("valid_rejected") + total("valid_reordered"),
        "invalid": invalid, "invalidation_errors": total("invalid_accepted"),
        "compile_ms": _percentiles([r["compile_s"] * 1e3 for r in compiled], (50, 90, 99)),
        "cached_compile_ms": _percentiles(cached, (50, 99)),
        "mask_us": _percentiles([t * 1e6 for r in compiled for t in r["mask_s"]], (50, 99)),
    }


def figures(rows: list[dict], backends: list[str]) -> dict:
    """{backend: {"subsets": {subset: figures}, "overall": ..., "refusals": {reason: count}}}."""
    out = {}
    for backend in backends:
        mine = [r for r in rows if r["backend"] == backend]
        subsets = sorted({r["subset"] for r in mine})
        entry = {group: summarise([r for r in mine if group_of(r["subset"]) == group])
                 for group in sorted({group_of(s) for s in subsets})}
        entry["subsets"] = {s: summarise([r for r in mine if r["subset"] == s]) for s in subsets}
        entry["refusals"] = dict(Counter(r["reason"] for r in mine if r["status"] != "compiled").most_common())
        out[backend] = entry
    return out


def _cell(stats: dict, key: str, points: tuple[str, ...], scale: str) -> str:
    values = stats[key]
    return "–" if values is None else " / ".join(f"{values[p]:{scale}}" for p in points)


def markdown(results: dict) -> str:
    """One table (rows: subset x backend, overall first) and the top refusal reasons of each backend."""
    lines = ["| subset | backend | schemas | compiled (coverage) | passing | timeouts | validation errors "
             "| invalidation errors | compile ms p50 / p90 / p99 / max | mask µs p50 / p99 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    # validation errors: in any key order (key_order.py); in brackets, in each instance's own key order
    first = next(iter(results.values()))
    groups = [g for g in ("overall", "suite overall") if g in first]
    for subset in groups + list(first["subsets"]):
        for backend, entry in results.items():
            s = entry[subset] if subset in groups else entry["subsets"].get(subset)
            if s is None:
                continue
            rate = f" ({s['validation_error_rate']:.1%})" if s["validation_error_rate"] is not None else ""
            lines.append(
                f"| {'**' + subset + '**' if subset in groups else subset} | {backend} | {s['schemas']} "
                f"| {s['compiled']} ({s['coverage']:.1%}) | {s['passing']} | {s['timeouts']} "
                f"| {s['validation_errors']} of {s['valid']}{rate} [{s['validation_errors_as_written']}] "
                f"| {s['invalidation_errors']} of {s['invalid']} "
                f"| {_cell(s, 'compile_ms', ('p50', 'p90', 'p99', 'max'), '.1f')} "
                f"| {_cell(s, 'mask_us', ('p50', 'p99'), '.0f')} |")
    for backend, entry in results.items():
        lines += ["", f"Refusals of {backend} (top 15 of {sum(entry['refusals'].values())}):", ""]
        lines += [f"- {count} × {reason}" for reason, count in list(entry["refusals"].items())[:15]]
    return "\n".join(lines)
