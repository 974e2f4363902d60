"""Printer health monitoring: the rows checks write, the routing they feed, one alert per change,
retention. End to end over real TCP with emulated printers, plus the pure decision rules."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from kprintd.config import Settings
from kprintd.db import HealthTarget
from kprintd.emulator import Fault, FaultMode
from kprintd.harness import (
    Restaurant,
    all_settled,
    query,
    received_alerts,
    running_daemon,
    ticket_id_of,
    wait_until,
)
from kprintd.health import StationKey, observe_error, observe_state, station_groups
from kprintd.printer_status import PaperState, PrinterState
from kprintd.printers import (
    DOWN_BY_PRINTING,
    PRINT_ONLY_ERRORS,
    Printers,
    alert_for_change,
    reconcile,
    trip,
)
from kprintd.routing import BreakerState, CircuitBreaker
from kprintd.transport import PrinterError

FAST_HEALTH = 0.2


def printer_id(url: str, name: str) -> int:
    return int(
        query(url, "SELECT id FROM kitchen_stationprinter WHERE printer_name = %s", (name,))[0][
            "id"
        ]
    )


def checks(url: str, name: str) -> list[dict[str, Any]]:
    return query(
        url,
        "SELECT h.* FROM kitchen_printerhealthcheck h"
        " JOIN kitchen_stationprinter sp ON sp.id = h.printer_id"
        " WHERE sp.printer_name = %s ORDER BY h.id",
        (name,),
    )


def wait_for_checks(url: str, name: str, count: int) -> list[dict[str, Any]]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (rows := checks(url, name)) and len(rows) >= count and rows,
        what=f"{count} health checks of {name}",
    )


def checks_after(url: str, name: str, seen: int, more: int) -> list[dict[str, Any]]:
    """Waits until `more` checks of the printer were recorded after the first `seen`."""
    return wait_for_checks(url, name, seen + more)[seen:]


# --- What a check records -------------------------------------------------------------------------


def test_each_printer_condition_gives_the_right_health_row(
    database_url: str, restaurant: Restaurant
) -> None:
    restaurant.printer("ok", name="ok")
    restaurant.printer("low", name="low").set_paper(PaperState.NEAR_END)
    restaurant.printer("out", name="out").set_paper(PaperState.OUT)
    restaurant.printer("cover", name="cover").set_cover_open(True)
    restaurant.printer("offline", name="offline").set_online(False)
    restaurant.printer("refused", name="refused", fault=FaultMode.REFUSE)
    restaurant.printer("blackhole", name="blackhole", fault=FaultMode.BLACK_HOLE)
    names = ["ok", "low", "out", "cover", "offline", "refused", "blackhole"]
    with running_daemon(database_url, health_interval_s=FAST_HEALTH):
        rows = {name: wait_for_checks(database_url, name, 1)[0] for name in names}
    columns = ("is_online", "paper_status", "error_code", "cutter_ok", "temperature_ok")
    seen = {name: tuple(rows[name][c] for c in columns) for name in names}
    assert seen == {
        "ok": (True, "ok", None, True, True),
        "low": (True, "low", None, True, True),
        "out": (True, "out", "paper_out", True, True),
        "cover": (True, "ok", "cover_open", True, True),
        "offline": (False, "ok", "offline", True, True),
        "refused": (False, "unknown", "connection_refused", None, None),
        "blackhole": (True, "unknown", None, None, None),
    }
    for name in ("ok", "low", "out", "cover", "offline"):
        assert rows[name]["response_time_ms"] >= 0, "a printer that answered has a response time"
    assert rows["refused"]["response_time_ms"] is None
    assert rows["blackhole"]["response_time_ms"] is None, "no answer, no response time"
    assert "refused" in rows["refused"]["error_message"]
    assert rows["cover"]["error_message"] == "the printer's cover is open"
    states = {
        r["printer_name"]: r["state"]
        for r in query(database_url, "SELECT printer_name, state FROM kitchen_printer_status")
    }
    assert states == {
        "ok": "ok",
        "low": "paper_low",
        "out": "paper_out",
        "cover": "cover_open",
        "offline": "offline",
        "refused": "offline",
        "blackhole": "no_status",
    }


def test_checks_cover_only_the_daemons_scope_and_active_printers(database_url: str) -> None:
    mine = Restaurant(database_url, store_id=uuid.uuid4())
    theirs = Restaurant(database_url, store_id=uuid.uuid4())
    try:
        mine.printer("kitchen", name="mine")
        theirs.printer("kitchen", name="theirs")
        mine.printer("bar", name="retired")
        query(database_url, "UPDATE kitchen_stationprinter SET is_active = false"
              " WHERE printer_name = 'retired'")  # fmt: skip
        with running_daemon(
            database_url, health_interval_s=FAST_HEALTH, store_id=str(mine.store_id)
        ):
            wait_for_checks(database_url, "mine", 3)
        assert checks(database_url, "theirs") == []
        assert checks(database_url, "retired") == []
    finally:
        mine.stop()
        theirs.stop()


# --- Routing --------------------------------------------------------------------------------------


def test_routing_skips_a_printer_whose_check_failed_until_a_check_says_it_is_back(
    database_url: str, restaurant: Restaurant
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary")
    backup = restaurant.printer("kitchen", 2, name="backup")
    primary.set_cover_open(True)
    primary_id = printer_id(database_url, "primary")
    with running_daemon(database_url, health_interval_s=FAST_HEALTH) as daemon:
        assert daemon.daemon is not None
        board = daemon.daemon.printers.board
        wait_for_checks(database_url, "primary", 1)
        wait_until(lambda: board.breaker(primary_id).state is BreakerState.OPEN)
        first = [restaurant.send("kitchen")[0] for _ in range(2)]
        wait_until(lambda: len(backup.tickets()) == 2, what="both tickets on the backup")
        wait_until(lambda: all_settled(database_url))
        tried = query(
            database_url,
            "SELECT (metadata->>'tried')::int AS tried FROM kitchen_kitchenticketlog"
            " WHERE action = 'print_success' AND ticket_id = ANY(%s)",
            (first,),
        )
        assert [t["tried"] for t in tried] == [1, 1], "the backup was the first printer tried"

        primary.set_cover_open(False)
        wait_until(lambda: board.breaker(primary_id).state is BreakerState.CLOSED)
        (third,) = restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url))
    failed_prints = query(
        database_url,
        "SELECT failed_prints FROM kitchen_stationprinter WHERE printer_name = 'primary'",
    )[0]["failed_prints"]
    assert failed_prints == 0, "no ticket was ever sent to the primary while its cover was open"
    assert len(primary.tickets()) == 1
    assert ticket_id_of(primary.tickets()[0].text) == third


@pytest.mark.slow
def test_a_printer_that_loses_ticket_data_stays_skipped_while_its_checks_pass(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    restaurant.printer("kitchen", 1, name="primary", fault=Fault.drop_after_bytes(40))
    backup = restaurant.printer("kitchen", 2, name="backup")
    with running_daemon(database_url, health_interval_s=FAST_HEALTH):
        restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url))
        seen = len(wait_for_checks(database_url, "primary", 1))
        checks_after(database_url, "primary", seen, 3)
        restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url))
        kinds = [(a["type"], a["printer"]) for a in received_alerts(alerts)]
    assert {c["error_code"] for c in checks(database_url, "primary")} == {None}, "checks pass"
    assert len(backup.tickets()) == 2
    failed_prints = query(
        database_url,
        "SELECT failed_prints FROM kitchen_stationprinter WHERE printer_name = 'primary'",
    )[0]["failed_prints"]
    assert failed_prints == 1, "after losing one ticket it was not tried again"
    assert kinds == [("printer_down", "primary")], "no 'recovered' from a passing check"


# --- Alerts ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_alert_per_state_change_not_per_check(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    bar = restaurant.printer("bar", name="bar")
    steps: list[tuple[PrinterState, list[tuple[str, str | None]]]] = [
        (PrinterState(paper=PaperState.NEAR_END), [("printer_paper_low", "paper_low")]),
        (
            PrinterState(paper=PaperState.OUT),
            [("printer_down", "paper_out"), ("station_unroutable", None)],
        ),
        (PrinterState(cover_open=True), [("printer_down", "cover_open")]),
        (PrinterState(online=False), [("printer_down", "offline")]),
        (PrinterState(), [("printer_recovered", "ok"), ("station_recovered", None)]),
    ]
    with running_daemon(database_url, health_interval_s=FAST_HEALTH):
        seen = len(wait_for_checks(database_url, "bar", 2))
        assert received_alerts(alerts) == [], "a printer found fine at start is no news"
        for state, expected in steps:
            bar.set_state(state)
            # Three checks after the change: the change is announced once, not three times.
            seen += len(checks_after(database_url, "bar", seen, 3))
            got = [(a["type"], a.get("state")) for a in received_alerts(alerts)]
            assert got == expected, f"after {state}"


def test_alert_payload_names_the_printer_station_and_change(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    restaurant.printer("kitchen", 1, name="Main Kitchen")
    restaurant.printer("kitchen", 2, name="Backup Kitchen").set_paper(PaperState.OUT)
    with running_daemon(database_url, health_interval_s=FAST_HEALTH):
        wait_for_checks(database_url, "Backup Kitchen", 2)
        (alert,) = received_alerts(alerts)
    assert alert["type"] == "printer_down"
    assert alert["severity"] == "warning"
    assert alert["state"] == "paper_out"
    assert alert["previous_state"] is None
    assert alert["error_code"] == "paper_out"
    assert alert["station"] == "kitchen"
    assert alert["printer"] == "Backup Kitchen"
    assert alert["printer_id"] == printer_id(database_url, "Backup Kitchen")
    assert alert["brand_id"] == str(restaurant.brand_id)
    assert alert["source"] == "health_check"
    assert alert["at"].endswith("Z")
    assert alert["message"] == (
        "Printer 'Backup Kitchen' for kitchen is out of paper."
        " Its tickets go to a backup printer if there is one."
    )


@pytest.mark.slow
def test_a_print_failure_and_a_failed_check_announce_the_outage_once(
    database_url: str, restaurant: Restaurant, alerts: psycopg.Connection[Any]
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary", fault=FaultMode.REFUSE)
    restaurant.printer("kitchen", 2, name="backup")
    # The first check comes one interval after start: the print failure is seen first.
    with running_daemon(database_url, health_interval_s=1.0):
        restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url))
        seen = len(wait_for_checks(database_url, "primary", 2))
        primary.set_fault(FaultMode.NONE)
        checks_after(database_url, "primary", seen, 2)
        received = received_alerts(alerts)
        kinds = [(a["type"], a.get("printer")) for a in received]
    assert kinds == [("printer_down", "primary"), ("printer_recovered", "primary")]
    down, recovered = received
    assert (down["source"], down["error_code"]) == ("print", "connection_refused")
    assert down["printer_id"] == printer_id(database_url, "primary")
    assert recovered["source"] == "health_check"


# --- Retention ------------------------------------------------------------------------------------


def test_retention_prunes_old_health_rows_and_nothing_else(
    database_url: str, restaurant: Restaurant
) -> None:
    restaurant.printer("kitchen", name="kitchen")
    pid = printer_id(database_url, "kitchen")
    ages = [timedelta(days=45), timedelta(days=31), timedelta(days=29), timedelta(hours=1)]
    kept_ids = []
    for age in ages:
        row = query(
            database_url,
            "INSERT INTO kitchen_printerhealthcheck (printer_id, checked_at, is_online)"
            " VALUES (%s, now() - %s, true) RETURNING id",
            (pid, age),
        )[0]
        if age < timedelta(days=30):
            kept_ids.append(row["id"])
    (ticket_id,) = restaurant.send("kitchen")
    query(
        database_url,
        "INSERT INTO kitchen_kitchenticketlog (ticket_id, timestamp, new_status, action, actor)"
        " VALUES (%s, now() - interval '400 days', 'new', 'created', 'archive')",
        (ticket_id,),
    )
    log_before = query(database_url, "SELECT count(*) AS n FROM kitchen_kitchenticketlog")[0]["n"]
    with running_daemon(database_url, health_interval_s=FAST_HEALTH, health_retention_days=30):
        wait_until(
            lambda: (
                query(
                    database_url,
                    "SELECT count(*) AS n FROM kitchen_printerhealthcheck"
                    " WHERE checked_at < now() - interval '30 days'",
                )[0]["n"]
                == 0
            ),
            what="old health rows pruned",
        )
        wait_until(lambda: all_settled(database_url))
    remaining = {r["id"] for r in query(database_url, "SELECT id FROM kitchen_printerhealthcheck")}
    assert set(kept_ids) <= remaining
    log_rows = query(
        database_url, "SELECT action, timestamp < now() - interval '1 year' AS old"
        " FROM kitchen_kitchenticketlog ORDER BY id",
    )  # fmt: skip
    assert len(log_rows) >= log_before
    assert {"action": "created", "old": True} in log_rows, "the ticket log is never pruned"


def test_prune_function_deletes_in_batches_of_the_given_size(
    conn: psycopg.Connection[Any],
) -> None:
    brand = conn.execute("INSERT INTO core_brand (name) VALUES ('b') RETURNING id").fetchone()
    assert brand is not None
    pid = conn.execute(
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip)"
        " VALUES (%s, 'bar', 'bar', '127.0.0.1') RETURNING id",
        (brand["id"],),
    ).fetchone()
    assert pid is not None
    conn.execute(
        "INSERT INTO kitchen_printerhealthcheck (printer_id, checked_at, is_online)"
        " SELECT %s, now() - make_interval(days => d), true FROM unnest(ARRAY[2, 8, 9, 10]) d",
        (pid["id"],),
    )

    def prune(days: int, batch: int) -> int:
        row = conn.execute("SELECT kitchen_prune_health_checks(%s, %s) AS n", (days, batch))
        return int(row.fetchone()["n"])  # type: ignore[index]

    assert [prune(7, 2), prune(7, 2), prune(7, 2)] == [2, 1, 0]
    left = conn.execute("SELECT (now() - checked_at) < interval '3 days' AS recent"
                        " FROM kitchen_printerhealthcheck").fetchall()  # fmt: skip
    assert left == [{"recent": True}]
    for days, batch in ((0, 10), (7, 0)):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            prune(days, batch)


# --- The decision rules, without a printer ------------------------------------------------------


def test_observations_of_a_printer_that_answered() -> None:
    ok = observe_state(PrinterState(), 7)
    assert (ok.is_online, ok.paper_status, ok.error_code, ok.response_time_ms) == (
        True,
        "ok",
        None,
        7,
    )
    jam = observe_state(PrinterState(cutter_error=True), 3)
    assert (jam.paper_status, jam.error_code, jam.cutter_ok) == ("jam", "cutter_error", False)
    hot = observe_state(PrinterState(auto_recoverable_error=True), 3)
    assert (hot.temperature_ok, hot.error_code) == (False, "printer_error")
    out_and_jammed = observe_state(PrinterState(paper=PaperState.OUT, cutter_error=True), 3)
    assert (out_and_jammed.paper_status, out_and_jammed.error_code) == ("out", "paper_out")


def test_observations_of_a_printer_that_could_not_be_asked() -> None:
    silent = observe_error(PrinterError("no_status_reply", "no answer"))
    assert (silent.is_online, silent.paper_status, silent.error_code) == (True, "unknown", None)
    garbled = observe_error(PrinterError("bad_status_reply", "answered ff ff ff ff"))
    assert (garbled.is_online, garbled.error_code) == (True, "bad_status_reply")
    timeout = observe_error(PrinterError("connect_timeout", "no answer within 2 s"))
    assert (timeout.is_online, timeout.error_code, timeout.error_message) == (
        False,
        "connect_timeout",
        "no answer within 2 s",
    )


@pytest.mark.parametrize(
    ("previous", "current", "alert"),
    [
        (None, "ok", None),
        (None, "paper_low", "printer_paper_low"),
        (None, "offline", "printer_down"),
        ("ok", "ok", None),
        ("ok", "paper_low", "printer_paper_low"),
        ("paper_low", "paper_low", None),
        ("paper_low", "paper_out", "printer_down"),
        ("paper_out", "cover_open", "printer_down"),
        ("cover_open", "cover_open", None),
        ("cover_open", "paper_low", "printer_paper_low"),
        ("offline", "ok", "printer_recovered"),
        ("paper_low", "ok", "printer_recovered"),
        (DOWN_BY_PRINTING, "offline", None),
        (DOWN_BY_PRINTING, "ok", "printer_recovered"),
    ],
)
def test_alert_for_each_change(previous: str | None, current: str, alert: str | None) -> None:
    assert alert_for_change(previous, current) == alert


def test_the_breaker_records_what_the_dispatcher_announced() -> None:
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=30)
    assert reconcile(None, breaker) is None
    assert reconcile("paper_low", breaker) == "paper_low"
    breaker.record_failure("connection_refused")  # the dispatcher said printer_down
    assert reconcile("ok", breaker) == DOWN_BY_PRINTING
    assert reconcile("cover_open", breaker) == "cover_open"
    breaker.record_success()  # the dispatcher said printer_recovered
    assert reconcile("cover_open", breaker) == "ok"


def test_a_failed_check_trips_the_breaker_whatever_its_threshold() -> None:
    now = [100.0]
    breaker = CircuitBreaker(failure_threshold=3, open_seconds=10, clock=lambda: now[0])
    trip(breaker, "cover_open")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows_attempt()
    now[0] += 8
    trip(breaker, "cover_open")  # still down: the cool-down starts again
    now[0] += 8
    assert not breaker.allows_attempt()
    now[0] += 3
    assert breaker.allows_attempt(), "then one ticket may probe it"


@pytest.mark.parametrize(
    ("print_error", "cleared"),
    [
        ("status_flood", False),  # hung up on for flooding status-back: a check proves nothing
        ("connection_lost", False),
        ("send_timeout", False),
        ("no_status_reply", False),
        ("connection_refused", True),  # a check reaching it does disprove this one
    ],
)
def test_a_passing_check_clears_only_print_failures_it_can_disprove(
    print_error: str, cleared: bool
) -> None:
    assert (print_error in PRINT_ONLY_ERRORS) is not cleared
    printers = Printers(Settings(database_url="postgresql:///unused", breaker_failure_threshold=3))
    breaker = printers.board.breaker(7)
    trip(breaker, print_error)  # a failed print
    news = printers.checked(7, "ok")
    assert (breaker.state is BreakerState.CLOSED) is cleared
    assert (news.kind if news else None) == ("printer_recovered" if cleared else None)


def test_station_groups_follow_routing() -> None:
    brand, store_a, store_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def target(pid: int, station: str, store: uuid.UUID | None) -> HealthTarget:
        return HealthTarget(pid, f"p{pid}", "127.0.0.1", 9100, brand, store, station)

    wide_kitchen, a_kitchen, b_kitchen = (
        target(1, "kitchen", None),
        target(2, "kitchen", store_a),
        target(3, "kitchen", store_b),
    )
    bar = target(4, "bar", None)
    groups = station_groups([wide_kitchen, a_kitchen, b_kitchen, bar])
    assert groups == {
        StationKey(brand, store_a, "kitchen"): [a_kitchen, wide_kitchen],
        StationKey(brand, store_b, "kitchen"): [b_kitchen, wide_kitchen],
        StationKey(brand, None, "bar"): [bar],
    }
