"""The `constrained serve` entry point, run as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx2
import openai
import pytest

from api.cli import build_parser

MODEL = "tiny-qwen3"
USER = [{"role": "user", "content": "hi"}]


def wait_until_ready(proc: subprocess.Popen, url: str, output) -> None:
    """Until /health says 200; fails with the process's output (`output()`) if it dies or takes over 90 s."""
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, output()
        try:
            if httpx2.get(f"{url}/health").status_code == 200:
                return
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, "the CLI server did not become ready"
        time.sleep(0.1)


def test_serve_options_and_env_api_key(monkeypatch):
    monkeypatch.setenv("CONSTRAINED_API_KEY", "from-env")
    args = build_parser().parse_args(["serve", "--port", "9000", "--max-batch-size", "4", "--compile-deadline", "2.5"])
    assert (args.model, args.host, args.port, args.api_key) == ("smollm2-135m-instruct", "127.0.0.1", 9000, "from-env")
    assert (args.max_batch_size, args.compile_deadline, args.device) == (4, 2.5, "auto")
    assert args.compile_cache_dir.endswith("grammars") and args.warmup_schemas is None
    assert build_parser().parse_args(["serve", "--no-compile-cache"]).compile_cache_dir is None
    assert args.reasoning_effort == "none"
    assert build_parser().parse_args(["serve", "--reasoning-effort", "low"]).reasoning_effort == "low"
    assert args.dtype == "auto" and build_parser().parse_args(["serve", "--dtype", "bfloat16"]).dtype == "bfloat16"


def test_serve_run_options_are_the_cli_options():
    """`serve run api.ray_serve:app_builder key=value ...` reads each key as the `constrained serve` option."""
    from api.ray_serve import app_builder

    bound = app_builder({"model": "tiny-qwen3-json", "replicas": "3", "max_batch_size": "8", "no_fast_forward": "true",
                         "device": "cuda", "replica-cpus": "2"})._bound_deployment
    args = bound.init_args[0]
    assert (args.model, args.max_batch_size, args.fast_forward) == ("tiny-qwen3-json", 8, False)
    assert bound.num_replicas == 3 and bound.ray_actor_options == {"num_cpus": 2.0, "num_gpus": 1.0}
    assert bound.max_ongoing_requests == 8 + args.max_waiting
    with pytest.raises(SystemExit):
        app_builder({"no_such_option": "1"})


@pytest.mark.slow  # a live `python -m api serve` process
def test_cli_serves_until_interrupted(tmp_path):
    """`python -m api serve` loads the model (in the dtype asked for), answers, and stops cleanly on Ctrl-C."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "CONSTRAINED_API_KEY": "k"}
    warmup = tmp_path / "warmup.jsonl"
    warmup.write_text('{"type": "object", "properties": {"a": {"type": "integer"}}}\n')
    grammars = tmp_path / "grammars"
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "serve", "--model", MODEL, "--device", "cpu", "--port", str(port),
         "--warmup-schemas", str(warmup), "--compile-cache-dir", str(grammars), "--dtype", "bfloat16"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(proc, url, lambda: proc.stdout.read())
        assert httpx2.get(f"{url}/v1/models").status_code == 401
        client = openai.OpenAI(api_key="k", base_url=f"{url}/v1", max_retries=0)
        assert client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2).choices
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "loading model tiny-qwen3 on cpu in torch.bfloat16" in output and "ready: serving tiny-qwen3" in output
    assert "1 warm-up schemas compiled" in output
    assert len([p for p in grammars.rglob("*") if p.is_file()]) == 2  # the warm-up schema and json_object


@pytest.mark.slow  # a live `python -m api serve` process, sent SIGTERM mid-request
def test_sigterm_drains_the_requests_in_flight_then_exits_0(tmp_path):
    """On SIGTERM: /health and new requests get 503 with Retry-After while a long request in flight runs to its
    end; then the process exits 0. Its JSON log lines carry each request's id."""
    import json
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "serve", "--model", "tiny-qwen3-json", "--device", "cpu", "--port", str(port),
         "--no-compile-cache", "--drain-timeout", "300", "--log-format", "json"],
        stdout=(log := open(tmp_path / "serve.log", "w")), stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    long_body = {"model": "tiny-qwen3-json", "messages": USER, "max_tokens": 3000, "seed": 0,
                 "structured_outputs": {"regex": "[0-9]{3000}"}}  # Qwen writes one digit a token: seconds
    try:
        wait_until_ready(proc, url, lambda: (tmp_path / "serve.log").read_text())
        finished = {}
        worker = threading.Thread(target=lambda: finished.update(response=httpx2.post(
            f"{url}/v1/chat/completions", json=long_body, headers={"x-request-id": "long-one"}, timeout=360)))
        worker.start()
        while "constrained_sequences_running 1.0" not in httpx2.get(f"{url}/metrics").text:  # generating
            assert worker.is_alive(), finished
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        health = httpx2.get(f"{url}/health")
        refused = httpx2.post(f"{url}/v1/chat/completions", json={"model": "tiny-qwen3-json", "messages": USER})
        worker.join(timeout=360)  # seconds alone; minutes on a loaded machine (the drain waits up to 300 s)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert (health.status_code, health.json()["status"], health.headers["retry-after"]) == (503, "draining", "1")
    assert refused.status_code == 503 and "shutting down" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"] == "1" and refused.headers["x-request-id"].startswith("req-")
    response = finished["response"]
    assert response.status_code == 200 and response.headers["x-request-id"] == "long-one"
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert proc.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line["request_id"] == "long-one" and "prompt tokens" in line["message"] for line in lines), lines[-5:]
    assert any("drained in" in line["message"] for line in lines)
