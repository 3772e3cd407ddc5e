"""Scale-out on Ray Serve: `constrained serve --replicas 2` as a real process, a local Ray cluster of two CPU
replicas of the JSON-leaning tiny model behind Ray's proxy. The tests run in order on one deployment: clients,
routing, a replica killed mid-run, then SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import jsonschema
import openai
import pytest

from api.ray_serve import REPLICA_HEADER
from tests.test_api_cli import wait_until_ready

pytestmark = pytest.mark.slow

MODEL = "tiny-qwen3-json"
USER = [{"role": "user", "content": "A pet, as JSON."}]
PET = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
       "required": ["name", "age"], "additionalProperties": False}
PET_FORMAT = {"type": "json_schema", "json_schema": {"name": "pet", "schema": PET, "strict": True}}


def replica_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-f", "ray::ServeReplica:constrained"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    """The CLI with --replicas 2 on a free port; yields (process, base URL, its log path)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("ray") / "serve.log"
    with log.open("w") as output:
        proc = subprocess.Popen([sys.executable, "-m", "api", "serve", "--model", MODEL, "--replicas", "2",
                                 "--port", str(port), "--no-compile-cache", "--drain-timeout", "60"],
                                stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, url, log.read_text)
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)


def answered_by(url: str, n: int) -> list[str]:
    """The replica named by each of `n` concurrent requests' responses."""
    def one(_: int) -> str:
        response = httpx2.post(f"{url}/v1/chat/completions", timeout=60,
                               json={"model": MODEL, "messages": USER, "max_tokens": 8})
        assert response.status_code == 200, response.text
        return response.headers[REPLICA_HEADER]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def test_the_sdk_and_streams_work_through_the_proxy(ray_server):
    _, url, _ = ray_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(model=MODEL, messages=USER, response_format=PET_FORMAT, max_tokens=64,
                                                seed=1)
    assert completion.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(completion.choices[0].message.content), PET)
    with client.chat.completions.stream(model=MODEL, messages=USER, response_format=PET_FORMAT, max_tokens=64,
                                        seed=2) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1 and final.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads("".join(deltas)), PET)
    response = client.responses.create(model=MODEL, input="A pet.", max_output_tokens=64, text={"format": {
        "type": "json_schema", "name": "pet", "schema": PET, "strict": True}}, extra_body={"seed": 1})
    assert response.status == "completed", response.incomplete_details  # seeded: not cut by max_output_tokens
    jsonschema.validate(json.loads(response.output_text), PET)


def test_requests_land_on_both_replicas_with_one_request_id(ray_server):
    _, url, _ = ray_server
    deadline = time.monotonic() + 60
    while len(set(replicas := answered_by(url, 12))) < 2:
        assert time.monotonic() < deadline, f"only {set(replicas)} answered"
    response = httpx2.post(f"{url}/v1/chat/completions", headers={"x-request-id": "trace-7"},
                           json={"model": MODEL, "messages": USER, "max_tokens": 2})
    assert response.headers.get_list("x-request-id") == ["trace-7"]  # Ray's proxy and the app agree on one


def test_a_killed_replica_is_replaced_while_the_other_serves(ray_server):
    """SIGKILL one replica under load from 4 clients: only requests in flight then may fail, every request sent
    a second after the kill succeeds, and Ray starts a new replica."""
    _, url, _ = ray_server
    before = set(answered_by(url, 8))
    pids = replica_pids()
    assert len(pids) == 2 and len(before) == 2
    results: list[tuple[float, int]] = []  # (sent at, status; 0: no response)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = httpx2.post(f"{url}/v1/chat/completions", timeout=60,
                                     json={"model": MODEL, "messages": USER, "max_tokens": 16}).status_code
            except httpx2.TransportError:
                status = 0
            results.append((sent, status))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(2)
    killed_at = time.monotonic()
    subprocess.run(["kill", "-9", str(min(pids))], check=True)
    time.sleep(5)
    stop.set()
    for thread in clients:
        thread.join()
    failed = [sent - killed_at for sent, status in results if status != 200]
    assert len(failed) <= 4, failed  # at most the 4 requests in flight at the kill
    assert all(at < 1.0 for at in failed), failed
    assert sum(1 for sent, status in results if sent > killed_at + 1 and status == 200) >= 4
    deadline = time.monotonic() + 120
    while len(replica_pids() - pids) < 1:
        assert time.monotonic() < deadline, "no replica replaced the killed one"
        time.sleep(1)
    while not (set(answered_by(url, 8)) - before):  # the new replica serves too
        assert time.monotonic() < deadline, "the new replica never answered"


def test_sigterm_lets_a_stream_in_flight_finish_then_exits_0(ray_server):
    proc, url, log = ray_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=150, stream=True,
                                            extra_body={"regex": "[a-z]{2000}"})  # runs to max_tokens
    chunks = iter(stream)
    next(chunks)
    proc.send_signal(signal.SIGTERM)
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finish[-1] == "length" and len(finish) > 50
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    time.sleep(1)
    assert not replica_pids()
