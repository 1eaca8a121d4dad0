"""The benchmark runs end to end on a tiny scenario and writes well-formed JSON (no speed asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO

from benchmarks.report import percentile


def test_the_harness_measures_the_fast_path_against_the_floor(tmp_path):
    out = tmp_path / "result.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--scenarios",
            "fast-path",
            "--repeat",
            "1",
            "--requests",
            "10",
            "--warmup",
            "2",
            "--stage-calls",
            "2",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    service, floor = result["runs"]["fast-path"]["service"][0], result["runs"]["fast-path"]["floor"][0]
    for measured in (service, floor):
        assert measured["requests"] == 10 and measured["errors"] == 0
        assert 0 < measured["p50"] <= measured["p95"] <= measured["p99"]
        assert measured["cpu_per_request"] > 0 and measured["throughput"] > 0
    summary = result["summary"]
    assert summary["scenarios"]["fast-path"]["ratio_p50"]["median"] > 0
    assert summary["startup"]["service"]["first_200_call"]["median"] > 0
    assert summary["stages"]["fast-path"]["parse"] > 0
    workers = result["memory_by_server"]["service"]["service_workers"]  # the compiled engine: no Node process
    assert len(workers) == 2 and all(w["peak_rss"] > 0 and w["engine_peak_rss"] == [] for w in workers)
    workers = result["memory_by_server"]["reference"]["service_workers"]
    assert len(workers) == 2 and all(w["peak_rss"] > 0 and len(w["engine_peak_rss"]) == 1 for w in workers)
    assert result["checks"]["fast-path"] == {"status": 200, "cards": 0, "criteria": []}
    assert result["checks"]["seed-prefetch"]["cards"] == 1
    assert {t["target"] for t in result["targets"]} >= {"fast path: p50 ≤ 2× floor", "ready within 3 s of start"}
    assert all(isinstance(t["met"], bool) for t in result["targets"])
    assert result["authentication"] == "disabled"
    assert "fast-path" in run.stdout and "Targets:" in run.stdout
    assert result["engines"] == {"service": "compiled", "reference": "reference"} and result["checks_agree"]
    reference = result["runs"]["fast-path"]["reference"][0]
    assert reference["requests"] == 10 and reference["errors"] == 0
    assert {t["target"] for t in result["engine_targets"]} >= {
        "fast path: p50 ≤ 2× floor",
        "RSS per worker, everything included ≤ 150 MB",
    }
    assert summary["stages_by_server"]["reference"]["fast-path"]["parse"] > 0


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 95) == 3.0
    assert math.isnan(percentile([], 50))
