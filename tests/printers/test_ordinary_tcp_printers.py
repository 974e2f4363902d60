"""Printers with ordinary TCP stacks (Nagle's algorithm) and printers at a distance (issue #15).

An ordinary embedded stack holds a small reply while the one before is unacknowledged, and Linux
delays its ACKs: four status answers per ticket once cost about 40 ms a ticket. The emulator
plays such a stack for real (`nagle=True`) and a distant printer (`rtt_ms`); kprintd confirms a
job with one request, so it costs one round trip, and what a confirmation proves is unchanged.
No timing is asserted here: the figures are measured by hand (see the report of issue #15).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from kprintd.config import Settings
from kprintd.db import RoutePrinter
from kprintd.emulator import EmulatedPrinter, FaultMode
from kprintd.harness import (
    Restaurant,
    all_settled,
    running_daemon,
    ticket,
    ticket_id_of,
    wait_until,
)
from kprintd.printer_status import ALL_STATUS_REQUESTS, PaperState, StatusRequest
from kprintd.printers import PrinterLinks
from kprintd.transport import (
    CONFIRM_REQUESTS,
    PrinterAddress,
    PrinterConnection,
    PrinterError,
    describe_unprintable,
)
from tests.printers.test_emulator import recv_exactly

T = TypeVar("T")
JOB = b"\x1b@Nasi goreng\n\x1dV\x01"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(params=[False, True], ids=["prompt", "nagle"])
def nagle(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def printer(nagle: bool) -> Iterator[EmulatedPrinter]:
    with EmulatedPrinter("ordinary", host="127.0.0.1", nagle=nagle) as p:
        yield p


# --------------------------------------------------------------------------- the emulator


def test_a_nagle_printer_really_holds_a_small_reply_until_the_one_before_is_acknowledged(
    printer: EmulatedPrinter, nagle: bool
) -> None:
    """The kernel itself holds the later answers (SIOCOUTQNSD counts them unsent right after
    their send()), for a client that acknowledges as Linux does by default."""
    with socket.create_connection(printer.address, timeout=2) as sock:
        for _ in range(10):
            sock.sendall(ALL_STATUS_REQUESTS)
            assert len(recv_exactly(sock, 4)) == 4
    assert printer.stats().status_requests == 40
    held = printer.stats().replies_held
    if nagle:
        assert held > 0, "no reply was ever held: this is no ordinary TCP stack"
    else:
        assert held == 0, "a prompt printer answers in one segment, with TCP_NODELAY"


def test_the_emulated_stack_uses_nagle_only_when_asked(
    printer: EmulatedPrinter, nagle: bool
) -> None:
    seen: list[int] = []
    with socket.create_connection(printer.address, timeout=2) as sock:
        sock.sendall(StatusRequest.PRINTER.command)
        recv_exactly(sock, 1)
        for session in list(printer._sessions):
            seen.append(session.conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    assert seen and all(bool(v) is (not nagle) for v in seen)


def test_a_distant_printer_answers_correctly() -> None:
    far = EmulatedPrinter("far", host="127.0.0.1", rtt_ms=10)
    with far, socket.create_connection(far.address, timeout=2) as sock:
        sock.sendall(ALL_STATUS_REQUESTS)
        assert recv_exactly(sock, 4) == b"\x12\x12\x12\x12"


def test_negative_rtt_is_refused() -> None:
    with pytest.raises(ValueError, match="rtt_ms"):
        EmulatedPrinter("x", host="127.0.0.1", rtt_ms=-1)


# --------------------------------------------------------------------------- the transport


@pytest.mark.parametrize("rtt_ms", [0, 2, 10])
def test_jobs_print_and_cost_one_round_trip_each(nagle: bool, rtt_ms: float) -> None:
    async def scenario(p: EmulatedPrinter) -> list[int]:
        conn = await PrinterConnection.open(PrinterAddress(p.host, p.port), 2)
        await conn.status(2)
        trips = []
        for _ in range(5):
            before = conn.round_trips
            state = await conn.print_job(JOB, 2)
            assert state.can_print
            trips.append(conn.round_trips - before)
        await conn.close()
        return trips

    with EmulatedPrinter("p", host="127.0.0.1", nagle=nagle, rtt_ms=rtt_ms) as p:
        assert run(scenario(p)) == [1] * 5
        assert len(p.wait_for_tickets(5, timeout=5)) == 5
        assert all(t.text.count("Nasi goreng") == 1 for t in p.tickets())
    # One request per confirmation: nothing left for an ordinary stack to hold.
    assert p.stats().status_requests == len(StatusRequest) + 5 * len(CONFIRM_REQUESTS)


@pytest.mark.parametrize(
    ("break_it", "code"),
    [
        (lambda p: p.set_paper(PaperState.OUT), "paper_out"),
        (lambda p: p.set_cover_open(True), "cover_open"),
        (lambda p: p.set_cutter_error(True), "cutter_error"),
        (lambda p: p.set_online(False), "offline"),
    ],
    ids=["paper-out", "cover-open", "cutter", "offline"],
)
def test_a_confirmation_still_says_why_the_printer_cannot_print(
    printer: EmulatedPrinter, break_it: Callable[[EmulatedPrinter], None], code: str
) -> None:
    async def scenario() -> tuple[str | None, int]:
        conn = await PrinterConnection.open(PrinterAddress(printer.host, printer.port), 2)
        await conn.status(2)
        break_it(printer)
        before = conn.round_trips
        state = await conn.print_job(JOB, 2)
        trips = conn.round_trips - before
        assert not conn.ready_within(10)
        await conn.close()
        problem = describe_unprintable(state)
        return (problem.code if problem else None), trips

    found, trips = run(scenario())
    assert found == code
    assert trips >= 2, "the reason costs a second exchange, only when the printer cannot print"


def test_paper_running_low_survives_a_one_byte_confirmation(printer: EmulatedPrinter) -> None:
    async def scenario() -> PaperState:
        conn = await PrinterConnection.open(PrinterAddress(printer.host, printer.port), 2)
        printer.set_paper(PaperState.NEAR_END)
        await conn.status(2)
        state = await conn.print_job(JOB, 2)
        assert state.can_print
        await conn.close()
        return state.paper

    assert run(scenario()) is PaperState.NEAR_END


@pytest.mark.parametrize("mute", ["black_hole", "never_answers"])
def test_a_printer_that_never_confirms_is_an_error_that_may_have_printed(
    nagle: bool, mute: str
) -> None:
    async def scenario(p: EmulatedPrinter) -> PrinterError:
        conn = await PrinterConnection.open(PrinterAddress(p.host, p.port), 2)
        if mute == "black_hole":
            p.set_fault(FaultMode.BLACK_HOLE)
            await asyncio.sleep(0.15)  # the session notices between two reads
        try:
            await conn.print_job(JOB, 0.3)
        except PrinterError as exc:
            return exc
        finally:
            await conn.close()
        raise AssertionError("the job was confirmed")

    answers = mute != "never_answers"
    with EmulatedPrinter("p", host="127.0.0.1", nagle=nagle, answers_status=answers) as p:
        error = run(scenario(p))
    assert error.code == "no_status_reply"
    assert error.may_have_printed


# --------------------------------------------------------------------------- PrinterLinks


def route_printer(p: EmulatedPrinter) -> RoutePrinter:
    return RoutePrinter(
        printer_id=1,
        printer_name=p.name,
        host=p.host,
        port=p.port,
        priority=1,
        paper_width_mm=80,
        chars_per_line=48,
        header_line=None,
        buzzer=False,
        copies=1,
        large_item_font=False,
        codepage="CP437",
        cut_mode="full",
    )


@pytest.mark.parametrize("rtt_ms", [0, 10])
def test_a_ticket_costs_no_round_trip_before_its_bytes_and_one_to_confirm(
    nagle: bool, rtt_ms: float
) -> None:
    async def scenario(p: EmulatedPrinter) -> None:
        links = PrinterLinks(Settings(database_url="postgresql:///unused"))
        target = route_printer(p)
        address = PrinterAddress(p.host, p.port)
        await links.send(target, JOB)  # connects: asks once and turns ASB on
        trips = links.trips[address]
        # GS a and four requests, asked at once: the pushed block goes first, and an ordinary
        # stack holds the answers until it is acknowledged. How many reads the five replies take
        # depends on how the kernel segments them (one or two when idle, up to five on a busy
        # machine); what is bounded is that connecting asks once and each job after it nothing.
        connecting = trips.before
        assert (trips.sends, trips.confirm) == (1, 1) and 1 <= connecting <= 5
        for _ in range(5):
            await asyncio.sleep(0.12)  # past PRECHECK_FRESH_S: only ASB spares the request
            await links.send(target, JOB)
        assert (trips.sends, trips.before, trips.confirm) == (6, connecting, 6)
        p.set_paper(PaperState.OUT)
        await asyncio.sleep(0.05)  # pushed: the next ticket is refused before any byte
        with pytest.raises(PrinterError) as caught:
            await links.send(target, JOB)
        assert caught.value.code == "paper_out" and not caught.value.may_have_printed
        await links.close_all()

    with EmulatedPrinter("p", host="127.0.0.1", nagle=nagle, rtt_ms=rtt_ms) as p:
        run(scenario(p))
        assert len(p.wait_for_tickets(6, timeout=5)) == 6


# --------------------------------------------------------------------------- the daemon


@pytest.mark.parametrize(
    ("nagle_stack", "rtt_ms"),
    [(True, 0), (True, 10), (False, 30)],
    ids=["nagle", "nagle-10ms", "30ms"],
)
def test_the_daemon_prints_a_burst_to_ordinary_and_distant_printers(
    database_url: str, restaurant: Restaurant, nagle_stack: bool, rtt_ms: float
) -> None:
    kitchen = restaurant.printer("kitchen", nagle=nagle_stack, rtt_ms=rtt_ms)
    with running_daemon(database_url) as daemon:
        sent = [ticket_id for _ in range(12) for ticket_id in restaurant.send("kitchen")]
        kitchen.wait_for_tickets(len(sent), timeout=20)
        wait_until(lambda: all_settled(database_url), what="tickets settled")
        assert daemon.daemon is not None
        (trips,) = daemon.daemon.printers.links.trips.values()
    printed = sorted(ticket_id_of(t.text) for t in kitchen.tickets())
    assert printed == sorted(sent), "each ticket once, none lost"
    assert all(ticket(database_url, i)["status"] == "printed" for i in sent)
    # However the burst was batched: one round trip to confirm each send, and none before it
    # but the first (connecting asks once; then the printer pushes its changes).
    assert trips.confirm == trips.sends >= 1
    assert trips.before <= 1
