"""benchmarks.faults runs end to end with tiny settings: a server subprocess, every scenario, and one JSON object
as its last line with every figure. Slow (a server start and ~15 s of traffic); the figures are not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.faults import pathological_request

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ("streams", "burst", "pathological")
FIGURES = {"seconds", "health_probes", "health_failed", "health_p50_ms", "health_p99_ms", "health_max_ms",
           "health_over_50ms", "normal_p50_ms", "normal_p99_ms", "sent", "served", "4xx", "429_with_retry_after",
           "5xx", "stream_errors", "disconnected", "lost", "leaked_slots", "idle_check", "by_kind"}


def test_pathological_requests_are_unique_per_index():
    kinds = [pathological_request(i)[0] for i in range(5)]
    assert sorted(kinds) == sorted({"outlines_regex", "pattern", "enum", "anyof", "enum_refused"})
    assert json.dumps(pathological_request(0)) != json.dumps(pathological_request(5))  # no cache answers a repeat


@pytest.mark.slow
def test_tiny_run_ends_with_one_json_object_of_every_figure():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.faults", "--duration", "2", "--stream-clients", "3", "--bursts", "1",
         "--max-batch-size", "2", "--max-waiting", "2", "--pathological-clients", "1", "--normal-clients", "1",
         "--max-tokens", "16", "--compile-deadline", "1", "--settle-s", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"model", "max_batch_size", "max_waiting", "seconds", "alarms", *SCENARIOS} <= result.keys()
    for name in SCENARIOS:
        assert FIGURES <= result[name].keys(), name
        assert result[name]["sent"] > 0 and result[name]["health_probes"] > 0
    assert result["burst"]["sent"] == 2 * (2 + 2)  # the default burst: twice batch + queue
