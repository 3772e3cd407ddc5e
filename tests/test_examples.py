"""Every example of examples/ runs against the live test server (tiny-qwen3) and produces what it says.

Random weights: requests carry a seed and logit_bias toward JSON punctuation (finishing_bias), so the
outputs finish; what is asserted is what the example promises (it validates, the round trip answers).
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from constrained.testing import validation_errors

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL = "tiny-qwen3"


def load(name: str):
    """examples/<name>/run.py as a module."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "run.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # pydantic resolves names there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client(server_url):
    return openai.OpenAI(api_key="unused", base_url=f"{server_url}/v1", max_retries=0)


@pytest.fixture(scope="module")
def options(finishing_bias):
    return {"seed": 0, "logit_bias": finishing_bias}


def schema(name: str, file: str = "schema.json"):
    return json.loads((EXAMPLES / name / file).read_text())


def test_every_example_has_a_readme_and_a_runnable_script():
    folders = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    assert [p.name for p in folders] == ["classification", "extraction", "json_object", "nested_document",
                                         "plain_http", "streaming", "tool_calling"]
    for folder in folders:
        assert (folder / "README.md").read_text().strip(), folder
        assert "--base-url" in (folder / "run.py").read_text(), folder
    index = (EXAMPLES / "README.md").read_text()
    assert all(f"({p.name}/)" in index for p in folders)


def test_extraction_parses_into_the_model(client, options):
    example = load("extraction")
    contact = example.run(client, MODEL, **options)
    assert isinstance(contact, example.Contact)
    assert contact.topic in ("sales", "support", "billing", "other") and len(contact.name) <= 40
    # schema.json is exactly what `parse` sends for Contact: `constrained check` sees what the server sees
    assert schema("extraction") == openai.pydantic_function_tool(example.Contact)["function"]["parameters"]


def test_classification_labels_tickets(client, finishing_bias):
    """Random weights may run a confidence's digits past the example's max_tokens (None, by its
    contract): one seed per ticket, most must finish, and every finished label validates."""
    example = load("classification")
    labels = [label for seed, ticket in enumerate(example.TICKETS)
              for label in example.run(client, MODEL, [ticket], seed=seed, logit_bias=finishing_bias)]
    assert len(labels) == 3 and sum(label is not None for label in labels) >= 2, labels
    for label in filter(None, labels):
        assert validation_errors(schema("classification"), json.dumps(label)) == []


def test_nested_document_validates_and_renders_its_outline(client, options):
    example = load("nested_document")
    document = example.run(client, MODEL, **options)
    assert document is not None
    assert validation_errors(schema("nested_document"), json.dumps(document)) == []
    assert len(example.outline(document)) == 1 + count_sections(document["sections"])


def count_sections(sections: list[dict]) -> int:
    return sum(1 + count_sections(s.get("subsections", [])) for s in sections)


def test_tool_calling_round_trip_reaches_an_answer(client, options):
    trip = load("tool_calling").run(client, MODEL, **options)
    assert trip["calls"], "tool_choice 'required' must produce at least one call"
    parameters = {t["function"]["name"]: t["function"]["parameters"] for t in schema("tool_calling", "tools.json")}
    for name, arguments, result in trip["calls"]:
        assert validation_errors(parameters[name], json.dumps(arguments)) == []
        assert isinstance(result, dict)
    assert isinstance(trip["answer"], str) and trip["answer"]


def test_streaming_renders_deltas_as_they_arrive(client, options):
    out = io.StringIO()
    result = load("streaming").run(client, MODEL, out=out, **options)
    assert result["finish_reason"] == "stop" and result["chunks"] > 10
    assert out.getvalue() == result["text"] + "\n"
    assert validation_errors(schema("streaming"), result["text"]) == []


def test_json_object_mode_returns_an_object(client, options):
    assert isinstance(load("json_object").run(client, MODEL, **options), dict)


def test_plain_http_extraction_without_the_sdk(server_url, options):
    contact = load("plain_http").run(f"{server_url}/v1", MODEL, **options)
    assert contact is not None
    assert validation_errors(schema("extraction"), json.dumps(contact)) == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_plain_http_curl_script(server_url):
    done = subprocess.run(["bash", str(EXAMPLES / "plain_http" / "curl.sh"), f"{server_url}/v1", MODEL],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    completion = json.loads(done.stdout)
    assert completion["object"] == "chat.completion" and completion["choices"][0]["finish_reason"] in ("stop", "length")
