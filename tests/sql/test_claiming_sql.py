"""kitchen_claim_print_jobs() on its own, as a DBA or a second daemon would call it.

The daemon's end-to-end tests (test_daemon.py) cover printing; these pin the claim's SQL contract:
oldest first within one route, lease and attempt, the print_start audit row, SKIP LOCKED between
daemons, and the caller's own change description left as it was.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from kprintd.harness import add_item, make_bill, make_brand, make_product, send_to_kitchen

Conn = psycopg.Connection[dict[str, Any]]
CLAIM = (
    "SELECT ticket_id, attempt, max_retries, document"
    " FROM kitchen_claim_print_jobs(%s, 30, %s, NULL, %s, %s)"
)


def _send(conn: Conn, brand: UUID, product: UUID, table: str) -> int:
    bill = make_bill(conn, brand, table_number=table)
    add_item(conn, bill, product, 1)
    (ticket,) = send_to_kitchen(conn, bill)
    return int(ticket["id"])


@pytest.fixture
def kitchen(conn: Conn) -> tuple[UUID, list[int]]:
    """A brand with three kitchen tickets waiting, oldest first."""
    brand = make_brand(conn)
    product = make_product(conn, brand, "Nasi Goreng")
    return brand, [_send(conn, brand, product, str(table)) for table in (1, 2, 3)]


def test_claims_oldest_first_with_a_lease_an_attempt_and_the_document(
    conn: Conn, kitchen: tuple[UUID, list[int]]
) -> None:
    brand, tickets = kitchen
    claimed = conn.execute(CLAIM, ("daemon-a", brand, "kitchen", 2)).fetchall()
    assert [row["ticket_id"] for row in claimed] == tickets[:2]
    assert [row["attempt"] for row in claimed] == [1, 1]
    assert claimed[0]["document"]["table_number"] == "1"
    assert [line["name"] for line in claimed[0]["document"]["lines"]] == ["Nasi Goreng"]
    rows = conn.execute(
        "SELECT id, status, claimed_by, lease_expires_at > now() AS leased, print_attempts"
        " FROM kitchen_kitchenticket WHERE id = ANY(%s) ORDER BY id",
        (tickets,),
    ).fetchall()
    assert [(r["status"], r["claimed_by"], r["leased"], r["print_attempts"]) for r in rows] == [
        ("printing", "daemon-a", True, 1),
        ("printing", "daemon-a", True, 1),
        ("new", None, None, 0),
    ]
    log = conn.execute(
        "SELECT old_status, new_status, action, actor, metadata FROM kitchen_kitchenticketlog"
        " WHERE ticket_id = %s ORDER BY id DESC LIMIT 1",
        (tickets[0],),
    ).fetchone()
    assert log is not None
    assert (log["old_status"], log["new_status"]) == ("new", "printing")
    assert (log["action"], log["actor"]) == ("print_start", "printer_service")
    assert log["metadata"]["daemon"] == "daemon-a"


def test_two_daemons_claiming_at_once_never_get_the_same_ticket(
    database_url: str, kitchen: tuple[UUID, list[int]]
) -> None:
    brand, tickets = kitchen
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row) as second,
    ):
        # The first daemon's claim is not committed yet: its rows are locked, not skipped by SQL.
        mine = first.execute(CLAIM, ("daemon-a", brand, "kitchen", 1)).fetchall()
        theirs = second.execute(CLAIM, ("daemon-b", brand, "kitchen", 5)).fetchall()
        first.commit()
        second.commit()
    assert [row["ticket_id"] for row in mine] == tickets[:1]
    assert [row["ticket_id"] for row in theirs] == tickets[1:]


@pytest.mark.parametrize("described", [True, False], ids=["described", "undescribed"])
def test_leaves_the_callers_description_as_it_found_it(
    database_url: str, kitchen: tuple[UUID, list[int]], described: bool
) -> None:
    brand, _ = kitchen
    with psycopg.connect(database_url) as caller:
        if described:
            caller.execute(
                "SELECT kitchen_describe_change('manual_reset', 'admin:alice', 7, 'x', %s)",
                ('{"a": 1}',),
            )
        before = caller.execute("SELECT kitchen_change_description()").fetchone()
        assert caller.execute(CLAIM, ("daemon-a", brand, "kitchen", 1)).fetchall()
        after = caller.execute("SELECT kitchen_change_description()").fetchone()
        caller.rollback()
    assert before == after
    assert before is not None
    assert (before[0]["actor"] == "admin:alice") is described


def test_refuses_to_claim_without_a_daemon_id(conn: Conn, kitchen: tuple[UUID, list[int]]) -> None:
    brand, tickets = kitchen
    for daemon in ("", "   ", None):
        with pytest.raises(errors.InvalidParameterValue, match="daemon id is required"):
            conn.execute(CLAIM, (daemon, brand, "kitchen", 1))
    statuses = conn.execute(
        "SELECT DISTINCT status FROM kitchen_kitchenticket WHERE id = ANY(%s)", (tickets,)
    ).fetchall()
    assert statuses == [{"status": "new"}]
