"""Printer transport: one TCP connection to a raw-port (9100) ESC/POS printer, with timeouts.

Owns connecting, asking the printer for its real-time status (DLE EOT 1-4), sending ticket bytes
(confirmed by a status reply, or unconfirmed to a printer that never answers one) and telling the
caller precisely what went wrong, including whether paper may already have been printed. It knows
nothing of tickets or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from dataclasses import dataclass

from kprintd.printer_status import (
    ALL_STATUS_REQUESTS,
    PaperState,
    PrinterState,
    StatusRequest,
    is_status_byte,
    state_from_responses,
)


class PrinterError(Exception):
    """A printer could not take a job. `code` is machine-readable and lands in error_code."""

    def __init__(self, code: str, message: str, *, may_have_printed: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.may_have_printed = may_have_printed


@dataclass(frozen=True)
class PrinterAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def describe_unprintable(state: PrinterState) -> PrinterError | None:
    """The reason a printer in `state` cannot print, or None when it can."""
    if state.cover_open:
        return PrinterError("cover_open", "the printer's cover is open")
    if state.paper is PaperState.OUT:
        return PrinterError("paper_out", "the printer is out of paper")
    if state.cutter_error:
        return PrinterError("cutter_error", "the printer's cutter is jammed")
    if state.has_error:
        return PrinterError("printer_error", "the printer reports an error")
    if not state.online:
        return PrinterError("offline", "the printer reports it is offline")
    return None


class PrinterConnection:
    """An open connection to one printer. Not safe for concurrent use: one job at a time."""

    def __init__(
        self, address: PrinterAddress, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self._reader = reader
        self._writer = writer
        self.last_used = time.monotonic()
        # When the printer last said, on this connection, that it can print.
        self.ready_at: float | None = None

    @classmethod
    async def open(cls, address: PrinterAddress, timeout: float) -> PrinterConnection:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(address.host, address.port)
        except TimeoutError:
            raise PrinterError(
                "connect_timeout", f"no answer from {address} within {timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise PrinterError("connection_refused", f"{address} refused the connection") from None
        except OSError as exc:
            code = "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "io"
            raise PrinterError(
                code, f"cannot connect to {address}: {exc.strerror or exc}"
            ) from None
        return cls(address, reader, writer)

    @property
    def is_closing(self) -> bool:
        return self._writer.is_closing() or self._reader.at_eof()

    async def _read_status(self, timeout: float, *, after_send: bool) -> PrinterState:
        try:
            async with asyncio.timeout(timeout):
                answer = await self._reader.readexactly(4)
        except TimeoutError:
            message = (
                f"{self.address} did not confirm the ticket within {timeout:g} s "
                "(it may have printed)"
                if after_send
                else f"{self.address} did not answer a status request within {timeout:g} s"
            )
            raise PrinterError("no_status_reply", message, may_have_printed=after_send) from None
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            raise PrinterError(
                "connection_lost",
                f"{self.address} closed the connection",
                may_have_printed=after_send,
            ) from None
        if not all(is_status_byte(b) for b in answer):
            raise PrinterError(
                "bad_status_reply",
                f"{self.address} answered a status request with {answer.hex(' ')}",
                may_have_printed=after_send,
            )
        return state_from_responses(dict(zip(StatusRequest, answer, strict=True)))

    async def status(self, timeout: float) -> PrinterState:
        """Ask the printer for its state (four DLE EOT requests, four bytes back)."""
        await self._write(ALL_STATUS_REQUESTS, timeout, after_send=False)
        state = await self._read_status(timeout, after_send=False)
        self._note(state)
        return state

    async def _write(self, data: bytes, timeout: float, *, after_send: bool) -> None:
        try:
            self._writer.write(data)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise PrinterError(
                "send_timeout",
                f"{self.address} did not take {len(data)} bytes within {timeout:g} s",
                may_have_printed=True,
            ) from None
        except (ConnectionError, OSError):
            raise PrinterError(
                "connection_lost",
                f"{self.address} dropped the connection while receiving",
                may_have_printed=after_send or len(data) > 0,
            ) from None

    async def print_job(self, data: bytes, timeout: float) -> PrinterState:
        """Send `data`, then ask for status: the answer proves the printer read every byte.

        Real printers answer DLE EOT in order with the bytes before it, so a reply means the job
        reached the printer; a printer that swallows bytes without answering (a black hole) is an
        error here, not a silent success.
        """
        await self._write(data + ALL_STATUS_REQUESTS, timeout, after_send=True)
        state = await self._read_status(timeout, after_send=True)
        self._note(state)
        return state

    async def send_unconfirmed(self, data: bytes, timeout: float) -> None:
        """Send `data` to a printer that never answers status requests.

        Done once the connection has taken every byte: nothing more can be known of such a
        printer, not even whether it read them. Close the connection after the job.
        """
        await self._write(data, timeout, after_send=True)
        self.last_used = time.monotonic()

    def _note(self, state: PrinterState) -> None:
        self.last_used = time.monotonic()
        self.ready_at = self.last_used if describe_unprintable(state) is None else None

    def ready_within(self, seconds: float) -> bool:
        """Did the printer say it can print, on this connection, in the last `seconds`?"""
        return self.ready_at is not None and time.monotonic() - self.ready_at < seconds

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()
