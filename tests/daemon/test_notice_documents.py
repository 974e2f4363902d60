"""A notification only wakes the daemon (kitchen_ticket_notice); the paper shows what the database
holds.

Any login can LISTEN on kitchen_ticket_new and NOTIFY on it, with no grant at all. These pin the
contract that makes that harmless, with a real outsider (a role created LOGIN with no grants):
what it hears names a ticket and its route and nothing else; the claim takes nothing from its
caller and returns the document built from the tables; and end to end, forged notifications for
a real ticket, before it prints or between a failed attempt and the next, change nothing on
paper: neither the lines nor the RETRY banner, which follows what earlier attempts may have put
on paper. Also: a notification for a route that has no tickets starts no worker.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from kprintd import dispatch
from kprintd.db import RouteKey, TicketNotice, notice_from_payload
from kprintd.emulator import Fault, FaultMode
from kprintd.harness import (
    PostgresServer,
    Restaurant,
    add_item,
    all_settled,
    has_retry_banner,
    log_actions,
    make_bill,
    make_brand,
    make_product,
    running_daemon,
    send_to_kitchen,
    ticket,
    ticket_id_of,
    wait_until,
)
from kprintd.printer_status import PaperState

Conn = psycopg.Connection[dict[str, Any]]
CLAIM = (
    "SELECT ticket_id, attempt, document"
    " FROM kitchen_claim_print_jobs('daemon-a', 30, %s, NULL, 'kitchen', 1)"
)
# Everything a kitchen_ticket_new payload may carry.
PAYLOAD_KEYS = {"ticket_id", "station", "brand_id", "store_id", "ticket_type", "due_at"}
_outsiders = itertools.count(1)


@pytest.fixture
def outsider(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    """The conninfo of a login with no grants on anything: it can only connect (PUBLIC's CONNECT
    on the database), LISTEN and NOTIFY, which need no grant."""
    role = f"kprintd_outsider_{os.getpid()}_{next(_outsiders)}"
    password = uuid.uuid4().hex
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    params.update(user=role, password=password)
    try:
        yield psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@contextmanager
def listening(conninfo: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_ticket_new")
        yield listener


def heard(listener: psycopg.Connection[Any], count: int = 1) -> list[str]:
    """The next `count` raw payloads `listener` hears."""
    notes = list(listener.notifies(timeout=10, stop_after=count))
    assert len(notes) == count, f"heard {len(notes)} of {count} notifications"
    return [note.payload for note in notes]


def forged_document(ticket_id: int) -> dict[str, Any]:
    """A made-up document for a real ticket, shaped as kitchen_ticket_document() builds one."""
    return {
        "ticket_id": ticket_id,
        "station": "kitchen",
        "ticket_type": "order",
        "bill_number": "FAKE",
        "sent_at": "2026-01-01T00:00:00+00:00",
        "is_retry": False,
        "attempt": 0,
        "lines": [{"quantity": 9, "name": "Forged Lobster", "modifiers": [], "notes": "FAKE"}],
    }


def forgeries(payload: dict[str, Any]) -> list[str]:
    """What an outsider who heard `payload` sends for that ticket: the payload with a document of
    its own (and whatever else it heard, such as a token), then with another due time and kind,
    and with a token of its own."""
    document = forged_document(payload["ticket_id"])
    return [
        json.dumps(payload | {"document": document}),
        json.dumps(payload | {"document": document, "due_at": "2000-01-01T00:00:00+00:00"}),
        json.dumps(payload | {"document": document, "ticket_type": "void"}),
        json.dumps(payload | {"document": document, "token": str(uuid.uuid4())}),
    ]


@contextmanager
def forging(conninfo: str, payloads: list[str]) -> Iterator[None]:
    """NOTIFY `payloads` over and over, as `conninfo`, until the block ends."""
    stop = threading.Event()
    with psycopg.connect(conninfo, autocommit=True) as forger:

        def loop() -> None:
            while not stop.is_set():
                for payload in payloads:
                    forger.execute("SELECT pg_notify('kitchen_ticket_new', %s)", (payload,))
                stop.wait(0.005)

        thread = threading.Thread(target=loop, name="forger", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)
    assert not thread.is_alive()


def hear_a_forgery(listener: psycopg.Connection[Any]) -> None:
    for note in listener.notifies(timeout=10):
        if "Forged" in note.payload:
            return
    raise AssertionError("no forged notification was heard")


def printed_text(printed: str) -> str:
    return printed.replace(" ", "")  # big letters are printed spaced out


def assert_shows_the_database(printed: str) -> None:
    """The restaurant's ticket as the database holds it: one 'Kitchen Special', nothing forged."""
    text = printed_text(printed)
    assert "1xKitchen|" in text and "|Special|" in text
    assert "Forged" not in text and "Lobster" not in text and "FAKE" not in text


# What the channel carries -------------------------------------------------------------------------


def test_an_outsider_hears_where_a_ticket_goes_and_nothing_of_what_it_says(
    outsider: str, conn: Conn
) -> None:
    with (
        psycopg.connect(outsider, autocommit=True) as nosy,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        nosy.execute("SELECT * FROM kitchen_kitchenticket")  # it has no grant: not even this
    brand = make_brand(conn)
    product = make_product(conn, brand, "Nasi Goreng")
    sent = make_bill(conn, brand, bill_number="SECRET-1", table_number="4")
    add_item(conn, sent, product, 2, notes="no egg")
    big = make_bill(conn, brand, bill_number="SECRET-2")
    for _ in range(40):
        add_item(conn, big, product, notes="extra sambal on the side")
    hand = make_bill(conn, brand, bill_number="SECRET-3")
    first = add_item(conn, hand, product, notes="by hand")

    with listening(outsider) as listener:
        tickets = send_to_kitchen(conn, sent) + send_to_kitchen(conn, big)
        tickets.append(ticket_by_hand(conn, hand, first))  # a POS writing rows itself
        conn.execute(  # and one sent back to 'new', as a retry or a reset does
            "UPDATE kitchen_kitchenticket SET status = 'printed' WHERE id = %s",
            (tickets[0]["id"],),
        )
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = 'new' WHERE id = %s", (tickets[0]["id"],)
        )
        payloads = heard(listener, 4)

    for raw in payloads:
        assert not any(word in raw for word in ("SECRET", "no egg", "sambal", "by hand", "Nasi"))
    read = [json.loads(raw) for raw in payloads]
    assert [set(payload) for payload in read] == [PAYLOAD_KEYS] * 4
    assert [payload["ticket_id"] for payload in read] == [t["id"] for t in tickets] + [
        tickets[0]["id"]
    ]
    assert {(p["station"], p["brand_id"], p["store_id"]) for p in read} == {
        ("kitchen", str(brand), None)
    }
    # Nothing secret is left in the table for anyone to learn either.
    assert (
        conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'kitchen_kitchenticket'::regclass"
            " AND attname = 'notice_token'"
        ).fetchall()
        == []
    )


def ticket_by_hand(conn: Conn, bill: int, bill_item: int) -> dict[str, Any]:
    """A ticket and its line written in one statement, as a POS writing the tables does."""
    row = conn.execute(
        "WITH t AS (INSERT INTO kitchen_kitchenticket (bill_id, printer_target)"
        " VALUES (%s, 'kitchen') RETURNING id),"
        " l AS (INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity)"
        " SELECT id, %s, 1 FROM t)"
        " SELECT id FROM t",
        (bill, bill_item),
    ).fetchone()
    assert row is not None
    return row


def test_the_daemon_reads_only_the_route_from_a_payload() -> None:
    brand = uuid.uuid4()
    route = RouteKey(brand, None, "bar")
    base: dict[str, Any] = {"ticket_id": 7, "station": "bar", "brand_id": str(brand)}
    extras: list[dict[str, Any]] = [
        {},
        {"token": str(uuid.uuid4()), "document": forged_document(7)},
        {"ticket_id": 2**70, "document": [1, 2]},
        {"ticket_id": "seven", "unknown": {"nested": [None]}},
    ]
    for extra in extras:
        assert notice_from_payload(json.dumps(base | extra)) == TicketNotice(route)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.slow
@settings(max_examples=300)
@given(
    station=st.text(min_size=1, max_size=50).filter(str.isprintable),
    extra=st.dictionaries(st.text(max_size=20), _json, max_size=6),
)
def test_a_payload_names_a_route_whatever_else_it_carries(
    station: str, extra: dict[str, Any]
) -> None:
    payload = json.dumps(extra | {"station": station, "brand_id": None, "store_id": None})
    if len(payload) > 7999:
        return
    assert notice_from_payload(payload) == TicketNotice(RouteKey(None, None, station))


# What the claim returns ---------------------------------------------------------------------------


def test_the_claim_takes_nothing_from_its_caller(conn: Conn) -> None:
    [signature] = conn.execute(
        "SELECT pg_get_function_identity_arguments(oid) AS args FROM pg_proc"
        " WHERE proname = 'kitchen_claim_print_jobs'"
    ).fetchall()
    assert signature["args"] == (
        "p_daemon text, p_lease_seconds double precision, p_brand_id uuid, p_store_id uuid,"
        " p_station text, p_limit integer"
    )


def test_the_claim_returns_the_document_the_tables_hold_when_it_claims(
    outsider: str, conn: Conn
) -> None:
    brand = make_brand(conn)
    product = make_product(conn, brand, "Mie Goreng")
    bill = make_bill(conn, brand)
    first, second = add_item(conn, bill, product, notes="first"), add_item(conn, bill, product)
    with listening(outsider) as listener:
        ticket_id = int(ticket_by_hand(conn, bill, first)["id"])
        [payload] = [json.loads(raw) for raw in heard(listener)]
    # Announced with one line; the writer adds a second one before the daemon claims.
    conn.execute(
        "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id) VALUES (%s, %s)",
        (ticket_id, second),
    )
    conn.execute(
        "UPDATE kitchen_kitchenticket SET next_attempt_at = now() WHERE id = %s", (ticket_id,)
    )
    with psycopg.connect(outsider, autocommit=True) as forger:
        for forged in forgeries(payload):
            forger.execute("SELECT pg_notify('kitchen_ticket_new', %s)", (forged,))
    expected = conn.execute(
        "SELECT kitchen_ticket_document(%s) AS document", (ticket_id,)
    ).fetchone()
    [claimed] = conn.execute(CLAIM, (brand,)).fetchall()
    assert claimed["ticket_id"] == ticket_id
    assert expected is not None and claimed["document"] == expected["document"]
    assert [line["notes"] for line in claimed["document"]["lines"]] == ["first", ""]


@pytest.mark.parametrize("may_have_printed", [False, True])
def test_a_retry_is_marked_only_when_an_attempt_may_have_reached_paper(
    conn: Conn, may_have_printed: bool
) -> None:
    brand = make_brand(conn)
    bill = make_bill(conn, brand)
    add_item(conn, bill, make_product(conn, brand))
    [created] = send_to_kitchen(conn, bill)
    ticket_id = created["id"]
    [first] = conn.execute(CLAIM, (brand,)).fetchall()
    assert (first["attempt"], first["document"]["is_retry"]) == (1, False)
    with conn.transaction():
        # The attempt ends as the daemon records it: given back (paper out), or maybe on paper.
        conn.execute("SELECT kitchen_describe_change('retry', 'printer_service')")
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = 'new', next_attempt_at = now(),"
            " may_have_printed = %s WHERE id = %s",
            (may_have_printed, ticket_id),
        )
    [again] = conn.execute(CLAIM, (brand,)).fetchall()
    assert again["ticket_id"] == ticket_id and again["attempt"] == 2
    assert again["document"]["is_retry"] is may_have_printed


def test_a_claim_is_audited_as_print_start_whatever_the_caller_describes(
    database_url: str, conn: Conn
) -> None:
    brand = make_brand(conn)
    bill = make_bill(conn, brand)
    add_item(conn, bill, make_product(conn, brand))
    [created] = send_to_kitchen(conn, bill)
    with psycopg.connect(database_url, row_factory=dict_row) as caller:
        caller.execute("SELECT kitchen_describe_change('manual_reset', 'admin:alice', 7, 'x')")
        caller.execute(CLAIM, (brand,)).fetchall()
        still = caller.execute("SELECT kitchen_change_description() AS d").fetchone()
        caller.commit()
    assert still is not None and still["d"]["action"] == "manual_reset"
    log = conn.execute(
        "SELECT action, actor, duration_ms, error_code, metadata FROM kitchen_kitchenticketlog"
        " WHERE ticket_id = %s AND new_status = 'printing'",
        (created["id"],),
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


# End to end: the paper ----------------------------------------------------------------------------


def test_forged_notifications_sent_ahead_of_a_ticket_change_nothing_on_paper(
    database_url: str, outsider: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    with psycopg.connect(database_url) as reader:
        [last] = reader.execute(
            "SELECT last_value - CASE WHEN is_called THEN 0 ELSE 1 END"
            " FROM kitchen_kitchenticket_id_seq"
        ).fetchall()
    route = {"station": "kitchen", "brand_id": str(restaurant.brand_id), "store_id": None}
    ahead = [
        forged
        for ticket_id in range(last[0] + 1, last[0] + 4)  # the next ticket ids
        for forged in forgeries(route | {"ticket_id": ticket_id})
    ]
    with running_daemon(database_url), forging(outsider, ahead):
        [ticket_id] = restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url), what="ticket printed")
    [paper] = kitchen.tickets()
    assert ticket_id_of(paper.text) == ticket_id
    assert_shows_the_database(paper.text)
    assert ticket(database_url, ticket_id)["status"] == "printed"


@pytest.mark.parametrize(
    ("failure", "retry_banner"),
    [("paper_out", False), ("drop_after:40", True)],
    ids=["nothing-on-paper", "maybe-on-paper"],
)
def test_forged_notifications_between_attempts_change_nothing_on_paper(
    database_url: str, outsider: str, restaurant: Restaurant, failure: str, retry_banner: bool
) -> None:
    # The first attempt fails: paper out (nothing reached paper, the attempt is given back), or
    # the connection dropped mid-ticket (part of it may be on paper). Then the outsider, who heard
    # the ticket's notification, forges notifications with an edited document until it prints.
    kitchen = restaurant.printer("kitchen")
    if failure == "paper_out":
        kitchen.set_paper(PaperState.OUT)
    else:
        kitchen.set_fault(Fault.parse(failure))
    with running_daemon(database_url), listening(outsider) as listener:
        [ticket_id] = restaurant.send("kitchen", max_retries=5)
        [payload] = [json.loads(raw) for raw in heard(listener)]
        assert payload["ticket_id"] == ticket_id and set(payload) == PAYLOAD_KEYS
        wait_until(
            lambda: "print_failed" in log_actions(database_url, ticket_id),
            what="the first attempt failed",
        )
        with forging(outsider, forgeries(payload)):
            hear_a_forgery(listener)  # the daemon, listening since before, has heard it too
            if failure == "paper_out":
                kitchen.set_paper(PaperState.OK)
            else:
                kitchen.set_fault(FaultMode.NONE)
            wait_until(lambda: all_settled(database_url), what="ticket printed")
    row = ticket(database_url, ticket_id)
    assert row["status"] == "printed" and row["may_have_printed"] is retry_banner
    [paper] = kitchen.tickets()
    assert ticket_id_of(paper.text) == ticket_id
    assert_shows_the_database(paper.text)
    assert has_retry_banner(paper.text) is retry_banner
    actions = log_actions(database_url, ticket_id)
    assert actions[-1] == "print_success" and actions.count("print_success") == 1


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
            ticket_id = int(ticket_by_hand(pos, bill, first)["id"])
            pos.execute(
                "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id,"
                " quantity) VALUES (%s, %s, 1)",
                (ticket_id, second),
            )
            pos.commit()
            wait_until(lambda: all_settled(database_url), what="ticket printed")
    [paper] = kitchen.tickets()
    assert "first line" in paper.text and "second line" in paper.text
    assert ticket(database_url, ticket_id)["status"] == "printed"


# Workers ------------------------------------------------------------------------------------------


def test_made_up_routes_start_no_workers_and_an_idle_one_retires(
    database_url: str, outsider: str, restaurant: Restaurant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone who can connect can NOTIFY: a made-up route starts no worker, and an idle worker goes.
    monkeypatch.setattr(dispatch, "ROUTE_IDLE_RETIRE_S", 1.0)
    kitchen = restaurant.printer("kitchen")
    with (
        running_daemon(database_url) as daemon,
        psycopg.connect(outsider, autocommit=True) as forger,
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
