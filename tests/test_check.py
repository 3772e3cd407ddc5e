"""`constrained check`: its verdict is the server's, every refusal is listed, samples and instances are
checked, and the CLI's exit codes and JSON report are what an author's CI relies on."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from api.cli import main
from constrained.check import Source, load_instances, load_source, run_check
from constrained.check.guide import readme_section, supported_keywords_markdown
from constrained.compiler.keywords import LLGUIDANCE
from constrained.compiler.schema_check import analyze_schema
from constrained.constraints import Constraint
from constrained.errors import InvalidCheckInput, InvalidConstraint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data" / "jsonschemabench"
MODEL = "tiny-qwen3"
REFUSED = {"type": "object", "title": "T", "properties": {
    "tags": {"type": "string", "$recursiveRef": "#"},
    "notes": {"type": "object", "$dynamicRef": "#meta"}}}


def check(source: str, tiny_model, compiler, finishing_bias, **kwargs):
    return run_check(load_source(source), tiny_model, compiler=compiler, logit_bias=finishing_bias,
                     **{"samples": 1, "max_tokens": 200, **kwargs})


def write(tmp_path: Path, name: str, value) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


@pytest.mark.parametrize("path", [  # one example in the fast tier, every one in the slow tier
    p if p == "nested_document/schema.json" else pytest.param(p, marks=pytest.mark.slow)
    for p in sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.json"))])
def test_every_example_schema_is_accepted_and_its_samples_validate(path, tiny_model, compiler, finishing_bias):
    report = check(str(EXAMPLES / path), tiny_model, compiler, finishing_bias, seed=1)
    assert report.accepted and report.exit_code == 0, report.render()
    assert report.compile_cold_ms is not None and report.compile_cached_ms < report.compile_cold_ms
    assert any(s.finish_reason == "stop" for s in report.samples), report.render()  # validated, not just cut
    assert all(s.valid is not False for s in report.samples)


def test_every_refusal_is_listed_with_path_and_hint_and_the_compiler_raises_the_first(
        tmp_path, tiny_model, compiler, finishing_bias):
    report = check(write(tmp_path, "s.json", REFUSED), tiny_model, compiler, finishing_bias)
    refusals = report.parts[0].refusals
    assert [(r.path, r.keyword) for r in refusals] == [
        ("/properties/tags", "$recursiveRef"), ("/properties/notes", "$dynamicRef")]
    assert all(r.hint for r in refusals)
    assert not report.accepted and report.exit_code == 1 and report.samples == []
    with pytest.raises(InvalidConstraint) as first:
        compiler.compile(Constraint.json_schema(REFUSED))
    assert str(first.value) == str(refusals[0])
    text = report.render()
    assert "/properties/tags" in text and "use $ref" in text and "REFUSED" in text


def test_keyword_uses_say_what_is_enforced_and_what_asserts_nothing():
    schema = {"type": "object", "title": "x", "x-ui": 1, "uniqueItems": False,
              "properties": {"n": {"type": "string", "format": "int32"}, "d": {"type": "string", "format": "date"}}}
    uses = {(u.path, u.keyword): u for u in analyze_schema(schema, LLGUIDANCE).uses}
    assert {k: u.status for k, u in uses.items()} == {
        ("", "type"): "enforced", ("", "title"): "ignored", ("", "x-ui"): "ignored", ("", "uniqueItems"): "ignored",
        ("", "properties"): "enforced", ("/properties/n", "type"): "enforced",
        ("/properties/n", "format"): "ignored", ("/properties/d", "type"): "enforced",
        ("/properties/d", "format"): "enforced"}
    assert analyze_schema({"type": "object", "required": "x"}, LLGUIDANCE).uses == []  # malformed: no walk


@pytest.mark.slow  # a sweep over JSONSchemaBench
@pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not beside the checkout")
async def test_verdict_agrees_with_the_server_on_jsonschemabench(tiny_model, compiler, openai_client):
    rows = [json.loads(line) for path in sorted(DATA.glob("*.jsonl"))
            for line in path.read_text().split("\n") if line.strip()]
    refused = next(row for row in rows if row["id"] == "Github_hard/o39210")  # a recursive oneOf's complement
    verdicts = []
    for row in [*random.Random(0).sample(rows, 20), refused]:
        report = run_check(Source.of_schema(row["schema"], row["id"]), tiny_model, compiler=compiler, samples=0)
        try:
            await openai_client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1,
                response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": row["schema"]}})
            served = True
        except openai.BadRequestError:
            served = False
        verdicts.append((row["id"], report.accepted, served))
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert {accepted for _, accepted, _ in verdicts} == {True, False}  # the sample exercises both verdicts


def test_pydantic_model_path_checks_what_parse_sends(tiny_model, compiler, finishing_bias, monkeypatch):
    monkeypatch.chdir(ROOT)
    report = check("examples.extraction.run:Contact", tiny_model, compiler, finishing_bias)
    assert report.kind == "pydantic" and report.accepted
    assert load_source("examples.extraction.run:Contact").parts[0].schema == \
        json.loads((EXAMPLES / "extraction" / "schema.json").read_text())
    with pytest.raises(InvalidCheckInput, match="cannot import"):
        load_source("examples.extraction.run:Nope")


def test_tool_file_checks_each_tool(tmp_path, tiny_model, compiler, finishing_bias):
    report = check(str(EXAMPLES / "tool_calling" / "tools.json"), tiny_model, compiler, finishing_bias, seed=2)
    assert [(p.name, p.pointer) for p in report.parts] == [
        ("get_weather", "/tools/0/parameters"), ("convert_currency", "/tools/1/parameters")]
    assert report.accepted and report.samples[0].finish_reason == "stop" and report.samples[0].valid
    tools = json.loads((EXAMPLES / "tool_calling" / "tools.json").read_text())
    tools[1]["function"]["parameters"]["properties"]["amount"]["$dynamicRef"] = "#meta"
    one = {"type": "function", "function": {"name": "f"}}  # no parameters: no arguments
    bad = check(write(tmp_path, "tools.json", tools), tiny_model, compiler, finishing_bias, samples=0)
    assert [p.refusals == [] for p in bad.parts] == [True, False] and bad.exit_code == 1
    assert check(write(tmp_path, "one.json", one), tiny_model, compiler, finishing_bias, samples=0).accepted


def test_tool_file_with_nested_models_agrees_with_the_server(tmp_path, tiny_model, compiler, finishing_bias):
    """Tools whose parameters use $defs, one recursive, two with a "Leaf" of their own: accepted, and the
    sample's call validates, as the server compiles and enforces them."""
    leaf = {"type": "object", "properties": {"v": {"type": "integer"}}, "required": ["v"],
            "additionalProperties": False}
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}, "maxItems": 2}},
            "required": ["kids"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": parameters}} for i, parameters in
             enumerate([{"$defs": {"Leaf": leaf}, "type": "object", "properties": {"a": {"$ref": "#/$defs/Leaf"}},
                         "required": ["a"], "additionalProperties": False},
                        {"$defs": {"Leaf": {**leaf, "properties": {"v": {"type": "string", "maxLength": 3}}}},
                         "type": "object", "properties": {"b": {"$ref": "#/$defs/Leaf"}}, "required": ["b"],
                         "additionalProperties": False},
                        tree])]
    report = check(write(tmp_path, "tools.json", tools), tiny_model, compiler, finishing_bias, seed=1)
    assert report.accepted and all(p.refusals == [] for p in report.parts)
    assert report.samples[0].finish_reason != "stop" or report.samples[0].valid


def test_instances_valid_accepted_invalid_rejected(tmp_path, tiny_model, compiler, finishing_bias):
    lines = [{"valid": True, "data": {"label": "bug", "confidence": 0.5}},
             {"valid": False, "data": {"label": "bug", "confidence": 1.5}},
             {"valid": False, "data": {"label": "other", "confidence": 0.5}},
             {"valid": True, "data": {"label": "praise", "confidence": 2}}]  # mislabelled: must fail the check
    path = write(tmp_path, "cases.jsonl", "\n".join(map(json.dumps, lines)) + "\n")
    report = check(str(EXAMPLES / "classification" / "schema.json"), tiny_model, compiler, finishing_bias,
                   samples=0, instances=load_instances(path))
    assert [(i.line, i.accepted, i.ok) for i in report.instances] == [
        (1, True, True), (2, False, True), (3, False, True), (4, False, False)]
    assert report.accepted and report.exit_code == 1
    assert "line 4: valid instance rejected" in report.render()
    with pytest.raises(InvalidCheckInput, match="cases.jsonl:1"):
        load_instances(write(tmp_path, "cases.jsonl", '{"data": 1}'))


@pytest.mark.slow  # run_check in-process stays fast (the tests above)
def test_cli_exit_codes_and_json_report(tmp_path, capsys):
    good, bad = str(EXAMPLES / "classification" / "schema.json"), write(tmp_path, "bad.json", REFUSED)
    common = ["--model", MODEL, "--device", "cpu", "--samples", "0"]
    assert main(["check", good, *common]) == 0
    assert "Verdict: ACCEPTED (exit 0)" in capsys.readouterr().out
    assert main(["check", bad, *common, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["accepted"], report["exit_code"], report["backend"]) == (False, 1, "llguidance")
    assert [r["keyword"] for r in report["schemas"][0]["refusals"]] == ["$recursiveRef", "$dynamicRef"]
    assert set(report) == {"source", "kind", "model", "backend", "accepted", "exit_code", "schemas", "compile",
                           "samples", "instances"}
    assert main(["check", str(tmp_path / "missing.json"), *common]) == 2
    assert "neither a file nor a pydantic model" in capsys.readouterr().err


@pytest.mark.slow  # a live `python -m api check` process; test_cli_exit_codes_and_json_report runs it in-process
def test_python_m_api_check_runs_as_a_process():
    done = subprocess.run([sys.executable, "-m", "api", "check", str(EXAMPLES / "streaming" / "schema.json"),
                           "--model", MODEL, "--device", "cpu", "--samples", "1", "--max-tokens", "8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Compile:" in done.stdout and "1. cut by max_tokens" in done.stdout


def test_readme_keyword_section_is_generated_from_the_tables():
    assert readme_section() == supported_keywords_markdown(), \
        "README.md's supported-keywords section is stale: run `python -m constrained.check --readme`"
