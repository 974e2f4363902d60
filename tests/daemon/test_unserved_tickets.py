"""Tickets nothing will print (sql/schema/55_reports.sql): found whatever the asker's scope, shown
by `kprintd status` with exit 1, and announced once per route by a daemon, itself out of their
scope, within a minute of their creation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from kprintd.harness import (
    Restaurant,
    add_item,
    daemon_env,
    make_bill,
    make_brand,
    make_printer,
    make_product,
    query,
    received_alerts,
    running_daemon,
    wait_until,
)
from kprintd.monitor import printable
from kprintd.services import UNSERVED_CHECK_S

Conn = psycopg.Connection[dict[str, Any]]

STORE = uuid.UUID("00000000-0000-0000-0000-00000000000a")
OTHER_STORE = uuid.UUID("00000000-0000-0000-0000-00000000000b")
# kitchen_unserved_routes()'s default grace.
GRACE_S = 30


def beat(
    conn: Conn,
    daemon_id: str,
    store_id: uuid.UUID | None = None,
    brand_ids: Iterable[uuid.UUID] = (),
) -> None:
    """A running daemon of this scope, as its heartbeat tells kitchen_daemon_status."""
    conn.execute(
        "SELECT kitchen_daemon_beat(%s, 'store-server', 1, 'test', %s, %s::uuid[], 60, now(), 0)",
        (daemon_id, store_id, list(brand_ids)),
    )


def waiting_ticket(
    conn: Conn,
    brand_id: uuid.UUID,
    store_id: uuid.UUID | None,
    station: str = "kitchen",
    age_s: float = 60,
) -> int:
    """A bill with one item of `station`, sent to the kitchen `age_s` seconds ago (the bill's
    store_id as the POS wrote it); returns its ticket's id."""
    bill_id = make_bill(conn, brand_id, store_id)
    add_item(conn, bill_id, make_product(conn, brand_id, f"{station} dish", station))
    (row,) = conn.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill_id,)).fetchall()
    conn.execute(
        "UPDATE kitchen_kitchenticket SET created_at = now() - make_interval(secs => %s)"
        " WHERE id = %s",
        (age_s, row["id"]),
    )
    return int(row["id"])


def unserved(conn: Conn, grace: str | None = None) -> list[tuple[int, str]]:
    """(ticket_id, reason) of kitchen_unserved_tickets(), with its default grace unless given."""
    if grace is None:
        rows = conn.execute("SELECT ticket_id, reason FROM kitchen_unserved_tickets()").fetchall()
    else:
        rows = conn.execute(
            "SELECT ticket_id, reason FROM kitchen_unserved_tickets(%s::interval)", (grace,)
        ).fetchall()
    return [(r["ticket_id"], r["reason"]) for r in rows]


def give_the_bills_their_store(conn: Conn) -> None:
    """The remedy docs/monitoring.md gives: the bills get their store, then their waiting tickets
    (a ticket takes its store from its bill when it is created)."""
    conn.execute("UPDATE pos_bill SET store_id = %s WHERE store_id IS NULL", (STORE,))
    conn.execute(
        "UPDATE kitchen_kitchenticket t SET store_id = b.store_id FROM kitchen_pos_bill b"
        " WHERE b.id = t.bill_id AND t.status = 'new' AND t.store_id IS NULL"
    )


def routes(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM kitchen_unserved_routes()").fetchall()


def status(url: str, *args: str, **scope: Any) -> subprocess.CompletedProcess[str]:
    """`kprintd status ARGS` with the KPRINTD_* scope given (store_id=..., brand_ids=...)."""
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", "status", *args],
        env=daemon_env(url, **scope),
        capture_output=True,
        text=True,
        timeout=30,
    )


# --- Which tickets, and why -----------------------------------------------------------------------


def test_a_ticket_without_a_store_is_unserved_while_every_daemon_serves_one_store(
    conn: Conn,
) -> None:
    brand = make_brand(conn, "Warung")
    make_printer(conn, brand, "kitchen", store_id=STORE)
    beat(conn, "store-server:1", store_id=STORE)
    served = waiting_ticket(conn, brand, STORE)
    stray = waiting_ticket(conn, brand, None)
    assert unserved(conn) == [(stray, "no_daemon_in_scope")]
    (route,) = routes(conn)
    where = (route["brand"], route["store_id"], route["station"], route["reason"])
    assert where == ("Warung", None, "kitchen", "no_daemon_in_scope")
    assert (route["waiting"], route["oldest_ticket_id"]) == (1, stray)
    assert route["message"] == (
        "1 ticket(s) for kitchen of brand Warung without a store wait and no running kprintd"
        " daemon serves them (their bills have no store_id)"
    )
    assert served not in dict(unserved(conn, "0 seconds"))

    give_the_bills_their_store(conn)
    assert unserved(conn) == []


def test_a_daemon_without_a_store_serves_tickets_without_one(conn: Conn) -> None:
    brand = make_brand(conn)
    make_printer(conn, brand, "kitchen")  # store_id NULL: every store of the brand
    beat(conn, "central:1")
    waiting_ticket(conn, brand, None)
    waiting_ticket(conn, brand, STORE)
    assert unserved(conn) == []


def test_a_ticket_of_a_brand_no_daemon_serves_is_unserved(conn: Conn) -> None:
    ours, theirs = make_brand(conn, "Ours"), make_brand(conn, "Theirs")
    for brand in (ours, theirs):
        make_printer(conn, brand, "bar")
    beat(conn, "store-server:1", brand_ids=[ours])
    waiting_ticket(conn, ours, STORE, "bar")
    stray = waiting_ticket(conn, theirs, STORE, "bar")
    assert unserved(conn) == [(stray, "no_daemon_in_scope")]
    (route,) = routes(conn)
    assert route["message"] == (
        f"1 ticket(s) for bar of brand Theirs in store {STORE} wait and no running kprintd"
        " daemon serves them"
    )
    beat(conn, "store-server:2", brand_ids=[theirs])
    assert unserved(conn) == []


@pytest.mark.slow
def test_a_station_without_an_active_printer_for_the_store_is_unserved(conn: Conn) -> None:
    brand = make_brand(conn)
    beat(conn, "central:1")
    make_printer(conn, brand, "kitchen", store_id=STORE)
    make_printer(conn, brand, "bar", store_id=OTHER_STORE)
    make_printer(conn, brand, "dessert", is_active=False)
    served = waiting_ticket(conn, brand, STORE, "kitchen")
    no_station = waiting_ticket(conn, brand, STORE, "grill")
    other_store = waiting_ticket(conn, brand, STORE, "bar")
    retired = waiting_ticket(conn, brand, STORE, "dessert")
    no_store = waiting_ticket(conn, brand, None, "kitchen")
    assert sorted(unserved(conn)) == sorted(
        (ticket, "no_printer") for ticket in (no_station, other_store, retired, no_store)
    )
    assert served not in dict(unserved(conn))
    messages = {r["station"]: r["message"] for r in routes(conn) if r["store_id"] is None}
    assert messages == {
        "kitchen": "1 ticket(s) for kitchen of brand Test Brand without a store wait and no active"
        " printer is configured for them (only a printer with store_id NULL serves tickets"
        " without a store)"
    }


@pytest.mark.slow
def test_a_station_whose_printers_are_all_in_maintenance_is_not_unserved(conn: Conn) -> None:
    brand = make_brand(conn)
    beat(conn, "central:1")
    printer = make_printer(conn, brand, "dessert")
    conn.execute(
        "INSERT INTO kitchen_stationprinterschedule (printer_id, starts_at, ends_at)"
        " VALUES (%s, now() - interval '1 hour', now() + interval '1 hour')",
        (printer,),
    )
    waiting_ticket(conn, brand, None, "dessert")
    assert unserved(conn) == [], "held on purpose, and announced as station_in_maintenance"


def test_without_any_live_daemon_every_waiting_ticket_is_unserved(conn: Conn) -> None:
    brand = make_brand(conn)
    make_printer(conn, brand, "kitchen")
    ticket = waiting_ticket(conn, brand, STORE)
    assert unserved(conn) == [(ticket, "no_daemon")], "no daemon ever ran"
    beat(conn, "store-server:1")
    assert unserved(conn) == []
    conn.execute("SELECT kitchen_daemon_stopped('store-server:1', 0)")
    assert unserved(conn) == [(ticket, "no_daemon")], "its daemon stopped"
    conn.execute(
        "UPDATE kitchen_daemon_heartbeat SET stopped_at = NULL,"
        " last_seen_at = now() - interval '10 minutes'"
    )
    assert unserved(conn) == [(ticket, "no_daemon")], "its daemon went stale"


@pytest.mark.slow
def test_only_tickets_waiting_longer_than_the_grace_with_attempts_left_are_listed(
    conn: Conn,
) -> None:
    brand = make_brand(conn)
    beat(conn, "store-server:1", store_id=STORE)
    young = waiting_ticket(conn, brand, None, age_s=GRACE_S - 5)
    old = waiting_ticket(conn, brand, None, age_s=GRACE_S + 5)
    spent = waiting_ticket(conn, brand, None)
    conn.execute("UPDATE kitchen_kitchenticket SET print_attempts = 3 WHERE id = %s", (spent,))
    failed = waiting_ticket(conn, brand, None)
    conn.execute("SELECT kitchen_mark_failed(%s, 'admin:sari', 'test')", (failed,))
    printed = waiting_ticket(conn, brand, None)
    conn.execute("SELECT kitchen_mark_printed(%s, 'admin:sari')", (printed,))
    assert unserved(conn) == [(old, "no_daemon_in_scope")]
    assert [t for t, _ in unserved(conn, "1 second")] == [old, young], "oldest first"
    stuck = conn.execute("SELECT ticket_id, reason FROM kitchen_stuck_tickets").fetchall()
    assert (spent, "out_of_attempts") in {(r["ticket_id"], r["reason"]) for r in stuck}


@pytest.mark.slow
def test_routes_count_their_tickets_and_name_the_oldest(conn: Conn) -> None:
    brand = make_brand(conn)
    beat(conn, "store-server:1", store_id=STORE)
    oldest = waiting_ticket(conn, brand, None, age_s=300)
    waiting_ticket(conn, brand, None, age_s=60)
    bar = waiting_ticket(conn, brand, None, "bar", age_s=120)
    listed = [(r["station"], r["waiting"], r["oldest_ticket_id"]) for r in routes(conn)]
    assert listed == [("kitchen", 2, oldest), ("bar", 1, bar)]


def scanned_relations(plan: Any, scan: str) -> set[str]:
    """The tables an EXPLAIN (FORMAT JSON) plan reads with node type `scan`."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if plan.get("Node Type") == scan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= scanned_relations(value, scan)
    elif isinstance(plan, list):
        for value in plan:
            found |= scanned_relations(value, scan)
    return found


@pytest.mark.slow
def test_finding_them_reads_the_waiting_tickets_through_an_index(conn: Conn) -> None:
    brand = make_brand(conn)
    beat(conn, "store-server:1", store_id=STORE)
    bill = make_bill(conn, brand)
    conn.execute(
        "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status, created_at)"
        " SELECT %s, 'kitchen', 'printed', now() - make_interval(mins => n)"
        " FROM generate_series(1, 2000) n",
        (bill,),
    )
    stray = [waiting_ticket(conn, brand, None, age_s=age) for age in (90, 60)]
    conn.execute("ANALYZE kitchen_kitchenticket")
    row = conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM kitchen_unserved_tickets()").fetchone()
    assert row is not None
    plan = row["QUERY PLAN"]
    assert "kitchen_kitchenticket" not in scanned_relations(plan, "Seq Scan")
    assert "kitchen_kitchenticket" in scanned_relations(plan, "Index Scan")
    assert [t for t, _ in unserved(conn)] == stray


# --- kprintd status -------------------------------------------------------------------------------


@pytest.mark.slow
def test_status_of_a_one_store_daemon_shows_tickets_without_a_store_and_exits_1(
    conn: Conn, database_url: str
) -> None:
    brand = make_brand(conn, "Warung")
    make_printer(conn, brand, "kitchen", name="Main Kitchen", store_id=STORE)
    beat(conn, "store-server:1", store_id=STORE)
    first = waiting_ticket(conn, brand, None, age_s=125)
    waiting_ticket(conn, brand, None, age_s=45)

    result = status(database_url, store_id=STORE)
    assert result.returncode == 1, result.stdout
    unwrapped = " ".join(result.stdout.split())
    assert "Unserved tickets: 2" in unwrapped
    assert "STATION BRAND STORE WAITING OLDEST REASON" in unwrapped
    assert f"kitchen Warung none 2 #{first} 2 min ago no daemon in scope" in unwrapped
    attention = result.stdout.split("NEEDS ATTENTION", 1)[1]
    assert (
        "! 2 ticket(s) for kitchen of brand Warung without a store wait and no running kprintd"
        " daemon serves them (their bills have no store_id)"
    ) in attention

    report = json.loads(status(database_url, "--json", store_id=STORE).stdout)
    assert report["unserved_count"] == 2
    (route,) = report["unserved"]
    assert (route["station"], route["store_id"], route["reason"], route["waiting"]) == (
        "kitchen",
        None,
        "no_daemon_in_scope",
        2,
    )
    (item,) = report["attention"]
    assert (item["kind"], item["station"], item["reason"]) == (
        "unserved_tickets",
        "kitchen",
        "no_daemon_in_scope",
    )


@pytest.mark.slow
def test_status_of_any_scope_shows_unserved_tickets_of_other_brands(
    conn: Conn, database_url: str
) -> None:
    ours, theirs = make_brand(conn, "Ours"), make_brand(conn, "Theirs")
    make_printer(conn, theirs, "bar")
    beat(conn, "store-server:1", brand_ids=[ours])
    waiting_ticket(conn, theirs, STORE, "bar")
    report = json.loads(status(database_url, "--json", brand_ids=ours).stdout)
    assert [(u["brand"], u["reason"]) for u in report["unserved"]] == [
        ("Theirs", "no_daemon_in_scope")
    ]
    assert [a["kind"] for a in report["attention"]] == ["unserved_tickets"]


@pytest.mark.slow
def test_status_is_all_well_once_nothing_waits_unserved(conn: Conn, database_url: str) -> None:
    brand = make_brand(conn)
    beat(conn, "store-server:1", store_id=STORE)
    waiting_ticket(conn, brand, None, age_s=5)  # inside the grace: the daemons may yet take it
    result = status(database_url, store_id=STORE)
    assert result.returncode == 0, result.stdout
    assert "Unserved tickets: 0" in result.stdout and "All well." in result.stdout


@pytest.mark.slow
def test_status_escapes_control_characters_from_the_database(conn: Conn, database_url: str) -> None:
    brand = make_brand(conn, "Evil\x1b[2J\x07")
    make_printer(conn, brand, "kitchen", name="Bar\x1b]0;pwned\x07", store_id=STORE)
    beat(conn, "store-server:\x1b[31m1", store_id=STORE)
    waiting_ticket(conn, brand, None)
    result = status(database_url, store_id=STORE)
    assert result.returncode == 1
    assert not any(c in result.stdout for c in "\x1b\x07")
    assert "Evil\\x1b[2J\\x07" in result.stdout
    assert "Bar\\x1b]0;pwned\\x07" in result.stdout
    assert "store-server:\\x1b[31m1" in result.stdout


def test_printable_escapes_c0_del_and_c1_and_nothing_else() -> None:
    assert printable("a\tb\nc\rd\x1b\x7f\x9b é ü ✓") == "a\\x09b\\x0ac\\x0dd\\x1b\\x7f\\x9b é ü ✓"


# --- The daemon's alert ---------------------------------------------------------------------------


@pytest.fixture
def store_restaurant(database_url: str) -> Iterable[Restaurant]:
    """A brand whose printers (emulated) and daemons serve STORE only."""
    place = Restaurant(database_url, store_id=STORE)
    yield place
    place.stop()


def stray_ticket(conn: Conn, place: Restaurant, age_s: float = GRACE_S + 5) -> int:
    """A ticket of the restaurant's brand from a POS that wrote its bill without store_id."""
    place.product("kitchen")
    return waiting_ticket(conn, place.brand_id, None, age_s=age_s)


def unserved_alerts(url: str) -> list[dict[str, Any]]:
    """The ticket_unserved* rows of kitchen_alertlog, sent or held back, in order."""
    return query(
        url,
        "SELECT alert_type, sent, raised_by, alert FROM kitchen_alertlog"
        " WHERE alert_type LIKE 'ticket_unserved%%' ORDER BY id",
    )


def raised_by(url: str, alert_type: str) -> set[str]:
    return {a["raised_by"] for a in unserved_alerts(url) if a["alert_type"] == alert_type}


@pytest.mark.slow
def test_a_daemon_out_of_the_tickets_scope_announces_them_once_and_when_they_print(
    conn: Conn,
    database_url: str,
    store_restaurant: Restaurant,
    alerts: psycopg.Connection[Any],
) -> None:
    store_restaurant.printer("kitchen", name="Main Kitchen")
    ticket = stray_ticket(conn, store_restaurant)
    # health_interval_s 0.2: the unserved check runs every 0.2 s too (the shorter cadence wins).
    with running_daemon(
        database_url, daemon_id="store-server:1", store_id=str(STORE), health_interval_s=0.2
    ):
        wait_until(lambda: unserved_alerts(database_url), what="the ticket_unserved alert")
        time.sleep(2)  # about ten more checks: the route stays unserved, nothing new is said
        (alert,) = received_alerts(alerts)
        assert alert["type"] == "ticket_unserved"
        assert alert["severity"] == "critical"
        assert (alert["station"], alert["brand_id"], alert["store_id"]) == (
            "kitchen",
            str(store_restaurant.brand_id),
            None,
        )
        assert (alert["reason"], alert["waiting"], alert["oldest_ticket_id"]) == (
            "no_daemon_in_scope",
            1,
            ticket,
        )
        assert (alert["source"], alert["daemon"], alert["brand"]) == (
            "health_check",
            "store-server:1",
            "Warung Test",
        )
        assert alert["message"] == (
            "1 ticket(s) for kitchen of brand Warung Test without a store wait and no running"
            " kprintd daemon serves them (their bills have no store_id). Nothing prints them"
            " until someone acts."
        )

        # The remedy: the bill gets its store, then its waiting ticket; the daemon prints it.
        give_the_bills_their_store(conn)
        wait_until(
            lambda: query(
                database_url,
                "SELECT 1 FROM kitchen_kitchenticket WHERE id = %s AND status = 'printed'",
                (ticket,),
            ),
            what="the ticket to print once it has its store",
        )
        wait_until(lambda: len(unserved_alerts(database_url)) == 2, what="the clearing alert")
        time.sleep(1)
        (cleared,) = received_alerts(alerts)
    assert cleared["type"] == "ticket_unserved_cleared"
    assert cleared["severity"] == "info"
    assert (cleared["station"], cleared["store_id"], cleared["reason"]) == (
        "kitchen",
        None,
        "no_daemon_in_scope",
    )
    assert cleared["message"] == (
        "No ticket for kitchen of brand Warung Test (no store) waits unserved any more."
    )
    assert [a["alert_type"] for a in unserved_alerts(database_url)] == [
        "ticket_unserved",
        "ticket_unserved_cleared",
    ]


@pytest.mark.slow
def test_two_daemons_out_of_scope_announce_a_route_once_and_its_end_once(
    conn: Conn,
    database_url: str,
    store_restaurant: Restaurant,
    alerts: psycopg.Connection[Any],
) -> None:
    ticket = stray_ticket(conn, store_restaurant)
    with (
        running_daemon(
            database_url, daemon_id="server-a", store_id=str(STORE), health_interval_s=0.2
        ),
        running_daemon(
            database_url, daemon_id="server-b", store_id=str(STORE), health_interval_s=0.2
        ),
    ):
        both = {"server-a", "server-b"}
        wait_until(
            lambda: raised_by(database_url, "ticket_unserved") == both,
            what="both daemons to notice the unserved ticket",
        )
        # Gone rather than served: a manager fails it by hand.
        conn.execute("SELECT kitchen_mark_failed(%s, 'admin:sari', 'no store')", (ticket,))
        wait_until(
            lambda: raised_by(database_url, "ticket_unserved_cleared") == both,
            what="both daemons to notice it is gone",
        )
    kinds = Counter(a["type"] for a in received_alerts(alerts))
    assert (kinds["ticket_unserved"], kinds["ticket_unserved_cleared"]) == (1, 1)
    assert [a["sent"] for a in unserved_alerts(database_url)] == [True, False, True, False]


@pytest.mark.slow
def test_with_default_settings_the_alert_comes_within_a_minute_of_the_ticket(
    conn: Conn,
    database_url: str,
    store_restaurant: Restaurant,
    alerts: psycopg.Connection[Any],
) -> None:
    # At worst a ticket is listed just after a check and announced one cadence later.
    assert GRACE_S + UNSERVED_CHECK_S < 60
    # Created 20 s ago, it is listed 10 s from now; the daemon first looks UNSERVED_CHECK_S after
    # its start.
    ticket = stray_ticket(conn, store_restaurant, age_s=20)
    (created,) = query(
        database_url, "SELECT created_at FROM kitchen_kitchenticket WHERE id = %s", (ticket,)
    )
    with running_daemon(database_url, store_id=str(STORE), health_interval_s=60):
        wait_until(
            lambda: unserved_alerts(database_url),
            timeout=UNSERVED_CHECK_S + 5,
            interval=0.2,
            what="the ticket_unserved alert",
        )
    (alert,) = received_alerts(alerts)
    at = datetime.fromisoformat(alert["at"].replace("Z", "+00:00"))
    assert at - created["created_at"] < timedelta(seconds=60)
