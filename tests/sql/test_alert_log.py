"""kitchen_alertlog: every alert kept (append-only), the NOTIFY naming its row, a change two
daemons both notice announced once, and `kprintd alerts` replaying what it did not hear."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg import errors

from kprintd.harness import (
    Restaurant,
    alerts_process,
    query,
    received_alerts,
    running_daemon,
    wait_until,
)
from kprintd.printer_status import PaperState

Conn = psycopg.Connection[dict[str, Any]]


def raise_alert(conn: Conn, kind: str, **details: Any) -> dict[str, Any]:
    row = conn.execute(
        "SELECT kitchen_raise_alert(%s, 'warning', %s, %s::jsonb) AS alert",
        (kind, f"{kind} happened", json.dumps(details)),
    ).fetchone()
    assert row is not None
    return dict(row["alert"])


def test_an_alert_is_logged_and_its_notification_names_the_row(
    conn: Conn, alerts: psycopg.Connection[Any]
) -> None:
    raised = raise_alert(conn, "printer_down", printer_id=4, station="bar")
    (heard,) = received_alerts(alerts)
    row = conn.execute("SELECT * FROM kitchen_alertlog").fetchone()
    assert row is not None
    assert heard["alert_id"] == row["id"] == raised["alert_id"]
    assert raised["sent"] is True and "sent" not in heard
    assert (row["alert_type"], row["subject"], row["raised_by"], row["sent"]) == (
        "printer_down",
        "printer:4",
        None,
        True,
    )
    assert row["alert"] == heard


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE kitchen_alertlog SET message = 'nothing happened'",
        "DELETE FROM kitchen_alertlog",
        "TRUNCATE kitchen_alertlog",
    ],
)
def test_the_alert_log_cannot_be_rewritten(conn: Conn, statement: str) -> None:
    raise_alert(conn, "printer_down", printer_id=4)
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute(statement)
    assert conn.execute("SELECT count(*) AS n FROM kitchen_alertlog").fetchone() == {"n": 1}


def test_a_change_two_daemons_both_notice_is_announced_once(
    conn: Conn, alerts: psycopg.Connection[Any]
) -> None:
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-a")
    held = raise_alert(conn, "printer_down", printer_id=4, daemon="server-b")
    assert held["sent"] is False
    raise_alert(conn, "printer_down", printer_id=5, daemon="server-b")  # another printer
    raise_alert(conn, "printer_recovered", printer_id=4, daemon="server-b")  # news
    raise_alert(conn, "printer_recovered", printer_id=4, daemon="server-a")  # B said it
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-a")  # news again
    heard = [(a["type"], a["printer_id"], a["daemon"]) for a in received_alerts(alerts)]
    assert heard == [
        ("printer_down", 4, "server-a"),
        ("printer_down", 5, "server-b"),
        ("printer_recovered", 4, "server-b"),
        ("printer_down", 4, "server-a"),
    ]
    logged = conn.execute("SELECT raised_by, sent FROM kitchen_alertlog ORDER BY id").fetchall()
    assert [r["sent"] for r in logged] == [True, False, True, True, False, True]


def test_one_daemon_repeating_itself_or_the_database_raising_is_always_sent(
    conn: Conn, alerts: psycopg.Connection[Any]
) -> None:
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-a")
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-a")  # its own: a new change
    raise_alert(conn, "ticket_failed", ticket_id=9, station="bar")
    raise_alert(conn, "ticket_failed", ticket_id=9, station="bar")
    assert len(received_alerts(alerts)) == 4


def test_a_repeat_more_than_a_minute_later_is_news(
    conn: Conn, alerts: psycopg.Connection[Any]
) -> None:
    conn.execute(
        "INSERT INTO kitchen_alertlog (raised_at, alert_type, severity, message, subject,"
        " raised_by, sent, alert) VALUES (now() - interval '2 minutes', 'printer_down',"
        " 'warning', 'down', 'printer:4', 'server-a', true, '{}')"
    )
    assert raise_alert(conn, "printer_down", printer_id=4, daemon="server-b")["sent"] is True
    assert len(received_alerts(alerts)) == 1


def test_two_daemons_watching_one_printer_announce_its_outage_once(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary")
    restaurant.printer("kitchen", 2, name="backup")
    primary.set_paper(PaperState.OUT)
    with (
        running_daemon(database_url, daemon_id="server-a", health_interval_s=0.2),
        running_daemon(database_url, daemon_id="server-b", health_interval_s=0.2),
    ):
        wait_until(
            lambda: query(
                database_url,
                "SELECT count(DISTINCT raised_by) = 2 AS both FROM kitchen_alertlog"
                " WHERE alert_type = 'printer_down'",
            )[0]["both"],
            what="both daemons to notice the paper end",
        )
    kinds = Counter(a["type"] for a in received_alerts(alerts))
    assert kinds["printer_down"] == 1
    held = query(database_url, "SELECT count(*) AS n FROM kitchen_alertlog WHERE NOT sent")[0]["n"]
    assert held >= 1


# --- kprintd alerts replays the log --------------------------------------------------------------


def test_alerts_since_prints_the_recent_ones_first(conn: Conn, database_url: str) -> None:
    conn.execute(
        "INSERT INTO kitchen_alertlog (raised_at, alert_type, severity, message, sent, alert)"
        " VALUES (now() - interval '3 hours', 'printer_down', 'warning', 'old', true,"
        ' \'{"type": "printer_down", "message": "old"}\')'
    )
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-a")
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-b")  # held back: not shown
    process = alerts_process(
        database_url, "--json", "--since", "2h", "--count", "2", "--timeout", "20"
    )
    raise_alert(conn, "printer_recovered", printer_id=4, daemon="server-a")
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    shown = [json.loads(line) for line in out.splitlines()]
    assert [(a["type"], a["daemon"]) for a in shown] == [
        ("printer_down", "server-a"),
        ("printer_recovered", "server-a"),
    ]


def test_alerts_raised_while_the_connection_was_lost_are_printed_once_it_is_back(
    conn: Conn, database_url: str
) -> None:
    process = alerts_process(database_url, "--json", "--count", "3", "--timeout", "30")
    raise_alert(conn, "printer_down", printer_id=1)
    wait_until(
        lambda: conn.execute(
            "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity"
            " WHERE application_name = 'kprintd-alerts' AND datname = current_database()"
        ).fetchall(),
        what="the alerts connection to cut",
    )
    raise_alert(conn, "printer_down", printer_id=2)  # nobody listens
    time.sleep(0.2)
    raise_alert(conn, "printer_down", printer_id=3)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    shown = [json.loads(line)["printer_id"] for line in out.splitlines()]
    assert shown == [1, 2, 3]
    assert "alerts raised meanwhile follow" in err


def test_a_listener_reads_back_what_it_missed(conn: Conn) -> None:
    first = raise_alert(conn, "printer_down", printer_id=4, daemon="server-a")["alert_id"]
    raise_alert(conn, "printer_down", printer_id=4, daemon="server-b")  # held back
    last = raise_alert(conn, "printer_recovered", printer_id=4, daemon="server-a")["alert_id"]

    def after(after_id: int | None, since: str | None = None) -> list[int]:
        rows = conn.execute(
            "SELECT alert_id FROM kitchen_alerts_after(%s, %s::interval)", (after_id, since)
        ).fetchall()
        return [r["alert_id"] for r in rows]

    assert after(0) == [first, last], "only what was sent"
    assert after(first) == [last]
    assert after(last) == []
    assert after(None, "1 hour") == [first, last]
    assert after(None) == []


def test_details_cannot_stand_in_for_the_alerts_own_fields(conn: Conn) -> None:
    forged = {"type": "forged", "severity": "critical", "alert_id": 1, "extra": 2}
    row = conn.execute(
        "SELECT kitchen_raise_alert('printer_down', 'info', 'real message', %s::jsonb) AS a",
        (json.dumps(forged),),
    ).fetchone()
    assert row is not None
    alert = row["a"]
    assert (alert["type"], alert["severity"], alert["extra"]) == ("printer_down", "info", 2)
    logged = conn.execute("SELECT id, alert FROM kitchen_alertlog ORDER BY id DESC LIMIT 1")
    last = logged.fetchone()
    assert last is not None and last["alert"]["alert_id"] == last["id"]
