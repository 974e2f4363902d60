"""The POS side of the harness: the rows a POS (or its admin screen) writes, and bills it sends.

:class:`Restaurant` is one brand with products per station and station printers (emulated on
loopback, or wherever the caller runs them); :class:`Pos` is a terminal sending bills to the
kitchen, one transaction each, noting when each COMMIT was issued and returned. The helpers below
take an open psycopg connection and write exactly the rows a POS would write, with plain SQL and
no hidden defaults beyond the schema's own, so a test reads like the restaurant it sets up:

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
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from kprintd.emulator import EmulatedPrinter
from kprintd.harness.cluster import as_login
from kprintd.harness.observe import query
from kprintd.harness.printers import start_printer

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


class Restaurant:
    """One brand with products per station and station printers, set up as its admin screen would.

    Seeds as the database's owner; send() plays the POS as the kprintd_pos login (`pos_url`
    overrides), as in a store.
    """

    def __init__(
        self,
        url: str,
        store_id: uuid.UUID | None = None,
        *,
        name: str = "Warung Test",
        pos_url: str | None = None,
    ) -> None:
        self.url = url
        self.store_id = store_id
        self.pos_url = pos_url or as_login(url, "kprintd_pos")
        self.printers: list[EmulatedPrinter] = []
        self.brand_id: uuid.UUID = query(
            url, "INSERT INTO core_brand (name) VALUES (%s) RETURNING id", (name,)
        )[0]["id"]
        self.products: dict[str, uuid.UUID] = {}
        self.bills = itertools.count(1)

    def product(self, station: str, name: str | None = None) -> uuid.UUID:
        """The product `name` printed at `station` (default: the station's one product, named
        after it), created the first time it is asked for; products[name or station] keeps it."""
        key = name or station
        if key not in self.products:
            self.products[key] = query(
                self.url,
                "INSERT INTO core_product (brand_id, name, printer_target)"
                " VALUES (%s, %s, %s) RETURNING id",
                (self.brand_id, name or f"{station.title()} Special", station),
            )[0]["id"]
        return self.products[key]

    def add_printer(
        self,
        station: str,
        host: str,
        port: int,
        *,
        name: str,
        priority: int = 1,
        paper_width_mm: int | None = None,
        chars_per_line: int | None = None,
    ) -> int:
        """A kitchen_stationprinter row of the brand (and store) at host:port; returns its id."""
        columns = {
            "brand_id": self.brand_id,
            "store_id": self.store_id,
            "station_code": station,
            "printer_name": name,
            "printer_ip": host,
            "printer_port": port,
            "priority": priority,
            "paper_width_mm": paper_width_mm,
            "chars_per_line": chars_per_line,
        }
        given = {k: v for k, v in columns.items() if v is not None or k == "store_id"}
        row = query(
            self.url,
            f"INSERT INTO kitchen_stationprinter ({', '.join(given)})"
            f" VALUES ({', '.join(['%s'] * len(given))}) RETURNING id",
            tuple(given.values()),
        )[0]
        return int(row["id"])

    def printer(
        self, station: str, priority: int = 1, name: str | None = None, **kwargs: Any
    ) -> EmulatedPrinter:
        """An emulated printer for `station` on a loopback address of its own (stopped by stop());
        `kwargs` go to EmulatedPrinter."""
        emulator = start_printer(name or f"{station}-{priority}", **kwargs)
        self.printers.append(emulator)
        self.add_printer(
            station, emulator.host, emulator.port, name=emulator.name, priority=priority
        )
        return emulator

    def send(self, *stations: str, max_retries: int | None = None) -> list[int]:
        """A bill with one item per station, sent to the kitchen; returns the ticket ids.

        A test that also changes the tickets' max_retries before they commit acts as their owner
        instead of the POS.
        """
        with Pos(self, self.url if max_retries is not None else self.pos_url) as pos:
            return pos.send(*stations, table="7", max_retries=max_retries).ticket_ids

    def stop(self) -> None:
        for printer in self.printers:
            printer.stop()


@dataclass(frozen=True)
class Order:
    """What one send to the kitchen created, and when its COMMIT was issued and returned."""

    ticket_ids: list[int]
    commit_issued_at: float  # time.monotonic() when conn.commit() was called
    committed_at: float  # time.monotonic() when it returned


class Pos:
    """A POS terminal of a Restaurant: one connection, one transaction per send to the kitchen."""

    def __init__(
        self,
        restaurant: Restaurant,
        conninfo: str | None = None,
        *,
        application_name: str = "kprintd-harness-pos",
    ) -> None:
        self.restaurant = restaurant
        self.conn = psycopg.connect(conninfo or restaurant.url, application_name=application_name)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Pos:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(
        self, *stations: str, table: str | None = None, max_retries: int | None = None
    ) -> Order:
        """A bill with one item per station, sent to the kitchen and committed."""
        place = self.restaurant
        number = next(place.bills)
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO pos_bill (brand_id, store_id, bill_number, table_number)"
                " VALUES (%s, %s, %s, %s) RETURNING id",
                (
                    place.brand_id,
                    place.store_id,
                    f"B-{number}-{uuid.uuid4().hex[:6]}",
                    table or str(number % 40 + 1),
                ),
            )
            bill = cur.fetchone()
            assert bill is not None
            for station in stations:
                cur.execute(
                    "INSERT INTO pos_billitem (bill_id, product_id, quantity, printer_target)"
                    " VALUES (%s, %s, 1, %s)",
                    (bill[0], place.product(station), station),
                )
            cur.execute("SELECT id FROM kprintd.kitchen_create_tickets(%s) ORDER BY id", (bill[0],))
            ids = [row[0] for row in cur.fetchall()]
            if max_retries is not None:
                cur.execute(
                    "UPDATE kitchen_kitchenticket SET max_retries = %s WHERE id = ANY(%s)",
                    (max_retries, ids),
                )
        issued_at = time.monotonic()
        self.conn.commit()
        return Order(ids, issued_at, time.monotonic())

    def burst(self, bills: int, stations: Sequence[str]) -> list[int]:
        """`bills` bills with one item per station, all sent in ONE transaction; the ticket ids.

        The tickets become visible, and their NOTIFYs are delivered, at the caller's commit().
        """
        place = self.restaurant
        products = [place.product(s) for s in stations]
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO pos_bill (brand_id, store_id, bill_number, table_number)"
                " SELECT %s, %s, 'BURST-' || g, (g %% 40 + 1)::text FROM generate_series(1, %s) g"
                " RETURNING id",
                (place.brand_id, place.store_id, bills),
            )
            bill_ids = [row[0] for row in cur.fetchall()]
            cur.execute(
                "INSERT INTO pos_billitem (bill_id, product_id, quantity)"
                " SELECT b, p, 1 FROM unnest(%s::bigint[]) b, unnest(%s::uuid[]) p",
                (bill_ids, products),
            )
            cur.execute(
                "SELECT t.id FROM unnest(%s::bigint[]) b, kprintd.kitchen_create_tickets(b) t",
                (bill_ids,),
            )
            return [row[0] for row in cur.fetchall()]

    def commit(self) -> float:
        """COMMIT; returns time.monotonic() when it returned."""
        self.conn.commit()
        return time.monotonic()
