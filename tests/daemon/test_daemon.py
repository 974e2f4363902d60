"""End to end: real PostgreSQL, the real daemon, emulated printers over real TCP on loopback."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kprintd.emulator import Fault, FaultMode
from kprintd.harness import (
    Restaurant,
    all_settled,
    daemon_process,
    has_retry_banner,
    listener_connected,
    log_actions,
    query,
    running_daemon,
    ticket,
    ticket_id_of,
    wait_until,
)
from kprintd.printer_status import PaperState


def test_a_send_prints_once_on_each_station(database_url: str, restaurant: Restaurant) -> None:
    kitchen = restaurant.printer("kitchen")
    bar = restaurant.printer("bar")
    dessert = restaurant.printer("dessert")
    with running_daemon(database_url):
        ids = restaurant.send("kitchen", "bar", "dessert")
        wait_until(lambda: all_settled(database_url), what="tickets printed")
    assert len(ids) == 3
    printed = {p.name: [ticket_id_of(t.text) for t in p.tickets()] for p in (kitchen, bar, dessert)}
    assert sorted(i for received in printed.values() for i in received) == ids
    assert all(len(v) == 1 for v in printed.values())
    for ticket_id in ids:
        row = ticket(database_url, ticket_id)
        assert row["status"] == "printed"
        assert row["print_attempts"] == 1
        assert row["printed_at"] is not None
        assert log_actions(database_url, ticket_id) == ["created", "print_start", "print_success"]
    success = query(
        database_url,
        "SELECT printer_ip::text AS ip, duration_ms, metadata FROM kitchen_kitchenticketlog"
        " WHERE action = 'print_success' AND ticket_id = %s",
        (ids[0],),
    )[0]
    assert success["duration_ms"] is not None and success["duration_ms"] >= 0
    assert success["metadata"]["attempt"] == 1
    assert success["metadata"]["bytes"] > 0
    stats = query(
        database_url,
        "SELECT printer_name, total_prints, failed_prints, last_print_at"
        " FROM kitchen_stationprinter ORDER BY id",
    )
    assert [(s["total_prints"], s["failed_prints"]) for s in stats] == [(1, 0)] * 3
    assert all(s["last_print_at"] is not None for s in stats)


def test_tickets_of_a_station_print_in_creation_order(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    ids = [restaurant.send("kitchen")[0] for _ in range(12)]
    with running_daemon(database_url):
        wait_until(lambda: len(kitchen.tickets()) >= 12, what="12 tickets")
    assert [ticket_id_of(t.text) for t in kitchen.tickets()] == ids


@pytest.mark.parametrize(
    ("fault", "retry_banner"),
    [
        ("refuse", False),
        ("black_hole", False),  # status unanswered: the ticket itself was never sent
        ("drop_after:40", True),
        ("paper_out", False),
        ("cover_open", False),
    ],
)
def test_failover_to_the_backup_within_the_same_attempt(
    database_url: str, restaurant: Restaurant, fault: str, retry_banner: bool
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary")
    backup = restaurant.printer("kitchen", 2, name="backup")
    if fault == "paper_out":
        primary.set_paper(PaperState.OUT)
    elif fault == "cover_open":
        primary.set_cover_open(True)
    else:
        primary.set_fault(Fault.parse(fault))
    with running_daemon(database_url):
        (ticket_id,) = restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url), what="ticket settled")
    row = ticket(database_url, ticket_id)
    assert row["status"] == "printed"
    assert row["print_attempts"] == 1, "failover happens inside one attempt, not by retrying"
    assert str(row["printer_ip"]) == backup.host
    (received,) = backup.tickets()
    assert ticket_id_of(received.text) == ticket_id
    assert has_retry_banner(received.text) is retry_banner
    assert primary.tickets() == []
    primary_row = query(
        database_url,
        "SELECT failed_prints, last_error_message FROM kitchen_stationprinter"
        " WHERE printer_name = 'primary'",
    )[0]
    assert primary_row["failed_prints"] == 1
    assert primary_row["last_error_message"]


@pytest.mark.slow
def test_a_tripped_primary_is_skipped_until_it_answers_again(
    database_url: str, restaurant: Restaurant
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary", fault=FaultMode.BLACK_HOLE)
    backup = restaurant.printer("kitchen", 2, name="backup")
    with running_daemon(database_url, breaker_open_s=1.0):
        restaurant.send("kitchen")
        wait_until(lambda: len(backup.tickets()) == 1)
        connections_after_failure = primary.stats().connections
        restaurant.send("kitchen")
        wait_until(lambda: len(backup.tickets()) == 2)
        assert primary.stats().connections == connections_after_failure, (
            "the second ticket must go straight to the backup"
        )
        primary.set_fault(FaultMode.NONE)
        time.sleep(1.1)
        (third,) = restaurant.send("kitchen")
        wait_until(lambda: len(primary.tickets()) == 1, what="half-open probe")
    assert ticket_id_of(primary.tickets()[0].text) == third


def test_backoff_then_failed_with_an_alert(database_url: str, restaurant: Restaurant) -> None:
    restaurant.printer("kitchen", fault=FaultMode.REFUSE)
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_alert")
        with running_daemon(database_url, unreachable_grace_s=0):
            (ticket_id,) = restaurant.send("kitchen", max_retries=3)
            wait_until(lambda: ticket(database_url, ticket_id)["status"] == "failed", timeout=20)
        alerts = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    row = ticket(database_url, ticket_id)
    assert row["print_attempts"] == 3
    assert row["error_code"] == "connection_refused"
    assert "refused" in row["error_message"]
    actions = log_actions(database_url, ticket_id)
    assert actions == [
        "created",
        *["print_start", "print_failed", "retry"] * 2,
        "print_start",
        "print_failed",
    ]
    retries = query(
        database_url,
        "SELECT (metadata->>'retry_in_s')::float AS delay FROM kitchen_kitchenticketlog"
        " WHERE ticket_id = %s AND action = 'retry' ORDER BY id",
        (ticket_id,),
    )
    assert [r["delay"] > 0 for r in retries] == [True, True]
    failed_alerts = [a for a in alerts if a["type"] == "ticket_failed"]
    assert [a["ticket_id"] for a in failed_alerts] == [ticket_id]
    assert failed_alerts[0]["severity"] == "critical"


@pytest.mark.slow
def test_station_without_printer_fails_once_with_no_printer(
    database_url: str, restaurant: Restaurant
) -> None:
    restaurant.printer("kitchen")
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_alert")
        with running_daemon(database_url):
            grill_ids = [restaurant.send("grill")[0] for _ in range(3)]
            wait_until(lambda: all_settled(database_url), what="grill tickets settled")
            time.sleep(1.0)  # two sweeps: nothing may be retried
        alerts = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
    for ticket_id in grill_ids:
        row = ticket(database_url, ticket_id)
        assert (row["status"], row["error_code"], row["print_attempts"]) == (
            "failed",
            "no_printer",
            1,
        )
        assert log_actions(database_url, ticket_id) == ["created", "print_start", "print_failed"]
    kinds = Counter(a["type"] for a in alerts)
    assert kinds["station_unroutable"] == 1
    assert kinds["ticket_failed"] == 3
    (unroutable,) = (a for a in alerts if a["type"] == "station_unroutable")
    assert (unroutable["station"], unroutable["reason"]) == ("grill", "no_printer")


@pytest.mark.slow
def test_two_daemons_print_each_ticket_exactly_once(
    database_url: str, restaurant: Restaurant
) -> None:
    stations = ["kitchen", "bar", "dessert"]
    printers = {s: restaurant.printer(s) for s in stations}
    with (
        running_daemon(database_url, daemon_id="daemon-a"),
        running_daemon(database_url, daemon_id="daemon-b"),
    ):
        ids: list[int] = []
        for _ in range(30):
            ids += restaurant.send(*stations)
        wait_until(lambda: all_settled(database_url), timeout=30, what="all printed")
    received = [ticket_id_of(t.text) for p in printers.values() for t in p.tickets()]
    assert sorted(received) == sorted(ids)
    assert not any(has_retry_banner(t.text) for p in printers.values() for t in p.tickets())
    claimers = query(
        database_url,
        "SELECT DISTINCT metadata->>'daemon' AS d FROM kitchen_kitchenticketlog"
        " WHERE action = 'print_success'",
    )
    assert {c["d"] for c in claimers} <= {"daemon-a", "daemon-b"}


@pytest.mark.slow
def test_sigkill_mid_print_reprints_with_retry_banner(
    database_url: str, restaurant: Restaurant, tmp_path: Path
) -> None:
    kitchen = restaurant.printer("kitchen", fault=Fault.slow_read(20))
    with daemon_process(database_url, tmp_path / "daemon.log", lease_s=1.0) as process:
        (ticket_id,) = restaurant.send("kitchen")
        wait_until(
            lambda: (
                ticket(database_url, ticket_id)["status"] == "printing"
                and kitchen.stats().bytes_received > 8
            ),
            what="print in flight",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    kitchen.set_fault(FaultMode.NONE)
    kitchen.clear()
    with running_daemon(database_url, lease_s=1.0):
        wait_until(lambda: ticket(database_url, ticket_id)["status"] == "printed", timeout=20)
    (reprinted,) = kitchen.tickets()
    assert ticket_id_of(reprinted.text) == ticket_id
    assert has_retry_banner(reprinted.text)
    row = ticket(database_url, ticket_id)
    assert row["may_have_printed"] is True
    assert row["print_attempts"] == 2
    assert "retry" in log_actions(database_url, ticket_id)


@pytest.mark.slow
def test_sigterm_exits_cleanly_and_loses_nothing(
    database_url: str, restaurant: Restaurant, tmp_path: Path
) -> None:
    kitchen = restaurant.printer("kitchen")
    bar = restaurant.printer("bar")
    ids: list[int] = []
    with daemon_process(database_url, tmp_path / "daemon.log") as process:
        wait_until(lambda: listener_connected(database_url), what="daemon listening")
        for _ in range(40):
            ids += restaurant.send("kitchen", "bar")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    statuses = Counter(ticket(database_url, i)["status"] for i in ids)
    assert set(statuses) <= {"printed", "new"}, "no ticket may be left in printing"
    with running_daemon(database_url):
        wait_until(lambda: all_settled(database_url), timeout=30)
    received = [ticket_id_of(t.text) for p in (kitchen, bar) for t in p.tickets()]
    assert sorted(received) == sorted(ids), "every ticket printed exactly once"


def test_postgres_restart_under_the_daemon(
    database_url: str, restaurant: Restaurant, postgres_server: Any
) -> None:
    if postgres_server.embedded is None:
        pytest.skip("needs the embedded server, which this test may restart")
    kitchen = restaurant.printer("kitchen")
    with running_daemon(database_url) as daemon:
        restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 1)
        postgres_server.embedded.stop()
        time.sleep(1.0)
        postgres_server.embedded.start()
        ids = [restaurant.send("kitchen")[0] for _ in range(3)]
        wait_until(lambda: len(kitchen.tickets()) == 4, timeout=30, what="prints after restart")
        assert daemon.daemon is not None and not daemon.daemon.stop_requested.is_set()
    assert [ticket_id_of(t.text) for t in kitchen.tickets()[1:]] == ids


def test_scope_filters_leave_other_stores_alone(database_url: str) -> None:
    mine = Restaurant(database_url, store_id=uuid.uuid4())
    theirs = Restaurant(database_url, store_id=uuid.uuid4())
    try:
        my_printer = mine.printer("kitchen")
        their_printer = theirs.printer("kitchen")
        with running_daemon(database_url, store_id=str(mine.store_id)):
            (my_ticket,) = mine.send("kitchen")
            (their_ticket,) = theirs.send("kitchen")
            wait_until(lambda: ticket(database_url, my_ticket)["status"] == "printed")
            time.sleep(1.0)  # sweeps run; the other store's ticket must stay untouched
        assert ticket(database_url, their_ticket)["status"] == "new"
        assert log_actions(database_url, their_ticket) == ["created"]
        assert their_printer.tickets() == []
        assert len(my_printer.tickets()) == 1
    finally:
        mine.stop()
        theirs.stop()


def test_a_printer_that_lies_about_its_status_is_failed_over(
    database_url: str, restaurant: Restaurant
) -> None:
    import socket

    liar = socket.socket()
    host = "127.0.0.1"
    liar.bind((host, 0))
    liar.listen()
    stop = threading.Event()

    def answer_garbage() -> None:
        while not stop.is_set():
            liar.settimeout(0.2)
            try:
                conn, _ = liar.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    while conn.recv(4096):
                        conn.sendall(b"\xff\xff\xff\xff")
                except OSError:
                    pass

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    query(
        database_url,
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip,"
        " printer_port, priority) VALUES (%s, 'kitchen', 'liar', %s, %s, 1)",
        (restaurant.brand_id, host, liar.getsockname()[1]),
    )
    backup = restaurant.printer("kitchen", 2, name="backup")
    try:
        with running_daemon(database_url):
            (ticket_id,) = restaurant.send("kitchen")
            wait_until(lambda: all_settled(database_url))
    finally:
        stop.set()
        thread.join(2)
        liar.close()
    assert str(ticket(database_url, ticket_id)["printer_ip"]) == backup.host
    failure = query(
        database_url,
        "SELECT last_error_message FROM kitchen_stationprinter WHERE printer_name = 'liar'",
    )[0]
    assert "ff ff ff ff" in failure["last_error_message"]


def test_a_hand_inserted_empty_ticket_fails_instead_of_printing_blank(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    (real_ticket,) = restaurant.send("kitchen")
    bill_id = ticket(database_url, real_ticket)["bill_id"]
    empty = query(
        database_url,
        "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
        " VALUES (%s, 'kitchen', 'new') RETURNING id",
        (bill_id,),
    )[0]["id"]
    with running_daemon(database_url):
        wait_until(lambda: all_settled(database_url))
    row = ticket(database_url, empty)
    assert (row["status"], row["error_code"]) == ("failed", "empty_ticket")
    assert [ticket_id_of(t.text) for t in kitchen.tickets()] == [real_ticket]


def test_checker_ticket_marks_voided_items(database_url: str, restaurant: Restaurant) -> None:
    kitchen = restaurant.printer("kitchen")
    checker = restaurant.printer("checker")
    with running_daemon(database_url):
        ids = restaurant.send("kitchen")
        wait_until(lambda: len(checker.tickets()) == 1 and len(kitchen.tickets()) == 1)
        bill_id = ticket(database_url, ids[0])["bill_id"]
        query(database_url, "UPDATE pos_billitem SET is_void = true WHERE bill_id = %s", (bill_id,))
        query(database_url, "SELECT kitchen_create_tickets(%s)", (bill_id,))
        wait_until(lambda: len(checker.tickets()) == 2 and len(kitchen.tickets()) == 2)
    first, second = (t.text for t in checker.tickets())
    assert "V O I D   1 x" not in first
    assert "V O I D   1 x" in second
    assert "V O I D   1 x" in kitchen.tickets()[1].text


def test_a_station_out_of_paper_keeps_its_tickets_until_the_roll_is_changed(
    database_url: str, restaurant: Restaurant
) -> None:
    bar = restaurant.printer("bar")
    bar.set_paper(PaperState.OUT)
    with running_daemon(database_url):
        (ticket_id,) = restaurant.send("bar", max_retries=2)
        wait_until(
            lambda: log_actions(database_url, ticket_id).count("print_failed") >= 4,
            what="more failed attempts than max_retries",
        )
        assert ticket(database_url, ticket_id)["status"] in ("new", "printing")
        bar.set_paper(PaperState.OK)
        wait_until(lambda: ticket(database_url, ticket_id)["status"] == "printed")
    (received,) = bar.tickets()
    assert not has_retry_banner(received.text), "nothing was printed before: no duplicate"
    given_back = query(
        database_url,
        "SELECT count(*) AS n FROM kitchen_kitchenticketlog WHERE ticket_id = %s"
        " AND action = 'retry' AND (metadata->>'attempt_given_back')::boolean",
        (ticket_id,),
    )[0]["n"]
    assert given_back >= 4
    assert ticket(database_url, ticket_id)["print_attempts"] == 1


def test_print_template_of_the_station_shapes_the_ticket(
    database_url: str, restaurant: Restaurant
) -> None:
    dessert = restaurant.printer("dessert")
    kitchen = restaurant.printer("kitchen")
    query(
        database_url,
        "INSERT INTO kitchen_printtemplate (brand_id, station_code, header_line, buzzer, copies,"
        " cut_mode, time_zone)"
        " VALUES (%s, 'dessert', 'Warung Test - Dessert', true, 2, 'full', 'Asia/Jayapura')",
        (restaurant.brand_id,),
    )
    query(
        database_url,
        "INSERT INTO kitchen_printtemplate (brand_id, station_code, codepage)"
        " VALUES (%s, 'kitchen', 'no-such-codepage')",
        (restaurant.brand_id,),
    )
    with running_daemon(database_url):
        ticket_ids = restaurant.send("dessert", "kitchen")
        wait_until(lambda: len(dessert.tickets()) == 2 and len(kitchen.tickets()) == 1)
    first, second = dessert.tickets()
    assert first.text == second.text, "two identical copies"
    assert "Warung Test - Dessert" in first.text
    sent_in_jayapura = query(
        database_url,
        "SELECT to_char(created_at AT TIME ZONE 'Asia/Jayapura', 'HH24:MI') AS hhmm"
        " FROM kitchen_kitchenticket WHERE id = ANY(%s) AND printer_target = 'dessert'",
        (ticket_ids,),
    )[0]["hhmm"]
    assert f"Sent {sent_in_jayapura}" in first.text, "the time is the template's zone's"
    assert first.cut == "full"
    assert b"\x1bB" in first.raw or b"\x1b(A" in first.raw, "the buzzer sounds"
    (plain,) = kitchen.tickets()
    assert plain.cut == "partial" and "Warung Test" not in plain.text
    assert b"\x1bB" not in plain.raw and b"\x1b(A" not in plain.raw


def test_outcome_of_a_print_is_held_while_postgres_is_down(
    database_url: str, restaurant: Restaurant, postgres_server: Any
) -> None:
    if postgres_server.embedded is None:
        pytest.skip("needs the embedded server, which this test restarts")
    kitchen = restaurant.printer("kitchen", fault=Fault.slow_read(600))
    with running_daemon(database_url, printer_send_timeout_s=10, lease_s=30):
        (ticket_id,) = restaurant.send("kitchen")
        wait_until(lambda: kitchen.stats().bytes_received > 20, what="print under way")
        postgres_server.embedded.stop()
        try:
            wait_until(lambda: len(kitchen.tickets()) == 1, timeout=20, what="ticket cut")
            time.sleep(0.5)  # the daemon now tries to record the outcome and cannot
        finally:
            postgres_server.embedded.start()
        wait_until(lambda: ticket(database_url, ticket_id)["status"] == "printed", timeout=30)
    assert len(kitchen.tickets()) == 1, "printed once: the outcome was held, not retried"
    assert log_actions(database_url, ticket_id) == ["created", "print_start", "print_success"]


def test_a_printer_switched_off_gets_not_even_the_next_ticket(
    database_url: str, restaurant: Restaurant
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary")
    backup = restaurant.printer("kitchen", 2, name="backup")
    with running_daemon(database_url):
        (first,) = restaurant.send("kitchen")
        wait_until(lambda: len(primary.tickets()) == 1, what="first ticket on the primary")
        # The route keeps its printers in memory; the change must reach it before the next send.
        query(
            database_url,
            "UPDATE kitchen_stationprinter SET is_active = false WHERE printer_name = 'primary'",
        )
        wait_until(lambda: all_settled(database_url))
        (second,) = restaurant.send("kitchen")
        wait_until(lambda: len(backup.tickets()) == 1, what="second ticket on the backup")
    assert [ticket_id_of(t.text) for t in primary.tickets()] == [first]
    assert [ticket_id_of(t.text) for t in backup.tickets()] == [second]


def test_printing_itself_announces_no_printer_change(
    database_url: str, restaurant: Restaurant
) -> None:
    restaurant.printer("kitchen")
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_printers_changed")
        with running_daemon(database_url):
            restaurant.send("kitchen")
            wait_until(lambda: all_settled(database_url))
        assert [n.payload for n in listener.notifies(timeout=0.3)] == [], (
            "the counters a print updates change nothing in routing"
        )
        query(
            database_url,
            "UPDATE kitchen_stationprinter SET priority = 2; "
            "INSERT INTO kitchen_printtemplate (station_code, copies) VALUES ('kitchen', 2)",
        )
        changed = [n.payload for n in listener.notifies(timeout=0.3)]
    assert changed == ["kitchen_stationprinter", "kitchen_printtemplate"]


def test_a_template_changed_mid_service_shapes_the_next_ticket(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    with running_daemon(database_url):
        restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 1, what="the first ticket")
        query(
            database_url,
            "INSERT INTO kitchen_printtemplate (station_code, header_line) VALUES (NULL, %s)",
            ("Warung Test - Kemang",),
        )
        restaurant.send("kitchen")
        wait_until(lambda: len(kitchen.tickets()) == 2, what="the second ticket")
    before, after = kitchen.tickets()
    assert "Warung Test - Kemang" not in before.text
    assert "Warung Test - Kemang" in after.text
