"""Planned maintenance windows (kitchen_stationprinterschedule): refused when backwards, shown to
DBAs, skipped by routing without a failure, held tickets printed once the window ends, and no
health check or alert for a printer unplugged on purpose."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from psycopg import errors

from kprintd.db import RoutePrinter
from kprintd.dispatch import PRINTER_LIST_MAX_AGE_S, _still_current
from kprintd.harness import (
    Restaurant,
    all_settled,
    has_retry_banner,
    log_actions,
    make_brand,
    make_printer,
    query,
    received_alerts,
    running_daemon,
    ticket,
    ticket_id_of,
    wait_until,
)

Conn = psycopg.Connection[dict[str, Any]]


def book(conn_or_url: Conn | str, printer_id: int, starts: str, ends: str) -> int:
    """A window from now + `starts` until now + `ends` (PostgreSQL intervals); returns its id."""
    sql = (
        "INSERT INTO kitchen_stationprinterschedule (printer_id, starts_at, ends_at, reason,"
        " created_by) VALUES (%s, now() + %s::interval, now() + %s::interval, 'cutter swap',"
        " 'it:andi') RETURNING id"
    )
    if isinstance(conn_or_url, str):
        return int(query(conn_or_url, sql, (printer_id, starts, ends))[0]["id"])
    row = conn_or_url.execute(sql, (printer_id, starts, ends)).fetchone()
    assert row is not None
    return int(row["id"])


def printer_id(url: str, name: str) -> int:
    rows = query(url, "SELECT id FROM kitchen_stationprinter WHERE printer_name = %s", (name,))
    return int(rows[0]["id"])


# --- The schedule in SQL --------------------------------------------------------------------------


def test_a_window_must_end_after_it_starts(conn: Conn) -> None:
    printer = make_printer(conn, make_brand(conn), "bar")
    with pytest.raises(errors.CheckViolation, match="ends_after_start"):
        book(conn, printer, "1 hour", "1 hour")
    with pytest.raises(errors.ForeignKeyViolation):
        book(conn, printer + 1000, "0", "1 hour")


def test_routing_sees_the_window_in_force_or_the_next_one(conn: Conn) -> None:
    brand = make_brand(conn)
    in_force = make_printer(conn, brand, "kitchen", name="in force", priority=1)
    upcoming = make_printer(conn, brand, "kitchen", name="upcoming", priority=2)
    past = make_printer(conn, brand, "kitchen", name="past", priority=3)
    book(conn, in_force, "-10 minutes", "20 minutes")
    book(conn, in_force, "-5 minutes", "50 minutes")  # overlapping: the later end counts
    book(conn, in_force, "2 hours", "3 hours")
    book(conn, upcoming, "3 hours", "4 hours")
    book(conn, upcoming, "1 hour", "2 hours")  # the next to start, not the last to end
    book(conn, past, "-2 hours", "-1 hour")
    rows = conn.execute(
        "SELECT printer_name,"
        " round(extract(epoch FROM maintenance_from - now()) / 60) AS from_min,"
        " round(extract(epoch FROM maintenance_until - now()) / 60) AS until_min"
        " FROM kitchen_route_printers(%s, NULL, 'kitchen')",
        (brand,),
    ).fetchall()
    assert [(r["printer_name"], r["from_min"], r["until_min"]) for r in rows] == [
        ("in force", -5, 50),
        ("upcoming", 60, 120),
        ("past", None, None),
    ]


def test_health_checks_leave_a_printer_in_maintenance_alone(conn: Conn) -> None:
    brand = make_brand(conn)
    resting = make_printer(conn, brand, "kitchen", name="resting")
    later = make_printer(conn, brand, "kitchen", name="later")
    make_printer(conn, brand, "bar", name="bar")
    book(conn, resting, "-1 minute", "1 hour")
    book(conn, later, "1 hour", "2 hours")
    names = [r["printer_name"] for r in conn.execute("SELECT * FROM kitchen_health_printers()")]
    assert names == ["later", "bar"]


def test_dbas_see_each_window_its_state_and_whether_the_station_keeps_printing(
    conn: Conn,
) -> None:
    brand = make_brand(conn)
    only_bar = make_printer(conn, brand, "bar", name="bar")
    primary = make_printer(conn, brand, "kitchen", name="primary", priority=1)
    backup = make_printer(conn, brand, "kitchen", name="backup", priority=2)
    book(conn, only_bar, "-1 minute", "1 hour")
    book(conn, primary, "1 hour", "2 hours")
    book(conn, backup, "90 minutes", "3 hours")  # overlaps the primary's: both down at 1:30
    book(conn, primary, "-3 hours", "-2 hours")
    rows = conn.execute(
        "SELECT printer_name, state, station_keeps_printing, reason, created_by"
        " FROM kitchen_printer_maintenance ORDER BY schedule_id"
    ).fetchall()
    assert [(r["printer_name"], r["state"], r["station_keeps_printing"]) for r in rows] == [
        ("bar", "active", False),
        ("primary", "upcoming", False),
        ("backup", "upcoming", False),
        ("primary", "past", True),
    ]
    assert (rows[0]["reason"], rows[0]["created_by"]) == ("cutter swap", "it:andi")
    status = conn.execute(
        "SELECT printer_name, state, maintenance_until IS NOT NULL AS resting"
        " FROM kitchen_printer_status ORDER BY printer_id"
    ).fetchall()
    assert [(s["printer_name"], s["state"], s["resting"]) for s in status] == [
        ("bar", "maintenance", True),
        ("primary", "unknown", False),
        ("backup", "unknown", False),
    ]


def test_a_printer_offline_before_its_window_needs_no_attention_during_it(conn: Conn) -> None:
    brand = make_brand(conn)
    bar = make_printer(conn, brand, "bar", name="bar")
    conn.execute(
        "SELECT * FROM kitchen_record_health_checks(%s::jsonb)",
        (json.dumps([{"printer_id": bar, "is_online": False, "error_code": "connect_timeout"}]),),
    )
    report = conn.execute("SELECT kitchen_status_report() AS r").fetchone()
    assert report is not None
    assert [a["kind"] for a in report["r"]["attention"]] == ["daemon", "printer"]
    book(conn, bar, "-1 minute", "1 hour")
    report = conn.execute("SELECT kitchen_status_report() AS r").fetchone()
    assert report is not None
    assert [p["state"] for p in report["r"]["printers"]] == ["maintenance"]
    assert [a["kind"] for a in report["r"]["attention"]] == ["daemon"]


def test_a_printers_windows_go_with_it(conn: Conn) -> None:
    printer = make_printer(conn, make_brand(conn), "bar")
    book(conn, printer, "0", "1 hour")
    conn.execute("DELETE FROM kitchen_stationprinter WHERE id = %s", (printer,))
    assert conn.execute("SELECT count(*) AS n FROM kitchen_stationprinterschedule").fetchone() == {
        "n": 0
    }


@pytest.mark.parametrize(
    ("starts_in", "ends_in", "at", "expected"),
    [
        (None, None, 0.0, False),
        (-1.0, 1.0, 0.0, True),
        (0.0, 1.0, 0.0, True),  # the start is inside
        (-1.0, 0.0, 0.0, False),  # the end is not
        (1.0, 2.0, 0.0, False),
        (1.0, 2.0, 1.5, True),
    ],
)
def test_a_route_printer_knows_when_it_is_in_maintenance(
    starts_in: float | None, ends_in: float | None, at: float, expected: bool
) -> None:
    printer = RoutePrinter(
        1, "Bar", "127.0.0.1", 9100, 1, 80, 32, None, False, 1, True, "CP437", "partial",
        maintenance_from=starts_in, maintenance_until=ends_in,
    )  # fmt: skip
    assert printer.in_maintenance(at) is expected


# --- The daemon -----------------------------------------------------------------------------------


def test_a_primary_in_maintenance_is_skipped_for_the_backup_without_a_failure(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary")
    backup = restaurant.printer("kitchen", 2, name="backup")
    book(database_url, printer_id(database_url, "primary"), "-1 minute", "1 hour")
    with running_daemon(database_url, health_interval_s=0.2):
        ids = [restaurant.send("kitchen")[0] for _ in range(3)]
        wait_until(lambda: all_settled(database_url), what="tickets printed")
        time.sleep(0.5)  # two health rounds
    assert [ticket_id_of(t.text) for t in backup.tickets()] == ids
    assert not any(has_retry_banner(t.text) for t in backup.tickets())
    assert primary.stats().connections == 0, "neither tickets nor health checks reach it"
    for ticket_id in ids:
        assert log_actions(database_url, ticket_id) == ["created", "print_start", "print_success"]
    primary_row = query(
        database_url,
        "SELECT failed_prints, total_prints FROM kitchen_stationprinter"
        " WHERE printer_name = 'primary'",
    )[0]
    assert (primary_row["failed_prints"], primary_row["total_prints"]) == (0, 0)
    checked = query(
        database_url,
        "SELECT DISTINCT sp.printer_name FROM kitchen_printerhealthcheck h"
        " JOIN kitchen_stationprinter sp ON sp.id = h.printer_id",
    )
    assert [c["printer_name"] for c in checked] == ["backup"]
    assert [a["type"] for a in received_alerts(alerts)] == []


@pytest.mark.slow
def test_a_station_whose_printers_are_all_in_maintenance_holds_its_tickets_until_one_is_back(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    bar = restaurant.printer("bar")
    kitchen = restaurant.printer("kitchen")
    window = book(database_url, printer_id(database_url, "bar-1"), "-1 minute", "1 hour")
    with running_daemon(database_url):
        bar_ids = [restaurant.send("bar")[0] for _ in range(2)]
        (kitchen_id,) = restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 1, what="the kitchen ticket")
        time.sleep(1.0)  # two sweeps: held tickets stay unclaimed and unlogged
        for ticket_id in bar_ids:
            row = ticket(database_url, ticket_id)
            assert (row["status"], row["print_attempts"]) == ("new", 0)
        assert bar.stats().connections == 0
        # The technician finishes early: shortening the window lets the tickets go.
        query(
            database_url,
            "UPDATE kitchen_stationprinterschedule SET ends_at = now() WHERE id = %s",
            (window,),
        )
        wait_until(lambda: all_settled(database_url), what="held tickets printed")
    assert [ticket_id_of(t.text) for t in bar.tickets()] == bar_ids
    assert not any(has_retry_banner(t.text) for t in bar.tickets())
    for ticket_id in [*bar_ids, kitchen_id]:
        assert log_actions(database_url, ticket_id) == ["created", "print_start", "print_success"]
    heard = received_alerts(alerts)
    held = [a for a in heard if a["type"] == "station_in_maintenance"]
    assert len(held) == 1, "one alert per hold, not one per ticket or per look"
    assert (held[0]["station"], held[0]["printers"], held[0]["severity"]) == (
        "bar",
        ["bar-1"],
        "warning",
    )
    assert held[0]["until"]
    (back,) = (a for a in heard if a["type"] == "station_recovered")
    assert (back["station"], back["reason"], back["severity"]) == (
        "bar",
        "maintenance_over",
        "info",
    )
    assert heard.index(held[0]) < heard.index(back)


@pytest.mark.slow
def test_a_window_that_ends_by_itself_releases_the_held_tickets(
    database_url: str, restaurant: Restaurant
) -> None:
    bar = restaurant.printer("bar")
    book(database_url, printer_id(database_url, "bar-1"), "-1 minute", "1.5 seconds")
    with running_daemon(database_url):
        (ticket_id,) = restaurant.send("bar")
        time.sleep(0.5)
        assert ticket(database_url, ticket_id)["status"] == "new"
        wait_until(lambda: all_settled(database_url), what="the held ticket printed")
    assert [ticket_id_of(t.text) for t in bar.tickets()] == [ticket_id]
    assert ticket(database_url, ticket_id)["print_attempts"] == 1


@pytest.mark.slow
def test_a_window_that_follows_another_is_seen_when_the_first_ends(
    database_url: str, restaurant: Restaurant
) -> None:
    bar = restaurant.printer("bar")
    printer = printer_id(database_url, "bar-1")
    # One statement, one now(): the second window starts exactly when the first ends. Routing
    # reads only the first at first.
    query(
        database_url,
        "INSERT INTO kitchen_stationprinterschedule (printer_id, starts_at, ends_at)"
        " VALUES (%(p)s, now() - interval '1 minute', now() + interval '1 second'),"
        " (%(p)s, now() + interval '1 second', now() + interval '1 hour')",
        {"p": printer},
    )
    with running_daemon(database_url):
        (ticket_id,) = restaurant.send("bar")
        time.sleep(2.0)  # past the first window's end: the second holds the ticket
        assert ticket(database_url, ticket_id)["status"] == "new"
        assert bar.stats().connections == 0


def test_a_route_reads_its_printers_again_after_a_known_window_ends_or_ten_minutes() -> None:
    def printer(until: float | None) -> RoutePrinter:
        return RoutePrinter(
            1, "Bar", "127.0.0.1", 9100, 1, 80, 32, None, False, 1, True, "CP437", "partial",
            maintenance_from=None if until is None else 0.0, maintenance_until=until,
        )  # fmt: skip

    assert _still_current(100.0, [printer(None), printer(500.0)], now=400.0)
    assert not _still_current(100.0, [printer(None), printer(500.0)], now=500.0)
    assert not _still_current(100.0, [printer(None)], now=100.0 + PRINTER_LIST_MAX_AGE_S)
