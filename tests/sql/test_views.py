"""The monitoring views and kitchen_status_report() against data seeded by hand.

Each test runs in one transaction, so now() is one instant for the seed and the views: a check
placed "12 minutes ago" is exactly 12 minutes old to the view. Rows are inserted directly with
explicit timestamps. Ticket inserts and status changes also write audit rows through the triggers,
stamped with the real clock; the expectations allow for that.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

Row = dict[str, Any]
MIN = timedelta(minutes=1)


class Seed:
    """Writes the rows of one test inside its transaction; times are 'how long before now()'."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.conn = conn
        self.now: datetime = self.one("SELECT now() AS now")["now"]
        # Rows seeded inside one transaction: a described insert is logged as it happens, not at
        # a commit that never comes.
        conn.execute("SELECT set_config('kprintd.actor', 'seed', true)")
        self.brand: UUID = self.one("INSERT INTO core_brand (name) VALUES ('Warung') RETURNING id")[
            "id"
        ]

    def one(self, query: str, params: Any = None) -> Row:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return row

    def rows(self, query: str, params: Any = None) -> list[Row]:
        return self.conn.execute(query, params).fetchall()

    def printer(
        self,
        name: str,
        station: str = "kitchen",
        priority: int = 1,
        *,
        active: bool = True,
        total: int = 0,
        failed: int = 0,
        last_print_ago: timedelta | None = None,
    ) -> int:
        return int(
            self.one(
                "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name,"
                " printer_ip, printer_port, priority, is_active, total_prints, failed_prints,"
                " last_print_at) VALUES (%s, %s, %s, '10.0.0.1', 9100, %s, %s, %s, %s,"
                " now() - %s::interval) RETURNING id",
                (self.brand, station, name, priority, active, total, failed, last_print_ago),
            )["id"]
        )

    def check(
        self,
        printer_id: int,
        ago: timedelta,
        online: bool = True,
        paper: str = "ok",
        error: str | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO kitchen_printerhealthcheck (printer_id, checked_at, is_online,"
            " response_time_ms, paper_status, error_code)"
            " VALUES (%s, now() - %s::interval, %s, %s, %s, %s)",
            (printer_id, ago, online, 12 if online else None, paper, error),
        )

    def bill(self, number: str, ago: timedelta = MIN) -> int:
        return int(
            self.one(
                "INSERT INTO pos_bill (brand_id, bill_number, created_at)"
                " VALUES (%s, %s, now() - %s::interval) RETURNING id",
                (self.brand, number, ago),
            )["id"]
        )

    def ticket(self, bill_id: int, station: str = "kitchen", **columns: Any) -> int:
        """A ticket with the given columns; values that are timedeltas mean 'that long ago'."""
        columns = {"status": "new", "created_at": MIN, **columns}
        names = ["bill_id", "printer_target", *columns]
        values = ["%s", "%s"] + [
            "now() - %s::interval" if isinstance(v, timedelta) else "%s" for v in columns.values()
        ]
        return int(
            self.one(
                f"INSERT INTO kitchen_kitchenticket ({', '.join(names)})"
                f" VALUES ({', '.join(values)}) RETURNING id",
                (bill_id, station, *columns.values()),
            )["id"]
        )

    def log(
        self,
        ticket_id: int,
        action: str,
        at: datetime,
        new_status: str,
        duration_ms: int | None = None,
        actor: str = "printer_service",
    ) -> None:
        self.conn.execute(
            "INSERT INTO kitchen_kitchenticketlog (ticket_id, timestamp, new_status, action,"
            " actor, duration_ms) VALUES (%s, %s, %s, %s, %s, %s)",
            (ticket_id, at, new_status, action, actor, duration_ms),
        )


@pytest.fixture
def seed(conn: psycopg.Connection[Row]) -> Iterator[Seed]:
    with conn.transaction():
        yield Seed(conn)


# --- Printers -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_printer_status_is_the_latest_check_with_the_printers_counters(seed: Seed) -> None:
    main = seed.printer("main", total=10, failed=2, last_print_ago=timedelta(hours=1))
    seed.check(main, 10 * MIN)
    seed.check(main, 2 * MIN, paper="low")
    seed.check(main, 6 * MIN, online=False, paper="unknown", error="connect_timeout")
    never = seed.printer("never checked", priority=2)
    retired = seed.printer("retired", active=False)
    seed.check(retired, 3 * MIN, online=False, paper="unknown", error="connection_refused")
    rows = {r["printer_name"]: r for r in seed.rows("SELECT * FROM kitchen_printer_status")}
    assert set(rows) == {"main", "never checked", "retired"}
    m = rows["main"]
    assert (m["printer_id"], m["station"], m["address"], m["priority"]) == (
        main,
        "kitchen",
        "10.0.0.1:9100",
        1,
    )
    assert (m["state"], m["is_online"], m["paper_status"], m["error_code"]) == (
        "paper_low",
        True,
        "low",
        None,
    )
    assert m["checked_at"] == seed.now - 2 * MIN
    assert m["response_time_ms"] == 12
    assert m["last_print_at"] == seed.now - timedelta(hours=1)
    assert (m["total_prints"], m["failed_prints"]) == (10, 2)
    n = rows["never checked"]
    assert (n["printer_id"], n["state"], n["is_online"], n["checked_at"]) == (
        never,
        "unknown",
        None,
        None,
    )
    r = rows["retired"]
    assert (r["is_active"], r["state"], r["error_code"]) == (False, "offline", "connection_refused")


@pytest.mark.parametrize(
    ("online", "paper", "error", "state"),
    [
        (True, "ok", None, "ok"),
        (True, "low", None, "paper_low"),
        (True, "out", "paper_out", "paper_out"),
        (True, "ok", "cover_open", "cover_open"),
        (True, "jam", "cutter_error", "error"),
        (True, "unknown", "bad_status_reply", "error"),
        (True, "unknown", None, "no_status"),
        (False, "ok", "offline", "offline"),
        (False, "unknown", "connect_timeout", "offline"),
        (None, None, None, "unknown"),
    ],
)
def test_printer_state_of_a_check(
    conn: psycopg.Connection[Row],
    online: bool | None,
    paper: str | None,
    error: str | None,
    state: str,
) -> None:
    row = conn.execute(
        "SELECT kitchen_printer_state(%s, %s, %s) AS s", (online, paper, error)
    ).fetchone()
    assert row == {"s": state}


def test_printer_offline_lists_printers_down_for_more_than_five_minutes(seed: Seed) -> None:
    down_12 = seed.printer("down for 12 min")
    for ago, online in ((20, True), (12, False), (6, False), (1, False)):
        seed.check(down_12, ago * MIN, online=online, error=None if online else "connect_timeout")
    down_4 = seed.printer("down for 4 min")
    for ago, online in ((10, True), (4, False), (2, False)):
        seed.check(down_4, ago * MIN, online=online)
    back = seed.printer("back online")
    seed.check(back, 30 * MIN, online=False)
    seed.check(back, 3 * MIN)
    never_up = seed.printer("never up")
    seed.check(never_up, 9 * MIN, online=False, error="connection_refused")
    seed.check(never_up, 8 * MIN, online=False, error="connection_refused")
    retired = seed.printer("retired", active=False)
    seed.check(retired, 60 * MIN, online=False)
    cover = seed.printer("cover open")
    seed.check(cover, 20 * MIN, error="cover_open")
    rows = seed.rows(
        "SELECT printer_name, offline_since, downtime, last_checked_at, error_code"
        " FROM kitchen_printer_offline ORDER BY printer_name"
    )
    assert rows == [
        {
            "printer_name": "down for 12 min",
            "offline_since": seed.now - 12 * MIN,
            "downtime": 12 * MIN,
            "last_checked_at": seed.now - MIN,
            "error_code": "connect_timeout",
        },
        {
            "printer_name": "never up",
            "offline_since": seed.now - 9 * MIN,
            "downtime": 9 * MIN,
            "last_checked_at": seed.now - 8 * MIN,
            "error_code": "connection_refused",
        },
    ]


def test_uptime_7d_is_the_spec_report(seed: Seed) -> None:
    flaky = seed.printer("flaky")
    seed.check(flaky, timedelta(days=8), online=False)  # outside the window
    seed.check(flaky, timedelta(days=6))
    seed.check(flaky, timedelta(days=3), paper="out", error="paper_out")
    seed.check(flaky, timedelta(days=1), online=False)
    seed.check(flaky, MIN, paper="low")
    solid = seed.printer("solid", "bar")
    seed.check(solid, timedelta(hours=2))
    gone = seed.printer("gone")
    seed.check(gone, timedelta(days=9))
    rows = seed.rows("SELECT * FROM kitchen_printer_uptime_7d ORDER BY printer_name")
    assert rows == [
        {
            "station_code": "kitchen",
            "printer_name": "flaky",
            "total_checks": 4,
            "online_checks": 3,
            "uptime_percent": Decimal("75.00"),
            "printer_id": flaky,
            "ready_checks": 2,
            "ready_percent": Decimal("50.00"),
        },
        {
            "station_code": "bar",
            "printer_name": "solid",
            "total_checks": 1,
            "online_checks": 1,
            "uptime_percent": Decimal("100.00"),
            "printer_id": solid,
            "ready_checks": 1,
            "ready_percent": Decimal("100.00"),
        },
    ]


def test_failure_rate_is_the_spec_report_plus_printers_that_only_failed(seed: Seed) -> None:
    seed.printer("main", total=200, failed=3)
    seed.printer("dead", "bar", total=0, failed=4)
    seed.printer("unused", "dessert")
    rows = seed.rows(
        "SELECT printer_name, total_prints, failed_prints, failure_rate, station,"
        " failed_attempt_percent FROM kitchen_printer_failure_rate ORDER BY printer_name"
    )
    assert rows == [
        {
            "printer_name": "dead",
            "total_prints": 0,
            "failed_prints": 4,
            "failure_rate": None,
            "station": "bar",
            "failed_attempt_percent": Decimal("100.00"),
        },
        {
            "printer_name": "main",
            "total_prints": 200,
            "failed_prints": 3,
            "failure_rate": Decimal("1.50"),
            "station": "kitchen",
            "failed_attempt_percent": Decimal("1.48"),
        },
    ]


# --- Tickets --------------------------------------------------------------------------------------


def test_print_sla_per_station_and_local_day(seed: Seed) -> None:
    seed.conn.execute("SET LOCAL TIME ZONE 'Asia/Jakarta'")
    today: date = seed.one("SELECT current_date AS d")["d"]
    yesterday = today - timedelta(days=1)

    def at(day: date, clock: str) -> datetime:
        return seed.one("SELECT (%s::date + %s::time)::timestamptz AS t", (day, clock))["t"]

    bill = seed.bill("B-1")

    def printed(station: str, created: datetime, after_s: float, duration_ms: int) -> None:
        ticket = seed.ticket(bill, station, created_at=created)
        seed.log(ticket, "print_start", created, "printing")
        seed.log(
            ticket, "print_success", created + timedelta(seconds=after_s), "printed", duration_ms
        )

    printed("kitchen", at(yesterday, "10:00"), 2, 100)
    printed("kitchen", at(yesterday, "11:00"), 5, 300)
    printed("bar", at(yesterday, "12:00"), 1, 50)
    # Created yesterday, printed two seconds after local midnight: counts for today.
    printed("kitchen", at(yesterday, "23:59:59"), 2, 200)
    printed("kitchen", at(today - timedelta(days=10), "09:00"), 1, 10)
    failed = seed.ticket(bill, created_at=at(yesterday, "13:00"))
    seed.log(failed, "print_failed", at(yesterday, "13:00:02"), "failed", 2000)

    rows = seed.rows(
        "SELECT * FROM kitchen_print_sla WHERE day >= current_date - 1 ORDER BY day, station"
    )
    common = {"brand_id": seed.brand, "store_id": None}
    assert rows == [
        {
            "day": yesterday,
            **common,
            "station": "bar",
            "printed": 1,
            "print_ms_avg": Decimal("50.0"),
            "print_ms_p50": Decimal("50.0"),
            "print_ms_p95": Decimal("50.0"),
            "print_ms_max": 50,
            "end_to_end_ms_avg": Decimal("1000.0"),
            "end_to_end_ms_p50": Decimal("1000.0"),
            "end_to_end_ms_p95": Decimal("1000.0"),
            "end_to_end_ms_max": Decimal("1000.0"),
        },
        {
            "day": yesterday,
            **common,
            "station": "kitchen",
            "printed": 2,
            "print_ms_avg": Decimal("200.0"),
            "print_ms_p50": Decimal("200.0"),
            "print_ms_p95": Decimal("290.0"),
            "print_ms_max": 300,
            "end_to_end_ms_avg": Decimal("3500.0"),
            "end_to_end_ms_p50": Decimal("3500.0"),
            "end_to_end_ms_p95": Decimal("4850.0"),
            "end_to_end_ms_max": Decimal("5000.0"),
        },
        {
            "day": today,
            **common,
            "station": "kitchen",
            "printed": 1,
            "print_ms_avg": Decimal("200.0"),
            "print_ms_p50": Decimal("200.0"),
            "print_ms_p95": Decimal("200.0"),
            "print_ms_max": 200,
            "end_to_end_ms_avg": Decimal("2000.0"),
            "end_to_end_ms_p50": Decimal("2000.0"),
            "end_to_end_ms_p95": Decimal("2000.0"),
            "end_to_end_ms_max": Decimal("2000.0"),
        },
    ]
    days = seed.rows(
        "SELECT day, sum(printed) AS n FROM kitchen_print_sla GROUP BY day ORDER BY day"
    )
    assert days == [
        {"day": today - timedelta(days=10), "n": 1},
        {"day": yesterday, "n": 3},
        {"day": today, "n": 1},
    ], "days without prints have no rows"


def test_stuck_tickets_are_the_ones_no_daemon_will_finish(seed: Seed) -> None:
    bill = seed.bill("B-7")
    lease_gone = seed.ticket(
        bill, status="printing", claimed_by="d1", lease_expires_at=2 * MIN, print_attempts=1
    )
    too_long = seed.ticket(
        bill,
        status="printing",
        claimed_by="d1",
        lease_expires_at=-20 * timedelta(seconds=1),
        print_attempts=1,
    )
    seed.log(too_long, "print_start", seed.now - 7 * MIN, "printing")
    no_lease = seed.ticket(bill, "bar", status="printing", print_attempts=1)
    seed.log(no_lease, "print_start", seed.now - timedelta(seconds=30), "printing")
    no_attempts_left = seed.ticket(
        bill,
        print_attempts=3,
        max_retries=3,
        error_code="connection_refused",
        error_message="10.0.0.1:9100 refused the connection",
    )
    overdue = seed.ticket(bill, "bar", next_attempt_at=3 * MIN)
    # Not stuck: due only 30 s ago, printing on a fresh lease for a minute, printed, failed.
    seed.ticket(bill, next_attempt_at=timedelta(seconds=30))
    fresh = seed.ticket(
        bill, status="printing", lease_expires_at=-20 * timedelta(seconds=1), print_attempts=1
    )
    seed.log(fresh, "print_start", seed.now - MIN, "printing")
    seed.ticket(bill, status="printed", printed_at=MIN)
    seed.ticket(bill, status="failed", last_error_at=MIN)

    rows = {r["ticket_id"]: r for r in seed.rows("SELECT * FROM kitchen_stuck_tickets")}
    assert {
        i: (r["reason"], r["stuck_since"]) for i, r in rows.items() if i != no_attempts_left
    } == {
        lease_gone: ("lease_expired", seed.now - 2 * MIN),
        too_long: ("printing_too_long", seed.now - 7 * MIN),
        no_lease: ("lease_expired", seed.now - timedelta(seconds=30)),
        overdue: ("overdue", seed.now - 3 * MIN),
    }
    stuck = rows[no_attempts_left]
    assert stuck["reason"] == "out_of_attempts"
    assert stuck["stuck_since"] >= seed.now, "since it became new: its audit row, stamped now"
    assert stuck["error_code"] == "connection_refused"
    assert stuck["error_message"] == "10.0.0.1:9100 refused the connection"
    assert rows[too_long]["stuck_for"] == 7 * MIN
    assert rows[overdue]["bill_number"] == "B-7"
    assert rows[overdue]["station"] == "bar"


def test_failed_tickets_with_their_last_error_and_who_failed_them(seed: Seed) -> None:
    bill = seed.bill("B-9")
    by_daemon = seed.ticket(bill, "bar")
    seed.conn.execute(
        "SELECT kitchen_describe_change('print_failed', 'printer_service', 40, 'connect_timeout')"
    )
    seed.conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'failed', print_attempts = 3,"
        " error_code = 'connect_timeout', error_message = 'no answer within 2 s',"
        " last_error_at = now() - interval '2 hours' WHERE id = %s",
        (by_daemon,),
    )
    by_admin = seed.ticket(bill)
    seed.conn.execute(
        "SELECT kitchen_mark_failed(%s, 'admin:sari', 'order re-entered')", (by_admin,)
    )
    seed.ticket(bill, status="failed", last_error_at=timedelta(days=3), error_code="old")
    seed.ticket(bill, status="printed", printed_at=MIN)
    rows = seed.rows(
        "SELECT ticket_id, bill_number, station, failed_at, error_code, error_message,"
        " failed_by, failed_by_action FROM kitchen_failed_tickets"
        " WHERE failed_at > now() - interval '1 day' ORDER BY failed_at"
    )
    assert rows == [
        {
            "ticket_id": by_daemon,
            "bill_number": "B-9",
            "station": "bar",
            "failed_at": seed.now - timedelta(hours=2),
            "error_code": "connect_timeout",
            "error_message": "no answer within 2 s",
            "failed_by": "printer_service",
            "failed_by_action": "print_failed",
        },
        {
            "ticket_id": by_admin,
            "bill_number": "B-9",
            "station": "kitchen",
            "failed_at": seed.now,
            "error_code": "manual",
            "error_message": "order re-entered",
            "failed_by": "admin:sari",
            "failed_by_action": "marked_failed",
        },
    ]
    everything = seed.one("SELECT count(*) AS n FROM kitchen_failed_tickets")
    assert everything == {"n": 3}


def test_station_queue_counts_waiting_due_and_printing(seed: Seed) -> None:
    bill = seed.bill("B-3")
    seed.ticket(bill, created_at=5 * MIN)
    seed.ticket(bill, created_at=2 * MIN, next_attempt_at=-MIN)  # waits for its retry
    seed.ticket(bill, status="printing", lease_expires_at=-MIN)
    seed.ticket(bill, status="printed", printed_at=MIN)
    seed.ticket(bill, "bar", status="printing", lease_expires_at=-MIN)
    rows = seed.rows(
        "SELECT station, waiting, due, printing, oldest_waiting_since"
        " FROM kitchen_station_queue ORDER BY station"
    )
    assert rows == [
        {"station": "bar", "waiting": 0, "due": 0, "printing": 1, "oldest_waiting_since": None},
        {
            "station": "kitchen",
            "waiting": 2,
            "due": 1,
            "printing": 1,
            "oldest_waiting_since": seed.now - 5 * MIN,
        },
    ]


def test_bill_status_per_bill(seed: Seed) -> None:
    done = seed.bill("done")
    seed.ticket(done, status="printed", created_at=9 * MIN, printed_at=8 * MIN)
    seed.ticket(done, "bar", status="printed", created_at=4 * MIN, printed_at=3 * MIN)
    busy = seed.bill("busy")
    seed.ticket(busy, status="printed", created_at=2 * MIN, printed_at=MIN)
    seed.ticket(busy, "bar")
    seed.ticket(busy, "dessert", status="printing", lease_expires_at=-MIN)
    broken = seed.bill("broken")
    seed.ticket(broken, status="printed", printed_at=MIN)
    seed.ticket(broken, "bar", status="failed", last_error_at=MIN)
    seed.bill("nothing sent")
    old = seed.bill("yesterday", timedelta(days=2))
    seed.ticket(old, status="printed", created_at=timedelta(days=2), printed_at=timedelta(days=2))
    columns = (
        "bill_number, ticket_count, new_count, printing_count, printed_count, failed_count,"
        " all_printed, kitchen_status"
    )
    rows = seed.rows(
        f"SELECT {columns} FROM kitchen_bill_status"
        " WHERE created_at > now() - interval '1 day' ORDER BY bill_id"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("done", 2, 0, 0, 2, 0, True, "printed"),
        ("busy", 3, 1, 1, 1, 0, False, "pending"),
        ("broken", 2, 0, 0, 1, 1, False, "failed"),
    ]
    one = seed.one(
        "SELECT first_sent_at, last_sent_at, last_printed_at FROM kitchen_bill_status"
        " WHERE bill_id = %s",
        (done,),
    )
    assert one == {
        "first_sent_at": seed.now - 9 * MIN,
        "last_sent_at": seed.now - 4 * MIN,
        "last_printed_at": seed.now - 3 * MIN,
    }


# --- Daemons and the status report ----------------------------------------------------------------


def beat(seed: Seed, daemon_id: str, interval_s: float, store: UUID | None = None) -> None:
    seed.conn.execute(
        "SELECT kitchen_daemon_beat(%s, 'store-server', 4242, '0.1.0', %s, NULL, %s,"
        " now() - interval '1 hour', 17)",
        (daemon_id, store, interval_s),
    )


def test_daemon_status_alive_stale_and_stopped(seed: Seed) -> None:
    beat(seed, "alive", 60)
    beat(seed, "stale", 2)
    beat(seed, "stopped", 60)
    beat(seed, "forgotten", 60)
    seed.conn.execute("SELECT kitchen_daemon_stopped('stopped', 20)")
    seed.conn.execute(
        "UPDATE kitchen_daemon_heartbeat SET last_seen_at = now() - interval '16 seconds'"
        " WHERE daemon_id = 'stale'"
    )
    seed.conn.execute(
        "UPDATE kitchen_daemon_heartbeat SET last_seen_at = now() - interval '8 days'"
        " WHERE daemon_id = 'forgotten'"
    )
    beat(seed, "alive", 60)  # each beat forgets daemons not seen for 7 days
    rows = seed.rows(
        "SELECT daemon_id, state, tickets_printed, stopped_at IS NOT NULL AS stopped"
        " FROM kitchen_daemon_status ORDER BY daemon_id"
    )
    assert rows == [
        {"daemon_id": "alive", "state": "alive", "tickets_printed": 17, "stopped": False},
        {"daemon_id": "stale", "state": "stale", "tickets_printed": 17, "stopped": False},
        {"daemon_id": "stopped", "state": "stopped", "tickets_printed": 20, "stopped": True},
    ]


def report(seed: Seed, store: UUID | None = None) -> dict[str, Any]:
    return seed.one("SELECT kitchen_status_report(NULL, %s) AS r", (store,))["r"]  # type: ignore[no-any-return]


def test_status_report_with_nothing_wrong_needs_no_attention(seed: Seed) -> None:
    beat(seed, "d1", 60)
    main = seed.printer("main")
    seed.check(main, MIN)
    r = report(seed)
    assert r["attention"] == []
    assert [p["printer_name"] for p in r["printers"]] == ["main"]
    assert [d["daemon_id"] for d in r["daemons"]] == ["d1"]
    assert (r["failed_24h"], r["stuck_count"], r["queues"]) == (0, 0, [])


def test_status_report_says_what_needs_attention(seed: Seed) -> None:
    beat(seed, "gone", 60)
    seed.conn.execute(
        "UPDATE kitchen_daemon_heartbeat SET last_seen_at = now() - interval '10 minutes'"
    )
    main = seed.printer("main")
    seed.check(main, MIN, paper="out", error="paper_out")
    low = seed.printer("low", "bar")
    seed.check(low, MIN, paper="low")
    bill = seed.bill("B-1")
    seed.ticket(bill, status="failed", last_error_at=timedelta(hours=3), error_message="refused")
    seed.ticket(bill, status="failed", last_error_at=timedelta(hours=30))
    seed.ticket(bill, next_attempt_at=10 * MIN)
    r = report(seed)
    # The overdue ticket waits with no daemon alive: unserved as well as stuck.
    assert [a["kind"] for a in r["attention"]] == [
        "daemon",
        "unserved_tickets",
        "printer",
        "failed_tickets",
        "stuck_tickets",
    ]
    messages = [a["message"] for a in r["attention"]]
    assert messages[2] == "printer main (kitchen, 10.0.0.1:9100) is out of paper"
    assert r["attention"][2]["printer_id"] == main
    assert messages[3].startswith("1 ticket(s) failed in the last 24 h")
    assert [d["state"] for d in r["daemons"]] == ["stale"]
    assert r["failed_24h"] == 1
    assert r["failed_tickets"][0]["error_message"] == "refused"
    assert r["stuck_count"] == 1
    assert [(q["station"], q["waiting"]) for q in r["queues"]] == [("kitchen", 1)]


def test_status_report_follows_the_scope(seed: Seed) -> None:
    store_a, store_b = UUID(int=1), UUID(int=2)
    beat(seed, "daemon of b", 60, store_b)
    a_printer = seed.printer("a printer")
    seed.conn.execute(
        "UPDATE kitchen_stationprinter SET store_id = %s WHERE id = %s", (store_a, a_printer)
    )
    seed.printer("brand-wide")
    r_a = report(seed, store_a)
    assert [p["printer_name"] for p in r_a["printers"]] == ["a printer", "brand-wide"]
    assert [a["kind"] for a in r_a["attention"]] == ["daemon"], "b's daemon does not serve a"
    r_b = report(seed, store_b)
    assert [p["printer_name"] for p in r_b["printers"]] == ["brand-wide"]
    assert r_b["attention"] == []


def test_views_read_with_the_spec_column_names(conn: psycopg.Connection[Row]) -> None:
    """The uptime and failure-rate views start with the spec's report columns, in its order."""
    cur = conn.cursor(row_factory=dict_row)
    uptime = cur.execute("SELECT * FROM kitchen_printer_uptime_7d LIMIT 0")
    assert [c.name for c in uptime.description or []][:5] == [
        "station_code",
        "printer_name",
        "total_checks",
        "online_checks",
        "uptime_percent",
    ]
    rate = cur.execute("SELECT * FROM kitchen_printer_failure_rate LIMIT 0")
    assert [c.name for c in rate.description or []][:4] == [
        "printer_name",
        "total_prints",
        "failed_prints",
        "failure_rate",
    ]
