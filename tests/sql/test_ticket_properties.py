"""Property: whatever a POS does to a bill, the kitchen hears about each item exactly once.

Hypothesis generates POS sessions, lists of operations on one bill: add items (any station
spelling, 'none', quantity 0), void them, send all or some of the bill to the kitchen, print
tickets and reprint them (whole or partial), in any order. A plain Python model says what the
kitchen must have been told; after every operation the database must agree:

- every sent, non-void item is on exactly one original order/addition ticket, of its station;
- every item voided after it was sent, and sent again since, is on exactly one void ticket;
- items never sent appear on no ticket at all; each send creates the tickets the model expects;
- per station, the first original ticket is the 'order' and later ones are 'addition's;
- no ticket is empty, and each has exactly one 'created' log row whose items_count is right;
- with a checker printer, checker tickets list each sent item once and each void once.

All examples share one database; each gets a fresh bill (of a brand with or without a checker
printer), so they share no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprintd.harness import (
    add_item,
    make_bill,
    make_brand,
    make_printer,
    make_product,
    send_to_kitchen,
    void_item,
)

Conn = psycopg.Connection[dict[str, Any]]

PRODUCT_TARGETS = ["kitchen", "bar", " Dessert ", "none", None]
ITEM_TARGETS = [None, None, None, "", "BAR", " kitchen", "grill", "none", "None "]

# Operations. Indexes pick among what exists at that moment (modulo its count).
Add = st.tuples(
    st.just("add"),
    st.integers(0, len(PRODUCT_TARGETS) - 1),
    st.sampled_from(ITEM_TARGETS),
    st.sampled_from([1, 1, 2, 3, 0]),
)
Void = st.tuples(st.just("void"), st.integers(0, 50))
Send = st.tuples(st.just("send"), st.none() | st.none() | st.lists(st.integers(0, 50), max_size=4))
Print = st.tuples(st.just("print_ticket"), st.integers(0, 50))
Reprint = st.tuples(st.just("reprint"), st.integers(0, 50), st.none() | st.integers(0, 50))
Operation = st.one_of(Add, Add, Add, Void, Void, Send, Send, Print, Reprint)

TYPE_KIND = {"order": "item", "addition": "item", "void": "void", "checker": "checker"}


def expected_station(item_target: str | None, product_target: str | None) -> str | None:
    """The station a bill item prints at (None: never printed), as documented."""
    for target in (item_target, product_target):
        if target is not None and target.strip():
            code = target.strip().lower()
            return None if code == "none" else code
    return "kitchen"


@dataclass
class Item:
    station: str | None
    quantity: int
    void: bool = False
    sent_station: str | None = None  # set once it is on an order/addition ticket
    void_sent: bool = False  # set once it is on a void ticket


class PosSession:
    """One bill driven by operations, with the model of what the kitchen must know."""

    def __init__(self, conn: Conn, brand: UUID, products: list[UUID], checker: bool) -> None:
        self.conn = conn
        self.products = products
        self.checker = checker
        self.bill = make_bill(conn, brand)
        self.model: dict[int, Item] = {}

    def apply(self, operation: tuple[Any, ...]) -> None:
        kind, *args = operation
        getattr(self, kind)(*args)

    def add(self, product: int, target: str | None, quantity: int) -> None:
        item = add_item(
            self.conn, self.bill, self.products[product], quantity, printer_target=target
        )
        self.model[item] = Item(expected_station(target, PRODUCT_TARGETS[product]), quantity)

    def void(self, pick: int) -> None:
        if self.model:
            item = sorted(self.model)[pick % len(self.model)]
            void_item(self.conn, item)
            self.model[item].void = True

    def send(self, picks: list[int] | None) -> None:
        ids = sorted(self.model)
        chosen = None if picks is None or not ids else [ids[p % len(ids)] for p in picks]
        new_lines: dict[str, list[int]] = {}
        void_lines: dict[str, list[int]] = {}
        for item_id in sorted(set(ids if chosen is None else chosen)):
            item = self.model[item_id]
            if item.sent_station is None:
                if not item.void and item.station is not None and item.quantity >= 1:
                    item.sent_station = item.station
                    new_lines.setdefault(item.station, []).append(item_id)
            elif item.void and not item.void_sent:
                item.void_sent = True
                void_lines.setdefault(item.sent_station, []).append(item_id)

        created = send_to_kitchen(self.conn, self.bill, chosen)

        expected = [("item", station, new_lines[station]) for station in sorted(new_lines)]
        expected += [("void", station, void_lines[station]) for station in sorted(void_lines)]
        if self.checker and expected:
            every = sorted(i for _, _, items in expected for i in items)
            expected.append(("checker", "checker", every))
        got = [
            (TYPE_KIND[t["ticket_type"]], t["printer_target"], sorted(self._lines(t["id"])))
            for t in created
        ]
        assert got == expected

    def print_ticket(self, pick: int) -> None:
        waiting = self._tickets("status = 'new'")
        if waiting:
            ticket = waiting[pick % len(waiting)]
            self.conn.execute("SELECT kitchen_mark_printed(%s, 'kitchen')", (ticket,))

    def reprint(self, pick: int, partial: int | None) -> None:
        printed = self._tickets("status = 'printed'")
        if not printed:
            return
        ticket = printed[pick % len(printed)]
        lines = sorted(set(self._lines(ticket)))
        item_ids = None if partial is None else [lines[partial % len(lines)]]
        row = self.conn.execute(
            "SELECT kitchen_reprint(%s, 'admin:prop', %s::bigint[]) AS id", (ticket, item_ids)
        ).fetchone()
        assert row is not None
        assert sorted(self._lines(row["id"])) == (item_ids or sorted(self._lines(ticket)))

    def _tickets(self, condition: str) -> list[int]:
        rows = self.conn.execute(
            f"SELECT id FROM kitchen_kitchenticket WHERE bill_id = %s AND {condition} ORDER BY id",
            (self.bill,),
        ).fetchall()
        return [r["id"] for r in rows]

    def _lines(self, ticket: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT bill_item_id FROM kitchen_kitchenticketitem WHERE kitchen_ticket_id = %s",
            (ticket,),
        ).fetchall()
        return [r["bill_item_id"] for r in rows]

    # Invariants ---------------------------------------------------------------------------------

    def check(self) -> None:
        self.the_kitchen_heard_each_item_exactly_once()
        self.each_station_has_one_order_then_additions()
        self.no_ticket_is_empty_and_each_was_created_once()

    def the_kitchen_heard_each_item_exactly_once(self) -> None:
        rows = self.conn.execute(
            "SELECT kti.bill_item_id, kti.line_type, kt.ticket_type, kt.printer_target"
            " FROM kitchen_kitchenticketitem kti"
            " JOIN kitchen_kitchenticket kt ON kt.id = kti.kitchen_ticket_id"
            " WHERE kt.bill_id = %s AND NOT kt.is_reprint",
            (self.bill,),
        ).fetchall()
        seen: dict[int, list[tuple[str, str, str]]] = {}
        for r in rows:
            kind = TYPE_KIND[r["ticket_type"]]
            seen.setdefault(r["bill_item_id"], []).append(
                (kind, r["line_type"], r["printer_target"])
            )
        for item_id, item in self.model.items():
            expected: list[tuple[str, str, str]] = []
            if item.sent_station is not None:
                expected.append(("item", "item", item.sent_station))
                if self.checker:
                    expected.append(("checker", "item", "checker"))
            if item.void_sent:
                assert item.sent_station is not None
                expected.append(("void", "void", item.sent_station))
                if self.checker:
                    expected.append(("checker", "void", "checker"))
            assert sorted(seen.pop(item_id, [])) == sorted(expected), f"item {item_id}: {item}"
        assert seen == {}, "lines for items the POS never added"

    def each_station_has_one_order_then_additions(self) -> None:
        rows = self.conn.execute(
            "SELECT array_agg(ticket_type ORDER BY id) AS types FROM kitchen_kitchenticket"
            " WHERE bill_id = %s AND NOT is_reprint AND ticket_type IN ('order', 'addition')"
            " GROUP BY printer_target",
            (self.bill,),
        ).fetchall()
        for r in rows:
            assert r["types"] == ["order"] + ["addition"] * (len(r["types"]) - 1)

    def no_ticket_is_empty_and_each_was_created_once(self) -> None:
        rows = self.conn.execute(
            "SELECT kt.id,"
            " (SELECT count(*) FROM kitchen_kitchenticketitem i WHERE i.kitchen_ticket_id = kt.id)"
            "   AS lines,"
            " (SELECT array_agg((l.metadata->>'items_count')::int) FROM kitchen_kitchenticketlog l"
            "   WHERE l.ticket_id = kt.id AND l.action = 'created') AS created"
            " FROM kitchen_kitchenticket kt WHERE kt.bill_id = %s",
            (self.bill,),
        ).fetchall()
        for r in rows:
            assert r["lines"] > 0, f"ticket {r['id']} is empty"
            assert r["created"] == [r["lines"]], f"ticket {r['id']}: created rows {r['created']}"


@dataclass
class Brand:
    id: UUID
    products: list[UUID]
    checker: bool


def make_brands(conn: Conn) -> list[Brand]:
    brands = []
    for checker in (False, True):
        brand = make_brand(conn, "With checker" if checker else "Without checker")
        if checker:
            make_printer(conn, brand, "checker", "10.0.0.9")
        products = [
            make_product(conn, brand, f"product {i}", target)
            for i, target in enumerate(PRODUCT_TARGETS)
        ]
        brands.append(Brand(brand, products, checker))
    return brands


@pytest.mark.slow
def test_random_pos_sessions_keep_the_kitchen_in_step(conn: Conn):
    brands = make_brands(conn)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(checker=st.booleans(), operations=st.lists(Operation, min_size=10, max_size=40))
    def session(checker: bool, operations: list[tuple[Any, ...]]) -> None:
        brand = brands[checker]
        pos = PosSession(conn, brand.id, brand.products, brand.checker)
        pos.check()
        for operation in operations:
            pos.apply(operation)
            pos.check()

    session()
