"""`kprintd status` and `kprintd alerts`: output, exit codes, the daemon heartbeat behind them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest

from kprintd import __version__
from kprintd.harness import (
    Restaurant,
    alerts_process,
    as_login,
    daemon_env,
    query,
    running_daemon,
    wait_until,
)
from kprintd.monitor import format_alert
from kprintd.printer_status import PaperState

# Nothing listens on port 1 of loopback: the connection is refused at once.
UNREACHABLE = "postgresql://kprintd@127.0.0.1:1/pos?connect_timeout=2"


def kprintd(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kprintd ARGS` as a child process, configured like under systemd (KPRINTD_* variables),
    logged in as a reporting login (kprintd_auditor): read-only."""
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", *args],
        env=daemon_env(as_login(url, "kprintd_auditor") if url else url),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
def test_status_all_well_with_a_live_daemon_and_a_healthy_printer(
    database_url: str,
    restaurant: Restaurant,
) -> None:
    restaurant.printer("kitchen", name="Main Kitchen")
    with running_daemon(database_url, health_interval_s=0.2, daemon_id="store-server:1"):
        wait_until(
            lambda: query(database_url, "SELECT 1 FROM kitchen_printerhealthcheck"),
            what="a health check",
        )
        restaurant.send("kitchen")
        wait_until(
            lambda: query(
                database_url,
                "SELECT 1 FROM kitchen_daemon_heartbeat WHERE tickets_printed = 1",
            ),
            what="the heartbeat to count the print",
        )
        result = kprintd(database_url, "status")
        heartbeat = query(database_url, "SELECT * FROM kitchen_daemon_status")
    assert result.returncode == 0, result.stdout
    assert "All well." in result.stdout
    assert "Main Kitchen" in result.stdout and "store-server:1  alive" in result.stdout
    assert "nothing waiting" in result.stdout
    (beat,) = heartbeat
    assert (beat["daemon_id"], beat["state"], beat["version"]) == (
        "store-server:1",
        "alive",
        __version__,
    )
    stopped = query(database_url, "SELECT state, tickets_printed FROM kitchen_daemon_status")
    assert stopped == [{"state": "stopped", "tickets_printed": 1}], "a clean stop is recorded"


@pytest.mark.slow
def test_status_shows_planned_maintenance_and_the_last_hours_alerts(
    database_url: str,
    restaurant: Restaurant,
) -> None:
    restaurant.printer("dessert", name="Dessert")
    other_brand = query(database_url, "INSERT INTO core_brand (name) VALUES ('Other') RETURNING id")
    query(
        database_url,
        "INSERT INTO kitchen_stationprinterschedule (printer_id, starts_at, ends_at, reason)"
        " SELECT id, now() - interval '5 minutes', now() + interval '1 hour', 'head cleaning'"
        " FROM kitchen_stationprinter WHERE printer_name = 'Dessert'",
    )
    raise_alert(
        database_url, "printer_down", "warning", "Dessert is out of paper",
        station="dessert", brand_id=str(restaurant.brand_id),
    )  # fmt: skip
    raise_alert(
        database_url, "printer_down", "warning", "Not ours",
        station="bar", brand_id=str(other_brand[0]["id"]),
    )  # fmt: skip
    everything = kprintd(database_url, "status")
    ours = subprocess.run(
        [sys.executable, "-m", "kprintd.cli", "status", "--json"],
        env=daemon_env(
            as_login(database_url, "kprintd_auditor"), brand_ids=str(restaurant.brand_id)
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    unwrapped = " ".join(everything.stdout.split())
    assert "Planned maintenance" in unwrapped
    assert "Dessert (dessert) active until" in unwrapped
    assert "head cleaning (the station's tickets wait)" in unwrapped
    assert "Alerts in the last hour: 2" in unwrapped
    assert "WARNING printer_down [dessert] Dessert is out of paper" in unwrapped
    report = json.loads(ours.stdout)
    assert [m["printer_name"] for m in report["maintenance"]] == ["Dessert"]
    assert report["alerts_1h"] == 1
    assert [a["message"] for a in report["recent_alerts"]] == ["Dessert is out of paper"]


@pytest.mark.slow
def test_status_needs_attention_exits_1_and_says_why(
    database_url: str,
    restaurant: Restaurant,
) -> None:
    restaurant.printer("bar", name="Bar").set_paper(PaperState.OUT)
    with running_daemon(database_url, health_interval_s=0.2):
        wait_until(
            lambda: query(database_url, "SELECT 1 FROM kitchen_printerhealthcheck"),
            what="a health check",
        )
    (ticket_id,) = restaurant.send("bar")
    query(database_url, "SELECT kitchen_mark_failed(%s, 'admin:sari', 'test')", (ticket_id,))
    result = kprintd(database_url, "status")
    assert result.returncode == 1
    attention = result.stdout.split("NEEDS ATTENTION", 1)[1]
    assert "no kprintd daemon is running" in attention, "the daemon stopped"
    assert "printer Bar (bar, " in attention and "is out of paper" in attention
    assert "1 ticket(s) failed in the last 24 h" in attention
    assert f"#{ticket_id} bar" in result.stdout

    result = kprintd(database_url, "status", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [a["kind"] for a in report["attention"]] == ["daemon", "printer", "failed_tickets"]
    assert [(p["printer_name"], p["state"]) for p in report["printers"]] == [("Bar", "paper_out")]
    assert report["daemons"][0]["state"] == "stopped"
    assert report["failed_24h"] == 1


@pytest.mark.slow
def test_status_exits_2_when_the_database_cannot_be_read(empty_database_url: str) -> None:
    result = kprintd(UNREACHABLE, "status")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("kprintd: cannot read the status from the database")
    result = kprintd(empty_database_url, "status")
    assert result.returncode == 2, "a database without kprintd's schema cannot answer"
    assert "kitchen_status_report" in result.stderr
    result = kprintd("", "status")
    assert result.returncode == 2, "no database configured"
    assert "KPRINTD_DATABASE_URL must not be empty" in result.stderr


# --- kprintd alerts -------------------------------------------------------------------------------


def raise_alert(url: str, kind: str, severity: str, message: str, **details: Any) -> None:
    query(
        url,
        "SELECT kitchen_raise_alert(%s, %s, %s, %s::jsonb)",
        (kind, severity, message, json.dumps(details)),
    )


@pytest.mark.slow
def test_alerts_prints_json_lines_and_stops_after_count(database_url: str) -> None:
    process = alerts_process(database_url, "--json", "--count", "2", "--timeout", "20")
    raise_alert(database_url, "printer_down", "warning", "Bar is out of paper", station="bar")
    raise_alert(database_url, "ticket_failed", "critical", "Ticket 7 failed", ticket_id=7)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(a["type"], a["severity"]) for a in lines] == [
        ("printer_down", "warning"),
        ("ticket_failed", "critical"),
    ]
    assert lines[0]["station"] == "bar" and lines[1]["ticket_id"] == 7
    assert all(a["at"].endswith("Z") for a in lines)


@pytest.mark.slow
def test_alerts_timeout_without_enough_alerts_exits_1(database_url: str) -> None:
    process = alerts_process(database_url, "--count", "1", "--timeout", "0.5")
    out, _ = process.communicate(timeout=10)
    assert (process.returncode, out) == (1, "")


@pytest.mark.slow
def test_alerts_exits_cleanly_on_sigterm(database_url: str) -> None:
    process = alerts_process(database_url)
    raise_alert(database_url, "printer_recovered", "info", "Bar is ready again", station="bar")
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "INFO" in line and "printer_recovered" in line and "Bar is ready again" in line
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


def test_alerts_exits_2_when_the_database_cannot_be_reached() -> None:
    result = kprintd(UNREACHABLE, "alerts")
    assert result.returncode == 2
    assert result.stderr.startswith("kprintd: cannot listen for alerts")


def test_human_alert_line() -> None:
    payload = {
        "type": "printer_down",
        "severity": "warning",
        "message": "Printer 'Bar' for bar is out of paper.",
        "at": "2026-02-04T12:00:01.000Z",
        "station": "bar",
        "printer": "Bar",
    }
    line = format_alert(json.dumps(payload), as_json=False)
    time, rest = line.split("  ", 1)
    assert len(time) == len("12:00:01") and time.count(":") == 2
    assert rest == "WARNING   printer_down  [bar / Bar] Printer 'Bar' for bar is out of paper."
    assert json.loads(format_alert(json.dumps(payload), as_json=True)) == payload
    odd = format_alert("not json", as_json=False)
    assert "unreadable" in odd and odd.endswith("not json")
