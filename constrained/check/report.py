"""The result of `constrained check`, as data (`to_json`) and as text for a terminal (`render`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from constrained.compiler.schema_check import KeywordUse
from constrained.errors import InvalidConstraint


@dataclass(frozen=True)
class PartReport:
    """The keywords of one schema of the source (the schema, or one tool's parameters)."""

    name: str
    pointer: str
    uses: list[KeywordUse]
    refusals: list[InvalidConstraint]


@dataclass(frozen=True)
class Sample:
    text: str
    finish_reason: str  # "stop": complete, validated; "length": cut by max_tokens, not validated
    errors: list[str]  # why a complete sample does not validate (a bug of constrained: reported, exit 1)

    @property
    def valid(self) -> bool | None:
        return None if self.finish_reason != "stop" else not self.errors


@dataclass(frozen=True)
class InstanceCheck:
    line: int
    valid: bool  # the file says the schema must accept it
    accepted: bool  # the compiled grammar accepts its serialisation

    @property
    def ok(self) -> bool:
        return self.valid == self.accepted


@dataclass
class CheckReport:
    source: str
    kind: str  # "schema", "pydantic" or "tools"
    model: str
    backend: str
    parts: list[PartReport]
    compile_error: str | None = None  # the backend refused or failed to compile what validation accepted
    compile_cold_ms: float | None = None
    compile_cached_ms: float | None = None
    max_tokens: int = 0
    samples: list[Sample] = field(default_factory=list)
    instances: list[InstanceCheck] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """What the server does with it: compile it (True) or answer 400 (False)."""
        return self.compile_error is None and not any(p.refusals for p in self.parts)

    @property
    def exit_code(self) -> int:
        """0: accepted, every instance as expected, every complete sample valid; 1 otherwise."""
        failed = [i for i in self.instances if not i.ok] + [s for s in self.samples if s.valid is False]
        return 0 if self.accepted and not failed else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "kind": self.kind, "model": self.model, "backend": self.backend,
            "accepted": self.accepted, "exit_code": self.exit_code,
            "schemas": [{"name": p.name, "pointer": p.pointer, "keywords": [asdict(u) for u in p.uses],
                         "refusals": [_refusal_json(r) for r in p.refusals]} for p in self.parts],
            "compile": {"error": self.compile_error, "cold_ms": self.compile_cold_ms,
                        "cached_ms": self.compile_cached_ms},
            "samples": [{**asdict(s), "valid": s.valid} for s in self.samples],
            "instances": [{**asdict(i), "ok": i.ok} for i in self.instances],
        }

    def render(self) -> str:
        lines = [f"constrained check {self.source} ({self.kind}; model {self.model}, backend {self.backend})"]
        for part in self.parts:
            lines += _render_part(part, self.kind == "tools")
        lines.append("")
        if self.compile_error is not None:
            lines.append(f"Compile: refused by the backend: {self.compile_error}")
        elif self.compile_cold_ms is not None:
            lines.append(f"Compile: {self.compile_cold_ms:.1f} ms cold, {self.compile_cached_ms:.3f} ms cached "
                         f"(backend {self.backend})")
        if self.samples:
            lines += ["", f"Samples ({len(self.samples)}, max_tokens {self.max_tokens}):"]
            lines += [f"  {i}. {_sample_status(s)}  {s.text}" for i, s in enumerate(self.samples, start=1)]
        if self.instances:
            bad = [i for i in self.instances if not i.ok]
            lines += ["", f"Instances: {len(self.instances) - len(bad)} of {len(self.instances)} as expected"]
            lines += [f"  line {i.line}: {'valid' if i.valid else 'invalid'} instance "
                      f"{'accepted' if i.accepted else 'rejected'}" for i in bad]
            if any(i.valid for i in bad):
                lines.append("  (the grammar emits properties in schema order and numbers as the type says:"
                             " a valid instance in another order, or 1.0 for an integer, is rejected)")
        failed = sum(not i.ok for i in self.instances) + sum(s.valid is False for s in self.samples)
        verdict = "REFUSED: the server answers 400" if not self.accepted else \
            f"ACCEPTED, but {failed} check(s) above failed" if failed else "ACCEPTED"
        lines += ["", f"Verdict: {verdict} (exit {self.exit_code})"]
        return "\n".join(lines)


def _render_part(part: PartReport, tool: bool) -> list[str]:
    title = f"tool {part.name!r} ({part.pointer})" if tool else "Schema"
    counts = {status: sum(u.status == status for u in part.uses) for status in ("enforced", "refused", "ignored")}
    lines = ["", f"{title}: " + ", ".join(f"{n} {status}" for status, n in counts.items())
             + " keyword uses" * bool(part.uses)]
    width = max([len(u.path or "/") for u in part.uses] + [1])
    key_width = max([len(u.keyword) for u in part.uses] + [1])
    for use in part.uses:
        note = use.note + (f" -> {use.hint}" if use.hint else "")
        lines.append(f"  {use.path or '/':<{width}}  {use.keyword:<{key_width}}  {use.status:<8}  {note}".rstrip())
    if part.refusals:
        lines.append(f"Refused ({len(part.refusals)}):")
        lines += [f"  - {refusal}" for refusal in part.refusals]
    return lines


def _sample_status(sample: Sample) -> str:
    if sample.valid is None:
        return "cut by max_tokens"
    return "valid" if sample.valid else f"INVALID ({'; '.join(sample.errors)})"


def _refusal_json(refusal: InvalidConstraint) -> dict[str, Any]:
    return {"path": refusal.path, "keyword": refusal.keyword, "message": str(refusal), "hint": refusal.hint}
