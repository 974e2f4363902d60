"""Automatic Status Back (GS a): the block's encoding, the emulator pushing it, the transport
sorting it from status answers, and the daemon trusting it instead of asking before each job."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kprintd.emulator import EmulatedPrinter, FaultMode
from kprintd.harness import (
    Restaurant,
    all_settled,
    has_retry_banner,
    running_daemon,
    ticket,
    ticket_id_of,
    wait_until,
)
from kprintd.printer_status import (
    ENABLE_STATUS_BACK,
    PaperState,
    PrinterState,
    StatusRequest,
    build_status_back,
    build_status_response,
    is_status_back_start,
    is_status_byte,
    state_from_responses,
    state_from_status_back,
)
from kprintd.transport import (
    CONFIRM_REQUESTS,
    PrinterAddress,
    PrinterConnection,
    PrinterError,
    _PrinterLink,
)
from tests.printers.test_emulator import recv_exactly

states = st.builds(
    PrinterState,
    online=st.booleans(),
    cover_open=st.booleans(),
    paper=st.sampled_from(PaperState),
    cutter_error=st.booleans(),
    unrecoverable_error=st.booleans(),
    auto_recoverable_error=st.booleans(),
    drawer_pin3_high=st.booleans(),
    feed_button_pressed=st.booleans(),
)


def answer_to(state: PrinterState) -> bytes:
    return b"".join(build_status_response(n, state) for n in StatusRequest)


def as_answered(state: PrinterState) -> PrinterState:
    """What DLE EOT tells of `state`: the reference for what ASB must tell."""
    return state_from_responses(dict(zip(StatusRequest, answer_to(state), strict=True)))


# --------------------------------------------------------------------------- encoding


@given(states)
def test_a_pushed_block_tells_what_a_status_answer_tells(state: PrinterState) -> None:
    assert state_from_status_back(build_status_back(state)) == as_answered(state)


def test_no_byte_can_be_both_a_status_answer_and_the_start_of_a_pushed_block() -> None:
    both = [b for b in range(256) if is_status_byte(b) and is_status_back_start(b)]
    assert both == []


@given(states)
def test_blocks_start_like_blocks_and_answers_are_answers(state: PrinterState) -> None:
    assert is_status_back_start(build_status_back(state)[0])
    assert all(is_status_byte(b) and not is_status_back_start(b) for b in answer_to(state))


@pytest.mark.parametrize(
    "block",
    [b"\x12\x00\x00\x00", b"\x10\x10\x00\x00", b"\x10\x00\x80\x00", b"\x10\x00\x00", b""],
    ids=["answer-byte-first", "fixed-bit-4", "fixed-bit-7", "short", "empty"],
)
def test_a_block_with_wrong_fixed_bits_is_refused(block: bytes) -> None:
    with pytest.raises(ValueError, match="automatic status back"):
        state_from_status_back(block)


# --------------------------------------------------------------------------- sorting


@given(
    before=st.lists(states, max_size=3),
    answered=states,
    after=st.lists(states, max_size=3),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=8),
)
def test_pushed_blocks_and_an_answer_are_told_apart_however_the_bytes_arrive(
    before: list[PrinterState],
    answered: PrinterState,
    after: list[PrinterState],
    cuts: list[int],
) -> None:
    stream = (
        b"".join(map(build_status_back, before))
        + answer_to(answered)
        + b"".join(map(build_status_back, after))
    )

    async def scenario() -> tuple[bytes, PrinterState | None, _PrinterLink]:
        link = _PrinterLink(PrinterAddress("127.0.0.1", 9100))
        link.status_back_requested = True
        waiter = link.expect_answer()
        rest = stream
        for cut in [*cuts, len(stream)]:
            chunk, rest = rest[:cut], rest[cut:]
            if chunk:
                link.data_received(chunk)
        answer, state = await waiter
        return answer, state, link

    answer, state, link = asyncio.run(scenario())
    assert answer == answer_to(answered)
    assert state == as_answered(answered)
    newest = as_answered(after[-1]) if after else as_answered(answered)
    assert link.state == newest, "the state is the newest heard, in arrival order"
    assert link.status_back_on is bool(before or after)


def test_a_block_with_wrong_fixed_bits_spoils_the_answer_it_precedes() -> None:
    async def scenario() -> PrinterState | None:
        link = _PrinterLink(PrinterAddress("127.0.0.1", 9100))
        link.status_back_requested = True
        waiter = link.expect_answer()
        link.data_received(b"\x10\x90\x00\x00" + answer_to(PrinterState()))
        _, state = await waiter
        return state

    assert asyncio.run(scenario()) is None, "four bytes that are no answer make a bad reply"


def test_bytes_nobody_asked_for_are_reported_at_the_next_request() -> None:
    async def scenario() -> None:
        link = _PrinterLink(PrinterAddress("127.0.0.1", 9100))
        link.data_received(answer_to(PrinterState()))
        link.expect_answer()

    with pytest.raises(PrinterError, match="when nothing was asked") as caught:
        asyncio.run(scenario())
    assert caught.value.code == "bad_status_reply"


def test_a_device_that_floods_bytes_nobody_asked_for_is_hung_up_on_and_reported() -> None:
    """Port 9100 of something that is no printer (or a printer gone mad): the connection is
    dropped after a few bytes instead of read forever, and the next request says why."""
    server = socket.create_server(("127.0.0.1", 0))
    host, port = server.getsockname()

    def flood() -> None:
        conn, _ = server.accept()
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"A" * 1_000_000)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()

    async def scenario() -> PrinterError:
        conn = await PrinterConnection.open(PrinterAddress(host, port), 2)
        await asyncio.sleep(0.3)  # the flood arrives
        try:
            await conn.status(1)
        except PrinterError as exc:
            return exc
        finally:
            await conn.close()
        raise AssertionError("a flood was taken for an answer")

    try:
        error = asyncio.run(scenario())
    finally:
        thread.join(5)
        server.close()
    assert error.code == "bad_status_reply"
    assert "41 41 41 41" in error.message and "when nothing was asked" in error.message
    assert len(error.message) < 400, "a sample, not the flood"


# --------------------------------------------------------------------------- the emulator


@pytest.fixture
def printer() -> Iterator[EmulatedPrinter]:
    with EmulatedPrinter("asb", host="127.0.0.1") as p:
        yield p


def connect(p: EmulatedPrinter) -> socket.socket:
    sock = socket.create_connection(p.address, timeout=2)
    sock.settimeout(2)
    return sock


def nothing_more(sock: socket.socket) -> bool:
    sock.settimeout(0.3)
    try:
        return sock.recv(16) == b""
    except TimeoutError:
        return True


def test_the_emulator_pushes_the_first_block_then_every_change(printer: EmulatedPrinter) -> None:
    with connect(printer) as sock:
        sock.sendall(ENABLE_STATUS_BACK)
        assert recv_exactly(sock, 4) == build_status_back(PrinterState())
        printer.set_paper(PaperState.OUT)
        assert state_from_status_back(recv_exactly(sock, 4)).paper is PaperState.OUT
        printer.set_paper(PaperState.OUT)  # no change, no block
        printer.set_cover_open(True)
        assert state_from_status_back(recv_exactly(sock, 4)).cover_open
        sock.sendall(b"\x1da\x00\x10\x04\x01")  # off again, then a request to sync on
        assert is_status_byte(recv_exactly(sock, 1)[0])
        printer.set_cover_open(False)
        assert nothing_more(sock)
    assert printer.stats().status_backs == 3


@pytest.mark.parametrize(
    ("answers_status", "pushes_status"), [(False, True), (True, False)], ids=["mute", "no-asb"]
)
def test_a_printer_without_status_back_pushes_nothing(
    answers_status: bool, pushes_status: bool
) -> None:
    old = EmulatedPrinter(
        "old", host="127.0.0.1", answers_status=answers_status, pushes_status=pushes_status
    )
    with old, connect(old) as sock:
        sock.sendall(ENABLE_STATUS_BACK)
        old.set_paper(PaperState.OUT)
        assert nothing_more(sock)
        assert old.stats().status_backs == 0


def test_a_black_hole_pushes_nothing(printer: EmulatedPrinter) -> None:
    with connect(printer) as sock:
        sock.sendall(ENABLE_STATUS_BACK)
        recv_exactly(sock, 4)
        printer.set_fault(FaultMode.BLACK_HOLE)
        printer.set_paper(PaperState.OUT)
        assert nothing_more(sock)


# --------------------------------------------------------------------------- the transport


def test_a_connection_knows_a_pushed_change_without_asking(printer: EmulatedPrinter) -> None:
    async def scenario() -> None:
        conn = await PrinterConnection.open(PrinterAddress(printer.host, printer.port), 2)
        assert not conn.known_ready(), "nothing heard yet"
        await conn.status(2)  # the first request also turns ASB on
        assert conn.known_ready()
        asked = printer.stats().status_requests
        printer.set_paper(PaperState.OUT)
        await wait_for(lambda: conn.state is not None and conn.state.paper is PaperState.OUT)
        assert not conn.known_ready()
        printer.set_paper(PaperState.OK)
        await wait_for(conn.known_ready)
        assert printer.stats().status_requests == asked, "told, never asked"
        await conn.close()

    asyncio.run(scenario())


def test_a_printer_that_does_not_push_is_never_known_ready() -> None:
    async def scenario(old: EmulatedPrinter) -> None:
        conn = await PrinterConnection.open(PrinterAddress(old.host, old.port), 2)
        assert (await conn.status(2)).can_print
        assert conn.ready_within(10)
        assert not conn.known_ready(), "an answer is a moment; only pushes keep it current"
        await conn.close()

    with EmulatedPrinter("old", host="127.0.0.1", pushes_status=False) as old:
        asyncio.run(scenario(old))


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- the daemon


def printed_at_least(printer: EmulatedPrinter, count: int) -> bool:
    return len(printer.tickets()) >= count


def print_spaced(restaurant: Restaurant, printer: EmulatedPrinter, count: int) -> None:
    """Send `count` kitchen tickets, each once the one before is on paper, spaced by longer than
    a status answer stands in for the next one (printers.PRECHECK_FRESH_S)."""
    for _ in range(count):
        expected = len(printer.tickets()) + 1
        restaurant.send("kitchen")
        wait_until(partial(printed_at_least, printer, expected), what=f"ticket {expected}")
        time.sleep(0.25)


@pytest.mark.slow
def test_a_printer_that_pushes_its_status_is_asked_only_to_confirm_each_job(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen")
    with running_daemon(database_url):
        print_spaced(restaurant, kitchen, 1)  # connects, asks once, turns ASB on
        asked = kitchen.stats().status_requests
        print_spaced(restaurant, kitchen, 4)
        wait_until(lambda: all_settled(database_url))
    confirmations = len(CONFIRM_REQUESTS) * 4  # one DLE EOT 1 after each ticket
    assert kitchen.stats().status_requests - asked == confirmations


@pytest.mark.slow
def test_a_printer_that_does_not_push_is_asked_before_each_job_too(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen", pushes_status=False)
    with running_daemon(database_url):
        print_spaced(restaurant, kitchen, 1)
        asked = kitchen.stats().status_requests
        print_spaced(restaurant, kitchen, 4)
        wait_until(lambda: all_settled(database_url))
    before_and_after = (len(StatusRequest) + len(CONFIRM_REQUESTS)) * 4
    # The route sweep may wake the worker while a ticket waits, and the warm-up then asks once
    # more (one full set of requests): timing, not a missing or needless check per job.
    extra = kitchen.stats().status_requests - asked - before_and_after
    assert extra in (0, len(StatusRequest), 2 * len(StatusRequest)), extra


@contextlib.contextmanager
def primary_that_printed_once(
    database_url: str, restaurant: Restaurant
) -> Iterator[tuple[EmulatedPrinter, EmulatedPrinter]]:
    """A kitchen primary and backup under a running daemon, the primary's connection open with
    ASB on and its last word 'ready'."""
    primary = restaurant.printer("kitchen", 1, name="primary")
    backup = restaurant.printer("kitchen", 2, name="backup")
    with running_daemon(database_url):
        print_spaced(restaurant, primary, 1)
        yield primary, backup


def send_one_and_settle(database_url: str, restaurant: Restaurant) -> int:
    (ticket_id,) = restaurant.send("kitchen")
    wait_until(lambda: all_settled(database_url), what="ticket settled")
    return ticket_id


def test_paper_out_pushed_between_tickets_sends_the_next_to_the_backup_unmarked(
    database_url: str, restaurant: Restaurant
) -> None:
    with primary_that_printed_once(database_url, restaurant) as (primary, backup):
        primary.set_paper(PaperState.OUT)
        ticket_id = send_one_and_settle(database_url, restaurant)
        assert str(ticket(database_url, ticket_id)["printer_ip"]) == backup.host
        primary.set_paper(PaperState.OK)
        time.sleep(0.3)  # a ticket the primary held would print now
    (received,) = backup.tickets()
    assert ticket_id_of(received.text) == ticket_id
    assert not has_retry_banner(received.text), "the primary never got it: nothing to mark"
    assert len(primary.tickets()) == 1, "no copy waiting in the primary for its paper"


@pytest.mark.slow
def test_a_printer_that_hangs_after_saying_ready_costs_one_retry_banner_never_a_silent_copy(
    database_url: str, restaurant: Restaurant
) -> None:
    with primary_that_printed_once(database_url, restaurant) as (primary, backup):
        primary.set_fault(FaultMode.BLACK_HOLE)
        time.sleep(0.2)  # the session notices between two reads
        ticket_id = send_one_and_settle(database_url, restaurant)
        primary.set_fault(FaultMode.NONE)  # it comes back and prints what it had taken
        wait_until(lambda: len(primary.tickets()) == 2, what="the hung printer's late copy")
    (late,) = [t for t in primary.tickets() if ticket_id_of(t.text) == ticket_id]
    (rescued,) = backup.tickets()
    assert ticket_id_of(rescued.text) == ticket_id
    assert has_retry_banner(rescued.text), "two copies exist: the second says so"
    assert not has_retry_banner(late.text)
    row = ticket(database_url, ticket_id)
    assert (row["status"], row["print_attempts"]) == ("printed", 1)
