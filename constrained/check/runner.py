"""Build a `CheckReport`: analyse every keyword, compile as the server would, sample, walk instances.

The verdict comes from the same code the server runs: `analyze_schema` with the chosen backend's keyword
table (the compiler raises its first refusal), then `Compiler.compile`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence

from constrained.check.report import CheckReport, InstanceCheck, PartReport, Sample
from constrained.check.sources import Instance, Source
from constrained.compiler import Compiler, Grammar
from constrained.compiler.backends import BACKENDS
from constrained.compiler.backends.llguidance_backend import JSON_OPTIONS
from constrained.compiler.compiler import backend_name
from constrained.compiler.schema_check import analyze_schema
from constrained.constraints import Constraint
from constrained.engine.engine import Engine, Submission
from constrained.engine.params import SamplingParams
from constrained.errors import ConstrainedError, InvalidCheckInput
from constrained.models import LoadedModel
from constrained.testing import run_until_idle, validation_errors
from constrained.tool_calls import parse_tool_calls

# The serialisation of an instance: the separators the llguidance grammar emits (json.dumps' defaults too).
SEPARATORS = (JSON_OPTIONS["item_separator"], JSON_OPTIONS["key_separator"])
_PROMPT_SCHEMA_CHARS = 6000  # a longer schema is left out of the sampling prompt (the grammar still holds)


def run_check(source: Source, loaded: LoadedModel, *, compiler: Compiler | None = None, backend: str = "auto",
              samples: int = 3, max_tokens: int = 256, instances: Sequence[Instance] = (),
              logit_bias: dict[int, float] | None = None, seed: int = 0) -> CheckReport:
    """The report on `source` for `loaded`'s tokenizer; `logit_bias` is passed to sampling (tests make
    random weights finish with `constrained.testing.json_finishing_bias`)."""
    if instances and source.kind == "tools":
        raise InvalidCheckInput("instances check one schema, not a tool file")
    if source.spec is not None and not all(isinstance(i.data, str) for i in instances):
        raise InvalidCheckInput(f"instances of a {source.kind} are strings: the output text itself")
    constraint = source.constraint(backend)
    name = backend_name(constraint)
    if name not in BACKENDS:
        raise InvalidCheckInput(f"unknown backend {name!r}: one of auto, {', '.join(BACKENDS)}")
    table = BACKENDS[name].table
    parts = []
    for part in source.parts:
        analysis = analyze_schema(part.schema, table)
        parts.append(PartReport(part.name, part.pointer, analysis.uses, analysis.refusals))
    report = CheckReport(source.origin, source.kind, loaded.name, name, parts, max_tokens=max_tokens)
    if not report.accepted:
        return report
    compiler = compiler or Compiler(loaded.tokenizer, vocab_rows=loaded.vocab_rows, eos_token_ids=loaded.eos_token_ids)
    try:
        grammar, report.compile_cold_ms, report.compile_cached_ms = _compile_timed(compiler, constraint)
    except ConstrainedError as exc:
        report.compile_error = str(exc)
        return report
    if samples:
        report.samples = _samples(source, loaded, grammar, samples, SamplingParams(
            max_tokens=max_tokens, n=samples, seed=seed, logit_bias=dict(logit_bias or {})))
    report.instances = [InstanceCheck(i.line, i.valid, _accepts(grammar, loaded, i.data, raw=source.spec is not None))
                        for i in instances]
    return report


def _compile_timed(compiler: Compiler, constraint: Constraint) -> tuple[Grammar, float, float]:
    """(grammar, cold ms, cached ms). The backend is built first (once per tokenizer, ~1 s, which a server
    pays at start-up), so "cold" is what a new schema costs a running server."""
    compiler.compile(Constraint.regex("x", backend=constraint.backend))
    start = time.perf_counter()
    grammar = compiler.compile(constraint)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    compiler.compile(constraint)
    return grammar, cold * 1e3, (time.perf_counter() - start) * 1e3


def _samples(source: Source, loaded: LoadedModel, grammar: Grammar, n: int, params: SamplingParams) -> list[Sample]:
    submission = Submission(_prompt(source, loaded), params, grammar, "sample")
    results = run_until_idle(Engine(loaded, max_batch_size=n), [submission])
    choices = [results[("sample", index)] for index in range(n)]
    return [Sample(c["text"], c["finish"].value, _errors(source, c["text"]) if c["finish"].value == "stop" else [])
            for c in choices]


def _prompt(source: Source, loaded: LoadedModel) -> list[int]:
    if source.kind == "tools":
        messages = [{"role": "user", "content": "Call one of the tools with realistic arguments."}]
    elif source.spec is not None:
        value = "\n".join(source.spec.value) if source.kind == "choice" else source.spec.value
        messages = [{"role": "user", "content": f"Write one output matching this {source.kind}:\n{value}"}]
    else:
        schema = json.dumps(source.parts[0].schema, ensure_ascii=False)
        shown = f":\n{schema}" if len(schema) <= _PROMPT_SCHEMA_CHARS else "."
        messages = [{"role": "user", "content": f"Write one realistic JSON example of this JSON Schema{shown}"}]
    text = loaded.tokenizer.apply_chat_template(messages, tools=list(source.tools) or None,
                                                add_generation_prompt=True, tokenize=False)
    return loaded.tokenizer.encode(text, add_special_tokens=False)


def _errors(source: Source, text: str) -> list[str]:
    """Why a complete output is not what the source asks for (jsonschema, formats checked)."""
    if source.spec is not None:
        return _spec_errors(source.spec, text)
    if source.kind != "tools":
        return validation_errors(source.parts[0].schema, text)
    _, calls = parse_tool_calls(text)
    schemas = {part.name: part.schema for part in source.parts}
    if not calls:
        return ["no tool call"]
    return [f"{call.name}: {error}" for call in calls for error in validation_errors(schemas[call.name], call.arguments)]


def _spec_errors(spec: Constraint, text: str) -> list[str]:
    """Why an output is not one of a choice's strings or a full match of a regex (Python's `re`, when it reads
    the pattern: the dialects differ at the edges). A grammar has no checker but the matcher that made it."""
    if spec.kind == "choice":
        return [] if text in spec.value else [f"not one of the {len(spec.value)} choices"]
    if spec.kind == "regex":
        try:
            return [] if re.fullmatch(spec.value, text) else ["does not match the regex"]
        except re.error:
            return []
    return []


def _accepts(grammar: Grammar, loaded: LoadedModel, data: object, *, raw: bool = False) -> bool:
    """Whether the grammar accepts `data` serialised as it would emit it (`raw`: the text itself), then the end
    of sequence."""
    text = data if raw else json.dumps(data, ensure_ascii=False, separators=SEPARATORS)
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    return grammar.matcher().validate_tokens([*ids, loaded.eos_token_ids[0]]) == len(ids) + 1
