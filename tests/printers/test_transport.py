"""The printer transport over real TCP against the emulator: status, jobs and the errors."""

from __future__ import annotations

import asyncio

import pytest

from kprintd.emulator import EmulatedPrinter, Fault, FaultMode
from kprintd.printer_status import PaperState
from kprintd.transport import PrinterAddress, PrinterConnection, PrinterError


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_status_then_job_is_confirmed_and_marks_the_connection_ready() -> None:
    async def scenario(printer: EmulatedPrinter) -> None:
        conn = await PrinterConnection.open(PrinterAddress(printer.host, printer.port), 2)
        assert not conn.ready_within(10), "nothing heard yet"
        await conn.status(2)
        assert conn.ready_within(10)
        state = await conn.print_job(b"\x1b@hello\n\x1dV\x01", 2)
        assert state.can_print
        printer.set_paper(PaperState.OUT)
        state = await conn.status(2)
        assert state.paper is PaperState.OUT
        assert not conn.ready_within(10), "a printer out of paper is not ready"
        await conn.close()

    with EmulatedPrinter("t", host="127.0.0.1") as printer:
        run(scenario(printer))
        assert len(printer.tickets()) == 1


@pytest.mark.parametrize(
    ("fault", "code", "may_have_printed"),
    [
        (FaultMode.BLACK_HOLE, "no_status_reply", True),
        # Reads part of the job, then resets: the connection itself is always established.
        (Fault.drop_after_bytes(10), "connection_lost", True),
    ],
)
def test_a_job_the_printer_does_not_confirm_may_have_printed(
    fault: FaultMode | Fault, code: str, may_have_printed: bool
) -> None:
    async def scenario(printer: EmulatedPrinter) -> PrinterError:
        conn = await PrinterConnection.open(PrinterAddress(printer.host, printer.port), 2)
        try:
            await conn.print_job(b"\x1b@hello\n\x1dV\x01", 0.3)
        except PrinterError as exc:
            return exc
        finally:
            await conn.close()
        raise AssertionError("the job was confirmed")

    with EmulatedPrinter("t", host="127.0.0.1", fault=fault) as printer:
        error = run(scenario(printer))
    assert error.code == code
    assert error.may_have_printed is may_have_printed


def test_a_refused_connection_printed_nothing() -> None:
    with EmulatedPrinter("t", host="127.0.0.1", fault=FaultMode.REFUSE) as printer:
        address = PrinterAddress(printer.host, printer.port)
        with pytest.raises(PrinterError) as caught:
            run(PrinterConnection.open(address, 1))
    assert caught.value.code == "connection_refused"
    assert caught.value.may_have_printed is False
