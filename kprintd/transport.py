"""Printer transport: one TCP connection to a raw-port (9100) ESC/POS printer, with timeouts.

Owns connecting, asking the printer for its real-time status (DLE EOT 1-4), keeping the state
the printer pushes by itself once Automatic Status Back is on (GS a), sending ticket bytes
(confirmed by a status reply, or unconfirmed to a printer that never answers one) and telling
the caller precisely what went wrong, including whether paper may already have been printed. It
knows nothing of tickets or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from dataclasses import dataclass
from typing import cast

from kprintd.printer_status import (
    ALL_STATUS_REQUESTS,
    ENABLE_STATUS_BACK,
    STATUS_BACK_SIZE,
    PaperState,
    PrinterState,
    StatusRequest,
    is_status_back_start,
    is_status_byte,
    state_from_responses,
    state_from_status_back,
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


ANSWER_SIZE = len(StatusRequest)  # one byte per DLE EOT request, all four asked at once
UNASKED_MAX = 64  # bytes nobody asked for that a connection keeps, for the error message


class _PrinterLink(asyncio.Protocol):
    """Sorts the bytes a printer sends as they arrive, with no task reading: answers to DLE EOT
    go to the request waiting for them, ASB blocks update the printer's state at once."""

    def __init__(self, address: PrinterAddress) -> None:
        self._address = address
        self._transport: asyncio.Transport | None = None
        self._unsorted = bytearray()
        # Answer bytes, in order: four per request. Bytes that are neither an answer nor an
        # ASB block land here too, for the request to report as a bad reply.
        self._answers = bytearray()
        self._waiter: asyncio.Future[tuple[bytes, PrinterState | None]] | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self.status_back_requested = False
        self.status_back_on = False
        self.lost = False
        # The newest state the printer gave, answered or pushed, and when; None when unknown.
        self.state: PrinterState | None = None
        self.state_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is no subclass of asyncio.Transport, but has its methods.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = bytes(self._unsorted) + data if self._unsorted else data
        position, size = 0, len(buffer)
        while position < size:
            if self.status_back_requested and is_status_back_start(buffer[position]):
                if size - position < STATUS_BACK_SIZE:
                    break  # the rest of the block is on its way
                block = buffer[position : position + STATUS_BACK_SIZE]
                position += STATUS_BACK_SIZE
                try:
                    state = state_from_status_back(block)
                except ValueError:
                    self._answers += block
                else:
                    self.status_back_on = True
                    self._note(state)
            else:
                self._answers.append(buffer[position])
                position += 1
            if self._waiter is not None and len(self._answers) >= ANSWER_SIZE:
                # Answered in arrival order, so a state pushed after the answer stays the newest.
                self._answer()
            elif self._waiter is None and len(self._answers) > UNASKED_MAX:
                # Not a printer we understand, or one gone mad: hang up rather than read on.
                # The next request on this connection reports what it sent.
                del self._answers[UNASKED_MAX:]
                self._hang_up()
                return
        self._unsorted = bytearray(buffer[position:])

    def _hang_up(self) -> None:
        self.lost = True
        self._note(None)
        if self._transport is not None:
            self._transport.close()

    def _answer(self) -> None:
        answer = bytes(self._answers[:ANSWER_SIZE])
        del self._answers[:ANSWER_SIZE]
        state = None
        if all(is_status_byte(b) for b in answer):
            state = state_from_responses(dict(zip(StatusRequest, answer, strict=True)))
        self._note(state)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((answer, state))

    def eof_received(self) -> bool:
        return False  # a printer that hangs up is gone: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self._closed.done():
            self._closed.set_result(None)
        self._note(None)
        self._writable.set()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError())

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _note(self, state: PrinterState | None) -> None:
        self.state = state
        self.state_at = time.monotonic()

    def expect_answer(self) -> asyncio.Future[tuple[bytes, PrinterState | None]]:
        """Get ready for the answer to a status request about to be written."""
        if self._answers:
            unasked = bytes(self._answers)
            self._answers.clear()
            self._note(None)
            raise PrinterError(
                "bad_status_reply",
                f"{self._address} sent {unasked.hex(' ')} when nothing was asked",
            )
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    async def write(self, data: bytes) -> None:
        if self.lost or self._transport is None or self._transport.is_closing():
            raise ConnectionResetError()
        self._transport.write(data)
        await self._writable.wait()
        if self.lost:
            raise ConnectionResetError()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._closed)


class PrinterConnection:
    """An open connection to one printer. Not safe for concurrent use: one job at a time."""

    def __init__(self, address: PrinterAddress, link: _PrinterLink) -> None:
        self.address = address
        self._link = link
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, address: PrinterAddress, timeout: float) -> PrinterConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, link = await loop.create_connection(
                    lambda: _PrinterLink(address), address.host, address.port
                )
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
        return cls(address, link)

    async def _ask(self, data: bytes, timeout: float, *, after_send: bool) -> PrinterState:
        """Write `data`, which ends with the four DLE EOT requests, and read their answer."""
        answer_future = self._link.expect_answer()
        try:
            await self._write(data, timeout, after_send=after_send)
        except PrinterError:
            answer_future.cancel()
            raise
        try:
            async with asyncio.timeout(timeout):
                answer, state = await answer_future
        except TimeoutError:
            message = (
                f"{self.address} did not confirm the ticket within {timeout:g} s "
                "(it may have printed)"
                if after_send
                else f"{self.address} did not answer a status request within {timeout:g} s"
            )
            raise PrinterError("no_status_reply", message, may_have_printed=after_send) from None
        except ConnectionError:
            raise PrinterError(
                "connection_lost",
                f"{self.address} closed the connection",
                may_have_printed=after_send,
            ) from None
        if state is None:
            raise PrinterError(
                "bad_status_reply",
                f"{self.address} answered a status request with {answer.hex(' ')}",
                may_have_printed=after_send,
            )
        self.last_used = time.monotonic()
        return state

    async def status(self, timeout: float) -> PrinterState:
        """Ask the printer for its state (four DLE EOT requests, four bytes back).

        The first request on a connection also turns on Automatic Status Back: from then on a
        printer that supports it pushes every change (paper out, cover open, offline) by itself.
        """
        request = ALL_STATUS_REQUESTS
        if not self._link.status_back_requested:
            self._link.status_back_requested = True
            request = ENABLE_STATUS_BACK + request
        return await self._ask(request, timeout, after_send=False)

    async def _write(self, data: bytes, timeout: float, *, after_send: bool) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._link.write(data)
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
        return await self._ask(data + ALL_STATUS_REQUESTS, timeout, after_send=True)

    async def send_unconfirmed(self, data: bytes, timeout: float) -> None:
        """Send `data` to a printer that never answers status requests.

        Done once the connection has taken every byte: nothing more can be known of such a
        printer, not even whether it read them. Close the connection after the job.
        """
        await self._write(data, timeout, after_send=True)
        self.last_used = time.monotonic()

    @property
    def state(self) -> PrinterState | None:
        """The newest state the printer gave on this connection, answered or pushed."""
        return self._link.state

    def ready_within(self, seconds: float) -> bool:
        """Did the printer say it can print, on this connection, in the last `seconds`?"""
        link = self._link
        return (
            link.state is not None
            and describe_unprintable(link.state) is None
            and time.monotonic() - link.state_at < seconds
        )

    def known_ready(self) -> bool:
        """Does the printer push its status changes (ASB), and did the last one say it can
        print? Then its state is current without asking: no change means no news."""
        link = self._link
        return (
            link.status_back_on
            and not link.lost
            and link.state is not None
            and describe_unprintable(link.state) is None
        )

    async def close(self) -> None:
        await self._link.close()
