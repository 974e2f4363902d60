"""Send to kitchen: kitchen_create_tickets() and the NOTIFY that wakes the daemon.

Everything runs against the real, migrated database: one ticket per station per send, idempotent
repeats, additions, voids, the checker ticket, concurrent sends of one bill from two terminals,
rolled-back sends, bad input, the "sent once" rule as unique indexes, and the notification payload.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from kprintd.harness import (
    add_item,
    make_bill,
    make_brand,
    make_printer,
    make_product,
    send_to_kitchen,
    ticket_lines,
    void_item,
)

Conn = psycopg.Connection[dict[str, Any]]


@dataclass
class Restaurant:
    brand: UUID
    nasi: UUID  # kitchen
    ayam: UUID  # kitchen
    teh: UUID  # bar
    es_krim: UUID  # dessert
    kerupuk: UUID  # never printed


@pytest.fixture
def shop(conn: Conn) -> Restaurant:
    brand = make_brand(conn, "Ayam Geprek")
    return Restaurant(
        brand=brand,
        nasi=make_product(conn, brand, "Nasi Goreng", "kitchen"),
        ayam=make_product(conn, brand, "Ayam Geprek", "kitchen"),
        teh=make_product(conn, brand, "Es Teh", "bar"),
        es_krim=make_product(conn, brand, "Es Krim", "dessert"),
        kerupuk=make_product(conn, brand, "Kerupuk", "none"),
    )


def count(conn: Conn, query: str, params: tuple[Any, ...] = ()) -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM ({query}) q", params).fetchone()
    assert row is not None
    return int(row["n"])


def tickets_of(conn: Conn, bill: int) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM kitchen_kitchenticket WHERE bill_id = %s ORDER BY id", (bill,)
    ).fetchall()


def by_station(tickets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    stations = [t["printer_target"] for t in tickets]
    assert len(stations) == len(set(stations)), f"two tickets for one station: {stations}"
    return {t["printer_target"]: t for t in tickets}


def items_of(conn: Conn, ticket_id: int) -> list[int]:
    return [item for item, _, _ in ticket_lines(conn, ticket_id)]


# One send ----------------------------------------------------------------------------------------


def test_one_ticket_per_station_with_every_item_and_its_quantity(conn: Conn, shop: Restaurant):
    store = uuid4()
    bill = make_bill(conn, shop.brand, store, table_number="5")
    nasi = add_item(conn, bill, shop.nasi, 2, notes="pedas")
    ayam = add_item(conn, bill, shop.ayam, 1)
    teh = add_item(conn, bill, shop.teh, 3)
    krim = add_item(conn, bill, shop.es_krim, 1)
    add_item(conn, bill, shop.kerupuk, 4)  # 'none': never printed

    created = send_to_kitchen(conn, bill)

    tickets = by_station(created)
    assert set(tickets) == {"kitchen", "bar", "dessert"}
    assert ticket_lines(conn, tickets["kitchen"]["id"]) == [(nasi, 2, "item"), (ayam, 1, "item")]
    assert ticket_lines(conn, tickets["bar"]["id"]) == [(teh, 3, "item")]
    assert ticket_lines(conn, tickets["dessert"]["id"]) == [(krim, 1, "item")]
    for ticket in created:
        assert ticket["status"] == "new"
        assert ticket["ticket_type"] == "order"
        assert ticket["is_reprint"] is False
        assert (ticket["brand_id"], ticket["store_id"]) == (shop.brand, store)
    assert [t["id"] for t in tickets_of(conn, bill)] == sorted(t["id"] for t in created)


def test_station_codes_are_trimmed_lowercase_and_default_to_kitchen(conn: Conn, shop: Restaurant):
    no_station = make_product(conn, shop.brand, "Tempe", None)
    bill = make_bill(conn, shop.brand)
    shouting = add_item(conn, bill, shop.nasi, printer_target="  BAR ")
    blank = add_item(conn, bill, shop.teh, printer_target="")  # blank: the product's 'bar'
    nulls = add_item(conn, bill, no_station)  # item and product NULL: 'kitchen'
    override = add_item(conn, bill, shop.teh, printer_target="Kitchen")  # the item wins
    skipped = add_item(conn, bill, shop.nasi, printer_target=" None ")

    tickets = by_station(send_to_kitchen(conn, bill))

    assert set(tickets) == {"bar", "kitchen"}
    assert items_of(conn, tickets["bar"]["id"]) == [shouting, blank]
    assert items_of(conn, tickets["kitchen"]["id"]) == [nulls, override]
    state = conn.execute(
        "SELECT kitchen_state FROM kitchen_billitem_status WHERE bill_item_id = %s", (skipped,)
    ).fetchone()
    assert state == {"kitchen_state": "not_printed"}


def test_a_second_send_creates_nothing(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    add_item(conn, bill, shop.teh)
    first = send_to_kitchen(conn, bill)

    assert send_to_kitchen(conn, bill) == []
    assert send_to_kitchen(conn, bill, [i for t in first for i in items_of(conn, t["id"])]) == []
    assert len(tickets_of(conn, bill)) == 2


def test_a_bill_with_nothing_to_send_gives_an_empty_result(conn: Conn, shop: Restaurant):
    empty = make_bill(conn, shop.brand)
    assert send_to_kitchen(conn, empty) == []

    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.kerupuk)  # never printed
    void_item(conn, add_item(conn, bill, shop.nasi))  # voided before it was sent
    add_item(conn, bill, shop.teh, 0)  # nothing to make
    assert send_to_kitchen(conn, bill) == []
    assert tickets_of(conn, bill) == []


def test_additions_go_on_new_tickets_holding_only_the_new_items(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    add_item(conn, bill, shop.teh)
    send_to_kitchen(conn, bill)

    extra_ayam = add_item(conn, bill, shop.ayam, 2)
    extra_krim = add_item(conn, bill, shop.es_krim)
    second = by_station(send_to_kitchen(conn, bill))

    assert set(second) == {"kitchen", "dessert"}
    assert ticket_lines(conn, second["kitchen"]["id"]) == [(extra_ayam, 2, "item")]
    assert second["kitchen"]["ticket_type"] == "addition"
    # The first items for a station are that station's order, even in a later send.
    assert items_of(conn, second["dessert"]["id"]) == [extra_krim]
    assert second["dessert"]["ticket_type"] == "order"
    assert len(tickets_of(conn, bill)) == 4


def test_item_ids_limit_the_send_to_those_items(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    nasi = add_item(conn, bill, shop.nasi)
    ayam = add_item(conn, bill, shop.ayam)
    teh = add_item(conn, bill, shop.teh)

    first = send_to_kitchen(conn, bill, [nasi, teh, nasi])
    assert {t["printer_target"]: items_of(conn, t["id"]) for t in first} == {
        "kitchen": [nasi],
        "bar": [teh],
    }

    rest = send_to_kitchen(conn, bill, [nasi, ayam])  # nasi was sent already
    assert [(t["printer_target"], t["ticket_type"]) for t in rest] == [("kitchen", "addition")]
    assert items_of(conn, rest[0]["id"]) == [ayam]
    assert send_to_kitchen(conn, bill, []) == []


# Voids -------------------------------------------------------------------------------------------


def test_a_sent_then_voided_item_gets_one_void_ticket(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    nasi = add_item(conn, bill, shop.nasi, 2)
    ayam = add_item(conn, bill, shop.ayam)
    teh = add_item(conn, bill, shop.teh)
    send_to_kitchen(conn, bill)

    void_item(conn, nasi)
    # The POS changed the line after sending it; the void cancels what the cook was told.
    conn.execute(
        "UPDATE pos_billitem SET quantity = 5, printer_target = 'bar' WHERE id = %s", (nasi,)
    )
    voids = send_to_kitchen(conn, bill)

    assert [(t["printer_target"], t["ticket_type"]) for t in voids] == [("kitchen", "void")]
    assert ticket_lines(conn, voids[0]["id"]) == [(nasi, 2, "void")]
    assert send_to_kitchen(conn, bill) == []
    states = conn.execute(
        "SELECT bill_item_id, kitchen_state, void_ticket_id FROM kitchen_billitem_status"
        " WHERE bill_id = %s ORDER BY bill_item_id",
        (bill,),
    ).fetchall()
    assert [(s["bill_item_id"], s["kitchen_state"]) for s in states] == [
        (nasi, "void_sent"),
        (ayam, "sent"),
        (teh, "sent"),
    ]
    assert states[0]["void_ticket_id"] == voids[0]["id"]


def test_voids_and_additions_in_one_send(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    teh = add_item(conn, bill, shop.teh)
    krim = add_item(conn, bill, shop.es_krim)
    send_to_kitchen(conn, bill)
    void_item(conn, teh)
    void_item(conn, krim)
    teh2 = add_item(conn, bill, shop.teh, 2)
    never = add_item(conn, bill, shop.nasi)
    void_item(conn, never)

    created = send_to_kitchen(conn, bill)

    assert [(t["printer_target"], t["ticket_type"]) for t in created] == [
        ("bar", "addition"),
        ("bar", "void"),
        ("dessert", "void"),
    ]
    assert [items_of(conn, t["id"]) for t in created] == [[teh2], [teh], [krim]]
    assert (
        count(conn, "SELECT 1 FROM kitchen_kitchenticketitem WHERE bill_item_id = %s", (never,))
        == 0
    )


def test_voids_can_be_sent_selectively(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    nasi = add_item(conn, bill, shop.nasi)
    ayam = add_item(conn, bill, shop.ayam)
    send_to_kitchen(conn, bill)
    void_item(conn, nasi)
    void_item(conn, ayam)

    first = send_to_kitchen(conn, bill, [ayam])
    second = send_to_kitchen(conn, bill)

    assert [items_of(conn, t["id"]) for t in first] == [[ayam]]
    assert [items_of(conn, t["id"]) for t in second] == [[nasi]]


# Checker -----------------------------------------------------------------------------------------


def test_checker_ticket_lists_every_line_of_each_send(conn: Conn, shop: Restaurant):
    make_printer(conn, shop.brand, "Checker", "10.0.0.9")
    bill = make_bill(conn, shop.brand)
    nasi = add_item(conn, bill, shop.nasi, 2)
    teh = add_item(conn, bill, shop.teh)
    add_item(conn, bill, shop.kerupuk)

    first = send_to_kitchen(conn, bill)
    assert [t["ticket_type"] for t in first] == ["order", "order", "checker"]
    checker = first[-1]
    assert checker["printer_target"] == "checker"
    assert ticket_lines(conn, checker["id"]) == [(teh, 1, "item"), (nasi, 2, "item")]

    void_item(conn, teh)
    krim = add_item(conn, bill, shop.es_krim)
    second = send_to_kitchen(conn, bill)
    assert [(t["printer_target"], t["ticket_type"]) for t in second] == [
        ("dessert", "order"),
        ("bar", "void"),
        ("checker", "checker"),
    ]
    assert ticket_lines(conn, second[-1]["id"]) == [(krim, 1, "item"), (teh, 1, "void")]

    assert send_to_kitchen(conn, bill) == []  # no send, no checker ticket


def test_checker_printer_must_be_active_and_serve_the_bills_store(conn: Conn, shop: Restaurant):
    store_a, store_b = uuid4(), uuid4()
    other_brand = make_brand(conn, "Other")
    make_printer(conn, other_brand, "checker", "10.0.0.1")
    make_printer(conn, shop.brand, "checker", "10.0.0.2", is_active=False)
    make_printer(conn, shop.brand, "checker", "10.0.0.3", store_id=store_b)

    def sent_types(store: UUID | None) -> list[str]:
        bill = make_bill(conn, shop.brand, store)
        add_item(conn, bill, shop.nasi)
        return [t["ticket_type"] for t in send_to_kitchen(conn, bill)]

    assert sent_types(store_a) == ["order"]
    assert sent_types(None) == ["order"]
    assert sent_types(store_b) == ["order", "checker"]
    make_printer(conn, shop.brand, "checker", "10.0.0.4")  # serves every store of the brand
    assert sent_types(store_a) == ["order", "checker"]
    assert sent_types(None) == ["order", "checker"]


# Transactions and concurrency --------------------------------------------------------------------


def wait_until_waiting_for_lock(conn: Conn, pid: int) -> None:
    """Waits until backend `pid` is blocked on a lock (fails the test after 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row is not None and row["wait_event_type"] == "Lock":
            return
        time.sleep(0.01)
    pytest.fail(f"backend {pid} never waited for the bill lock")


def test_a_concurrent_send_waits_and_then_creates_nothing(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    add_item(conn, bill, shop.teh)

    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        created_first = first.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,))
        first_ids = [row[0] for row in created_first.fetchall()]
        results: dict[str, Any] = {}

        def second_terminal() -> None:
            try:
                rows = second.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,))
                results["ids"] = rows.fetchall()
                second.commit()
            except Exception as exc:  # reported below
                results["error"] = exc

        thread = threading.Thread(target=second_terminal)
        thread.start()
        wait_until_waiting_for_lock(conn, second.info.backend_pid)
        first.commit()
        thread.join(30)

    assert not thread.is_alive()
    assert "error" not in results, results.get("error")
    assert results["ids"] == []
    assert len(first_ids) == 2
    assert [t["id"] for t in tickets_of(conn, bill)] == sorted(first_ids)


def race_two_sends(database_url: str, bill: int) -> list[int]:
    """Two terminals send the bill at the same moment; returns how many tickets each created."""
    barrier = threading.Barrier(2)
    created: list[int] = []
    failures: list[BaseException] = []

    def terminal() -> None:
        try:
            with psycopg.connect(database_url) as terminal_conn:
                terminal_conn.execute("SELECT 1")  # connected, transaction open
                barrier.wait(30)
                rows = terminal_conn.execute(
                    "SELECT id FROM kitchen_create_tickets(%s)", (bill,)
                ).fetchall()
                created.append(len(rows))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=terminal) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    return created


@pytest.mark.slow
def test_racing_sends_from_two_terminals_create_each_ticket_once(
    database_url: str, conn: Conn, shop: Restaurant
):
    for _ in range(8):
        bill = make_bill(conn, shop.brand)
        items = [add_item(conn, bill, p) for p in (shop.nasi, shop.ayam, shop.teh, shop.es_krim)]

        assert sorted(race_two_sends(database_url, bill)) == [0, 3]

        assert len(by_station(tickets_of(conn, bill))) == 3
        lines = conn.execute(
            "SELECT bill_item_id FROM kitchen_kitchenticketitem kti"
            " JOIN kitchen_kitchenticket kt ON kt.id = kti.kitchen_ticket_id"
            " WHERE kt.bill_id = %s ORDER BY bill_item_id",
            (bill,),
        ).fetchall()
        assert [row["bill_item_id"] for row in lines] == items


def test_a_concurrent_send_under_repeatable_read_is_a_retryable_error(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)

    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        second.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        second.execute("SELECT 1")  # the snapshot predates the first terminal's send
        first.execute("SELECT kitchen_create_tickets(%s)", (bill,))
        outcome: dict[str, Any] = {}

        def second_terminal() -> None:
            try:
                second.execute("SELECT kitchen_create_tickets(%s)", (bill,))
                outcome["result"] = "created"
            except psycopg.Error as exc:
                outcome["result"] = exc
            second.rollback()

        thread = threading.Thread(target=second_terminal)
        thread.start()
        wait_until_waiting_for_lock(conn, second.info.backend_pid)
        first.commit()
        thread.join(30)

        assert isinstance(outcome["result"], errors.SerializationFailure), outcome
        # The retry the error asks for finds everything sent already.
        assert second.execute("SELECT * FROM kitchen_create_tickets(%s)", (bill,)).fetchall() == []
        second.commit()
    assert len(tickets_of(conn, bill)) == 1


def test_a_rolled_back_send_leaves_nothing_and_notifies_nobody(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    add_item(conn, bill, shop.teh)
    marker_bill = make_bill(conn, shop.brand)
    add_item(conn, marker_bill, shop.es_krim)

    with listening(database_url) as listener:
        with psycopg.connect(database_url) as pos:
            created = pos.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchall()
            assert len(created) == 2
            pos.rollback()
        assert tickets_of(conn, bill) == []
        assert count(conn, "SELECT 1 FROM kitchen_kitchenticketlog") == 0
        assert count(conn, "SELECT 1 FROM kitchen_kitchenticketitem") == 0

        # Notifications arrive in commit order: had the rolled-back send notified, its
        # notifications would come before the marker's.
        marker = send_to_kitchen(conn, marker_bill)
        received = receive(listener, 1)
    assert [p["ticket_id"] for p in received] == [marker[0]["id"]]
    # The bill can still be sent; the rollback consumed nothing but sequence numbers.
    assert len(send_to_kitchen(conn, bill)) == 2


def test_a_send_inside_a_larger_pos_transaction_commits_with_it(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    with psycopg.connect(database_url, row_factory=dict_row) as pos:
        item = add_item(pos, bill, shop.nasi)
        created = send_to_kitchen(pos, bill)
        assert tickets_of(conn, bill) == []  # not visible before the POS commits
        pos.commit()
    assert [t["id"] for t in tickets_of(conn, bill)] == [created[0]["id"]]
    assert items_of(conn, created[0]["id"]) == [item]


# Bad input ---------------------------------------------------------------------------------------


def nothing_created(conn: Conn) -> bool:
    return (
        count(conn, "SELECT 1 FROM kitchen_kitchenticket") == 0
        and count(conn, "SELECT 1 FROM kitchen_kitchenticketitem") == 0
        and count(conn, "SELECT 1 FROM kitchen_kitchenticketlog") == 0
    )


def test_bad_input_is_refused_with_clear_errors_and_nothing_created(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    nasi = add_item(conn, bill, shop.nasi)
    other_bill = make_bill(conn, shop.brand)
    foreign = add_item(conn, other_bill, shop.teh)

    with pytest.raises(errors.NullValueNotAllowed, match="bill id is NULL"):
        send_to_kitchen(conn, None)  # type: ignore[arg-type]
    with pytest.raises(errors.NoDataFound, match="bill 987654 does not exist"):
        send_to_kitchen(conn, 987654)
    with pytest.raises(errors.InvalidParameterValue, match=r"items \{\d+,\d+\} are not on bill"):
        send_to_kitchen(conn, bill, [nasi, foreign, 987654])
    with pytest.raises(errors.InvalidParameterValue, match="contain NULL"):
        send_to_kitchen(conn, bill, [nasi, None])  # type: ignore[list-item]
    for actor in ("", "   ", None, "x" * 101):
        with pytest.raises(errors.InvalidParameterValue, match="actor must be"):
            send_to_kitchen(conn, bill, actor=actor)  # type: ignore[arg-type]

    assert nothing_created(conn)
    assert len(send_to_kitchen(conn, bill)) == 1


def test_an_error_inside_the_pos_transaction_undoes_the_whole_send(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    add_item(conn, bill, shop.teh)
    with psycopg.connect(database_url) as pos:
        pos.execute("SELECT kitchen_create_tickets(%s)", (bill,))
        with pytest.raises(errors.NoDataFound):
            pos.execute("SELECT kitchen_create_tickets(%s)", (-1,))
        pos.rollback()
    assert nothing_created(conn)


# The "sent once" rule in the database itself -----------------------------------------------------


def test_sent_once_binds_kitchen_create_tickets_not_a_writer_of_its_own(
    conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    nasi = add_item(conn, bill, shop.nasi)
    send_to_kitchen(conn, bill)

    # A POS that writes the tables itself may put an item on a ticket again: it prints as written.
    conn.execute(
        "WITH t AS (INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
        " VALUES (%s, 'kitchen', 'new') RETURNING id)"
        " INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity)"
        " SELECT id, %s, 1 FROM t",
        (bill, nasi),
    )
    assert [t["ticket_type"] for t in tickets_of(conn, bill)] == ["order", "addition"]
    # kitchen_create_tickets still sends it once, and a line of its own cannot be copied.
    assert send_to_kitchen(conn, bill) == []
    with pytest.raises(errors.UniqueViolation, match="kitchen_kitchenticketitem_sent_once"):
        conn.execute(
            "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity,"
            " written_by_kprintd) VALUES (%s, %s, 1, true)",
            (tickets_of(conn, bill)[1]["id"], nasi),
        )


def test_void_lines_need_a_sent_item_and_lines_need_the_tickets_bill(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    unsent = add_item(conn, bill, shop.nasi)
    other_bill = make_bill(conn, shop.brand)
    foreign = add_item(conn, other_bill, shop.teh)

    hand_insert = (
        "WITH t AS (INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status,"
        " ticket_type) VALUES (%s, 'kitchen', 'new', %s) RETURNING id)"
        " INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id)"
        " SELECT id, %s FROM t"
    )
    with pytest.raises(errors.CheckViolation, match="never sent to the kitchen"):
        conn.execute(hand_insert, (bill, "void", unsent))
    with pytest.raises(errors.CheckViolation, match="cannot go on ticket"):
        conn.execute(hand_insert, (bill, "order", foreign))
    assert tickets_of(conn, bill) == []


def test_hand_inserted_tickets_get_scope_station_and_line_defaults(conn: Conn, shop: Restaurant):
    store = uuid4()
    bill = make_bill(conn, shop.brand, store)
    nasi = add_item(conn, bill, shop.nasi, 3)
    ticket = conn.execute(
        "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status, brand_id)"
        " VALUES (%s, ' Kitchen ', 'new', %s) RETURNING *",
        (bill, uuid4()),
    ).fetchone()
    assert ticket is not None
    conn.execute(
        "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id) VALUES (%s, %s)",
        (ticket["id"], nasi),
    )

    assert (ticket["brand_id"], ticket["store_id"]) == (shop.brand, store)
    assert ticket["printer_target"] == "kitchen"
    assert ticket_lines(conn, ticket["id"]) == [(nasi, 3, "item")]
    # A hand-made order ticket counts as sent.
    assert send_to_kitchen(conn, bill) == []


def test_the_ticket_copies_on_lines_follow_the_ticket(conn: Conn, shop: Restaurant):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    [ticket] = send_to_kitchen(conn, bill)
    conn.execute(
        "UPDATE kitchen_kitchenticket SET ticket_type = 'addition' WHERE id = %s", (ticket["id"],)
    )
    line = conn.execute(
        "SELECT ticket_type, is_reprint FROM kitchen_kitchenticketitem"
        " WHERE kitchen_ticket_id = %s",
        (ticket["id"],),
    ).fetchone()
    assert line == {"ticket_type": "addition", "is_reprint": False}
    with pytest.raises(errors.ForeignKeyViolation, match="ticket_copy_fkey"):
        conn.execute(
            "UPDATE kitchen_kitchenticketitem SET ticket_type = 'order', is_reprint = true"
            " WHERE kitchen_ticket_id = %s",
            (ticket["id"],),
        )


# NOTIFY ------------------------------------------------------------------------------------------


@contextmanager
def listening(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_ticket_new")
        yield listener


def receive(listener: psycopg.Connection[Any], expected: int) -> list[dict[str, Any]]:
    """The next `expected` notification payloads (waits at most 10 s for them)."""
    notes = list(listener.notifies(timeout=10, stop_after=expected))
    assert all(n.channel == "kitchen_ticket_new" for n in notes)
    return [json.loads(n.payload) for n in notes]


def test_each_new_ticket_notifies_its_payload_at_commit(
    database_url: str, conn: Conn, shop: Restaurant
):
    store = uuid4()
    make_printer(conn, shop.brand, "checker")
    bill = make_bill(conn, shop.brand, store)
    add_item(conn, bill, shop.nasi)
    add_item(conn, bill, shop.teh)

    with listening(database_url) as listener:
        created = send_to_kitchen(conn, bill)
        payloads = receive(listener, 3)

    assert len(created) == 3
    for ticket, payload in zip(created, payloads, strict=True):
        # kitchen_ticket_notice: where the ticket goes and when, nothing of what it says.
        assert payload == {
            "ticket_id": ticket["id"],
            "station": ticket["printer_target"],
            "brand_id": str(shop.brand),
            "store_id": str(store),
            "ticket_type": ticket["ticket_type"],
            "due_at": payload["due_at"],
        }
        due_at = conn.execute("SELECT %s::timestamptz AS t", (payload["due_at"],)).fetchone()
        assert due_at == {"t": ticket["next_attempt_at"]}
    assert [p["ticket_type"] for p in payloads] == ["order", "order", "checker"]


def test_a_status_change_back_to_new_notifies_and_other_changes_do_not(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    [ticket] = send_to_kitchen(conn, bill)
    later = conn.execute("SELECT now() + interval '30 seconds' AS t").fetchone()
    assert later is not None
    marker_bill = make_bill(conn, shop.brand)
    add_item(conn, marker_bill, shop.teh)

    with listening(database_url) as listener:
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = 'printing' WHERE id = %s", (ticket["id"],)
        )
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = 'new', next_attempt_at = %s WHERE id = %s",
            (later["t"], ticket["id"]),
        )
        conn.execute(
            "UPDATE kitchen_kitchenticket SET printer_ip = '10.0.0.1' WHERE id = %s",
            (ticket["id"],),
        )
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = 'failed' WHERE id = %s", (ticket["id"],)
        )
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = 'new' WHERE id = %s", (ticket["id"],)
        )
        [marker] = send_to_kitchen(conn, marker_bill)
        payloads = receive(listener, 3)

    assert [p["ticket_id"] for p in payloads] == [ticket["id"], ticket["id"], marker["id"]]
    first_due = conn.execute("SELECT %s::timestamptz AS t", (payloads[0]["due_at"],)).fetchone()
    assert first_due == {"t": later["t"]}  # the writer's schedule is kept and announced


def test_tickets_inserted_in_another_status_do_not_notify(
    database_url: str, conn: Conn, shop: Restaurant
):
    bill = make_bill(conn, shop.brand)
    add_item(conn, bill, shop.nasi)
    marker_bill = make_bill(conn, shop.brand)
    add_item(conn, marker_bill, shop.teh)
    with listening(database_url) as listener:
        conn.execute(
            "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
            " VALUES (%s, 'kitchen', 'printed')",
            (bill,),
        )
        [marker] = send_to_kitchen(conn, marker_bill)
        payloads = receive(listener, 1)
    assert [p["ticket_id"] for p in payloads] == [marker["id"]]
