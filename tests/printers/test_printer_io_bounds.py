"""Bounds at the printer boundary (issue #14), over real TCP to the emulator on loopback.

A device that pushes more Automatic Status Back than a printer would is hung up on, reported
once and failed over, and reading it never costs more than a few blocks per read; a big job on a
slow printer gets the time to be read and prints once, while a black hole still fails within a
bounded time. Timing is asserted as what happened and in which order, and as the bounds the code
promises, never as latency.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from kprintd.emulator import EmulatedPrinter, Fault, FaultMode
from kprintd.harness import (
    Restaurant,
    all_settled,
    has_retry_banner,
    query,
    running_daemon,
    ticket,
    ticket_id_of,
    wait_until,
)
from kprintd.printer_status import PaperState, PrinterState, build_status_back
from kprintd.render import PrintLayout, render_ticket
from kprintd.transport import (
    STATUS_BACK_MAX,
    PrinterAddress,
    PrinterConnection,
    PrinterError,
    _PrinterLink,
    job_window,
)
from tests.printers.ticket_samples import NASI_GORENG, ORDER, SATE

JOB = b"\x1b@hello\n\x1dV\x01"
FLOOD_WARNING = "device pushes more status than a printer would; hung up"
SEND_TIMEOUT = 0.5  # kprintd.harness.FAST_SETTINGS
SLOW_PRINTER_BYTES_PER_S = 8192  # the slow printer of issue #14
# A 120-item ticket with modifiers and notes, as in issue #14: about 16 kB.
BIG_TICKET = render_ticket(
    replace(ORDER, lines=tuple((NASI_GORENG, SATE)[i % 2] for i in range(120))),
    PrintLayout(chars_per_line=48),
)


def station_printer(
    restaurant: Restaurant, station: str, priority: int, name: str, **kwargs: Any
) -> EmulatedPrinter:
    """Restaurant.printer on 127.0.0.1 at a port the kernel picks: test runs that share this
    machine all start at the harness's first loopback address, but never share a port."""
    printer = EmulatedPrinter(name, "127.0.0.1", 0, **kwargs)
    printer.start()
    restaurant.printers.append(printer)
    query(
        restaurant.url,
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip,"
        " printer_port, priority) VALUES (%s, %s, %s, %s, %s, %s)",
        (restaurant.brand_id, station, name, printer.host, printer.port, priority),
    )
    return printer


def address_of(printer: EmulatedPrinter) -> PrinterAddress:
    return PrinterAddress(printer.host, printer.port)


def flood_warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == FLOOD_WARNING]


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- status-back floods


def test_a_megabyte_of_pushed_status_in_one_read_is_read_only_up_to_the_flood() -> None:
    """The work one read costs is bounded: the link stops at the block one too many. Had it read
    on, the 'A's after the blocks would have made it hang up as a bad status reply instead."""
    ready = build_status_back(PrinterState())

    async def scenario() -> _PrinterLink:
        link = _PrinterLink(PrinterAddress("127.0.0.1", 9100))
        link.status_back_requested = True
        # The block answering GS a, then one more pushed block than a second allows.
        link.data_received(ready * (1 + STATUS_BACK_MAX + 1) + b"A" * 1_000_000)
        return link

    with capture_logs() as logs:
        link = asyncio.run(scenario())
    assert link.failure is not None
    assert link.failure.code == "status_flood"
    assert link.lost and link.state is None
    (warning,) = flood_warnings(logs)
    assert warning["log_level"] == "warning"
    assert warning["printer_address"] == "127.0.0.1:9100"
    assert warning["status_backs"] == STATUS_BACK_MAX + 1


@pytest.mark.parametrize(
    ("text", "fault"),
    [("asb_flood", Fault.asb_flood()), ("asb-flood:20", Fault.asb_flood(20))],
)
def test_the_flood_fault_has_a_text_form(text: str, fault: Fault) -> None:
    assert Fault.parse(text) == fault
    assert Fault.parse(str(fault)) == fault


def test_a_flood_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="blocks_per_second"):
        Fault.parse("asb_flood:0")


def test_a_printer_pushing_each_change_is_no_flood_even_several_a_second() -> None:
    async def scenario(printer: EmulatedPrinter) -> None:
        conn = await PrinterConnection.open(address_of(printer), 2)
        try:
            await conn.status(2)  # turns ASB on
            # A flickering near-end sensor: as many changes as the limit allows, at once.
            for i in range(STATUS_BACK_MAX):
                printer.set_paper(PaperState.NEAR_END if i % 2 == 0 else PaperState.OK)
            await until(lambda: printer.stats().status_backs == 1 + STATUS_BACK_MAX, "pushed")
            assert (await conn.status(2)).can_print, "still connected, still asked"
            assert (await conn.print_job(JOB, 2)).can_print
        finally:
            await conn.close()

    with capture_logs() as logs, EmulatedPrinter("flicker", "127.0.0.1") as printer:
        asyncio.run(scenario(printer))
        assert len(printer.tickets()) == 1
    assert flood_warnings(logs) == []


def test_a_flooding_device_is_hung_up_on_and_reported_once_while_another_printer_prints() -> None:
    async def scenario(flooder: EmulatedPrinter, other: EmulatedPrinter) -> PrinterError:
        flooding = await PrinterConnection.open(address_of(flooder), 2)
        printing = await PrinterConnection.open(address_of(other), 2)
        try:
            await flooding.status(2)  # turns ASB on: the flood begins
            # The other printer's jobs go on, on the same loop, until the flooder is hung up.
            deadline = time.monotonic() + 5
            while flooder.stats().open_connections:
                assert time.monotonic() < deadline, "the flooder was never hung up on"
                await printing.print_job(JOB, 2)
            await printing.print_job(JOB, 2)
            with pytest.raises(PrinterError) as caught:
                await flooding.status(2)
            return caught.value
        finally:
            await flooding.close()
            await printing.close()

    with (
        capture_logs() as logs,
        EmulatedPrinter("flooder", "127.0.0.1", fault=Fault.asb_flood()) as flooder,
        EmulatedPrinter("other", "127.0.0.1") as other,
    ):
        error = asyncio.run(scenario(flooder, other))
        assert flooder.stats().connections == 1
        assert flooder.stats().status_backs > STATUS_BACK_MAX + 1, "it did flood"
        assert len(other.tickets()) >= 1
    assert error.code == "status_flood"
    assert error.may_have_printed is False, "asked on a connection already hung up: nothing sent"
    assert f"pushed {STATUS_BACK_MAX + 1} status blocks" in error.message
    (warning,) = flood_warnings(logs)
    assert warning["printer_address"] == str(address_of(flooder))


def test_a_station_whose_device_floods_fails_over_once_and_other_stations_print(
    database_url: str, restaurant: Restaurant
) -> None:
    flooder = station_printer(restaurant, "bar", 1, "flooder", fault=Fault.asb_flood())
    backup = station_printer(restaurant, "bar", 2, "bar-backup")
    kitchen = station_printer(restaurant, "kitchen", 1, "kitchen")
    with capture_logs() as logs, running_daemon(database_url):
        restaurant.send("bar", "kitchen")
        wait_until(lambda: all_settled(database_url), what="first tickets settled")
        wait_until(lambda: flooder.stats().open_connections == 0, what="the flooder hung up")
        # The flooder's connection is dead: the next bar ticket finds out and fails over.
        (bar_ticket,) = restaurant.send("bar")
        wait_until(lambda: all_settled(database_url), what="second bar ticket settled")
    assert len(kitchen.tickets()) == 1
    row = ticket(database_url, bar_ticket)
    assert (row["status"], row["print_attempts"]) == ("printed", 1)
    assert ticket_id_of(backup.tickets()[-1].text) == bar_ticket
    assert not has_retry_banner(backup.tickets()[-1].text), "nothing was sent to the flooder"
    (stats,) = query(
        database_url,
        "SELECT failed_prints, last_error_message FROM kitchen_stationprinter"
        " WHERE printer_name = 'flooder'",
    )
    assert stats["failed_prints"] == 1
    assert "status blocks" in stats["last_error_message"]
    assert flooder.stats().connections == 1, "a failed printer is not reconnected to at once"
    (warning,) = flood_warnings(logs)
    assert warning["printer_address"] == f"{flooder.host}:{flooder.port}"


# --------------------------------------------------------------------------- big jobs


@pytest.mark.slow
def test_a_big_job_prints_once_on_a_slow_printer_and_fails_in_bounded_time_on_a_black_hole() -> (
    None
):
    window = job_window(SEND_TIMEOUT, len(BIG_TICKET))

    async def timed(printer: EmulatedPrinter) -> tuple[PrinterError | None, float]:
        loop = asyncio.get_running_loop()
        conn = await PrinterConnection.open(address_of(printer), 2)
        started = loop.time()
        try:
            await conn.print_job(BIG_TICKET, SEND_TIMEOUT)
        except PrinterError as exc:
            return exc, loop.time() - started
        finally:
            await conn.close()
        return None, loop.time() - started

    async def scenario(
        slow: EmulatedPrinter, hole: EmulatedPrinter
    ) -> list[tuple[PrinterError | None, float]]:
        return await asyncio.gather(timed(slow), timed(hole))

    slow_read = Fault.slow_read(SLOW_PRINTER_BYTES_PER_S)
    with (
        EmulatedPrinter("slow", "127.0.0.1", fault=slow_read) as slow,
        EmulatedPrinter("hole", "127.0.0.1", fault=FaultMode.BLACK_HOLE) as hole,
    ):
        (slow_error, slow_took), (hole_error, hole_took) = asyncio.run(scenario(slow, hole))
        (printed,) = slow.tickets()
        assert slow.stats().connections == 1
    assert 15_000 < len(BIG_TICKET) < 20_000
    assert slow_error is None
    assert printed.raw == BIG_TICKET
    assert slow_took > SEND_TIMEOUT, "reading it took longer than a small job's timeout"
    assert hole_error is not None and hole_error.code == "no_status_reply"
    assert hole_error.may_have_printed is True
    assert window - 0.05 <= hole_took < window + 1.0, "given the window, and no longer"


def send_big_order(restaurant: Restaurant, items: int = 120) -> int:
    """A bill of `items` kitchen items with modifiers and notes, sent as a POS would."""
    product = restaurant.product("kitchen")
    with psycopg.connect(restaurant.url) as conn:
        (bill_id,) = conn.execute(
            "INSERT INTO pos_bill (brand_id, bill_number, table_number)"
            " VALUES (%s, %s, '9') RETURNING id",
            (restaurant.brand_id, f"BIG-{uuid.uuid4().hex[:6]}"),
        ).fetchall()[0]
        conn.execute(
            "INSERT INTO pos_billitem (bill_id, product_id, quantity, notes, modifiers,"
            " printer_target) SELECT %s, %s, 1 + i %% 3, %s, %s::jsonb, 'kitchen'"
            " FROM generate_series(1, %s) AS i",
            (bill_id, product, NASI_GORENG.notes, '["Extra pedas", "Tanpa telur"]', items),
        )
        ((ticket_id,),) = conn.execute(
            "SELECT id FROM kitchen_create_tickets(%s)", (bill_id,)
        ).fetchall()
    return int(ticket_id)


@pytest.mark.slow
def test_a_120_item_ticket_on_a_slow_printer_prints_once(
    database_url: str, restaurant: Restaurant
) -> None:
    slow = station_printer(
        restaurant, "kitchen", 1, "slow", fault=Fault.slow_read(SLOW_PRINTER_BYTES_PER_S)
    )
    ticket_id = send_big_order(restaurant)
    with running_daemon(database_url):
        wait_until(lambda: all_settled(database_url), what="the big ticket settled")
    row = ticket(database_url, ticket_id)
    assert (row["status"], row["print_attempts"]) == ("printed", 1)
    (printed,) = slow.tickets()
    assert ticket_id_of(printed.text) == ticket_id
    assert not has_retry_banner(printed.text)
    assert len(printed.raw) > SEND_TIMEOUT * SLOW_PRINTER_BYTES_PER_S, (
        "too big for a small job's timeout at this printer's speed"
    )
