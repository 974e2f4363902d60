"""`kprintd alerts` trusts kitchen_alertlog, never the kitchen_alert channel: any role that can
connect can NOTIFY there, so a notification only wakes it. Fake alerts from a role without grants
are never shown, a fake alert_id does not move what it has read, unreadable payloads crash
nothing; --json still prints each logged alert as it is. The log itself stays append-only even for
a session that sets session_replication_role = replica.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row

from kprintd.harness import PostgresServer, alerts_process, daemon_env, query
from kprintd.monitor import format_alert, parse_alert, printable

Conn = psycopg.Connection[dict[str, Any]]

FAKE = {
    "type": "ticket_failed",
    "severity": "critical",
    "message": "FAKE: ticket 1 could not be printed, call the manager",
    "at": "2026-02-04T12:00:01.000Z",
    "station": "bar",
    "alert_id": 10**15,
}


@pytest.fixture
def no_grants_url(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    """The test's database, as a new login role granted nothing: it can only connect (every role
    may, by default) and do what PUBLIC may, which includes NOTIFY."""
    name = f"kprintd_nobody_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'nobody'").format(sql.Identifier(name))
        )
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    params.update(user=name, password="nobody")
    try:
        yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (name,),
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def raise_alert(url: str, kind: str, message: str, **details: Any) -> dict[str, Any]:
    rows = query(
        url,
        "SELECT kitchen_raise_alert(%s, 'warning', %s, %s::jsonb) AS alert",
        (kind, message, json.dumps(details)),
    )
    return dict(rows[0]["alert"])


def notify_as(url: str, *payloads: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for payload in payloads:
            conn.execute("SELECT pg_notify('kitchen_alert', %s)", (payload,))


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    return out, err


# Payloads PostgreSQL lets anyone NOTIFY (at most 8000 bytes).
UNREADABLE = {
    "nested lists": "[" * 7990,
    "nested objects": '{"a":' * 1300 + "1" + "}" * 1300,
    "nested inside a real-looking alert": json.dumps(FAKE)[:-1] + ', "x": ' + "[" * 7000,
    "a 4,400-digit alert_id": '{"alert_id": ' + "9" * 4400 + "}",
    "an alert_id of 1e999": '{"alert_id": 1e999, "type": "x"}',
    "an alert_id that is an object": '{"alert_id": {"$gt": 0}}',
    "terminal escapes": "\x1b]0;owned\x07\x1b[2J not json",
    "a JSON list": "[1, 2, 3]",
    "JSON null": "null",
    "an odd time": json.dumps(FAKE | {"at": 5, "alert_id": "7"}),
    "7,999 characters": "x" * 7999,
}


def test_a_role_without_grants_cannot_log_an_alert_and_its_notifications_show_nothing(
    database_url: str, no_grants_url: str
) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        raise_alert(no_grants_url, "ticket_failed", "FAKE")
    first = raise_alert(database_url, "printer_down", "Bar is out of paper", station="bar")
    process = alerts_process(database_url, "--json", "--count", "1", "--timeout", "20")
    notify_as(no_grants_url, json.dumps(FAKE), json.dumps(FAKE | {"alert_id": first["alert_id"]}))
    notify_as(no_grants_url, *UNREADABLE.values())
    second = raise_alert(database_url, "printer_recovered", "Bar is ready again", station="bar")
    out, _ = finish(process)
    shown = [json.loads(line) for line in out.splitlines()]
    assert [a["alert_id"] for a in shown] == [second["alert_id"]], "only the logged alert"
    assert "FAKE" not in out


def test_a_huge_fake_alert_id_does_not_silence_the_real_alerts_after_it(
    database_url: str, no_grants_url: str
) -> None:
    process = alerts_process(database_url, "--json", "--count", "3", "--timeout", "20")
    notify_as(no_grants_url, json.dumps(FAKE))  # the old client took 10^15 as "seen up to"
    raised = [
        raise_alert(database_url, "printer_down", f"printer {n} is offline", printer_id=n)
        for n in (1, 2)
    ]
    notify_as(no_grants_url, json.dumps(FAKE | {"alert_id": 2**63 + 1}))
    raised.append(raise_alert(database_url, "printer_down", "printer 3 is offline", printer_id=3))
    out, _ = finish(process)
    assert [json.loads(line)["alert_id"] for line in out.splitlines()] == [
        a["alert_id"] for a in raised
    ]


def test_nested_and_garbage_payloads_crash_nothing_and_the_next_alert_is_shown_as_text(
    database_url: str, no_grants_url: str
) -> None:
    process = alerts_process(database_url, "--count", "1", "--timeout", "20")
    notify_as(no_grants_url, *UNREADABLE.values())
    raise_alert(database_url, "printer_down", "Kitchen printer is offline", station="kitchen")
    out, _ = finish(process)
    (line,) = out.splitlines()
    assert "WARNING   printer_down  [kitchen] Kitchen printer is offline" in line


def test_json_lines_are_the_logged_alerts_unchanged(conn: Conn, database_url: str) -> None:
    process = alerts_process(database_url, "--json", "--count", "2", "--timeout", "20")
    raise_alert(database_url, "printer_down", "Bar is out of paper", station="bar", printer_id=4)
    raise_alert(database_url, "ticket_failed", "Ticket 7 failed", ticket_id=7, station="bar")
    out, _ = finish(process)
    logged = conn.execute("SELECT alert FROM kitchen_alertlog ORDER BY id").fetchall()
    assert [json.loads(line) for line in out.splitlines()] == [r["alert"] for r in logged]
    assert all(line.isascii() for line in out.splitlines())


def test_an_alert_committed_after_a_later_one_is_shown_once(database_url: str) -> None:
    """Ids are taken before commit: "seen up to id N" alone would lose the slower one."""
    process = alerts_process(database_url, "--json", "--count", "3", "--timeout", "20")
    assert process.stdout is not None
    with psycopg.connect(database_url) as slow:  # one transaction, committed last
        early = slow.execute(
            "SELECT (kitchen_raise_alert('printer_down', 'warning', 'slow', '{}') ->> 'alert_id')"
        ).fetchone()
        late = raise_alert(database_url, "printer_recovered", "fast")
        assert early is not None and int(early[0]) < late["alert_id"]
        first_line = process.stdout.readline()  # "fast" is shown before "slow" commits
    raise_alert(database_url, "printer_down", "last")
    out, _ = finish(process)
    shown = [json.loads(line)["message"] for line in [first_line, *out.splitlines()]]
    assert shown == ["fast", "slow", "last"]


def test_control_and_invisible_characters_of_a_logged_alert_are_shown_escaped(
    database_url: str,
) -> None:
    process = alerts_process(database_url, "--count", "1", "--timeout", "20")
    raise_alert(
        database_url,
        "printer_down",
        "Printer \x1b[2J'Bar'\u202e for bar\u200b is offline",
        station="bar\x1b]0;x\x07",
    )
    out, _ = finish(process)
    assert "\x1b" not in out and "\u202e" not in out and "\u200b" not in out
    assert "[bar\\x1b]0;x\\x07] Printer \\x1b[2J'Bar'\\u202e for bar\\u200b is offline" in out
    status = subprocess.run(
        [sys.executable, "-m", "kprintd.cli", "status"],
        env=daemon_env(database_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "\x1b" not in status.stdout and "\u202e" not in status.stdout
    assert "Printer \\x1b[2J'Bar'\\u202e for bar\\u200b is offline" in status.stdout


@pytest.mark.parametrize("text", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_reading_an_odd_alert_never_raises(text: str) -> None:
    alert = parse_alert(text)
    assert isinstance(alert, dict)
    for as_json in (True, False):
        line = format_alert(alert, as_json)
        assert "\n" not in line and printable(line) == line


# --- The log is append-only for every session ----------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE kitchen_alertlog SET message = 'nothing happened'",
        "DELETE FROM kitchen_alertlog",
        "TRUNCATE kitchen_alertlog",
    ],
)
def test_the_alert_log_cannot_be_rewritten_with_replication_role_replica(
    database_url: str, statement: str
) -> None:
    raise_alert(database_url, "printer_down", "Bar is out of paper", printer_id=4)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET session_replication_role = replica")  # how triggers are usually skipped
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
        assert conn.execute("SELECT count(*) AS n FROM kitchen_alertlog").fetchone() == {"n": 1}
    triggers = query(
        database_url,
        "SELECT tgname, tgenabled FROM pg_trigger"
        " WHERE tgrelid = 'kitchen_alertlog'::regclass AND NOT tgisinternal ORDER BY tgname",
    )
    assert {t["tgname"]: t["tgenabled"] for t in triggers} == {
        "kitchen_alertlog_no_truncate": "A",
        "kitchen_alertlog_no_update_delete": "A",
    }
