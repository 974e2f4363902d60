"""Helpers that play the POS: brands, products, bills, bill items and station printers.

Every helper takes an open psycopg connection and writes exactly the rows a POS (or an admin
screen) would write, with plain SQL and no hidden defaults beyond the schema's own, so a test
reads like the restaurant it sets up:

    brand = make_brand(conn, "Ayam Geprek")
    nasi = make_product(conn, brand, "Nasi Goreng", "kitchen")
    bill = make_bill(conn, brand, table_number="5")
    add_item(conn, bill, nasi, 2, notes="pedas")
    make_printer(conn, brand, "kitchen", "192.168.1.100")
    tickets = send_to_kitchen(conn, bill)

Helpers work with any row factory (tuple or dict rows) and inside or outside a transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

_bill_numbers = itertools.count(1)


def _scalar(conn: psycopg.Connection[Any], query: str, params: Sequence[Any]) -> Any:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(query, params).fetchone()
    assert row is not None, f"no row from: {query}"
    return row[0]


def make_brand(conn: psycopg.Connection[Any], name: str = "Test Brand") -> UUID:
    """A core_brand row; returns its id."""
    brand_id: UUID = _scalar(
        conn, "INSERT INTO core_brand (name) VALUES (%s) RETURNING id", (name,)
    )
    return brand_id


def make_product(
    conn: psycopg.Connection[Any],
    brand_id: UUID,
    name: str = "Nasi Goreng",
    printer_target: str | None = "kitchen",
) -> UUID:
    """A core_product row of the brand, printed at `printer_target` by default; returns its id."""
    product_id: UUID = _scalar(
        conn,
        "INSERT INTO core_product (brand_id, name, printer_target) VALUES (%s, %s, %s)"
        " RETURNING id",
        (brand_id, name, printer_target),
    )
    return product_id


def make_bill(
    conn: psycopg.Connection[Any],
    brand_id: UUID,
    store_id: UUID | None = None,
    *,
    bill_number: str | None = None,
    bill_type: str = "dine_in",
    table_number: str | None = None,
    queue_number: int | None = None,
    customer_name: str | None = None,
) -> int:
    """An open pos_bill; bill_number defaults to a unique 'B0001'-style number. Returns its id."""
    number = bill_number if bill_number is not None else f"B{next(_bill_numbers):04d}"
    return int(
        _scalar(
            conn,
            "INSERT INTO pos_bill (brand_id, store_id, bill_number, bill_type, table_number,"
            " queue_number, customer_name) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (brand_id, store_id, number, bill_type, table_number, queue_number, customer_name),
        )
    )


def add_item(
    conn: psycopg.Connection[Any],
    bill_id: int,
    product_id: UUID,
    quantity: int = 1,
    notes: str = "",
    modifiers: Sequence[Any] = (),
    printer_target: str | None = None,
) -> int:
    """A pos_billitem on the bill; returns its id.

    printer_target None stores NULL: the item then prints at its product's printer_target (else
    'kitchen'). Pass a station code to override the product's for this item, 'none' to never print.
    """
    return int(
        _scalar(
            conn,
            "INSERT INTO pos_billitem (bill_id, product_id, quantity, notes, modifiers,"
            " printer_target) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (bill_id, product_id, quantity, notes, Jsonb(list(modifiers)), printer_target),
        )
    )


def void_item(conn: psycopg.Connection[Any], item_id: int) -> None:
    """Voids a bill item, as the POS does: pos_billitem.is_void = true."""
    with conn.cursor() as cur:
        cur.execute("UPDATE pos_billitem SET is_void = true WHERE id = %s", (item_id,))
        assert cur.rowcount == 1, f"no bill item {item_id}"


def make_printer(
    conn: psycopg.Connection[Any],
    brand_id: UUID,
    station: str,
    ip: str = "127.0.0.1",
    port: int = 9100,
    priority: int = 1,
    *,
    name: str | None = None,
    store_id: UUID | None = None,
    is_active: bool = True,
    paper_width_mm: int = 80,
    chars_per_line: int = 32,
) -> int:
    """A kitchen_stationprinter row routing `station` of the brand to ip:port; returns its id.

    store_id None means the printer serves every store of the brand.
    """
    return int(
        _scalar(
            conn,
            "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip,"
            " printer_port, priority, is_active, paper_width_mm, chars_per_line, store_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                brand_id,
                station,
                name or f"{station} printer {priority}",
                ip,
                port,
                priority,
                is_active,
                paper_width_mm,
                chars_per_line,
                store_id,
            ),
        )
    )


def send_to_kitchen(
    conn: psycopg.Connection[Any],
    bill_id: int,
    item_ids: Sequence[int] | None = None,
    actor: str = "pos",
) -> list[dict[str, Any]]:
    """Runs kitchen_create_tickets(); returns the created tickets as dicts, in creation order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM kitchen_create_tickets(%s::bigint, %s::bigint[], %s::text)",
            (bill_id, list(item_ids) if item_ids is not None else None, actor),
        )
        return cur.fetchall()


def ticket_lines(conn: psycopg.Connection[Any], ticket_id: int) -> list[tuple[int, int, str]]:
    """(bill_item_id, quantity, line_type) of a ticket's lines, in print order."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT bill_item_id, quantity, line_type FROM kitchen_kitchenticketitem"
            " WHERE kitchen_ticket_id = %s ORDER BY id",
            (ticket_id,),
        )
        return [(int(a), int(b), str(c)) for a, b, c in cur.fetchall()]
