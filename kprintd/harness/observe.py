"""Watching what happened: SQL reads, waiting for a condition, tickets, alerts, `kprintd alerts`.

Owns the helpers that look at a harness database from outside, as an operator or a dashboard
would: plain queries, a ticket's row and audit trail, what a printer's paper says, what arrived
on the kitchen_alert channel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from kprintd.harness.cluster import as_login
from kprintd.harness.daemon import daemon_env


def wait_until(
    condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


def query(database_url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def ticket_statuses(database_url: str) -> dict[int, str]:
    rows = query(database_url, "SELECT id, status FROM kitchen_kitchenticket ORDER BY id")
    return {r["id"]: r["status"] for r in rows}


def all_settled(database_url: str) -> bool:
    rows = query(
        database_url,
        "SELECT count(*) AS n FROM kitchen_kitchenticket WHERE status IN ('new', 'printing')",
    )
    return bool(rows[0]["n"] == 0)


def listener_connected(database_url: str) -> bool:
    """True once a kprintd daemon LISTENs on this test's database."""
    rows = query(
        database_url,
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE application_name = 'kprintd-listener' AND datname = current_database()",
    )
    return bool(rows[0]["n"])


def ticket_id_of(received_text: str) -> int:
    """The ticket number in a printed ticket's footer ("Ticket #<id>")."""
    match = re.search(r"Ticket #(\d+)", received_text)
    assert match, f"no ticket id in:\n{received_text}"
    return int(match.group(1))


def has_retry_banner(received_text: str) -> bool:
    return "R E T R Y" in received_text


def log_actions(url: str, ticket_id: int) -> list[str]:
    rows = query(
        url,
        "SELECT action FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id",
        (ticket_id,),
    )
    return [r["action"] for r in rows]


def ticket(url: str, ticket_id: int) -> dict[str, Any]:
    return query(url, "SELECT * FROM kitchen_kitchenticket WHERE id = %s", (ticket_id,))[0]


def received_alerts(listener: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """What a connection LISTENing on kitchen_alert (the `alerts` fixture) has heard so far."""
    return [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]


def alerts_process(url: str, *args: str) -> subprocess.Popen[str]:
    """`kprintd alerts ARGS` as a child process, returned once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kprintd.cli", "alerts", *args],
        env=daemon_env(as_login(url, "kprintd_auditor")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "listening for alerts" in process.stderr.readline()
    return process
