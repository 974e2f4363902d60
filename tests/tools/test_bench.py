"""The benchmarks' smoke runs: `make bench` must not rot between the times someone runs it.

These assert that each benchmark runs end to end and reports every figure, never how fast: speed
is measured by `make bench`, not by the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # each runs a benchmark end to end


def test_daemon_benchmark_quick_run_reports_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(output.read_text())
    figures = {check["figure"] for check in report["checks"]}
    assert any(f.startswith("latency p50") for f in figures)
    assert any(f.startswith("throughput") for f in figures)
    assert any(f.startswith("isolation") for f in figures)
    assert any("RSS" in f for f in figures)
    assert any(f.startswith("latency, Nagle-style printers") for f in figures)
    assert any(f.startswith("latency p50, Nagle-style / prompt") for f in figures)
    assert any(f.startswith("throughput, Nagle-style printers") for f in figures)
    assert any(f.startswith("throughput, prompt printers") for f in figures)
    assert any("ms away" in f for f in figures)
    for key in ("throughput", "nagle_throughput"):
        assert report[key]["printed"] == report[key]["tickets"]
        assert report[key]["duplicates"] == 0
    assert report["nagle_throughput"]["nagle"] is True
    assert report["nagle_latency"]["from_commit_issued"]["lost"] == 0
    (distance,) = report["distances"]
    assert distance["burst_printed"] == distance["burst_tickets"]
    assert distance["latency"]["lost"] == 0
    # Counted by the bench printer: it answered status requests, so there were round trips.
    assert distance["light_round_trips"] > 0 and distance["light_status_requests"] > 0
    assert distance["burst_round_trips"] > 0
    assert distance["light_round_trips_per_ticket"] > 0


def test_view_benchmark_quick_run_times_every_view() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.views", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for view in ("kitchen_printer_status", "kitchen_print_sla", "kitchen_bill_status"):
        assert view in result.stdout
