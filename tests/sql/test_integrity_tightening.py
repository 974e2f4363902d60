"""The integrity that the spec's queries and the daemon's routing silently depend on."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from kprintd.harness import add_item, make_bill, make_brand, make_printer, make_product


def test_station_codes_are_stored_trimmed_and_lowercase(conn: psycopg.Connection[Any]) -> None:
    brand = make_brand(conn, "Warung")
    printer_id = make_printer(conn, brand, " Kitchen ", "127.0.0.2", 9100)
    row = conn.execute(
        "SELECT station_code FROM kitchen_stationprinter WHERE id = %s", (printer_id,)
    ).fetchone()
    assert row is not None and row["station_code"] == "kitchen"
    conn.execute(
        "UPDATE kitchen_stationprinter SET station_code = 'BAR' WHERE id = %s", (printer_id,)
    )
    row = conn.execute(
        "SELECT station_code FROM kitchen_stationprinter WHERE id = %s", (printer_id,)
    ).fetchone()
    assert row is not None and row["station_code"] == "bar"


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("kitchen_stationprinter", "is_active"),
        ("kitchen_stationprinter", "priority"),
        ("kitchen_stationprinter", "printer_port"),
        ("kitchen_kitchenticket", "print_attempts"),
        ("kitchen_kitchenticket", "max_retries"),
    ],
)
def test_columns_the_spec_queries_compare_are_not_null(
    conn: psycopg.Connection[Any], table: str, column: str
) -> None:
    row = conn.execute(
        "SELECT is_nullable FROM information_schema.columns"
        " WHERE table_name = %s AND column_name = %s",
        (table, column),
    ).fetchone()
    assert row is not None and row["is_nullable"] == "NO"


def test_the_spec_reset_gives_an_exhausted_ticket_fresh_attempts(
    conn: psycopg.Connection[Any],
) -> None:
    brand = make_brand(conn, "Warung")
    bill = make_bill(conn, brand)
    add_item(conn, bill, make_product(conn, brand, "Soto", "kitchen"), 1)
    ticket = conn.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchone()
    assert ticket is not None
    conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'printing', print_attempts = 3,"
        " created_at = now() - interval '10 minutes' WHERE id = %s",
        (ticket["id"],),
    )
    conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'new', printer_ip = NULL"
        " WHERE status = 'printing' AND created_at < NOW() - INTERVAL '5 minutes'"
    )
    pending = conn.execute(
        "SELECT id FROM kitchen_kitchenticket WHERE status = 'new' AND print_attempts < max_retries"
    ).fetchall()
    assert [r["id"] for r in pending] == [ticket["id"]]
