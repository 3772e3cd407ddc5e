"""Real client libraries, unchanged, against a live `constrained serve`: each client's structured-output calls.

Each client runs from its own pinned venv (`scripts/client-venvs`: their pins conflict), as
tests/clients/<client>_calls.py, which prints one JSON line per call: {"call", "ok", "detail"}. A test is one
(client, call); a client's script runs once, for all its calls. A client that cannot be installed is skipped.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ROOT / "tests" / "clients"
VENVS = ROOT / ".client-venvs"
MODEL = "tiny-qwen3-json"  # random weights biased so JSON and free text finish: gibberish that validates


def call_names(client: str) -> list[str]:
    """The names in the script's `CALLS = (...)`, read without importing it (its imports live in its venv)."""
    tree = ast.parse((CLIENTS / f"{client}_calls.py").read_text())
    calls = next(node.value for node in tree.body
                 if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["CALLS"])
    return [element.id for element in calls.elts]


CASES = [(path.stem, call) for path in sorted((CLIENTS / "requirements").glob("*.txt"))
         for call in call_names(path.stem)]


@pytest.fixture(scope="module")
def install_notes() -> dict[str, str]:
    """Makes the venvs that are missing or stale; returns each client's line from scripts/client-venvs."""
    done = subprocess.run([ROOT / "scripts" / "client-venvs"], capture_output=True, text=True, timeout=1800)
    return dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    """`constrained serve` as a user starts it, on a free port; its log goes to a file, shown if it never gets ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([ROOT / ".venv" / "bin" / "constrained", "serve", "--model", MODEL,
                                   "--port", str(port), "--no-compile-cache"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not _healthy(url):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"constrained serve did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield f"{url}/v1"
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/health", timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


@pytest.fixture(scope="module")
def client_results(install_notes, base_url):
    """Each client's lines by call and its stderr's tail, from one run of its script (on first use)."""
    runs: dict[str, tuple[dict[str, dict], str]] = {}

    def results(client: str) -> tuple[dict[str, dict], str]:
        if client not in runs:
            python = VENVS / client / "bin" / "python"
            if not python.exists():
                pytest.skip(f"{client}: no venv ({install_notes.get(client, 'not installed')})")
            env = {**os.environ, "CONSTRAINED_BASE_URL": base_url, "CONSTRAINED_MODEL": MODEL,
                   "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # else LiteLLM fetches its model map from the network
            done = subprocess.run([python, CLIENTS / f"{client}_calls.py"], capture_output=True, text=True, env=env,
                                  timeout=900)
            lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"call": ')]
            runs[client] = {line["call"]: line for line in lines}, done.stderr[-3000:]
        return runs[client]

    return results


@pytest.mark.parametrize(("client", "call"), CASES, ids=[f"{client}-{call}" for client, call in CASES])
def test_client_call(client_results, client, call):
    lines, stderr = client_results(client)
    assert call in lines, f"{client}_calls.py printed no line for {call}; its stderr:\n{stderr}"
    assert lines[call]["ok"], lines[call]["detail"]
