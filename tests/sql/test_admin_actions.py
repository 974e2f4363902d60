"""Admin actions: kitchen_reprint, kitchen_reset_ticket, kitchen_mark_printed, kitchen_mark_failed.

Each is audited under the spec's action name with the admin as actor, refuses transitions that make
no sense with SQLSTATE 55000, and leaves the caller's own audit description as it found it.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors

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


@pytest.fixture
def bill(conn: Conn) -> int:
    brand = make_brand(conn)
    bill = make_bill(conn, brand, table_number="7")
    add_item(conn, bill, make_product(conn, brand, "Nasi Goreng"), 2)
    add_item(conn, bill, make_product(conn, brand, "Ayam Bakar"), 1)
    add_item(conn, bill, make_product(conn, brand, "Es Teh", "bar"), 3)
    return bill


@pytest.fixture
def kitchen_ticket(conn: Conn, bill: int) -> dict[str, Any]:
    """The bill's kitchen ticket, status 'new'."""
    tickets = {t["printer_target"]: t for t in send_to_kitchen(conn, bill)}
    return tickets["kitchen"]


def row_of(conn: Conn, ticket_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM kitchen_kitchenticket WHERE id = %s", (ticket_id,)).fetchone()
    assert row is not None
    return row


def last_log(conn: Conn, ticket_id: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT * FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id DESC LIMIT 1",
        (ticket_id,),
    ).fetchone()
    assert row is not None
    return row


def set_status(conn: Conn, ticket_id: int, status: str) -> None:
    conn.execute("UPDATE kitchen_kitchenticket SET status = %s WHERE id = %s", (status, ticket_id))


def call(conn: Conn, function: str, *args: Any) -> Any:
    placeholders = ", ".join(["%s"] * len(args))
    row = conn.execute(f"SELECT {function}({placeholders}) AS r", args).fetchone()
    assert row is not None
    return row["r"]


def reprint(conn: Conn, ticket_id: int, actor: str, item_ids: list[int] | None = None) -> int:
    return int(call(conn, "kitchen_reprint", ticket_id, actor, item_ids))


# Reprint -----------------------------------------------------------------------------------------


def test_reprint_copies_the_whole_ticket_as_a_reprint(conn: Conn, kitchen_ticket: dict[str, Any]):
    set_status(conn, kitchen_ticket["id"], "printed")

    copy_id = reprint(conn, kitchen_ticket["id"], "admin:alice")

    copy = row_of(conn, copy_id)
    assert copy["is_reprint"] is True
    assert copy["original_ticket_id"] == kitchen_ticket["id"]
    assert copy["status"] == "new"
    for column in ("bill_id", "printer_target", "ticket_type", "brand_id", "store_id"):
        assert copy[column] == kitchen_ticket[column], column
    assert ticket_lines(conn, copy_id) == ticket_lines(conn, kitchen_ticket["id"])
    created = last_log(conn, copy_id)
    assert (created["action"], created["actor"]) == ("created", "admin:alice")
    assert created["metadata"]["reprint_of"] == kitchen_ticket["id"]
    assert created["metadata"]["items_count"] == 2
    assert row_of(conn, kitchen_ticket["id"])["status"] == "printed"  # the original is untouched


def test_partial_reprint_and_reprint_of_a_reprint(conn: Conn, kitchen_ticket: dict[str, Any]):
    set_status(conn, kitchen_ticket["id"], "printed")
    nasi, ayam = (item for item, _, _ in ticket_lines(conn, kitchen_ticket["id"]))

    partial = reprint(conn, kitchen_ticket["id"], "admin:alice", [ayam])
    assert ticket_lines(conn, partial) == [(ayam, 1, "item")]

    set_status(conn, partial, "printed")
    again = reprint(conn, partial, "admin:bob")
    # original_ticket_id always names the root original; metadata names the ticket reprinted.
    assert row_of(conn, again)["original_ticket_id"] == kitchen_ticket["id"]
    assert last_log(conn, again)["metadata"]["reprint_of"] == partial
    assert ticket_lines(conn, again) == [(ayam, 1, "item")]
    assert nasi not in [item for item, _, _ in ticket_lines(conn, again)]


def test_reprints_of_void_and_checker_tickets_keep_their_lines(conn: Conn, bill: int):
    brand = send_to_kitchen(conn, bill)[0]["brand_id"]
    make_printer(conn, brand, "checker")
    extra = add_item(conn, bill, make_product(conn, brand, "Kerupuk"))
    void_item(conn, extra)  # voided before sending: never printed
    sent = send_to_kitchen(conn, bill)
    assert sent == []
    teh = conn.execute(
        "SELECT id FROM pos_billitem WHERE bill_id = %s AND quantity = 3", (bill,)
    ).fetchone()
    assert teh is not None
    void_item(conn, teh["id"])
    void_ticket, checker = send_to_kitchen(conn, bill)
    for ticket in (void_ticket, checker):
        set_status(conn, ticket["id"], "printed")
        copy = reprint(conn, ticket["id"], "admin:alice")
        assert row_of(conn, copy)["ticket_type"] == ticket["ticket_type"]
        assert (
            ticket_lines(conn, copy) == ticket_lines(conn, ticket["id"]) == [(teh["id"], 3, "void")]
        )


def test_reprints_do_not_count_as_sending(conn: Conn, bill: int, kitchen_ticket: dict[str, Any]):
    set_status(conn, kitchen_ticket["id"], "printed")
    reprint(conn, kitchen_ticket["id"], "admin:alice")
    reprint(conn, kitchen_ticket["id"], "admin:alice")
    assert send_to_kitchen(conn, bill) == []
    sent = conn.execute(
        "SELECT count(*) AS n FROM kitchen_billitem_status WHERE bill_id = %s"
        " AND kitchen_state = 'sent'",
        (bill,),
    ).fetchone()
    assert sent == {"n": 3}


def test_reprint_refusals(conn: Conn, kitchen_ticket: dict[str, Any]):
    ticket_id = kitchen_ticket["id"]
    for status in ("new", "printing"):
        set_status(conn, ticket_id, status)
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="not printed yet"):
            reprint(conn, ticket_id, "admin:alice")
    set_status(conn, ticket_id, "failed")
    with pytest.raises(errors.InvalidParameterValue, match=r"items \{987654\} are not on ticket"):
        reprint(conn, ticket_id, "admin:alice", [987654])
    with pytest.raises(errors.InvalidParameterValue, match="non-empty list"):
        reprint(conn, ticket_id, "admin:alice", [])
    with pytest.raises(errors.NoDataFound, match="ticket 987654 does not exist"):
        reprint(conn, 987654, "admin:alice")
    with pytest.raises(errors.NullValueNotAllowed):
        call(conn, "kitchen_reprint", None, "admin:alice", None)
    with pytest.raises(errors.InvalidParameterValue, match="actor must be"):
        reprint(conn, ticket_id, " ")
    count = conn.execute("SELECT count(*) AS n FROM kitchen_kitchenticket WHERE is_reprint")
    assert count.fetchone() == {"n": 0}
    # A failed ticket may be reprinted (resetting it is the other way).
    assert row_of(conn, reprint(conn, ticket_id, "admin:alice"))["is_reprint"] is True


# Reset -------------------------------------------------------------------------------------------


def test_reset_puts_a_failed_ticket_back_in_the_queue(conn: Conn, kitchen_ticket: dict[str, Any]):
    ticket_id = kitchen_ticket["id"]
    conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'failed', print_attempts = 3,"
        " error_message = 'connection refused', error_code = 'refused',"
        " printer_ip = '10.0.0.1', next_attempt_at = now() + interval '1 hour' WHERE id = %s",
        (ticket_id,),
    )

    with conn.transaction():
        reset = conn.execute(
            "SELECT * FROM kitchen_reset_ticket(%s, 'admin:alice')", (ticket_id,)
        ).fetchone()
        due = conn.execute("SELECT now() AS t").fetchone()

    row = row_of(conn, ticket_id)
    assert reset == row  # the updated row comes back
    assert row["status"] == "new"
    assert (row["print_attempts"], row["error_message"], row["error_code"]) == (0, None, None)
    assert row["printer_ip"] is None
    assert due is not None and row["next_attempt_at"] == due["t"]
    assert row["may_have_printed"] is False
    log = last_log(conn, ticket_id)
    assert (log["old_status"], log["new_status"]) == ("failed", "new")
    assert (log["action"], log["actor"]) == ("manual_reset", "admin:alice")
    assert log["metadata"]["previous_error"] == "connection refused"
    assert log["metadata"]["previous_attempts"] == 3


def test_reset_of_a_stuck_print_marks_a_possible_duplicate(
    conn: Conn, kitchen_ticket: dict[str, Any]
):
    ticket_id = kitchen_ticket["id"]
    conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'printing', claimed_by = 'daemon-1',"
        " lease_expires_at = now() + interval '1 minute' WHERE id = %s",
        (ticket_id,),
    )
    call(conn, "kitchen_reset_ticket", ticket_id, "admin:alice")
    row = row_of(conn, ticket_id)
    assert row["status"] == "new"
    assert (row["claimed_by"], row["lease_expires_at"]) == (None, None)
    assert row["may_have_printed"] is True
    assert last_log(conn, ticket_id)["action"] == "manual_reset"


def test_reset_refusals(conn: Conn, kitchen_ticket: dict[str, Any]):
    ticket_id = kitchen_ticket["id"]
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="already waiting"):
        call(conn, "kitchen_reset_ticket", ticket_id, "admin:alice")
    set_status(conn, ticket_id, "printed")
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="was printed") as raised:
        call(conn, "kitchen_reset_ticket", ticket_id, "admin:alice")
    assert "kitchen_reprint" in (raised.value.diag.message_hint or "")
    with pytest.raises(errors.NoDataFound):
        call(conn, "kitchen_reset_ticket", 987654, "admin:alice")
    with pytest.raises(errors.InvalidParameterValue, match="actor must be"):
        call(conn, "kitchen_reset_ticket", ticket_id, "")
    assert row_of(conn, ticket_id)["status"] == "printed"


# Mark printed / failed ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["new", "printing", "failed"])
def test_mark_printed(conn: Conn, kitchen_ticket: dict[str, Any], status: str):
    ticket_id = kitchen_ticket["id"]
    conn.execute(
        "UPDATE kitchen_kitchenticket SET status = %s, claimed_by = 'd1' WHERE id = %s",
        (status, ticket_id),
    )
    call(conn, "kitchen_mark_printed", ticket_id, "admin:alice")
    row = row_of(conn, ticket_id)
    assert row["status"] == "printed"
    assert row["printed_at"] is not None
    if status == "printing":
        assert row["claimed_by"] is None
    log = last_log(conn, ticket_id)
    assert (log["old_status"], log["new_status"]) == (status, "printed")
    assert (log["action"], log["actor"]) == ("marked_printed", "admin:alice")


@pytest.mark.parametrize("status", ["new", "printing"])
def test_mark_failed(conn: Conn, kitchen_ticket: dict[str, Any], status: str):
    ticket_id = kitchen_ticket["id"]
    set_status(conn, ticket_id, status)
    call(conn, "kitchen_mark_failed", ticket_id, "admin:alice", " printer stolen ")
    row = row_of(conn, ticket_id)
    assert row["status"] == "failed"
    assert (row["error_message"], row["error_code"]) == ("printer stolen", "manual")
    assert row["last_error_at"] is not None
    log = last_log(conn, ticket_id)
    assert (log["old_status"], log["new_status"]) == (status, "failed")
    assert (log["action"], log["actor"]) == ("marked_failed", "admin:alice")
    assert (log["error_code"], log["error_message"]) == ("manual", "printer stolen")


def test_mark_refusals(conn: Conn, kitchen_ticket: dict[str, Any]):
    ticket_id = kitchen_ticket["id"]
    with pytest.raises(errors.InvalidParameterValue, match="reason is required"):
        call(conn, "kitchen_mark_failed", ticket_id, "admin:alice", "  ")
    call(conn, "kitchen_mark_failed", ticket_id, "admin:alice", "gave up")
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="already failed"):
        call(conn, "kitchen_mark_failed", ticket_id, "admin:alice", "again")
    call(conn, "kitchen_mark_printed", ticket_id, "admin:alice")
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="already printed"):
        call(conn, "kitchen_mark_printed", ticket_id, "admin:alice")
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="cannot fail any more"):
        call(conn, "kitchen_mark_failed", ticket_id, "admin:alice", "lost")
    for function, extra in (("kitchen_mark_printed", ()), ("kitchen_mark_failed", ("why",))):
        with pytest.raises(errors.NoDataFound):
            call(conn, function, 987654, "admin:alice", *extra)
        with pytest.raises(errors.NullValueNotAllowed):
            call(conn, function, None, "admin:alice", *extra)
        with pytest.raises(errors.InvalidParameterValue, match="actor must be"):
            call(conn, function, ticket_id, None, *extra)
    actions = conn.execute(
        "SELECT action FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id",
        (ticket_id,),
    ).fetchall()
    assert [a["action"] for a in actions] == ["created", "marked_failed", "marked_printed"]


# Admin functions leave the caller's description alone --------------------------------------------


def test_admin_functions_restore_the_callers_description(
    database_url: str, conn: Conn, kitchen_ticket: dict[str, Any]
):
    ticket_id = kitchen_ticket["id"]
    with psycopg.connect(database_url) as admin:
        admin.execute(
            "SELECT kitchen_describe_change('print_start', 'printer_service', 7, 'x', '{\"a\": 1}')"
        )
        before = admin.execute("SELECT kitchen_change_description()").fetchone()
        admin.execute("SELECT kitchen_mark_failed(%s, 'admin:alice', 'why')", (ticket_id,))
        admin.execute("SELECT kitchen_reset_ticket(%s, 'admin:alice')", (ticket_id,))
        admin.execute("SELECT kitchen_mark_printed(%s, 'admin:alice')", (ticket_id,))
        admin.execute("SELECT kitchen_reprint(%s, 'admin:alice')", (ticket_id,))
        admin.execute("SELECT kitchen_create_tickets(%s)", (kitchen_ticket["bill_id"],))
        after = admin.execute("SELECT kitchen_change_description()").fetchone()
        admin.rollback()
    assert before == after
    assert before is not None and before[0]["actor"] == "printer_service"


# --- the listings of `kprintd tickets` ------------------------------------------------------------
def test_the_failed_listing_keeps_the_last_n_in_scope_oldest_first(conn: Conn) -> None:
    ours, theirs = make_brand(conn), make_brand(conn, "Other Brand")
    ids = []
    for brand in (ours, ours, ours, theirs):
        bill = make_bill(conn, brand)
        add_item(conn, bill, make_product(conn, brand, "Nasi Goreng"))
        (sent,) = send_to_kitchen(conn, bill)
        conn.execute("SELECT kitchen_mark_failed(%s, 'admin:x', 'jam')", (sent["id"],))
        ids.append(sent["id"])
    # Failed: the first last, the second and the other brand's first.
    for ticket_id, minutes in zip(ids, (3, 0, 1, -1), strict=True):
        conn.execute(
            "UPDATE kitchen_kitchenticket SET last_error_at = now() + make_interval(mins => %s)"
            " WHERE id = %s",
            (minutes, ticket_id),
        )

    def listed(limit: int | None, brands: list[Any] | None) -> list[int]:
        rows = conn.execute(
            "SELECT ticket_id FROM kitchen_failed_ticket_list(%s, %s::uuid[])", (limit, brands)
        ).fetchall()
        return [row["ticket_id"] for row in rows]

    assert listed(None, None) == [ids[3], ids[1], ids[2], ids[0]]
    assert listed(2, None) == [ids[2], ids[0]], "the two that failed last, oldest first"
    assert listed(None, [ours]) == [ids[1], ids[2], ids[0]]
    assert listed(None, []) == listed(None, None), "empty: every brand"
    columns = conn.execute("SELECT * FROM kitchen_failed_ticket_list(1) LIMIT 0")
    view = conn.execute("SELECT * FROM kitchen_failed_tickets LIMIT 0")
    assert [c.name for c in columns.description or []] == [c.name for c in view.description or []]


def test_the_bill_lookup_finds_a_bill_by_number_or_id_in_scope(conn: Conn, bill: int) -> None:
    send_to_kitchen(conn, bill)
    row = conn.execute(
        "SELECT bill_number, brand_id FROM pos_bill WHERE id = %s", (bill,)
    ).fetchone()
    assert row is not None

    def found(number: str | None, bill_id: int | None, brands: list[Any] | None) -> list[int]:
        rows = conn.execute(
            "SELECT bill_id FROM kitchen_bill_lookup(%s, %s, %s::uuid[])", (number, bill_id, brands)
        ).fetchall()
        return [r["bill_id"] for r in rows]

    assert found(row["bill_number"], None, None) == [bill]
    assert found("no such number", bill, [row["brand_id"]]) == [bill]
    assert found(row["bill_number"], bill, [make_brand(conn, "Other Brand")]) == []
    assert found("no such number", None, None) == []
