"""Nothing a NOTIFY payload holds stops the daemon from listening, and a listener that dies anyway
is restarted, or the daemon exits for systemd to restart it.

Every daemon here sweeps once an hour: a ticket that prints was found through its notification.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, MutableMapping
from typing import Any

import psycopg
import pytest
from psycopg import sql
from structlog.testing import capture_logs

from kprintd import daemon as daemon_module
from kprintd import migrate
from kprintd.config import Settings
from kprintd.daemon import DropLog, payload_sample
from kprintd.db import notice_from_payload
from kprintd.harness import (
    FAST_SETTINGS,
    PostgresServer,
    Restaurant,
    RunningDaemon,
    query,
    running_daemon,
    wait_until,
)
from tests.cli.test_startup_errors import kprintd, one_error_line, with_params

NO_SWEEP: dict[str, Any] = {"sweep_interval_s": 3600.0}


def listener_pid(database_url: str) -> int | None:
    rows = query(
        database_url,
        "SELECT pid FROM pg_stat_activity"
        " WHERE application_name = 'kprintd-listener' AND datname = current_database()",
    )
    return rows[0]["pid"] if len(rows) == 1 else None


def notify(database_url: str, payload: str) -> None:
    query(database_url, "SELECT pg_notify('kitchen_ticket_new', %s)", (payload,))


def terminate_listener(database_url: str, via: str | None = None) -> None:
    """End the daemon's LISTEN connection, from a connection to `via` (default: the database)."""
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    query(
        via or database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'kprintd-listener' AND datname = %s",
        (dbname,),
    )


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def unreadable_payloads(brand_id: uuid.UUID) -> dict[str, str]:
    return {
        "7,000 '['": "[" * 7000,
        "objects nested 1,300 deep": '{"a":' * 1300 + "1" + "}" * 1300,
        "a 7,900-character station": json.dumps({"ticket_id": 1, "station": "k" * 7900}),
        "terminal escapes": "\x1b]0;owned\x07\x1b[2J\r\n\x08 not json",
        "a station with a bell": json.dumps(
            {"ticket_id": 1, "station": "kit\u0007chen", "brand_id": str(brand_id)}
        ),
        "a station of one lone surrogate": '{"ticket_id": 1, "station": "\\ud800"}',
        "a JSON list": "[1, 2, 3]",
        "a JSON number": "42",
        "a JSON string": '"kitchen"',
        "JSON null": "null",
        "a 5,000-digit number": "9" * 5000,
        "a brand that is an object": json.dumps({"station": "kitchen", "brand_id": {"$ne": 1}}),
    }


# Readable notices for the real route whose ticket_id no ticket can have: they only wake it.
WRONG_TICKET_IDS: list[Any] = ["7", 1.5, True, -1, 0, 2**64, {"id": 7}, [7], None]


def test_no_payload_stops_the_listener_and_each_dropped_one_is_logged_once(
    database_url: str, restaurant: Restaurant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "DROP_LOG_BURST", 100)
    kitchen = restaurant.printer("kitchen")
    unreadable = unreadable_payloads(restaurant.brand_id)
    wrong_ids = {
        f"ticket_id {value!r}": json.dumps(
            {"ticket_id": value, "station": "kitchen", "brand_id": str(restaurant.brand_id)}
        )
        for value in WRONG_TICKET_IDS
    }
    with capture_logs() as logs, running_daemon(database_url, **NO_SWEEP) as daemon:
        assert daemon.daemon is not None
        dispatcher = daemon.daemon.dispatcher
        pid = listener_pid(database_url)
        for printed, (what, payload) in enumerate((unreadable | wrong_ids).items(), start=1):
            notify(database_url, payload)
            restaurant.send("kitchen")
            wait_until(
                lambda n=printed: len(kitchen.tickets()) == n,  # type: ignore[misc]
                what=f"a ticket after {what}",
            )
            assert dispatcher.listening, what
            assert listener_pid(database_url) == pid, f"{what}: the listener reconnected"
    dropped = events(logs, "notification dropped")
    assert sorted(entry["payload_chars"] for entry in dropped) == sorted(
        len(payload) for payload in unreadable.values()
    ), "every unreadable payload is logged once, and no readable one"
    for entry in dropped:
        assert entry["reason"] == "unreadable"
        sample = entry["payload"]
        assert len(sample) <= daemon_module.PAYLOAD_SAMPLE_CHARS
        assert sample.isascii() and sample.isprintable(), sample
    assert any(entry["payload"].startswith("\\x1b]0;owned\\x07") for entry in dropped)
    assert not events(logs, "the listener failed; restarting it")


def test_a_listener_that_dies_is_restarted(
    database_url: str, restaurant: Restaurant, monkeypatch: pytest.MonkeyPatch
) -> None:
    kitchen = restaurant.printer("kitchen")
    with capture_logs() as logs, running_daemon(database_url, **NO_SWEEP) as daemon:
        assert daemon.daemon is not None
        dispatcher = daemon.daemon.dispatcher
        real_scan = dispatcher.scan
        bugs = [RuntimeError("a bug in the scan")]

        async def scan_with_one_bug() -> int:
            if bugs:
                raise bugs.pop()
            return await real_scan()

        monkeypatch.setattr(dispatcher, "scan", scan_with_one_bug)
        first_pid = listener_pid(database_url)
        terminate_listener(database_url)  # the reconnect's scan meets the bug
        wait_until(lambda: not bugs, what="the bug")
        wait_until(
            lambda: dispatcher.listening and listener_pid(database_url) not in (None, first_pid),
            what="listening again",
        )
        restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 1, what="a ticket after the restart")
        assert not daemon.daemon.stop_requested.is_set()
    (failure,) = events(logs, "the listener failed; restarting it")
    assert failure["exc_info"] is True
    assert events(logs, "listening for tickets"), "its return is logged"


def test_a_listener_that_keeps_dying_ends_the_daemon_with_exit_1(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_module, "LISTENER_RESTARTS_MAX", 2)
    monkeypatch.setattr(daemon_module, "LISTENER_RESTART_PAUSE_S", 0.01)
    settings = Settings(database_url=database_url, **{**FAST_SETTINGS, **NO_SWEEP})
    daemon = RunningDaemon(settings)
    with capture_logs() as logs:
        daemon.start()
        assert daemon.daemon is not None

        async def broken_scan() -> int:
            raise RuntimeError("a bug in the scan")

        monkeypatch.setattr(daemon.daemon.dispatcher, "scan", broken_scan)
        terminate_listener(database_url)
        wait_until(lambda: daemon.exit_code is not None, what="the daemon to give up")
        assert daemon.stop() == daemon_module.EXIT_LISTENER_FAILED
    assert len(events(logs, "the listener failed; restarting it")) == 2
    (gave_up,) = events(logs, "the listener keeps failing; exiting for systemd to restart kprintd")
    assert gave_up["failures"] == 3


def test_listening_is_false_while_the_listener_cannot_reconnect(
    database_url: str, restaurant: Restaurant, postgres_server: PostgresServer
) -> None:
    kitchen = restaurant.printer("kitchen")
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    admin_url = postgres_server.admin_conninfo
    with running_daemon(database_url, **NO_SWEEP) as daemon:
        assert daemon.daemon is not None
        dispatcher = daemon.daemon.dispatcher
        assert dispatcher.listening
        query(admin_url, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        try:
            terminate_listener(database_url, via=admin_url)
            wait_until(lambda: not dispatcher.listening, what="the listener to notice")
        finally:
            query(admin_url, f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        wait_until(lambda: dispatcher.listening, what="listening again")
        restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 1, what="a ticket after the reconnect")
        assert not daemon.daemon.stop_requested.is_set(), "a refused connection is retried"


@pytest.fixture
def sql_ascii_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated database in SQL_ASCII, where PostgreSQL takes any bytes as a payload."""
    name = f"kprintd_sql_ascii_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    create = (
        "CREATE DATABASE {} TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL(create).format(sql.Identifier(name)))
    try:
        url = postgres_server.conninfo(name)
        migrate.migrate(url)
        yield url
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_bytes_the_client_encoding_cannot_decode_stop_neither_the_listener_nor_the_ticket_after(
    sql_ascii_database_url: str,
) -> None:
    # A SQL_ASCII database hands any bytes on, and WIN1252 leaves 0x81 undefined.
    url = with_params(sql_ascii_database_url, client_encoding="WIN1252")
    restaurant = Restaurant(url)
    try:
        kitchen = restaurant.printer("kitchen")
        product = restaurant.product("kitchen")
        with capture_logs() as logs, running_daemon(url, **NO_SWEEP) as daemon:
            assert daemon.daemon is not None
            pid = listener_pid(url)
            # One transaction: the ticket's notification most likely comes in the same read as
            # the bytes, and is lost with them.
            with psycopg.connect(url) as pos:
                pos.execute(b"SELECT pg_notify('kitchen_ticket_new', E'\\x81\\xff caf\\xe9')")
                bill_id = pos.execute(
                    "INSERT INTO pos_bill (brand_id, bill_number) VALUES (%s, 'B-1') RETURNING id",
                    (restaurant.brand_id,),
                ).fetchone()[0]  # type: ignore[index]
                pos.execute(
                    "INSERT INTO pos_billitem (bill_id, product_id, quantity) VALUES (%s, %s, 1)",
                    (bill_id, product),
                )
                pos.execute("SELECT kitchen_create_tickets(%s)", (bill_id,))
            wait_until(lambda: len(kitchen.tickets()) == 1, what="the ticket after the bytes")
            assert listener_pid(url) == pid and daemon.daemon.dispatcher.listening
    finally:
        restaurant.stop()
    (dropped,) = events(logs, "notification dropped")
    assert (dropped["reason"], dropped["payload"]) == ("undecodable", "\\x81\\xff caf\\xe9")


def test_a_payload_longer_than_notify_allows_is_refused_however_well_formed() -> None:
    # PostgreSQL refuses such a NOTIFY, so only a unit test can hand one over.
    notice = {"ticket_id": 1, "station": "kitchen", "brand_id": None}
    assert notice_from_payload(json.dumps(notice)) is not None
    assert notice_from_payload(json.dumps(notice | {"padding": "x" * 8000})) is None


def test_a_payload_sample_is_short_and_printable() -> None:
    sample = payload_sample("\x1b[2J\x00\ud800é🍜" * 1000)
    assert sample.startswith("\\x1b[2J\\x00\\ud800\\xe9\\U0001f35c")
    assert len(sample) == 200 and sample.isascii() and sample.isprintable()


def test_a_flood_of_dropped_payloads_is_logged_a_few_lines_and_a_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drops = DropLog()
    with capture_logs() as logs:
        for n in range(daemon_module.DROP_LOG_BURST + 15):
            drops.drop("unreadable", f"junk {n}")
        monkeypatch.setattr(daemon_module, "DROP_LOG_WINDOW_S", 0.0)  # the window is over
        drops.tick()
    assert len(events(logs, "notification dropped")) == daemon_module.DROP_LOG_BURST
    (count,) = events(logs, "more notifications dropped")
    assert count["count"] == 15


def test_run_refuses_to_read_text_as_sql_ascii(sql_ascii_database_url: str) -> None:
    line = one_error_line(kprintd(sql_ascii_database_url, "run"))
    assert "SQL_ASCII" in line and "client_encoding=UTF8" in line
