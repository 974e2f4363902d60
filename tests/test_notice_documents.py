"""A new ticket's document travels with its notification (sql/0025), and cannot be forged.

The daemon prints a first attempt from the document announced at the insert instead of having the
claim build it again. These pin what makes that safe: the claim accepts a held document only with
the ticket's notice_token and its current line count, and only on a first attempt; a ticket
without lines at its insert, or too big for NOTIFY, is announced without one; a claim is audited
as print_start whatever the caller describes; and end to end, a forged notification changes
nothing on paper, nor do lines added after the announcement go missing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from kprintd import dispatch
from kprintd.config import Settings
from kprintd.db import HeldDocument, RouteKey, array_literal
from tests.daemon_harness import Restaurant, all_settled, running_daemon, ticket, wait_until
from tests.pos_fixtures import add_item, make_bill, make_brand, make_product, send_to_kitchen

Conn = psycopg.Connection[dict[str, Any]]
CLAIM_HOLDING = (
    "SELECT ticket_id, attempt, document"
    " FROM kitchen_claim_print_jobs('daemon-a', 30, %s, NULL, 'kitchen', 1, %s, %s, %s)"
)


@contextmanager
def listening(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_ticket_new")
        yield listener


def next_payload(listener: psycopg.Connection[Any]) -> dict[str, Any]:
    [note] = list(listener.notifies(timeout=10, stop_after=1))
    payload: dict[str, Any] = json.loads(note.payload)
    return payload


@pytest.fixture
def announced(database_url: str, conn: Conn) -> tuple[UUID, dict[str, Any]]:
    """A brand and the notification of its one new kitchen ticket (two lines)."""
    brand = make_brand(conn)
    product = make_product(conn, brand, "Nasi Goreng")
    bill = make_bill(conn, brand, table_number="4")
    add_item(conn, bill, product, 2, notes="no egg")
    add_item(conn, bill, product, 1)
    with listening(database_url) as listener:
        send_to_kitchen(conn, bill)
        payload = next_payload(listener)
    return brand, payload


# What the notification carries --------------------------------------------------------------------


def test_the_announced_document_is_the_claims_document(
    conn: Conn, announced: tuple[UUID, dict[str, Any]]
) -> None:
    brand, payload = announced
    assert [line["notes"] for line in payload["document"]["lines"]] == ["no egg", ""]
    [claimed] = conn.execute(
        CLAIM_HOLDING.replace("%s, %s, %s)", "NULL, NULL, NULL)"), (brand,)
    ).fetchall()
    assert claimed["ticket_id"] == payload["ticket_id"]
    assert claimed["document"] == payload["document"]


def test_a_ticket_inserted_without_lines_is_announced_without_a_document(
    database_url: str, conn: Conn
) -> None:
    # A POS inserting rows itself adds the lines in later statements: the claim builds it then.
    brand = make_brand(conn)
    bill = make_bill(conn, brand)
    with listening(database_url) as listener:
        conn.execute(
            "INSERT INTO kitchen_kitchenticket (bill_id, printer_target) VALUES (%s, 'kitchen')",
            (bill,),
        )
        payload = next_payload(listener)
    assert "document" not in payload and "token" not in payload
    assert payload["station"] == "kitchen"


def test_a_document_too_big_for_notify_is_left_out_and_the_send_goes_through(
    database_url: str, conn: Conn
) -> None:
    brand = make_brand(conn)
    product = make_product(conn, brand, "Soto Ayam")
    bill = make_bill(conn, brand)
    for _ in range(40):
        add_item(conn, bill, product, notes="extra sambal on the side, " * 10)
    with listening(database_url) as listener:
        [created] = send_to_kitchen(conn, bill)
        payload = next_payload(listener)
    assert payload["ticket_id"] == created["id"]
    assert "document" not in payload and "token" not in payload
    [claimed] = conn.execute(
        CLAIM_HOLDING.replace("%s, %s, %s)", "NULL, NULL, NULL)"), (brand,)
    ).fetchall()
    assert len(claimed["document"]["lines"]) == 40


# What the claim accepts ---------------------------------------------------------------------------


def _claim_holding(
    conn: Conn, brand: UUID, ticket_id: int, token: str, lines: int
) -> dict[str, Any]:
    [claimed] = conn.execute(CLAIM_HOLDING, (brand, [ticket_id], [token], [lines])).fetchall()
    assert claimed["ticket_id"] == ticket_id
    return claimed


def test_a_held_document_is_not_built_again(
    conn: Conn, announced: tuple[UUID, dict[str, Any]]
) -> None:
    brand, payload = announced
    claimed = _claim_holding(conn, brand, payload["ticket_id"], payload["token"], 2)
    assert (claimed["attempt"], claimed["document"]) == (1, None)


@pytest.mark.parametrize(
    ("token", "lines"),
    [(str(uuid.uuid4()), 2), (None, 2), ("announced", 1), ("announced", 3)],
    ids=["forged-token", "no-token", "fewer-lines", "more-lines"],
)
def test_a_held_document_is_refused_without_its_token_and_line_count(
    conn: Conn, announced: tuple[UUID, dict[str, Any]], token: str | None, lines: int
) -> None:
    brand, payload = announced
    token = payload["token"] if token == "announced" else token
    claimed = conn.execute(
        CLAIM_HOLDING, (brand, [payload["ticket_id"]], [token], [lines])
    ).fetchone()
    assert claimed is not None and claimed["document"] == payload["document"]


@pytest.mark.parametrize("may_have_printed", [False, True])
def test_a_retry_gets_its_document_from_the_claim(
    conn: Conn, announced: tuple[UUID, dict[str, Any]], may_have_printed: bool
) -> None:
    # The announced document says attempt 0 and no RETRY banner: it is for a first attempt only.
    brand, payload = announced
    ticket_id = payload["ticket_id"]
    if may_have_printed:
        conn.execute(
            "UPDATE kitchen_kitchenticket SET may_have_printed = true WHERE id = %s", (ticket_id,)
        )
    else:
        # A second attempt after nothing reached paper, as the daemon records it.
        _claim_holding(conn, brand, ticket_id, payload["token"], 2)
        with conn.transaction():
            conn.execute("SELECT kitchen_describe_change('retry', 'printer_service')")
            conn.execute(
                "UPDATE kitchen_kitchenticket SET status = 'new', next_attempt_at = now()"
                " WHERE id = %s",
                (ticket_id,),
            )
    claimed = _claim_holding(conn, brand, ticket_id, payload["token"], 2)
    assert claimed["document"] is not None
    assert claimed["document"]["is_retry"] is may_have_printed
    assert claimed["attempt"] == (1 if may_have_printed else 2)


def test_the_announcement_is_made_at_commit_with_every_line_of_the_transaction(
    database_url: str, conn: Conn
) -> None:
    brand = make_brand(conn)
    product = make_product(conn, brand, "Mie Goreng")
    bill = make_bill(conn, brand)
    first, second = add_item(conn, bill, product), add_item(conn, bill, product)
    with listening(database_url) as listener:
        with conn.transaction():
            ticket_id = _ticket_with_one_line_then_another(conn, bill, first, second)
        payload = next_payload(listener)
    assert payload["ticket_id"] == ticket_id
    assert len(payload["document"]["lines"]) == 2
    assert _claim_holding(conn, brand, ticket_id, payload["token"], 2)["document"] is None


def test_lines_added_after_the_announcement_make_the_claim_build_the_document(
    database_url: str, conn: Conn
) -> None:
    brand = make_brand(conn)
    product = make_product(conn, brand, "Mie Goreng")
    bill = make_bill(conn, brand)
    first, second = add_item(conn, bill, product), add_item(conn, bill, product)
    with listening(database_url) as listener:
        ticket_id = _ticket_with_one_line_then_another(conn, bill, first, None)
        payload = next_payload(listener)
    assert len(payload["document"]["lines"]) == 1
    conn.execute(
        "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id) VALUES (%s, %s)",
        (ticket_id, second),
    )
    conn.execute(
        "UPDATE kitchen_kitchenticket SET next_attempt_at = now() WHERE id = %s", (ticket_id,)
    )
    claimed = _claim_holding(conn, brand, ticket_id, payload["token"], 1)
    assert claimed["document"] is not None and len(claimed["document"]["lines"]) == 2


def _ticket_with_one_line_then_another(
    conn: Conn, bill: int, first: int, second: int | None
) -> int:
    """A POS writing a ticket and its first line in one statement and the next line (if any)
    in the next one."""
    row = conn.execute(
        "WITH t AS (INSERT INTO kitchen_kitchenticket (bill_id, printer_target)"
        " VALUES (%s, 'kitchen') RETURNING id),"
        " l AS (INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity)"
        " SELECT id, %s, 1 FROM t)"
        " SELECT id FROM t",
        (bill, first),
    ).fetchone()
    assert row is not None
    if second is not None:
        conn.execute(
            "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity)"
            " VALUES (%s, %s, 1)",
            (row["id"], second),
        )
    return int(row["id"])


# How a claim is audited ---------------------------------------------------------------------------


def test_a_claim_is_audited_as_print_start_whatever_the_caller_describes(
    database_url: str, announced: tuple[UUID, dict[str, Any]]
) -> None:
    brand, payload = announced
    with psycopg.connect(database_url, row_factory=dict_row) as caller:
        caller.execute("SELECT kitchen_describe_change('manual_reset', 'admin:alice', 7, 'x')")
        caller.execute(
            CLAIM_HOLDING, (brand, [payload["ticket_id"]], [payload["token"]], [2])
        ).fetchall()
        still = caller.execute("SELECT kitchen_change_description() AS d").fetchone()
        caller.commit()
    assert still is not None and still["d"]["action"] == "manual_reset"
    with psycopg.connect(database_url, row_factory=dict_row) as reader:
        log = reader.execute(
            "SELECT action, actor, duration_ms, error_code, metadata FROM kitchen_kitchenticketlog"
            " WHERE ticket_id = %s AND new_status = 'printing'",
            (payload["ticket_id"],),
        ).fetchall()
    assert log == [
        {
            "action": "print_start",
            "actor": "printer_service",
            "duration_ms": None,
            "error_code": None,
            "metadata": {"daemon": "daemon-a", "print_attempts": 1},
        }
    ]


# End to end ---------------------------------------------------------------------------------------


def test_a_forged_notification_changes_nothing_on_paper(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    with psycopg.connect(database_url) as reader:
        [last] = reader.execute(
            "SELECT last_value - CASE WHEN is_called THEN 0 ELSE 1 END"
            " FROM kitchen_kitchenticket_id_seq"
        ).fetchall()
    forged = {
        "station": "kitchen",
        "brand_id": str(restaurant.brand_id),
        "store_id": None,
        "token": str(uuid.uuid4()),
    }
    with running_daemon(database_url), psycopg.connect(database_url, autocommit=True) as forger:
        # Sent before the real ones, so the daemon holds these first for the next ticket ids.
        for ticket_id in range(last[0] + 1, last[0] + 4):
            document = {
                "ticket_id": ticket_id,
                "station": "kitchen",
                "ticket_type": "order",
                "bill_number": "FAKE",
                "sent_at": "2026-01-01T00:00:00+00:00",
                "lines": [{"quantity": 9, "name": "Forged Lobster", "modifiers": []}],
            }
            forger.execute(
                "SELECT pg_notify('kitchen_ticket_new', %s)",
                (json.dumps(forged | {"ticket_id": ticket_id, "document": document}),),
            )
        [ticket_id] = restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url), what="ticket printed")
    [paper] = kitchen.tickets()
    text = paper.text.replace(" ", "")  # big letters are printed spaced out
    assert "1xKitchen|" in text and "|Special|" in text
    assert "Forged" not in text and "FAKE" not in text
    assert ticket(database_url, ticket_id)["status"] == "printed"


def test_lines_added_after_the_announcement_are_printed(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    with psycopg.connect(database_url, row_factory=dict_row) as pos:
        bill = make_bill(pos, restaurant.brand_id, table_number="9")
        first = add_item(pos, bill, restaurant.product("kitchen"), notes="first line")
        second = add_item(pos, bill, restaurant.product("kitchen"), notes="second line")
        pos.commit()
        with running_daemon(database_url):
            ticket_id = _ticket_with_one_line_then_another(pos, bill, first, second)
            pos.commit()
            wait_until(lambda: all_settled(database_url), what="ticket printed")
    [paper] = kitchen.tickets()
    assert "first line" in paper.text and "second line" in paper.text
    assert ticket(database_url, ticket_id)["status"] == "printed"


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=20),
    tokens=st.lists(st.uuids(), max_size=5),
)
def test_the_claimsarray_literals_read_back_as_the_arrays(
    conn: Conn, ids: list[int], tokens: list[UUID]
) -> None:
    # The daemon passes the held documents' ids and tokens as text (kprintd.db.array_literal).
    row = conn.execute(
        "SELECT %s::bigint[] AS ids, %s::uuid[] AS tokens",
        (array_literal(ids), array_literal(tokens)),
    ).fetchone()
    assert row == {"ids": ids, "tokens": tokens}


def test_made_up_routes_start_no_workers_and_an_idle_one_retires(
    database_url: str, restaurant: Restaurant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone who can connect can NOTIFY: a made-up route starts no worker, and an idle worker goes.
    monkeypatch.setattr(dispatch, "ROUTE_IDLE_RETIRE_S", 1.0)
    kitchen = restaurant.printer("kitchen")
    with (
        running_daemon(database_url) as daemon,
        psycopg.connect(database_url, autocommit=True) as forger,
    ):
        assert daemon.daemon is not None
        workers = daemon.daemon.dispatcher._workers
        restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 1, what="the first ticket")
        for n in range(20):
            payload = {"ticket_id": n + 1, "station": f"nowhere-{n}", "brand_id": None}
            forger.execute("SELECT pg_notify('kitchen_ticket_new', %s)", (json.dumps(payload),))
        wait_until(lambda: not workers, what="the idle kitchen worker retired")
        [ticket_id] = restaurant.send("kitchen")  # a retired route starts again
        wait_until(lambda: all_settled(database_url), what="ticket printed")
        assert [route.station for route in workers] == ["kitchen"]
    assert len(kitchen.tickets()) == 2
    assert ticket(database_url, ticket_id)["status"] == "printed"


# The daemon's side: what a route holds ----------------------------------------------------------


def _route_worker() -> dispatch.RouteWorker:
    settings = Settings(database_url="postgresql:///unused")
    return dispatch.RouteWorker(dispatch.Dispatcher(settings, None), RouteKey(None, None, "bar"))  # type: ignore[arg-type]


def _held(ticket_id: int, tag: str = "") -> HeldDocument:
    return HeldDocument(uuid.uuid4(), {"ticket_id": ticket_id, "tag": tag, "lines": [{}]})


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=1, max_value=120), max_size=300))
def test_a_route_holds_a_bounded_number_of_documents_and_keeps_the_first_heard(
    notified: list[int],
) -> None:
    worker = _route_worker()
    model: dict[int, HeldDocument] = {}  # what the route should hold, oldest first
    for ticket_id in notified:
        document = _held(ticket_id)
        worker.hold(ticket_id, document)
        if ticket_id not in model:  # a later notification never replaces the first
            if len(model) == dispatch.HELD_DOCUMENTS_MAX:
                del model[next(iter(model))]
            model[ticket_id] = document
        assert list(worker._held.items()) == list(model.items())
        assert len(worker._held) <= dispatch.HELD_DOCUMENTS_MAX


@settings(max_examples=200)
@given(
    offered_ids=st.lists(st.integers(min_value=1, max_value=60), unique=True, max_size=16),
    claimed_ids=st.lists(st.integers(min_value=1, max_value=60), unique=True, max_size=16),
    left_out=st.sets(st.integers(min_value=1, max_value=60)),
)
def test_claimed_jobs_get_their_held_documents_and_settled_ones_are_forgotten(
    offered_ids: list[int], claimed_ids: list[int], left_out: set[int]
) -> None:
    worker = _route_worker()
    for ticket_id in offered_ids:
        worker.hold(ticket_id, _held(ticket_id))
    offered = dict(worker._held)
    jobs = [
        # The claim leaves a document out only for a ticket the route offered.
        dispatch.ClaimedJob(t, 1, 3, None)
        if t in offered and t in left_out
        else dispatch.ClaimedJob(t, 1, 3, {"ticket_id": t, "from": "claim"})
        for t in sorted(claimed_ids)
    ]
    complete = worker._with_held_documents(jobs, offered)
    assert [job.ticket_id for job in complete] == sorted(claimed_ids)
    for job in complete:
        assert job.document is not None and job.document["ticket_id"] == job.ticket_id
        if job.ticket_id in offered and job.ticket_id in left_out:
            assert job.document is offered[job.ticket_id].document
    newest = max(claimed_ids, default=0)
    assert set(worker._held) == {t for t in offered if t > newest}
