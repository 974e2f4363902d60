"""The heartbeat says whether the daemon is listening for new tickets, and `kprintd status` says
so: at once on the daemon's line, and as something that needs attention (exit 1) once a live
daemon has not been listening for more than 30 s. End to end with a real daemon whose listener
connection is killed and cannot come back, plus the SQL on its own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from kprintd import daemon as daemon_module
from kprintd.harness import daemon_env, query, running_daemon, wait_until

Conn = psycopg.Connection[dict[str, Any]]

# kitchen_status_report(): a live daemon not listening for longer than this needs attention.
DEAF_S = 30


def beat(
    conn: Conn,
    daemon_id: str,
    listening: bool | None,
    since: timedelta | None = None,
    interval_s: float = 60,
) -> None:
    conn.execute(
        "SELECT kitchen_daemon_beat(%s, 'store-server', 1, 'test', NULL, NULL, %s, now(), 0,"
        " %s, now() - %s::interval)",
        (daemon_id, interval_s, listening, since),
    )


def status(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", "status", *args],
        env=daemon_env(database_url),
        capture_output=True,
        text=True,
        timeout=30,
    )


def daemons(conn: Conn) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT daemon_id, state, listening, not_listening_since, not_listening_for"
        " FROM kitchen_daemon_status"
    ).fetchall()
    return {r["daemon_id"]: r for r in rows}


# --- The SQL --------------------------------------------------------------------------------------


def test_the_heartbeat_records_listening_and_since_when_not(conn: Conn) -> None:
    beat(conn, "listening", True, timedelta(minutes=5))
    beat(conn, "deaf", False, timedelta(minutes=1))
    beat(conn, "future", False, timedelta(minutes=-10))  # a daemon's clock ahead of the server's
    beat(conn, "deaf-without-time", False, None)
    conn.execute("SELECT kitchen_daemon_beat('old-writer', 'h', 1, 'v', NULL, NULL, 60, now(), 0)")
    now = conn.execute("SELECT now() AS now").fetchone()["now"]  # type: ignore[index]
    rows = daemons(conn)
    assert (rows["listening"]["listening"], rows["listening"]["not_listening_since"]) == (
        True,
        None,
    )
    assert rows["deaf"]["listening"] is False
    assert timedelta(minutes=1) <= rows["deaf"]["not_listening_for"] < timedelta(seconds=65)
    assert now - timedelta(seconds=5) < rows["future"]["not_listening_since"] <= now, (
        "never later than now"
    )
    assert now - timedelta(seconds=5) < rows["deaf-without-time"]["not_listening_since"] <= now
    assert (rows["old-writer"]["listening"], rows["old-writer"]["not_listening_for"]) == (
        None,
        None,
    ), "a writer that does not say is not said to be deaf"
    beat(conn, "deaf", True)
    assert daemons(conn)["deaf"]["not_listening_since"] is None


def test_a_live_daemon_not_listening_for_more_than_30_s_needs_attention(conn: Conn) -> None:
    beat(conn, "deaf", False, timedelta(seconds=DEAF_S + 5))
    beat(conn, "reconnecting", False, timedelta(seconds=DEAF_S - 10))
    beat(conn, "fine", True)
    beat(conn, "unknown", None)
    beat(conn, "stopped", False, timedelta(minutes=5))
    conn.execute("SELECT kitchen_daemon_stopped('stopped', 0)")
    beat(conn, "stale", False, timedelta(minutes=5), interval_s=1)
    conn.execute(
        "UPDATE kitchen_daemon_heartbeat SET last_seen_at = now() - interval '1 minute'"
        " WHERE daemon_id = 'stale'"
    )
    report = conn.execute("SELECT kitchen_status_report(NULL, NULL) AS r").fetchone()["r"]  # type: ignore[index]
    (attention,) = report["attention"]
    assert (attention["kind"], attention["daemon_id"]) == ("daemon_not_listening", "deaf")
    assert attention["message"].startswith(
        f"kprintd daemon deaf has not been listening for new tickets for {DEAF_S + 5} s"
    )
    shown = {d["daemon_id"]: d for d in report["daemons"]}
    assert shown["reconnecting"]["listening"] is False
    assert shown["reconnecting"]["not_listening_since"] is not None
    assert shown["fine"]["listening"] is True and shown["unknown"]["listening"] is None


@pytest.mark.slow
def test_status_shows_a_daemon_that_is_not_listening(conn: Conn, database_url: str) -> None:
    beat(conn, "store-server:1", False, timedelta(seconds=5))
    result = status(database_url)
    assert result.returncode == 0, "5 s: a reconnect may be under way"
    assert re.search(r"store-server:1  alive  NOT LISTENING for [5-9] s  seen", result.stdout)
    beat(conn, "store-server:1", False, timedelta(minutes=2))
    result = status(database_url)
    assert result.returncode == 1
    assert "store-server:1  alive  NOT LISTENING for 2 min  seen" in result.stdout
    attention = result.stdout.split("NEEDS ATTENTION", 1)[1]
    assert re.search(
        r"kprintd daemon store-server:1 has not been listening for new tickets for 12\d s",
        " ".join(attention.split()),
    )
    beat(conn, "store-server:1", True)
    result = status(database_url)
    assert result.returncode == 0 and "NOT LISTENING" not in result.stdout


# --- A real daemon --------------------------------------------------------------------------------


def heartbeat(database_url: str) -> dict[str, Any]:
    (row,) = query(database_url, "SELECT * FROM kitchen_daemon_status")
    return row


def kill_listener(database_url: str) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    wait_until(
        lambda: query(
            database_url,
            "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity"
            " WHERE application_name = 'kprintd-listener' AND datname = %s",
            (dbname,),
        ),
        what="the listener's connection to end",
    )


@pytest.mark.slow
def test_a_daemon_whose_listener_cannot_come_back_is_shown_within_seconds_then_needs_attention(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "RECONNECT_MAX_S", 0.5)
    # An hour between health rounds: whatever the heartbeat says after the first beat, the daemon
    # wrote because its listener changed.
    with running_daemon(database_url, health_interval_s=3600) as running:
        assert running.daemon is not None
        daemon = running.daemon
        wait_until(lambda: heartbeat(database_url)["listening"], what="a beat saying listening")

        async def refused() -> Any:
            raise psycopg.OperationalError("the test refuses the listener's reconnects")

        monkeypatch.setattr(daemon, "_connect", refused)
        kill_listener(database_url)
        lost_at = datetime.now().astimezone()
        beat_row = wait_until(
            lambda: (row := heartbeat(database_url))["listening"] is False and row,
            timeout=5,
            what="a beat saying not listening",
        )
        assert not daemon.dispatcher.listening
        assert beat_row["state"] == "alive"
        assert abs(beat_row["not_listening_since"] - lost_at) < timedelta(seconds=2)
        shown = status(database_url)
        assert "alive  NOT LISTENING for" in shown.stdout
        assert shown.returncode == 0, "not yet: a reconnect may take a few seconds"

        result = wait_until(
            lambda: (r := status(database_url, "--json")).returncode == 1 and r,
            timeout=DEAF_S + 15,
            interval=1,
            what="status to say the daemon needs attention",
        )
        report = json.loads(result.stdout)
        assert [a["kind"] for a in report["attention"]] == ["daemon_not_listening"]
        assert report["attention"][0]["daemon_id"] == daemon.settings.daemon_id

        monkeypatch.undo()  # reconnects work again
        wait_until(lambda: heartbeat(database_url)["listening"], what="a beat saying listening")
        assert status(database_url).returncode == 0
