"""Printer transport: one TCP connection to a raw-port (9100) ESC/POS printer, with timeouts.

Owns finding the printer (an IP literal as it is, a hostname through the OS resolver, off the
event loop, every time it connects), connecting, asking the printer for its real-time status
(DLE EOT 1-4), keeping the state the printer pushes by itself once Automatic Status Back is on
(GS a), hanging up on a device that pushes more than a printer would, sending ticket bytes
(confirmed by a status reply within a time that grows with the job's size, or unconfirmed to a
printer that never answers one) and telling the caller precisely what went wrong, including
whether paper may already have been printed. It knows nothing of tickets or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import structlog

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

log = structlog.get_logger("kprintd.transport")


class PrinterError(Exception):
    """A printer could not take a job. `code` is machine-readable and lands in error_code."""

    def __init__(self, code: str, message: str, *, may_have_printed: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.may_have_printed = may_have_printed


@dataclass(frozen=True)
class PrinterAddress:
    """Where a printer listens; `host` is an IPv4 or IPv6 literal or a hostname."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# One address to connect to, as getaddrinfo gives it: (family, socket address).
Endpoint = tuple[int, tuple[Any, ...]]
# Finds a hostname's endpoints, in the order to try them; raises OSError when it cannot.
Resolver = Callable[[str, int], Awaitable[list[Endpoint]]]


async def resolve_host(host: str, port: int) -> list[Endpoint]:
    """The OS resolver's answer for `host` (hosts file, DNS, mDNS: whatever nsswitch.conf says).

    loop.getaddrinfo asks it from a worker thread, so a slow DNS server never stalls the event
    loop. Nothing is kept: a printer that DHCP moved is found at its new address on the next
    connection.
    """
    if host.rstrip(".").lower().rpartition(".")[2] == "invalid":
        # RFC 6761 6.4: resolvers should refuse these at once; glibc would ask the DNS server.
        raise socket.gaierror(socket.EAI_NONAME, "a name under .invalid never resolves")
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def _literal(address: PrinterAddress) -> list[Endpoint] | None:
    """The endpoint of an IP literal; None for a name. AI_NUMERICHOST only parses, so this never
    waits, and a literal costs no trip to a resolver thread."""
    try:
        infos = socket.getaddrinfo(
            address.host,
            address.port,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
            flags=socket.AI_NUMERICHOST,
        )
    except (OSError, ValueError):  # not a literal; ValueError: not even a valid name
        return None
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


async def _resolve(address: PrinterAddress, resolve: Resolver) -> list[Endpoint]:
    try:
        endpoints = await resolve(address.host, address.port)
    except (OSError, ValueError) as exc:  # socket.gaierror; UnicodeError for a bad IDNA name
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PrinterError(
            "dns_failed", f"cannot resolve the printer name {address.host!r}: {reason}"
        ) from None
    if not endpoints:
        raise PrinterError("dns_failed", f"the printer name {address.host!r} has no address")
    return endpoints


async def _connect(address: PrinterAddress, endpoints: list[Endpoint]) -> _PrinterLink:
    """A connection to the first endpoint that takes one; raises the last one's OSError."""
    loop = asyncio.get_running_loop()
    failure: OSError | None = None
    for family, sockaddr in endpoints:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
            _, link = await loop.create_connection(lambda: _PrinterLink(address), sock=sock)
        except OSError as exc:
            sock.close()
            failure = exc
        except BaseException:
            sock.close()
            raise
        else:
            return link
    assert failure is not None, "endpoints are never empty"
    raise failure


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


# The request that confirms a job: DLE EOT 1, one byte back. Its offline bit is set whenever the
# printer cannot print (cover open, paper end stop, any error), so it proves as much as all four:
# that the printer read every byte before it and can still print. Only when it says offline are
# the other three asked, for the reason. One request means one reply: a printer whose TCP stack
# holds a small reply until the one before is acknowledged (Nagle's algorithm, on by default in
# most embedded stacks) has nothing to hold, so a job costs one round trip, not an ACK delay.
CONFIRM_REQUESTS: tuple[StatusRequest, ...] = (StatusRequest.PRINTER,)
CONFIRM_REQUEST = StatusRequest.PRINTER.command
ANSWER_SIZE = len(StatusRequest)  # one byte per DLE EOT request, all four asked at once
# Linux: acknowledge what was read at once instead of up to 40 ms later (delayed ACK). Set after
# each read that leaves an answer incomplete: the printer may be holding the rest until then.
_TCP_QUICKACK: int | None = (
    getattr(socket, "TCP_QUICKACK", None) if sys.platform == "linux" else None
)
UNASKED_MAX = 64  # bytes nobody asked for that a connection keeps, for the error message
# A printer pushes an ASB block when its state changes: a few a second at most, even with a
# flickering sensor. A device that pushes more is hung up on: one pushing 'ready' nonstop kept
# the event loop reading its blocks and delayed every other station's tickets by seconds.
STATUS_BACK_MAX = 8  # pushed blocks allowed within STATUS_BACK_WINDOW_S, the first after GS a aside
STATUS_BACK_WINDOW_S = 1.0

# A printer takes a small job into its receive buffer at once (4 kB on common models) and answers
# within the send timeout; of a bigger one it reads the rest only as fast as it prints. So a job's
# window grows by the time that rest takes at a floor rate: slow kitchen printers manage 8 kB/s,
# the floor is a quarter of that. The cap bounds how long a black-holed printer holds a ticket,
# and keeps a station's two printers tried in one attempt well inside the default 30 s lease.
JOB_BYTES_AT_ONCE = 4096
JOB_FLOOR_BYTES_PER_S = 2048.0
JOB_WINDOW_MAX_S = 10.0


def job_window(timeout: float, size: int) -> float:
    """Seconds a printer gets to take and confirm a job of `size` bytes, `timeout` being what a
    small job gets."""
    extra = max(0, size - JOB_BYTES_AT_ONCE) / JOB_FLOOR_BYTES_PER_S
    return min(timeout + extra, max(timeout, JOB_WINDOW_MAX_S))


class _PrinterLink(asyncio.Protocol):
    """Sorts the bytes a printer sends as they arrive, with no task reading: answers to DLE EOT
    go to the request waiting for them, ASB blocks update the printer's state at once.

    The work one read costs is bounded whatever the device sends: a few answer bytes, at most
    UNASKED_MAX bytes nobody asked for and STATUS_BACK_MAX pushed blocks a second; past those
    it hangs up, and every later request on the connection raises the reason.
    """

    def __init__(self, address: PrinterAddress) -> None:
        self._address = address
        self._transport: asyncio.Transport | None = None
        self._unsorted = bytearray()
        # Answer bytes, in order: four per request. Bytes that are neither an answer nor an
        # ASB block land here too, for the request to report as a bad reply.
        self._answers = bytearray()
        self._waiter: asyncio.Future[tuple[bytes, PrinterState | None]] | None = None
        self._asked: tuple[StatusRequest, ...] = tuple(StatusRequest)
        self._socket: Any = None
        # Round trips to the printer: one per request written, plus one per further read an
        # answer took to arrive in full (a printer holding part of it until our ACK).
        self.round_trips = 0
        self._answer_reads = 0
        self._closed = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self.status_back_requested = False
        self.status_back_on = False
        self._pushed_at: deque[float] = deque(maxlen=STATUS_BACK_MAX)
        self.lost = False
        # Why this side hung up, for every request made on the connection afterwards.
        self.failure: PrinterError | None = None
        # The newest state the printer gave, answered or pushed, and when; None when unknown.
        self.state: PrinterState | None = None
        self.state_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is no subclass of asyncio.Transport, but has its methods.
        self._transport = cast(asyncio.Transport, transport)
        self._socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        waiting = self._waiter is not None
        self._sort(data)
        if waiting:
            self._answer_reads += 1
            if self._answer_reads > 1:
                self.round_trips += 1  # this part of the answer waited for the part before
            if self._waiter is not None:
                self._quickack()

    def _quickack(self) -> None:
        """Acknowledge what arrived now: a printer holding the rest of its answer until then
        (Nagle) sends it at once, not when Linux's delayed ACK fires, up to 40 ms later."""
        if _TCP_QUICKACK is None or self._socket is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._socket.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    def _sort(self, data: bytes) -> None:
        buffer = bytes(self._unsorted) + data if self._unsorted else data
        position, size = 0, len(buffer)
        now = time.monotonic()
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
                    if self.status_back_on and self._flooding(now):
                        return
                    self.status_back_on = True
                    self._note(state)
            else:
                self._answers.append(buffer[position])
                position += 1
            if self._waiter is not None and len(self._answers) >= len(self._asked):
                # Answered in arrival order, so a state pushed after the answer stays the newest.
                self._answer()
            elif self._waiter is None and len(self._answers) > UNASKED_MAX:
                # Not a printer we understand, or one gone mad: hang up rather than read on.
                unasked = bytes(self._answers[:UNASKED_MAX])
                self._hang_up(
                    PrinterError(
                        "bad_status_reply",
                        f"{self._address} sent {unasked.hex(' ')} when nothing was asked",
                    )
                )
                return
        self._unsorted = bytearray(buffer[position:])

    def _flooding(self, now: float) -> bool:
        """Count a pushed block; one too many within the window hangs up, and says so once."""
        pushed_at = self._pushed_at
        if len(pushed_at) < STATUS_BACK_MAX or now - pushed_at[0] >= STATUS_BACK_WINDOW_S:
            pushed_at.append(now)
            return False
        within_ms = round((now - pushed_at[0]) * 1000)
        log.warning(
            "device pushes more status than a printer would; hung up",
            printer_address=str(self._address),
            status_backs=STATUS_BACK_MAX + 1,
            within_ms=within_ms,
            limit=f"{STATUS_BACK_MAX} per {STATUS_BACK_WINDOW_S:g} s",
        )
        self._hang_up(
            PrinterError(
                "status_flood",
                f"{self._address} pushed {STATUS_BACK_MAX + 1} status blocks within {within_ms}"
                f" ms (a printer pushes one per change, a few a second at most): hung up",
            )
        )
        return True

    def _hang_up(self, reason: PrinterError) -> None:
        self.failure = reason
        self.lost = True
        self._note(None)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.failed())
        if self._transport is not None:
            self._transport.close()

    def failed(self) -> PrinterError:
        """A fresh copy of why this side hung up (an exception raised twice grows its
        traceback)."""
        assert self.failure is not None
        return PrinterError(self.failure.code, self.failure.message)

    def _answer(self) -> None:
        size = len(self._asked)
        answer = bytes(self._answers[:size])
        del self._answers[:size]
        state = None
        if all(is_status_byte(b) for b in answer):
            state = state_from_responses(dict(zip(self._asked, answer, strict=True)))
            if size < ANSWER_SIZE and state.can_print and self.state is not None:
                # 'Online' tells no more than that: keep what the printer said of its paper
                # roll running low, which does not stop it (the health check asks all four).
                state = replace(state, paper=self.state.paper)
                if state.paper is PaperState.OUT:
                    state = replace(state, paper=PaperState.OK)
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

    def expect_answer(
        self, asked: tuple[StatusRequest, ...] = tuple(StatusRequest)
    ) -> asyncio.Future[tuple[bytes, PrinterState | None]]:
        """Get ready for the answer to the status requests `asked`, about to be written in
        that order: one byte each."""
        if self.failure is not None:
            raise self.failed()
        if self._answers:
            unasked = bytes(self._answers)
            self._answers.clear()
            self._note(None)
            raise PrinterError(
                "bad_status_reply",
                f"{self._address} sent {unasked.hex(' ')} when nothing was asked",
            )
        self._asked = asked
        self._answer_reads = 0
        self.round_trips += 1
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
    async def open(
        cls, address: PrinterAddress, timeout: float, *, resolve: Resolver = resolve_host
    ) -> PrinterConnection:
        """Connect within `timeout`, which covers resolving a hostname too.

        A name's addresses are tried in the resolver's order: a 'localhost' that lists ::1
        first still reaches a printer listening on 127.0.0.1 only. A name that does not resolve
        raises 'dns_failed', which, like a refused connection, cannot have printed anything.
        """
        endpoints = _literal(address)
        where = str(address)
        try:
            async with asyncio.timeout(timeout):
                if endpoints is None:
                    endpoints = await _resolve(address, resolve)
                    # Where the name led, for when DHCP moved the printer.
                    where += f" ({', '.join(str(sockaddr[0]) for _, sockaddr in endpoints)})"
                link = await _connect(address, endpoints)
        except TimeoutError:
            if endpoints is None:
                raise PrinterError(
                    "dns_failed",
                    f"the printer name {address.host!r} did not resolve within {timeout:g} s",
                ) from None
            raise PrinterError(
                "connect_timeout", f"no answer from {where} within {timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise PrinterError("connection_refused", f"{where} refused the connection") from None
        except OSError as exc:
            code = "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "io"
            raise PrinterError(code, f"cannot connect to {where}: {exc.strerror or exc}") from None
        return cls(address, link)

    async def _ask(
        self,
        data: bytes,
        timeout: float,
        *,
        after_send: bool,
        asked: tuple[StatusRequest, ...] = tuple(StatusRequest),
    ) -> PrinterState:
        """Write `data`, which ends with the DLE EOT requests `asked`, and read their answer,
        both within `timeout`."""
        answer_future = self._link.expect_answer(asked)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            await self._write(data, timeout, after_send=after_send)
        except PrinterError:
            answer_future.cancel()
            raise
        try:
            async with asyncio.timeout_at(deadline):
                answer, state = await answer_future
        except TimeoutError:
            message = (
                f"{self.address} did not confirm the ticket within {timeout:.3g} s "
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
        except PrinterError as exc:  # this side hung up on what the device sent meanwhile
            exc.may_have_printed = after_send
            raise
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
                f"{self.address} did not take {len(data)} bytes within {timeout:.3g} s",
                may_have_printed=True,
            ) from None
        except (ConnectionError, OSError):
            raise PrinterError(
                "connection_lost",
                f"{self.address} dropped the connection while receiving",
                may_have_printed=after_send or len(data) > 0,
            ) from None

    async def print_job(self, data: bytes, timeout: float) -> PrinterState:
        """Send `data`, then ask for status: the answer proves the printer read every byte and
        can still print.

        Real printers answer DLE EOT in order with the bytes before it, so a reply means the job
        reached the printer; a printer that swallows bytes without answering (a black hole) is an
        error here, not a silent success. `timeout` is what a small job gets; a big one gets the
        time a slow printer takes to read it (job_window), so it is not sent again meanwhile.

        One request confirms (DLE EOT 1, CONFIRM_REQUESTS): one round trip, and one reply byte,
        which no TCP stack holds back. Only an answer saying the printer cannot print costs a
        second round trip, asking all four for the reason.
        """
        window = job_window(timeout, len(data))
        state = await self._ask(
            data + CONFIRM_REQUEST, window, after_send=True, asked=CONFIRM_REQUESTS
        )
        if state.can_print:
            return state
        return await self._ask(ALL_STATUS_REQUESTS, timeout, after_send=True)

    @property
    def round_trips(self) -> int:
        """Round trips to the printer on this connection so far: one per status exchange, plus
        one per further read its answer took (a printer holding part of it until acknowledged)."""
        return self._link.round_trips

    async def send_unconfirmed(self, data: bytes, timeout: float) -> None:
        """Send `data` to a printer that never answers status requests.

        Done once the connection has taken every byte: nothing more can be known of such a
        printer, not even whether it read them. Close the connection after the job.
        """
        await self._write(data, job_window(timeout, len(data)), after_send=True)
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
