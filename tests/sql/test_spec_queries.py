"""The spec's example queries run unchanged against our schema and give the right answers.

tests/spec_queries.sql holds every SELECT and UPDATE of KITCHEN_PRINTER_DATABASE_SCHEMA.md verbatim;
POS systems and DBAs copy them from the spec, so each one is run exactly as written against a
restaurant's worth of data (two brands, backup and inactive printers, tickets in every status, an
audit trail and a week of health checks) and its result is compared with answers worked out by hand.

Everything runs in one transaction per test, so NOW() and CURRENT_DATE are the same instant for the
seed and the query: rows placed "exactly 10 minutes ago" sit exactly on a query's window edge.
Tickets are inserted in their final status and log rows with explicit timestamps, so the results do
not depend on whether triggers add audit rows of their own.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

Row = dict[str, Any]

QUERIES_FILE = Path(__file__).with_name("spec_queries.sql")
NAME_LINE = re.compile(r"^-- name: (?P<name>\S+)$", re.MULTILINE)


def load_queries(path: Path) -> dict[str, str]:
    """{name: query text} from a file of queries, each after a '-- name: <name>' line."""
    text = path.read_text(encoding="utf-8")
    markers = list(NAME_LINE.finditer(text))
    queries: dict[str, str] = {}
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        end = following.start() if following else len(text)
        assert marker["name"] not in queries, f"query {marker['name']} is named twice"
        queries[marker["name"]] = text[marker.end() : end].strip("\n")
    return queries


QUERIES = load_queries(QUERIES_FILE)

SPEC_QUERY_NAMES = {
    # Core tables
    "pending_tickets",
    "ticket_items",
    # Audit log
    "ticket_failure_log",
    "avg_print_time",
    "manual_resets_today",
    # Health checks
    "latest_printer_status",
    "printers_offline",
    "uptime_report",
    # "Most common queries" of Indexes & Performance
    "poll_pending_tickets",
    "station_printers",
    "ticket_history",
    "latest_printer_health",
    # Troubleshooting
    "stuck_tickets",
    "reset_stuck_tickets",
    "tickets_for_offline_printer",
    "failure_rate",
}

# The spec's columns of kitchen_kitchenticket (SELECT * also returns kprintd's own columns).
SPEC_TICKET_COLUMNS = (
    "id",
    "bill_id",
    "printer_target",
    "status",
    "print_attempts",
    "max_retries",
    "printer_ip",
    "error_message",
    "last_error_at",
    "created_at",
    "printed_at",
    "is_reprint",
    "original_ticket_id",
)

# --- The restaurant -------------------------------------------------------------------------------

AYAM = UUID("a7a90000-0000-4000-8000-000000000001")  # Ayam Geprek Juara
KOPI = UUID("c0f10000-0000-4000-8000-000000000002")  # Kopi Senja

GEPREK = UUID("a7a90000-0000-4000-8000-0000000000a1")
NASI = UUID("a7a90000-0000-4000-8000-0000000000a2")
ES_TEH = UUID("a7a90000-0000-4000-8000-0000000000a3")
ES_CAMPUR = UUID("a7a90000-0000-4000-8000-0000000000a4")
KOPI_SUSU = UUID("c0f10000-0000-4000-8000-0000000000b1")

PRODUCTS = [
    (GEPREK, AYAM, "Ayam Geprek Original", "kitchen"),
    (NASI, AYAM, "Nasi Putih", "kitchen"),
    (ES_TEH, AYAM, "Es Teh Manis", "bar"),
    (ES_CAMPUR, AYAM, "Es Campur", "dessert"),
    (KOPI_SUSU, KOPI, "Kopi Susu Gula Aren", "bar"),
]

PRINTER_COLUMNS = (
    "id", "brand_id", "station_code", "printer_name", "printer_ip", "printer_port", "priority",
    "is_active", "total_prints", "failed_prints",
)  # fmt: skip
PRINTERS = [
    (1, AYAM, "kitchen", "Main Kitchen Printer", "192.168.1.100", 9100, 1, True, 1200, 18),
    (2, AYAM, "kitchen", "Backup Kitchen Printer", "192.168.1.101", 9100, 2, True, 150, 3),
    (3, AYAM, "bar", "Bar Printer", "192.168.1.102", 9100, 1, True, 800, 40),
    (4, AYAM, "dessert", "Dessert Station Printer", "192.168.1.103", 9100, 1, False, 300, 100),
    (5, AYAM, "kitchen", "Old Kitchen Printer", "192.168.1.90", 9100, 3, False, 0, 0),
    (6, KOPI, "bar", "Kopi Bar Printer", "10.20.0.50", 9101, 1, True, 40, 0),
]
MAIN, BACKUP, BAR, DESSERT, OLD_KITCHEN, KOPI_BAR = 1, 2, 3, 4, 5, 6

BILL_COLUMNS = (
    "id", "brand_id", "bill_number", "bill_type", "table_number", "queue_number", "created_at",
)  # fmt: skip
BILLS = [  # created_at as "how long ago"
    (1000, AYAM, "AG-0412", "dine_in", "3", None, timedelta(hours=30, minutes=5)),
    (1001, AYAM, "AG-0498", "dine_in", "A5", None, timedelta(hours=3, minutes=5)),
    (1002, AYAM, "AG-0503", "takeaway", None, 17, timedelta(minutes=55)),
    (1003, KOPI, "KS-0121", "takeaway", None, 4, timedelta(hours=2, minutes=5)),
    # The lunch rush (tickets 130-138) and the tickets being printed (140-143).
    *[(1010 + k, AYAM, f"AG-{510 + k}", "dine_in", f"B{k}", None, timedelta(minutes=21 - k))
      for k in range(9)],
    *[(1020 + k, AYAM if k < 3 else KOPI, f"XX-{600 + k}", "dine_in", None, None,
       timedelta(minutes=13)) for k in range(4)],
]  # fmt: skip

EXTRA_SAMBAL = [{"name": "Extra Sambal", "price": 3000}]
BILL_ITEM_COLUMNS = (
    "id", "bill_id", "product_id", "quantity", "notes", "modifiers", "printer_target",
)  # fmt: skip
BILL_ITEMS = [
    (5001, 1001, GEPREK, 2, "level 5, extra sambal", EXTRA_SAMBAL, "kitchen"),
    (5002, 1001, NASI, 2, "", [], "kitchen"),
    (5003, 1001, ES_TEH, 2, "less sugar", [], "bar"),
    (5004, 1002, GEPREK, 1, "level 2", [{"name": "Keju", "price": 5000}], "kitchen"),
    (5005, 1002, ES_CAMPUR, 1, "", [], "dessert"),
    (5006, 1003, KOPI_SUSU, 1, "less ice", [{"name": "Oat Milk", "price": 8000}], "bar"),
    (5007, 1000, GEPREK, 3, "", [], "kitchen"),
]

# Ticket 124 reprints one of ticket 123's two portions of ayam geprek.
TICKET_ITEM_COLUMNS = ("kitchen_ticket_id", "bill_item_id", "quantity")
TICKET_ITEMS = [
    (123, 5001, 2),
    (123, 5002, 2),
    (124, 5001, 1),
    (101, 5003, 2),
    (125, 5005, 1),
    (102, 5006, 1),
    (103, 5004, 1),
    (100, 5007, 3),
]


def ip_of(printer_id: int | None) -> str | None:
    return next((p[4] for p in PRINTERS if p[0] == printer_id), None)


@dataclass(frozen=True)
class Ticket:
    id: int
    bill_id: int
    printer_target: str
    status: str
    created: timedelta  # ago
    print_attempts: int = 0
    max_retries: int = 3
    printer: int | None = None
    printed: timedelta | None = None  # ago
    error_message: str | None = None
    original_ticket_id: int | None = None


TICKETS = [
    # Yesterday's, printed.
    Ticket(99, 1000, "bar", "printed", timedelta(days=1, seconds=2), 1, printer=BAR,
           printed=timedelta(days=1)),
    Ticket(100, 1000, "kitchen", "printed", timedelta(hours=30), 1, printer=MAIN,
           printed=timedelta(hours=30) - timedelta(seconds=9)),
    # Today's, printed.
    Ticket(101, 1001, "bar", "printed", timedelta(hours=3), 1, printer=BAR,
           printed=timedelta(hours=3) - timedelta(seconds=2)),
    Ticket(102, 1003, "bar", "printed", timedelta(hours=2), 1, printer=KOPI_BAR,
           printed=timedelta(hours=2) - timedelta(seconds=1)),
    Ticket(103, 1002, "kitchen", "printed", timedelta(minutes=55), 2, printer=BACKUP,
           printed=timedelta(minutes=54)),
    # Failed for good: every attempt timed out.
    Ticket(123, 1001, "kitchen", "failed", timedelta(hours=3), 3, printer=MAIN,
           error_message="Connection timeout"),
    # Failed, attempts left (not 'new', so not pending).
    Ticket(127, 1002, "kitchen", "failed", timedelta(minutes=45), 1, printer=MAIN,
           error_message="Printer offline"),
    # Waiting: one with no attempts left, a partial reprint of 123, a dessert ticket (its only
    # printer is inactive), a retry, then the lunch rush.
    Ticket(120, 1002, "kitchen", "new", timedelta(minutes=50), 3, error_message="Printer offline"),
    Ticket(124, 1001, "kitchen", "new", timedelta(minutes=40), original_ticket_id=123),
    Ticket(125, 1002, "dessert", "new", timedelta(minutes=35)),
    Ticket(126, 1003, "bar", "new", timedelta(minutes=30), 1, error_message="Paper out"),
    *[Ticket(130 + k, 1010 + k, "bar" if k % 2 else "kitchen", "new", timedelta(minutes=20 - k))
      for k in range(9)],
    # Being printed: two stuck, one recent, one claimed exactly 5 minutes ago (not yet stuck).
    Ticket(140, 1020, "kitchen", "printing", timedelta(minutes=12), 1, printer=MAIN),
    Ticket(141, 1021, "bar", "printing", timedelta(minutes=6), 1, printer=BAR),
    Ticket(142, 1022, "kitchen", "printing", timedelta(minutes=2), 1, printer=BACKUP),
    Ticket(143, 1023, "bar", "printing", timedelta(minutes=5), 1, printer=KOPI_BAR),
]  # fmt: skip


@dataclass(frozen=True)
class Log:
    ticket_id: int
    at: timedelta  # after the ticket was created
    old_status: str | None
    new_status: str
    action: str
    actor: str = "printer_service"
    printer: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    duration_ms: int | None = None
    metadata: dict[str, Any] | None = None


def attempt_123(second: int, retry_count: int) -> list[Log]:
    """One timed-out print attempt of ticket 123, starting `second` s after it was created."""
    start = Log(123, timedelta(seconds=second), "new", "printing", "print_start", printer=MAIN)
    failed = Log(
        123,
        timedelta(seconds=second + 5),
        "printing",
        "failed",
        "print_failed",
        printer=MAIN,
        error_code="timeout",
        error_message="Connection timeout",
        duration_ms=5000,
        metadata={"retry_count": retry_count},
    )
    return [start, failed]


# Ticket 123's whole story, oldest first: created, three attempts, two retries in between.
TICKET_123_HISTORY = [
    Log(123, timedelta(0), None, "new", "created", "system", metadata={"items_count": 2}),
    *attempt_123(5, 0),
    Log(123, timedelta(seconds=70), "failed", "new", "retry", "system"),
    *attempt_123(75, 1),
    Log(123, timedelta(seconds=140), "failed", "new", "retry", "system"),
    *attempt_123(145, 2),
]

OTHER_LOGS = [
    # print_success rows: 101, 102 and 103 within the last day; 99 exactly a day ago; 100 earlier.
    Log(101, timedelta(seconds=1), "new", "printing", "print_start", printer=BAR, duration_ms=40),
    Log(101, timedelta(seconds=2), "printing", "printed", "print_success", printer=BAR,
        duration_ms=1200),
    Log(102, timedelta(seconds=1), "printing", "printed", "print_success", printer=KOPI_BAR,
        duration_ms=800),
    Log(103, timedelta(seconds=20), "printing", "failed", "print_failed", printer=MAIN,
        error_code="timeout", duration_ms=5000),
    Log(103, timedelta(minutes=1), "printing", "printed", "print_success", printer=BACKUP,
        duration_ms=1150),
    Log(99, timedelta(seconds=2), "printing", "printed", "print_success", printer=BAR,
        duration_ms=4000),
    Log(100, timedelta(seconds=9), "printing", "printed", "print_success", printer=MAIN,
        duration_ms=9000),
    Log(103, timedelta(minutes=2), "printed", "printed", "marked_printed", "admin:rina"),
]  # fmt: skip


def health_checks(now: datetime) -> list[Row]:
    """A week and more of checks: daily ones (some offline) and the last ten minutes."""
    checks: list[Row] = []

    def check(
        printer: int,
        ago: timedelta,
        online: bool,
        response_ms: int | None = None,
        paper: str | None = None,
    ) -> None:
        checks.append(
            {
                "printer_id": printer,
                "checked_at": now - ago,
                "is_online": online,
                "response_time_ms": response_ms if online else None,
                "paper_status": paper or ("ok" if online else "unknown"),
                "error_code": None if online else "timeout",
                "error_message": None if online else "no answer on port 9100 within 3 s",
            }
        )

    daily_offline = {MAIN: {3}, BAR: {2}, DESSERT: {3}}
    days = {
        MAIN: range(1, 9),
        BACKUP: range(1, 9),
        BAR: range(1, 9),
        DESSERT: range(3, 9),  # deactivated two days ago: no checks since
        OLD_KITCHEN: range(7, 10),  # retired: last check exactly 7 days ago
        KOPI_BAR: range(1, 9),
    }
    for printer, printer_days in days.items():
        for day in printer_days:
            online = day not in daily_offline.get(printer, set())
            paper = "out" if (printer, day) == (DESSERT, 4) else None
            check(printer, timedelta(days=day), online, 30 + printer, paper)
    # The last ten minutes. Main is fine; Backup dropped out and came back; Bar is down since
    # exactly 10 minutes ago; Kopi's paper runs low.
    check(MAIN, timedelta(minutes=10), True, 31)
    check(MAIN, timedelta(minutes=5), True, 33)
    check(MAIN, timedelta(minutes=1), True, 29)
    check(BACKUP, timedelta(minutes=8), False)
    check(BACKUP, timedelta(minutes=4), False)
    check(BACKUP, timedelta(minutes=2), True, 45, "low")
    check(BAR, timedelta(minutes=10), False)
    check(BAR, timedelta(minutes=7), False)
    check(BAR, timedelta(minutes=2), False)
    check(KOPI_BAR, timedelta(minutes=3), True, 52, "low")
    return checks


# --- Seeding --------------------------------------------------------------------------------------


def insert(conn: psycopg.Connection[Row], table: str, **values: Any) -> Row:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    row = conn.execute(query, list(values.values())).fetchone()
    assert row is not None
    return row


def insert_rows(
    conn: psycopg.Connection[Row], table: str, columns: tuple[str, ...], rows: list[Any]
) -> None:
    for row in rows:
        insert(conn, table, **dict(zip(columns, row, strict=True)))


@dataclass
class Kitchen:
    """A seeded database inside one transaction: `now` is the NOW() every query sees."""

    conn: psycopg.Connection[Row]
    now: datetime
    midnight: datetime  # the start of CURRENT_DATE
    log_ids: dict[int, list[int]]  # ticket id -> ids of the log rows seeded for it, oldest first

    def run(self, name: str) -> list[Row]:
        """Run the spec query exactly as written in the fixture."""
        return self.conn.execute(QUERIES[name]).fetchall()

    def table(self, name: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run the spec query as written: its column names and its rows as tuples."""
        cursor = self.conn.execute(QUERIES[name])
        columns = [column.name for column in cursor.description or []]
        return columns, [tuple(row.values()) for row in cursor.fetchall()]

    def ago(self, **delta: float) -> datetime:
        return self.now - timedelta(**delta)

    def today_or_midnight(self, **delta: float) -> datetime:
        """`delta` ago, but never before today's midnight: surely today."""
        return max(self.midnight, self.ago(**delta))


def seed(conn: psycopg.Connection[Row]) -> Kitchen:
    clock = conn.execute("SELECT now() AS now, date_trunc('day', now()) AS midnight").fetchone()
    assert clock is not None
    now, midnight = clock["now"], clock["midnight"]

    insert(conn, "core_brand", id=AYAM, name="Ayam Geprek Juara")
    insert(conn, "core_brand", id=KOPI, name="Kopi Senja")
    insert_rows(conn, "core_product", ("id", "brand_id", "name", "printer_target"), PRODUCTS)
    insert_rows(conn, "kitchen_stationprinter", PRINTER_COLUMNS, PRINTERS)
    bills = [(*bill[:-1], now - bill[-1]) for bill in BILLS]
    insert_rows(conn, "pos_bill", BILL_COLUMNS, bills)
    items = [(*item[:5], Jsonb(item[5]), item[6]) for item in BILL_ITEMS]
    insert_rows(conn, "pos_billitem", BILL_ITEM_COLUMNS, items)

    created_at: dict[int, datetime] = {}
    for t in TICKETS:
        created_at[t.id] = now - t.created
        insert(
            conn,
            "kitchen_kitchenticket",
            id=t.id,
            bill_id=t.bill_id,
            printer_target=t.printer_target,
            status=t.status,
            print_attempts=t.print_attempts,
            max_retries=t.max_retries,
            printer_ip=ip_of(t.printer),
            printer_id=t.printer,
            error_message=t.error_message,
            last_error_at=created_at[t.id] + timedelta(seconds=150) if t.error_message else None,
            created_at=created_at[t.id],
            printed_at=t.printed and now - t.printed,
            is_reprint=t.original_ticket_id is not None,
            original_ticket_id=t.original_ticket_id,
            # What the daemon holds while printing (kprintd columns).
            claimed_by="kprintd@kasir-1" if t.status == "printing" else None,
            lease_expires_at=created_at[t.id] + timedelta(minutes=1)
            if t.status == "printing"
            else None,
        )
    insert_rows(conn, "kitchen_kitchenticketitem", TICKET_ITEM_COLUMNS, TICKET_ITEMS)

    # In a shuffled order, so the log's ids do not follow its timestamps: only ORDER BY sorts.
    logs = [*TICKET_123_HISTORY, *OTHER_LOGS]
    random.Random(123).shuffle(logs)
    log_ids: dict[int, list[tuple[datetime, int]]] = {}
    for log in logs:
        row = insert(
            conn,
            "kitchen_kitchenticketlog",
            ticket_id=log.ticket_id,
            timestamp=created_at[log.ticket_id] + log.at,
            old_status=log.old_status,
            new_status=log.new_status,
            action=log.action,
            actor=log.actor,
            printer_ip=ip_of(log.printer),
            error_code=log.error_code,
            error_message=log.error_message,
            duration_ms=log.duration_ms,
            metadata=Jsonb(log.metadata or {}),
        )
        log_ids.setdefault(log.ticket_id, []).append((row["timestamp"], row["id"]))

    # Admin resets: two today (one exactly at midnight), one a microsecond before midnight.
    resets = [
        (126, "admin:rina", max(midnight, now - timedelta(minutes=25))),
        (100, "admin:budi", midnight - timedelta(microseconds=1)),
        (100, "admin:dewi", midnight),
    ]
    for ticket_id, actor, at in resets:
        insert(
            conn,
            "kitchen_kitchenticketlog",
            ticket_id=ticket_id,
            timestamp=at,
            old_status="failed",
            new_status="new",
            action="manual_reset",
            actor=actor,
        )

    for check in health_checks(now):
        insert(conn, "kitchen_printerhealthcheck", **check)
    oldest_first = {ticket: [i for _, i in sorted(rows)] for ticket, rows in log_ids.items()}
    return Kitchen(conn, now, midnight, oldest_first)


@pytest.fixture
def kitchen(conn: psycopg.Connection[Row]) -> Iterator[Kitchen]:
    conn.execute("SET TIME ZONE 'Asia/Jakarta'")
    with conn.transaction(force_rollback=True):
        yield seed(conn)


def pick(rows: list[Row], *columns: str) -> list[tuple[Any, ...]]:
    return [tuple(row[c] for c in columns) for row in rows]


# --- The fixture file -----------------------------------------------------------------------------


def test_fixture_holds_every_spec_query_and_nothing_else() -> None:
    assert set(QUERIES) == SPEC_QUERY_NAMES
    for name, text in QUERIES.items():
        statements = re.findall(r"^(SELECT|UPDATE)\b", text, re.MULTILINE)
        assert len(statements) == 1, f"{name} should hold exactly one statement"


def test_seed_is_what_the_expectations_assume(kitchen: Kitchen) -> None:
    statuses = kitchen.conn.execute(
        "SELECT status, count(*) AS n FROM kitchen_kitchenticket GROUP BY status ORDER BY status"
    ).fetchall()
    assert pick(statuses, "status", "n") == [
        ("failed", 2),
        ("new", 13),
        ("printed", 5),
        ("printing", 4),
    ]
    assert kitchen.midnight <= kitchen.now < kitchen.midnight + timedelta(days=1)
    # Ticket 123's log ids follow neither its timestamps nor their reverse.
    story = kitchen.log_ids[123]
    assert story not in (sorted(story), sorted(story, reverse=True))


# --- Core tables ----------------------------------------------------------------------------------


def test_pending_tickets_oldest_ten_with_attempts_left(kitchen: Kitchen) -> None:
    rows = kitchen.run("pending_tickets")
    # 120 has used all its attempts; 137 and 138 are past the LIMIT.
    assert [r["id"] for r in rows] == [124, 125, 126, 130, 131, 132, 133, 134, 135, 136]
    assert {r["status"] for r in rows} == {"new"}
    assert rows[0]["is_reprint"] is True
    assert rows[0]["original_ticket_id"] == 123
    assert rows[0]["created_at"] == kitchen.ago(minutes=40)
    assert set(SPEC_TICKET_COLUMNS) <= set(rows[0])


def test_ticket_items_of_ticket_123(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("ticket_items")
    assert columns == ["quantity", "product_id", "product_name", "notes", "modifiers"]
    assert sorted(rows, key=lambda r: r[2]) == [
        (2, GEPREK, "Ayam Geprek Original", "level 5, extra sambal", EXTRA_SAMBAL),
        (2, NASI, "Nasi Putih", "", []),
    ]


# --- Audit log ------------------------------------------------------------------------------------

LOG_COLUMNS = ("old_status", "new_status", "action", "actor", "error_message", "duration_ms")


def test_ticket_failure_log_tells_ticket_123s_story_in_order(kitchen: Kitchen) -> None:
    rows = kitchen.run("ticket_failure_log")
    assert {r["ticket_id"] for r in rows} == {123}
    timestamps = [r["timestamp"] for r in rows]
    assert timestamps == sorted(timestamps)
    # Rows a trigger may have added for the inserts are allowed; ours come in the story's order.
    seeded = [r for r in rows if r["id"] in kitchen.log_ids[123]]
    assert [r["id"] for r in seeded] == kitchen.log_ids[123]
    assert pick(seeded, "action") == [
        ("created",),
        *[("print_start",), ("print_failed",), ("retry",)] * 2,
        ("print_start",),
        ("print_failed",),
    ]
    assert pick(seeded[-1:], *LOG_COLUMNS, "error_code", "printer_ip", "metadata") == [
        ("printing", "failed", "print_failed", "printer_service", "Connection timeout", 5000,
         "timeout", ip_address("192.168.1.100"), {"retry_count": 2}),
    ]  # fmt: skip
    assert seeded[0]["timestamp"] == kitchen.ago(hours=3)


def test_avg_print_time_of_the_last_day(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("avg_print_time")
    assert columns == ["avg_print_time_ms"]
    # 1200, 800 and 1150 ms; 99's 4000 ms is exactly a day old, 100's 9000 ms older still, and
    # print_start / print_failed durations do not count.
    assert rows == [(Decimal(1050),)]


def test_manual_resets_today(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("manual_resets_today")
    assert columns == ["ticket_id", "actor", "timestamp"]
    # admin:budi's reset a microsecond before midnight was yesterday.
    assert sorted(rows) == [
        (100, "admin:dewi", kitchen.midnight),
        (126, "admin:rina", kitchen.today_or_midnight(minutes=25)),
    ]


# --- Health checks --------------------------------------------------------------------------------


@pytest.mark.slow
def test_latest_printer_status(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("latest_printer_status")
    assert columns == ["printer_id", "is_online", "response_time_ms", "paper_status", "checked_at"]
    assert rows == [
        (MAIN, True, 29, "ok", kitchen.ago(minutes=1)),
        (BACKUP, True, 45, "low", kitchen.ago(minutes=2)),
        (BAR, False, None, "unknown", kitchen.ago(minutes=2)),
        (DESSERT, False, None, "unknown", kitchen.ago(days=3)),
        (OLD_KITCHEN, True, 35, "ok", kitchen.ago(days=7)),
        (KOPI_BAR, True, 52, "low", kitchen.ago(minutes=3)),
    ]


def test_printers_offline(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("printers_offline")
    assert columns == ["station_code", "printer_name", "printer_ip", "checked_at", "downtime"]
    # One row per offline check of the last 10 minutes not followed by an online one: the Bar
    # Printer's checks 7 and 2 minutes ago (the one exactly 10 minutes ago is outside). The backup
    # kitchen printer came back 2 minutes ago.
    bar = ("bar", "Bar Printer", ip_address("192.168.1.102"))
    assert sorted(rows, key=lambda r: r[4]) == [
        (*bar, kitchen.ago(minutes=2), timedelta(minutes=2)),
        (*bar, kitchen.ago(minutes=7), timedelta(minutes=7)),
    ]


def test_uptime_report_last_seven_days(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("uptime_report")
    assert columns == [
        "station_code",
        "printer_name",
        "total_checks",
        "online_checks",
        "uptime_percent",
    ]
    # Checks exactly 7 days old are out; the retired printer has no check inside the window.
    assert sorted(rows) == [
        ("bar", "Bar Printer", 9, 5, Decimal("55.56")),
        ("bar", "Kopi Bar Printer", 7, 7, Decimal("100.00")),
        ("dessert", "Dessert Station Printer", 4, 3, Decimal("75.00")),
        ("kitchen", "Backup Kitchen Printer", 9, 7, Decimal("77.78")),
        ("kitchen", "Main Kitchen Printer", 9, 8, Decimal("88.89")),
    ]


# --- Indexes & Performance: the most common queries -----------------------------------------------


def test_poll_pending_tickets_oldest_ten_new(kitchen: Kitchen) -> None:
    rows = kitchen.run("poll_pending_tickets")
    # Unlike pending_tickets this one does not skip 120, whose attempts are used up.
    assert [r["id"] for r in rows] == [120, 124, 125, 126, 130, 131, 132, 133, 134, 135]
    assert pick(rows[:1], "status", "print_attempts", "max_retries") == [("new", 3, 3)]


def test_station_printers_for_kitchen_in_priority_order(kitchen: Kitchen) -> None:
    rows = kitchen.run("station_printers")
    assert pick(rows, "id", "printer_name", "printer_ip", "printer_port", "priority") == [
        (MAIN, "Main Kitchen Printer", ip_address("192.168.1.100"), 9100, 1),
        (BACKUP, "Backup Kitchen Printer", ip_address("192.168.1.101"), 9100, 2),
    ]


def test_ticket_history_newest_first(kitchen: Kitchen) -> None:
    rows = kitchen.run("ticket_history")
    assert {r["ticket_id"] for r in rows} == {123}
    timestamps = [r["timestamp"] for r in rows]
    assert timestamps == sorted(timestamps, reverse=True)
    seeded = [r["id"] for r in rows if r["id"] in kitchen.log_ids[123]]
    assert seeded == kitchen.log_ids[123][::-1]
    assert rows[-1]["timestamp"] <= kitchen.ago(hours=3)


def test_latest_printer_health_whole_rows(kitchen: Kitchen) -> None:
    rows = kitchen.run("latest_printer_health")
    assert pick(rows, "printer_id", "checked_at", "is_online", "paper_status", "error_code") == [
        (MAIN, kitchen.ago(minutes=1), True, "ok", None),
        (BACKUP, kitchen.ago(minutes=2), True, "low", None),
        (BAR, kitchen.ago(minutes=2), False, "unknown", "timeout"),
        (DESSERT, kitchen.ago(days=3), False, "unknown", "timeout"),
        (OLD_KITCHEN, kitchen.ago(days=7), True, "ok", None),
        (KOPI_BAR, kitchen.ago(minutes=3), True, "low", None),
    ]
    assert "error_message" in rows[0]
    assert "cutter_ok" in rows[0]


# --- Troubleshooting ------------------------------------------------------------------------------


def test_stuck_tickets_printing_for_over_five_minutes(kitchen: Kitchen) -> None:
    rows = kitchen.run("stuck_tickets")
    # 142 started 2 minutes ago; 143 exactly 5 minutes ago, which is not "over".
    assert sorted(pick(rows, "id", "status", "printer_ip")) == [
        (140, "printing", ip_address("192.168.1.100")),
        (141, "printing", ip_address("192.168.1.102")),
    ]


def ticket_snapshot(conn: psycopg.Connection[Row]) -> dict[int, Row]:
    columns = sql.SQL(", ").join(map(sql.Identifier, SPEC_TICKET_COLUMNS))
    query = sql.SQL("SELECT {} FROM kitchen_kitchenticket").format(columns)
    return {row["id"]: row for row in conn.execute(query)}


def changed(before: Row, after: Row) -> dict[str, tuple[Any, Any]]:
    return {c: (before[c], after[c]) for c in after if after[c] != before[c]}


def test_reset_stuck_tickets_resets_exactly_the_stuck_ones(kitchen: Kitchen) -> None:
    before = ticket_snapshot(kitchen.conn)
    cursor = kitchen.conn.execute(QUERIES["reset_stuck_tickets"])
    assert cursor.rowcount == 2
    after = ticket_snapshot(kitchen.conn)

    assert after.keys() == before.keys()
    changes = {ticket_id: changed(before[ticket_id], row) for ticket_id, row in after.items()}
    assert {ticket_id: change for ticket_id, change in changes.items() if change} == {
        140: {"status": ("printing", "new"), "printer_ip": (ip_address("192.168.1.100"), None)},
        141: {"status": ("printing", "new"), "printer_ip": (ip_address("192.168.1.102"), None)},
    }
    assert kitchen.run("stuck_tickets") == []


def test_tickets_for_offline_printer(kitchen: Kitchen) -> None:
    rows = kitchen.run("tickets_for_offline_printer")
    # New tickets of every station that has an inactive printer: dessert (its only printer) and
    # kitchen (the retired Old Kitchen Printer, although Main and Backup are active). One row per
    # inactive printer of the station; bar tickets and non-new kitchen tickets are not listed.
    assert sorted(r["id"] for r in rows) == [120, 124, 125, 130, 132, 134, 136, 138]
    assert {r["status"] for r in rows} == {"new"}
    assert set(SPEC_TICKET_COLUMNS) <= set(rows[0])


def test_failure_rate_per_printer(kitchen: Kitchen) -> None:
    columns, rows = kitchen.table("failure_rate")
    assert columns == ["printer_name", "total_prints", "failed_prints", "failure_rate"]
    # The retired printer never printed (total 0) and is left out.
    assert rows == [
        ("Dessert Station Printer", 300, 100, Decimal("33.33")),
        ("Bar Printer", 800, 40, Decimal("5.00")),
        ("Backup Kitchen Printer", 150, 3, Decimal("2.00")),
        ("Main Kitchen Printer", 1200, 18, Decimal("1.50")),
        ("Kopi Bar Printer", 40, 0, Decimal("0.00")),
    ]
