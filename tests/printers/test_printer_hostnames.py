"""Printers named by hostname (issue #13): the transport resolves the name off the event loop,
within the connect timeout, anew on every connection, and a name that does not resolve is a
printer error that cannot have printed anything. Real TCP to the emulator on loopback; names
that need no DNS server ('localhost' from the hosts file, '.invalid' refused per RFC 6761, or a
resolver of the test's own passed through the transport's seam)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from kprintd.emulator import EmulatedPrinter
from kprintd.transport import (
    Endpoint,
    PrinterAddress,
    PrinterConnection,
    PrinterError,
    Resolver,
)

JOB = b"\x1b@hello\n\x1dV\x01"
CONNECT_TIMEOUT = 0.5
NOBODY = "127.0.53.2"  # nothing listens there, at the printer's port


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_printer_named_localhost_is_reached_and_prints(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def scenario(printer: EmulatedPrinter) -> None:
        conn = await PrinterConnection.open(PrinterAddress("localhost", printer.port), 2)
        try:
            assert (await conn.status(2)).can_print
            assert (await conn.print_job(JOB, 2)).can_print
        finally:
            await conn.close()

    # The emulator takes the name too, and binds where it leads: 127.0.0.1.
    with EmulatedPrinter("by-name", "localhost") as printer:
        run(scenario(printer))
        (ticket,) = printer.wait_for_tickets(1, timeout=2)
    assert printer.host == "127.0.0.1"
    assert ticket.raw == JOB


def test_a_name_that_never_resolves_fails_fast_and_cannot_have_printed() -> None:
    timeout = 5.0

    async def scenario() -> tuple[PrinterError, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await PrinterConnection.open(PrinterAddress("kitchen-printer.invalid", 9100), timeout)
        except PrinterError as exc:
            return exc, loop.time() - started
        raise AssertionError("a name under .invalid resolved")

    error, took = asyncio.run(scenario())
    assert error.code == "dns_failed"
    assert "'kitchen-printer.invalid'" in error.message
    assert error.may_have_printed is False
    assert took < timeout / 2, "refused at once, not after waiting out the connect timeout"


def test_a_hung_resolution_holds_up_no_other_printer_and_ends_within_the_connect_timeout() -> None:
    async def never_answers(host: str, port: int) -> list[Endpoint]:
        await asyncio.sleep(3600)  # a DNS server that does not answer
        raise AssertionError("unreachable")

    async def scenario(printer: EmulatedPrinter) -> tuple[list[str], PrinterError, float]:
        loop = asyncio.get_running_loop()
        happened: list[str] = []

        async def station_named_by_a_dead_dns() -> tuple[PrinterError, float]:
            started = loop.time()
            try:
                await PrinterConnection.open(
                    PrinterAddress("kitchen.example", 9100), CONNECT_TIMEOUT, resolve=never_answers
                )
            except PrinterError as exc:
                happened.append("resolution given up")
                return exc, loop.time() - started
            raise AssertionError("a resolution that never answers gave an address")

        async def another_station() -> None:
            conn = await PrinterConnection.open(PrinterAddress("localhost", printer.port), 2)
            try:
                await conn.print_job(JOB, 2)
            finally:
                await conn.close()
            happened.append("other station printed")

        (error, took), _ = await asyncio.gather(station_named_by_a_dead_dns(), another_station())
        return happened, error, took

    with EmulatedPrinter("other", "127.0.0.1") as printer:
        happened, error, took = asyncio.run(scenario(printer))
        assert len(printer.tickets()) == 1
    assert happened == ["other station printed", "resolution given up"]
    assert error.code == "dns_failed"
    assert "'kitchen.example'" in error.message and "did not resolve" in error.message
    assert error.may_have_printed is False
    assert CONNECT_TIMEOUT <= took < CONNECT_TIMEOUT + 1.0


@pytest.fixture
def printer() -> Iterator[EmulatedPrinter]:
    """A printer on 127.0.0.1 at a port the kernel picked (other test runs may share the machine's
    loopback addresses, never that port): names below lead to this port on several addresses."""
    with EmulatedPrinter("lan", "127.0.0.1") as emulated:
        yield emulated


async def print_by_name(name: str, resolve: Resolver) -> None:
    conn = await PrinterConnection.open(
        PrinterAddress(name, 9100), CONNECT_TIMEOUT, resolve=resolve
    )
    try:
        await conn.print_job(JOB, 2)
    finally:
        await conn.close()


def test_each_connection_resolves_the_name_again_so_a_moved_printer_is_found(
    printer: EmulatedPrinter,
) -> None:
    """DHCP gave the kitchen printer another address between two connections."""
    leases = {"kitchen.lan": printer.host}

    async def dhcp_dns(host: str, port: int) -> list[Endpoint]:
        return [(socket.AF_INET, (leases[host], printer.port))]

    with EmulatedPrinter("moved", "127.0.53.1", printer.port) as moved:
        asyncio.run(print_by_name("kitchen.lan", dhcp_dns))
        leases["kitchen.lan"] = moved.host
        asyncio.run(print_by_name("kitchen.lan", dhcp_dns))
        assert [len(printer.tickets()), len(moved.tickets())] == [1, 1]


def test_every_address_of_a_name_is_tried_in_order(printer: EmulatedPrinter) -> None:
    """Like a 'localhost' listing ::1 before 127.0.0.1 for a printer that listens on IPv4 only:
    the first address refuses, the next one prints."""

    async def two_addresses(host: str, port: int) -> list[Endpoint]:
        return [
            (socket.AF_INET, (NOBODY, printer.port)),
            (socket.AF_INET, (printer.host, printer.port)),
        ]

    asyncio.run(print_by_name("kitchen.lan", two_addresses))
    assert len(printer.tickets()) == 1


def test_a_refusal_names_the_address_the_name_led_to(printer: EmulatedPrinter) -> None:
    async def dns(host: str, port: int) -> list[Endpoint]:
        return [(socket.AF_INET, (NOBODY, printer.port))]

    with pytest.raises(PrinterError) as caught:
        asyncio.run(print_by_name("bar.lan", dns))
    assert caught.value.code == "connection_refused"
    assert caught.value.message == f"bar.lan:9100 ({NOBODY}) refused the connection"
    assert caught.value.may_have_printed is False
