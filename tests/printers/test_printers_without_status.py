"""Printers that never answer a status request (kitchen_stationprinter.answers_status = false):
the emulator plays one, the transport sends to it unconfirmed, the daemon prints to it without
asking and the health monitor only connects to it. Unmarked, such a printer is failed over."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from kprintd.emulator import EmulatedPrinter, FaultMode
from kprintd.emulator import main as emulator_main
from kprintd.harness import (
    Restaurant,
    all_settled,
    has_retry_banner,
    log_actions,
    query,
    running_daemon,
    ticket,
    ticket_id_of,
    wait_until,
)
from kprintd.printer_status import ALL_STATUS_REQUESTS
from kprintd.render import PrintLayout, render_ticket
from kprintd.transport import PrinterAddress, PrinterConnection, PrinterError
from tests.printers.ticket_samples import JAKARTA, ORDER

JOB = render_ticket(ORDER, PrintLayout(chars_per_line=32, timezone=JAKARTA))


@pytest.fixture
def mute() -> Iterator[EmulatedPrinter]:
    with EmulatedPrinter("mute", "127.0.0.1", 0, chars_per_line=32, answers_status=False) as p:
        yield p


def test_the_emulator_can_play_a_printer_that_never_answers(mute: EmulatedPrinter) -> None:
    with socket.create_connection(mute.address, timeout=5) as sock:
        sock.sendall(ALL_STATUS_REQUESTS + JOB)
        mute.wait_for_tickets(1, timeout=5)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)
    assert mute.stats().status_requests == 4, "asked four times, answered none"


def test_the_emulator_command_refuses_no_status_for_an_unknown_printer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = emulator_main(["--printer", "bar=127.0.0.1:0", "--no-status", "kitchen"])
    assert code == 2
    assert "--no-status names no printer: kitchen" in capsys.readouterr().err


def test_a_job_is_sent_unconfirmed_where_a_status_request_would_time_out(
    mute: EmulatedPrinter,
) -> None:
    async def scenario() -> str:
        address = PrinterAddress(mute.host, mute.port)
        conn = await PrinterConnection.open(address, 2)
        try:
            await conn.status(0.2)
        except PrinterError as exc:
            code = exc.code
        finally:
            await conn.close()
        conn = await PrinterConnection.open(address, 2)
        await conn.send_unconfirmed(JOB, 2)
        await conn.close()
        return code

    assert asyncio.run(scenario()) == "no_status_reply"
    assert len(mute.wait_for_tickets(1, timeout=5)) == 1


# --- The daemon -----------------------------------------------------------------------------------


def mark_mute(url: str, name: str) -> None:
    query(
        url,
        "UPDATE kitchen_stationprinter SET answers_status = false WHERE printer_name = %s",
        (name,),
    )


def test_a_printer_marked_as_never_answering_prints_each_ticket_once_without_being_asked(
    database_url: str, restaurant: Restaurant
) -> None:
    bar = restaurant.printer("bar", answers_status=False)
    mark_mute(database_url, "bar-1")
    with running_daemon(database_url, health_interval_s=0.2):
        ids = [restaurant.send("bar")[0] for _ in range(5)]
        wait_until(lambda: all_settled(database_url), what="tickets printed")
        checks = wait_until(
            lambda: query(
                database_url,
                "SELECT is_online, paper_status, response_time_ms,"
                " kitchen_printer_state(is_online, paper_status, error_code) AS state"
                " FROM kitchen_printerhealthcheck",
            ),
            what="a health check",
        )
    assert [ticket_id_of(t.text) for t in bar.tickets()] == ids
    assert not any(has_retry_banner(t.text) for t in bar.tickets())
    assert bar.stats().status_requests == 0, "nobody asked a printer that never answers"
    for ticket_id in ids:
        row = ticket(database_url, ticket_id)
        assert (row["status"], row["print_attempts"]) == ("printed", 1)
        assert log_actions(database_url, ticket_id) == ["created", "print_start", "print_success"]
    assert {(c["is_online"], c["paper_status"], c["state"]) for c in checks} == {
        (True, "unknown", "no_status")
    }
    printer = query(
        database_url,
        "SELECT total_prints, failed_prints FROM kitchen_stationprinter"
        " WHERE printer_name = 'bar-1'",
    )[0]
    assert (printer["total_prints"], printer["failed_prints"]) == (5, 0)


def test_unmarked_it_is_failed_over_as_a_printer_that_does_not_answer(
    database_url: str, restaurant: Restaurant
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary", answers_status=False)
    backup = restaurant.printer("kitchen", 2, name="backup")
    with running_daemon(database_url):
        (ticket_id,) = restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url), what="ticket settled")
    assert [ticket_id_of(t.text) for t in backup.tickets()] == [ticket_id]
    assert primary.tickets() == [], "the ticket never left for a printer that did not answer"
    error = query(
        database_url,
        "SELECT error_code FROM kitchen_kitchenticketlog"
        " WHERE ticket_id = %s AND error_code IS NOT NULL",
        (ticket_id,),
    )
    assert error == [], "failover within the attempt logs no failure"
    assert (
        "did not answer a status request"
        in query(
            database_url,
            "SELECT last_error_message FROM kitchen_stationprinter WHERE printer_name = 'primary'",
        )[0]["last_error_message"]
    )


def test_one_that_cannot_be_reached_fails_over_and_is_checked_offline(
    database_url: str, restaurant: Restaurant
) -> None:
    primary = restaurant.printer("kitchen", 1, name="primary", answers_status=False)
    backup = restaurant.printer("kitchen", 2, name="backup")
    mark_mute(database_url, "primary")
    primary.set_fault(FaultMode.REFUSE)
    with running_daemon(database_url, health_interval_s=0.2):
        (ticket_id,) = restaurant.send("kitchen")
        wait_until(lambda: all_settled(database_url), what="ticket settled")
        offline = wait_until(
            lambda: query(
                database_url,
                "SELECT h.error_code FROM kitchen_printerhealthcheck h"
                " JOIN kitchen_stationprinter sp ON sp.id = h.printer_id"
                " WHERE sp.printer_name = 'primary' AND NOT h.is_online",
            ),
            what="an offline check of the primary",
        )
    assert [ticket_id_of(t.text) for t in backup.tickets()] == [ticket_id]
    assert offline[0]["error_code"] == "connection_refused"
    assert ticket(database_url, ticket_id)["print_attempts"] == 1
