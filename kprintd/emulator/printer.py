"""Emulated raw-port (9100) ESC/POS network printers on loopback, for development and tests.

This module owns the emulator: :class:`EmulatedPrinter` (a TCP server that reads
ESC/POS, answers DLE EOT status requests from a simulated :class:`PrinterState`,
pushes every change of that state to connections that enabled Automatic Status
Back with GS a, splits jobs at each cut and keeps them as :class:`ReceivedTicket`), fault
injection (:class:`Fault`), a line-based control port, and the
``kprintd emulator`` command line (:func:`main`). It only ever binds to
127.0.0.0/8. Decoding and paper rendering live in :mod:`kprintd.emulator.escpos_decode`,
status bytes in :mod:`kprintd.printer_status`.

Each connection has its own decoder and paper state, so concurrent senders
never interleave on one ticket. While the simulated printer cannot print
(offline, cover open, paper out, cutter error) it keeps reading and answering
status requests but holds the data, like a real printer's receive buffer, and
prints it once it can again (or drops it, with ``keep_data_while_unready=False``).
"""

from __future__ import annotations

import argparse
import array
import contextlib
import dataclasses
import fcntl
import functools
import ipaddress
import logging
import queue
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import FrameType, TracebackType

from PIL import Image

from kprintd.emulator.escpos_decode import (
    Command,
    DecodedJob,
    Event,
    JobAssembler,
    StreamDecoder,
    render_png,
    render_text,
)
from kprintd.printer_status import (
    STATUS_BACK_ITEMS,
    PaperState,
    PrinterState,
    StatusRequest,
    build_status_back,
    build_status_response,
)

log = logging.getLogger(__name__)

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
DEFAULT_CONTROL = "127.0.0.1:9190"
_POLL = 0.05  # seconds: how quickly threads notice stop, fault and state changes
_RECV_SIZE = 65536


def check_loopback(host: str) -> str:
    """Return ``host`` as a dotted IPv4 loopback address, or raise ``ValueError``."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IPv4 address in 127.0.0.0/8") from None
    if address not in LOOPBACK:
        raise ValueError(f"{host} is not loopback: the emulator only binds to 127.0.0.0/8")
    return str(address)


# --------------------------------------------------------------------------- faults


class FaultMode(Enum):
    NONE = "none"
    REFUSE = "refuse"  # nothing listens: connect() fails with ECONNREFUSED
    RESET = "reset"  # accepts, then resets the connection at once
    BLACK_HOLE = "black_hole"  # accepts, never reads and never answers
    DROP_AFTER = "drop_after"  # reads `drop_after` bytes of a connection, then resets it
    SLOW_READ = "slow_read"  # reads at most `bytes_per_second`
    # Once the host turned ASB on, pushes its status block nonstop, `blocks_per_second`: a device
    # gone mad, which kprintd must hang up on (issue #14), not a printer.
    ASB_FLOOD = "asb_flood"


ASB_FLOOD_BLOCKS_PER_S = 5000.0  # asb_flood without a rate: a runaway device, not a sensor


@dataclass(frozen=True)
class Fault:
    """A network misbehaviour. Text form: ``none``, ``refuse``, ``reset``, ``black_hole``,
    ``drop_after:N`` (bytes), ``slow_read:N`` (bytes per second), ``asb_flood[:N]`` (status
    blocks per second)."""

    mode: FaultMode = FaultMode.NONE
    drop_after: int = 0
    bytes_per_second: float = 0.0
    blocks_per_second: float = ASB_FLOOD_BLOCKS_PER_S

    def __post_init__(self) -> None:
        if self.mode is FaultMode.DROP_AFTER and self.drop_after < 0:
            raise ValueError("drop_after must be >= 0")
        if self.mode is FaultMode.SLOW_READ and self.bytes_per_second <= 0:
            raise ValueError("slow_read needs bytes_per_second > 0")
        if self.mode is FaultMode.ASB_FLOOD and self.blocks_per_second <= 0:
            raise ValueError("asb_flood needs blocks_per_second > 0")

    @classmethod
    def drop_after_bytes(cls, count: int) -> Fault:
        return cls(FaultMode.DROP_AFTER, drop_after=count)

    @classmethod
    def slow_read(cls, bytes_per_second: float) -> Fault:
        return cls(FaultMode.SLOW_READ, bytes_per_second=bytes_per_second)

    @classmethod
    def asb_flood(cls, blocks_per_second: float = ASB_FLOOD_BLOCKS_PER_S) -> Fault:
        return cls(FaultMode.ASB_FLOOD, blocks_per_second=blocks_per_second)

    @classmethod
    def parse(cls, text: str) -> Fault:
        name, _, arg = text.strip().lower().partition(":")
        try:
            mode = FaultMode(name.replace("-", "_"))
        except ValueError:
            known = ", ".join(m.value for m in FaultMode)
            raise ValueError(f"unknown fault {name!r} (known: {known})") from None
        if mode is FaultMode.DROP_AFTER:
            return cls.drop_after_bytes(int(arg or "0"))
        if mode is FaultMode.SLOW_READ:
            if not arg:
                raise ValueError("slow_read needs a rate: slow_read:BYTES_PER_SECOND")
            return cls.slow_read(float(arg))
        if mode is FaultMode.ASB_FLOOD:
            return cls.asb_flood(float(arg)) if arg else cls.asb_flood()
        if arg:
            raise ValueError(f"fault {name!r} takes no argument")
        return cls(mode)

    def __str__(self) -> str:
        if self.mode is FaultMode.DROP_AFTER:
            return f"drop_after:{self.drop_after}"
        if self.mode is FaultMode.SLOW_READ:
            return f"slow_read:{self.bytes_per_second:g}"
        if self.mode is FaultMode.ASB_FLOOD:
            return f"asb_flood:{self.blocks_per_second:g}"
        return str(self.mode.value)


NO_FAULT = Fault()


# --------------------------------------------------------------------------- tickets


@dataclass(frozen=True)
class ReceivedTicket:
    """One job, from the first byte after the previous cut up to and including its cut."""

    printer: str
    number: int  # 1-based, per printer
    connection: int  # 1-based connection counter of the printer
    job: DecodedJob
    received_at: float  # time.monotonic() when the cut was executed
    received_at_wall: float  # time.time() at the same moment
    chars_per_line: int

    @functools.cached_property
    def text(self) -> str:
        """Framed text per the convention in escpos_decode; drawn when first asked for.

        Drawing costs more CPU than the daemon spends printing the ticket, and a benchmark
        burst never looks at it.
        """
        return render_text(self.job, self.chars_per_line)

    @property
    def raw(self) -> bytes:
        return self.job.raw

    @property
    def cut(self) -> str | None:
        return self.job.cut

    def png(self) -> Image.Image:
        return render_png(self.job, self.chars_per_line)


@dataclass(frozen=True)
class PrinterStats:
    connections: int
    bytes_received: int
    status_requests: int
    bytes_discarded: int
    status_backs: int  # ASB blocks sent: one when enabled, then one per change
    open_connections: int  # connections open now (a host that hung up is no longer counted)
    # nagle: replies the kernel still held unsent right after their send(), waiting for the
    # host to acknowledge an earlier one (Linux: SIOCOUTQNSD > 0). Always 0 without nagle.
    replies_held: int = 0


TicketListener = Callable[[ReceivedTicket], None]


# --------------------------------------------------------------------------- the printer


class EmulatedPrinter:
    """An ESC/POS network printer on a loopback address; a context manager.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). Fault and
    state setters take effect immediately, also for connections already open.
    """

    def __init__(
        self,
        name: str = "printer",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chars_per_line: int = 48,
        fault: Fault | FaultMode = NO_FAULT,
        state: PrinterState | None = None,
        out_dir: Path | None = None,
        png: bool = False,
        keep_data_while_unready: bool = True,
        hold_limit: int = 1 << 20,
        receive_buffer: int | None = None,
        answers_status: bool = True,
        pushes_status: bool = True,
        nagle: bool = False,
        rtt_ms: float = 0.0,
    ) -> None:
        self.name = name
        self.host = check_loopback(host)
        self.port = port
        self.chars_per_line = chars_per_line
        self.out_dir = out_dir
        self.png = png
        self.keep_data_while_unready = keep_data_while_unready
        self.hold_limit = hold_limit
        self.receive_buffer = receive_buffer
        # False: like many cheap printers and raw-port print servers, never answer DLE EOT.
        self.answers_status = answers_status
        # False: like older printers, ignore GS a and never push status changes (ASB).
        self.pushes_status = pushes_status
        # True: an ordinary embedded TCP stack. No TCP_NODELAY, and each reply its own send(), so
        # the kernel holds a small reply while an earlier one is unacknowledged (Nagle's
        # algorithm) and a host that delays its ACKs waits for the rest. False: TCP_NODELAY, and
        # the replies to one read go back at once, in one segment.
        self.nagle = nagle
        if rtt_ms < 0:
            raise ValueError("rtt_ms must be >= 0")
        # A printer at a distance (Wi-Fi): each reply leaves this long after its request arrived.
        self.rtt_ms = rtt_ms
        self._fault = fault if isinstance(fault, Fault) else Fault(fault)
        self._state = state or PrinterState()
        self._lock = threading.Lock()
        self._tickets_changed = threading.Condition(self._lock)
        self._tickets: list[ReceivedTicket] = []
        self._fragments: list[DecodedJob] = []
        self._listeners: list[TicketListener] = []
        self._subscribers: list[queue.Queue[ReceivedTicket]] = []
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._sessions: set[_Session] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._started = False
        self._ticket_count = 0
        self._connection_count = 0
        self._bytes_received = 0
        self._status_requests = 0
        self._bytes_discarded = 0
        self._status_backs = 0
        self._replies_held = 0

    # -- lifecycle

    def __enter__(self) -> EmulatedPrinter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> None:
        if self._started:
            raise RuntimeError(f"printer {self.name} already started")
        self._stopping.clear()
        listener = self._bind()
        self._started = True
        with self._lock:
            if self._fault.mode is FaultMode.REFUSE:
                _close_listener(listener)
            else:
                self._listener = listener
        self._spawn(self._accept_loop, f"emulator-{self.name}-accept")

    def stop(self) -> None:
        """Close the listener and every connection, and wait for the threads to end."""
        self._stopping.set()
        with self._lock:
            listener, self._listener = self._listener, None
            connections = list(self._connections)
        if listener is not None:
            _close_listener(listener)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        current = threading.current_thread()
        for thread in list(self._threads):
            if thread is not current:
                thread.join(timeout=5)
        self._started = False

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.receive_buffer:
                # Set before listen() so accepted sockets inherit a small window.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        return sock

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    # -- simulated state and faults

    @property
    def fault(self) -> Fault:
        return self._fault

    def set_fault(self, fault: Fault | FaultMode | str) -> None:
        if isinstance(fault, str):
            fault = Fault.parse(fault)
        elif isinstance(fault, FaultMode):
            fault = Fault(fault)
        close: socket.socket | None = None
        dropped: list[socket.socket] = []
        with self._lock:
            self._fault = fault
            if fault.mode is FaultMode.REFUSE:
                close, self._listener = self._listener, None
                # A printer that is switched off takes its open connections with it.
                dropped = list(self._connections)
            listening = self._listener is not None
        if close is not None:
            _close_listener(close)
        for conn in dropped:
            _abort(conn)
        if not listening and fault.mode is not FaultMode.REFUSE and self._started:
            listener = self._bind()
            with self._lock:
                self._listener = listener

    @property
    def state(self) -> PrinterState:
        return self._state

    def set_state(self, state: PrinterState) -> None:
        self._change_state(lambda _: state)

    def set_paper(self, paper: PaperState | str) -> None:
        paper = PaperState(paper)
        self._change_state(lambda s: dataclasses.replace(s, paper=paper))

    def set_cover_open(self, cover_open: bool) -> None:
        self._change_state(lambda s: dataclasses.replace(s, cover_open=cover_open))

    def set_online(self, online: bool) -> None:
        self._change_state(lambda s: dataclasses.replace(s, online=online))

    def set_cutter_error(self, cutter_error: bool) -> None:
        self._change_state(lambda s: dataclasses.replace(s, cutter_error=cutter_error))

    def _change_state(self, change: Callable[[PrinterState], PrinterState]) -> None:
        with self._lock:
            self._state = change(self._state)
            sessions = list(self._sessions)
        # Pushed before returning, as a real printer would the moment its sensor changes.
        for session in sessions:
            session.push_status()

    # -- results

    def tickets(self) -> list[ReceivedTicket]:
        with self._lock:
            return list(self._tickets)

    def fragments(self) -> list[DecodedJob]:
        """Data that was printed but never cut because its connection ended first."""
        with self._lock:
            return list(self._fragments)

    def stats(self) -> PrinterStats:
        with self._lock:
            return PrinterStats(
                connections=self._connection_count,
                bytes_received=self._bytes_received,
                status_requests=self._status_requests,
                bytes_discarded=self._bytes_discarded,
                status_backs=self._status_backs,
                open_connections=len(self._connections),
                replies_held=self._replies_held,
            )

    def clear(self) -> None:
        """Forget received tickets and fragments (counters and numbering go on)."""
        with self._lock:
            self._tickets.clear()
            self._fragments.clear()

    def wait_for_tickets(self, count: int, timeout: float) -> list[ReceivedTicket]:
        """Block until at least ``count`` tickets arrived; raise ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._tickets_changed:
            while len(self._tickets) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"printer {self.name}: {len(self._tickets)} of {count} tickets "
                        f"after {timeout:g} s"
                    )
                self._tickets_changed.wait(remaining)
            return list(self._tickets)

    def add_listener(self, listener: TicketListener) -> None:
        """Call ``listener(ticket)`` from the emulator's thread as each ticket is cut."""
        with self._lock:
            self._listeners.append(listener)

    def subscribe(self) -> queue.Queue[ReceivedTicket]:
        """A queue that receives every ticket cut from now on."""
        q: queue.Queue[ReceivedTicket] = queue.Queue()
        with self._lock:
            self._subscribers.append(q)
        return q

    # -- network

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stopping.wait(_POLL)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], _POLL)
                if not ready:
                    continue
                conn, _peer = listener.accept()
            except (OSError, ValueError):
                # set_fault(REFUSE) or stop() closed the listener under us.
                continue
            if self._fault.mode is FaultMode.RESET:
                _reset(conn)
                continue
            with self._lock:
                self._connection_count += 1
                number = self._connection_count
                self._connections.add(conn)
            self._spawn(self._serve, f"emulator-{self.name}-conn{number}", conn, number)

    def _serve(self, conn: socket.socket, number: int) -> None:
        session = _Session(self, conn, number)
        with self._lock:
            self._sessions.add(session)
        try:
            session.run()
        except OSError as exc:
            log.debug("printer %s connection %d: %s", self.name, number, exc)
        finally:
            with self._lock:
                self._connections.discard(conn)
                self._sessions.discard(session)
            with contextlib.suppress(OSError):
                conn.close()
            session.finish()

    # -- called by sessions

    def _count(
        self,
        received: int = 0,
        status: int = 0,
        discarded: int = 0,
        status_backs: int = 0,
        replies_held: int = 0,
    ) -> None:
        with self._lock:
            self._bytes_received += received
            self._status_requests += status
            self._bytes_discarded += discarded
            self._status_backs += status_backs
            self._replies_held += replies_held

    def _publish(self, job: DecodedJob, connection: int) -> None:
        now_mono, now_wall = time.monotonic(), time.time()
        with self._lock:
            self._ticket_count += 1
            number = self._ticket_count
        ticket = ReceivedTicket(
            printer=self.name,
            number=number,
            connection=connection,
            job=job,
            received_at=now_mono,
            received_at_wall=now_wall,
            chars_per_line=self.chars_per_line,
        )
        if self.out_dir is not None:
            self._write_files(ticket)
        with self._tickets_changed:
            self._tickets.append(ticket)
            self._tickets_changed.notify_all()
            listeners = list(self._listeners)
            subscribers = list(self._subscribers)
        for q in subscribers:
            q.put(ticket)
        for listener in listeners:
            try:
                listener(ticket)
            except Exception:
                log.exception("ticket listener failed on printer %s", self.name)

    def _write_files(self, ticket: ReceivedTicket) -> None:
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = self.out_dir / f"{self.name}-{ticket.number:04d}"
        stem.with_suffix(".txt").write_text(ticket.text, encoding="utf-8")
        stem.with_suffix(".bin").write_bytes(ticket.raw)
        if self.png:
            ticket.png().save(stem.with_suffix(".png"), format="PNG")

    def _add_fragment(self, job: DecodedJob) -> None:
        with self._lock:
            self._fragments.append(job)


def _close_listener(sock: socket.socket) -> None:
    """Stop listening now: a plain close() waits while the accept thread's select() holds
    the socket, and connections arriving meanwhile would still be accepted by the kernel."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _reset(conn: socket.socket) -> None:
    """Close so that the peer gets RST instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()


_SIOCOUTQNSD = 0x894B  # Linux: bytes in the send queue not yet sent


def _unsent(conn: socket.socket) -> int:
    """Bytes the kernel still holds unsent on `conn` (0 where it cannot tell)."""
    buffer = array.array("i", [0])
    try:
        fcntl.ioctl(conn.fileno(), _SIOCOUTQNSD, buffer, True)
    except OSError:
        return 0
    return buffer[0]


def _abort(conn: socket.socket) -> None:
    """Reset a connection another thread is serving: its recv() wakes, and its close sends RST."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _Session:
    """One accepted connection: reads under the current fault, answers status, prints."""

    def __init__(self, printer: EmulatedPrinter, conn: socket.socket, number: int) -> None:
        self.printer = printer
        self.conn = conn
        self.number = number
        self.decoder = StreamDecoder()
        self.assembler = JobAssembler()
        self.held: deque[Event] = deque()
        self.held_bytes = 0
        self.received = 0
        self.unread = b""  # bytes that arrived after a black-hole fault began: left unread
        # Automatic Status Back: the items GS a enabled (0: off) and the block last sent.
        self.status_back_items = 0
        self.status_back_sent = b""
        # Replies from this thread and pushes from the one changing the state share the socket.
        # Reentrant: a ticket listener may change the state from this thread.
        self.send_lock = threading.RLock()
        # asb_flood: since when this connection floods, and how many blocks it pushed since.
        self.flood_since: float | None = None
        self.flooded = 0
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if printer.nagle else 1)
        conn.settimeout(_POLL)

    def run(self) -> None:
        p = self.printer
        while not p._stopping.is_set():
            self._release_held()
            fault = p.fault
            if fault.mode is FaultMode.ASB_FLOOD and self.status_back_items:
                self._flood(fault.blocks_per_second)
            else:
                self.flood_since = None
            if fault.mode is FaultMode.BLACK_HOLE or self.held_bytes >= p.hold_limit:
                p._stopping.wait(_POLL)
                continue
            if self.unread:
                data, self.unread = self.unread, b""
                self._handle(self.decoder.feed(data))
                continue
            size = _RECV_SIZE
            if fault.mode is FaultMode.DROP_AFTER:
                size = fault.drop_after - self.received
                if size <= 0:
                    _reset(self.conn)
                    return
            elif fault.mode is FaultMode.SLOW_READ:
                size = max(1, int(fault.bytes_per_second * _POLL))
            try:
                data = self.conn.recv(size)
            except TimeoutError:
                continue
            if not data:
                break
            if p.fault.mode is FaultMode.BLACK_HOLE:
                # The fault began while recv() waited: a black hole must not answer this data.
                self.unread += data
                continue
            arrived = time.monotonic()
            self.received += len(data)
            p._count(received=len(data))
            self._handle(self.decoder.feed(data), arrived)
            if fault.mode is FaultMode.SLOW_READ:
                p._stopping.wait(len(data) / fault.bytes_per_second)
        # The peer is gone, but a real printer still prints what it buffered.
        while self.held and not p._stopping.is_set():
            self._release_held()
            p._stopping.wait(_POLL)

    def _handle(self, events: list[Event], arrived: float | None = None) -> None:
        # Answers are built and sent under the lock pushes take, so that a state pushed after an
        # answer never reaches the host before it.
        with self.send_lock:
            self._handle_locked(events, time.monotonic() if arrived is None else arrived)

    def _handle_locked(self, events: list[Event], arrived: float) -> None:
        p = self.printer
        replies: list[bytes] = []
        for event in events:
            if isinstance(event, Command) and event.name == "DLE EOT":
                # Real-time requests are answered on arrival and are not part of a job.
                replies.append(self._status_reply(event))
                continue
            if isinstance(event, Command) and event.name == "GS a":
                # Taken at once even while data is held: the host waits for the first block.
                replies.append(self._enable_status_back(event.params[0]))
                continue
            if self.held or not p.state.can_print:
                if p.keep_data_while_unready:
                    self.held.append(event)
                    self.held_bytes += len(event.raw)
                else:
                    p._count(discarded=len(event.raw))
                continue
            self._print(event)
        replies = [reply for reply in replies if reply]
        if not replies:
            return
        if p.rtt_ms:
            # A printer at a distance: the answer reaches the host a round trip after the host
            # sent the request. On loopback the request arrives at once, so all of it is here.
            p._stopping.wait(max(0.0, arrived + p.rtt_ms / 1000 - time.monotonic()))
        if p.nagle:
            # An ordinary embedded stack: one send() per answer, as the firmware produces them;
            # the kernel sends the first at once and holds the rest until it is acknowledged.
            for reply in replies:
                self._send(reply)
        else:
            # The answers to one read go back in one segment, as a prompt printer's would.
            self.conn.sendall(b"".join(replies))

    def _send(self, reply: bytes) -> None:
        """Send one reply by itself; with nagle, count it when the kernel holds it unsent."""
        self.conn.sendall(reply)
        if self.printer.nagle and _unsent(self.conn):
            self.printer._count(replies_held=1)

    def _status_reply(self, event: Command) -> bytes:
        n = event.params[0]
        if n not in tuple(StatusRequest):
            return b""
        self.printer._count(status=1)
        if not self.printer.answers_status:
            return b""
        return build_status_response(n, self.printer.state)

    def _enable_status_back(self, items: int) -> bytes:
        """GS a n: the first block goes back at once, the next ones on every change."""
        if not (self.printer.answers_status and self.printer.pushes_status):
            return b""
        self.status_back_items = items & STATUS_BACK_ITEMS
        if not self.status_back_items:
            return b""
        self.status_back_sent = build_status_back(self.printer.state)
        self.printer._count(status_backs=1)
        return self.status_back_sent

    def push_status(self) -> None:
        """Send the printer's ASB block if this connection enabled ASB and the block changed.
        A black hole says nothing, not even this."""
        with self.send_lock:
            block = build_status_back(self.printer.state)
            if (
                not self.status_back_items
                or block == self.status_back_sent
                or self.printer.fault.mode is FaultMode.BLACK_HOLE
            ):
                return
            self.status_back_sent = block
            try:
                self._send(block)
            except OSError:
                return  # the connection is going; its own thread notices
        self.printer._count(status_backs=1)

    def _flood(self, blocks_per_second: float) -> None:
        """Push the current ASB block as often as the rate says is due by now, whatever the
        state did: the loop comes here at least every _POLL seconds."""
        now = time.monotonic()
        if self.flood_since is None:
            self.flood_since, self.flooded = now, 0
        due = int((now - self.flood_since) * blocks_per_second) - self.flooded
        if due <= 0:
            return
        with self.send_lock:
            try:
                self.conn.sendall(build_status_back(self.printer.state) * due)
            except OSError:
                return  # the host hung up: the next read ends the session
        self.flooded += due
        self.printer._count(status_backs=due)

    def _release_held(self) -> None:
        while self.held and self.printer.state.can_print:
            event = self.held.popleft()
            self.held_bytes -= len(event.raw)
            self._print(event)

    def _print(self, event: Event) -> None:
        job = self.assembler.apply(event)
        if job is not None:
            self.printer._publish(job, self.number)

    def finish(self) -> None:
        rest = self.assembler.finish()
        if rest is not None and rest.lines:
            self.printer._add_fragment(rest)


# --------------------------------------------------------------------------- control port


class ControlServer:
    """Line-based control of running printers on a loopback TCP port (see docs/emulator.md)."""

    def __init__(self, printers: Sequence[EmulatedPrinter], host: str, port: int) -> None:
        self.printers = {p.name: p for p in printers}
        self.host = check_loopback(host)
        self.port = port
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(8)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._loop, name="emulator-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                ready, _, _ = select.select([self._sock], [], [], _POLL)
                if not ready:
                    continue
                conn, _ = self._sock.accept()
            except (OSError, ValueError):
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rw", encoding="utf-8", newline="\n") as stream:
            for line in stream:
                if not line.strip():
                    continue
                if line.strip().lower() in ("quit", "exit"):
                    return
                stream.write(self.execute(line) + "\n")
                stream.flush()

    def _targets(self, name: str) -> list[EmulatedPrinter]:
        if name in ("*", "all"):
            return list(self.printers.values())
        if name not in self.printers:
            raise ValueError(f"no printer {name!r} (have: {', '.join(self.printers)})")
        return [self.printers[name]]

    def execute(self, line: str) -> str:
        """Run one control command and return its one-line reply (``ok ...``/``error: ...``)."""
        words = line.split()
        if not words:
            return "error: empty command"
        command, args = words[0].lower(), words[1:]
        try:
            if command == "help":
                return "ok " + CONTROL_HELP.replace("\n", " | ")
            if command in ("list", "status"):
                return "ok " + " ; ".join(describe(p) for p in self.printers.values())
            if len(args) != (1 if command == "clear" else 2):
                raise ValueError(f"wrong arguments for {command!r}; try 'help'")
            targets = self._targets(args[0])
            for printer in targets:
                _apply_control(printer, command, args[1] if len(args) > 1 else "")
            return "ok " + " ; ".join(describe(p) for p in targets)
        except ValueError as exc:
            return f"error: {exc}"


CONTROL_HELP = """\
list                                  show every printer, its fault and state
fault NAME none|refuse|reset|black_hole|drop_after:N|slow_read:N|asb_flood[:N]
paper NAME ok|near_end|out
cover NAME open|closed
online NAME on|off
cutter NAME ok|error
clear NAME                            forget received tickets
(NAME may be * for all printers)"""

_SWITCHES = {"on": True, "off": False, "open": True, "closed": False, "error": True, "ok": False}


def _switch(value: str, allowed: tuple[str, str]) -> bool:
    if value not in allowed:
        raise ValueError(f"expected {' or '.join(allowed)}, got {value!r}")
    return _SWITCHES[value]


def _apply_control(printer: EmulatedPrinter, command: str, value: str) -> None:
    value = value.lower()
    if command == "fault":
        printer.set_fault(Fault.parse(value))
    elif command == "paper":
        printer.set_paper(PaperState(value))
    elif command == "cover":
        printer.set_cover_open(_switch(value, ("open", "closed")))
    elif command == "online":
        printer.set_online(_switch(value, ("on", "off")))
    elif command == "cutter":
        printer.set_cutter_error(_switch(value, ("error", "ok")))
    elif command == "clear":
        printer.clear()
    else:
        raise ValueError(f"unknown command {command!r}; try 'help'")


def describe(printer: EmulatedPrinter) -> str:
    s = printer.state
    return (
        f"{printer.name} {printer.host}:{printer.port} fault={printer.fault} "
        f"online={'on' if s.online else 'off'} paper={s.paper.value} "
        f"cover={'open' if s.cover_open else 'closed'} "
        f"cutter={'error' if s.cutter_error else 'ok'} tickets={len(printer.tickets())}"
    )


# --------------------------------------------------------------------------- command line


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        return check_loopback(host), int(port)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class PrinterSpec:
    name: str
    host: str
    port: int
    chars_per_line: int | None


def _printer_spec(text: str) -> PrinterSpec:
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT[/COLUMNS], got {text!r}")
    address, _, columns = rest.partition("/")
    if columns and not columns.isdigit():
        raise argparse.ArgumentTypeError(f"bad column count in {text!r}")
    host, port = _host_port(address)
    return PrinterSpec(name, host, port, int(columns) if columns else None)


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kprintd emulator",
        description="Emulated ESC/POS network printers on loopback. "
        "'kprintd emulator ctl COMMAND...' talks to a running emulator's control port.",
    )
    parser.add_argument(
        "--printer",
        action="append",
        type=_printer_spec,
        required=True,
        metavar="NAME=HOST:PORT[/COLUMNS]",
        help="a printer to emulate; HOST must be in 127.0.0.0/8 (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="write NAME-NNNN.txt/.bin per ticket here")
    parser.add_argument("--png", action="store_true", help="also write NAME-NNNN.png (with --out)")
    parser.add_argument(
        "--chars-per-line", type=int, default=48, help="default paper width in columns (48)"
    )
    parser.add_argument(
        "--control",
        type=_host_port,
        default=None,
        metavar="HOST:PORT",
        help=f"serve the control protocol here, e.g. {DEFAULT_CONTROL}",
    )
    parser.add_argument(
        "--fault", action="append", type=_name_value, default=[], metavar="NAME=FAULT"
    )
    parser.add_argument(
        "--paper", action="append", type=_name_value, default=[], metavar="NAME=ok|near_end|out"
    )
    parser.add_argument("--cover-open", action="append", default=[], metavar="NAME")
    parser.add_argument("--offline", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--no-status",
        action="append",
        default=[],
        metavar="NAME",
        help="this printer never answers status requests (DLE EOT), like many print servers",
    )
    parser.add_argument(
        "--nagle",
        action="append",
        default=[],
        metavar="NAME",
        help="this printer has an ordinary TCP stack: no TCP_NODELAY, one send() per reply, so a"
        " small reply waits until the one before is acknowledged (Nagle's algorithm); * for all",
    )
    parser.add_argument(
        "--rtt-ms",
        action="append",
        type=_name_value,
        default=[],
        metavar="NAME=MS",
        help="this printer is at a distance: each reply leaves MS milliseconds after its request"
        " arrived (e.g. 2, 10, 30 for Wi-Fi); * for all",
    )
    parser.add_argument(
        "--drop-while-unready",
        action="store_true",
        help="discard data received while a printer cannot print instead of printing it later",
    )
    parser.add_argument("--quiet", action="store_true", help="do not echo tickets to stdout")
    return parser


def control_client(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kprintd emulator ctl")
    parser.add_argument("--control", type=_host_port, default=_host_port(DEFAULT_CONTROL))
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    try:
        with socket.create_connection(args.control, timeout=5) as sock:
            sock.sendall((" ".join(args.command) + "\n").encode())
            reply = sock.makefile("r", encoding="utf-8").readline().strip()
    except OSError as exc:
        print(f"error: no emulator control port at {args.control[0]}:{args.control[1]}: {exc}")
        return 1
    print(reply.replace(" ; ", "\n   "))
    return 0 if reply.startswith("ok") else 1


def _echo(lock: threading.Lock) -> TicketListener:
    def echo(ticket: ReceivedTicket) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(ticket.received_at_wall))
        with lock:
            print(f"=== {ticket.printer} ticket {ticket.number} at {stamp} ===")
            print(ticket.text, flush=True)

    return echo


def _configure(printers: dict[str, EmulatedPrinter], args: argparse.Namespace) -> None:
    def get(name: str) -> EmulatedPrinter:
        if name not in printers:
            raise ValueError(f"no printer named {name!r}")
        return printers[name]

    for name, fault in args.fault:
        get(name).set_fault(Fault.parse(fault))
    for name, paper in args.paper:
        get(name).set_paper(PaperState(paper))
    for name in args.cover_open:
        get(name).set_cover_open(True)
    for name in args.offline:
        get(name).set_online(False)


@contextlib.contextmanager
def _signals_set(event: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _say(message: str) -> None:
    # Plain stderr, not logging: python-escpos configures the root logger on import.
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``kprintd emulator``: run printers until SIGINT/SIGTERM. Returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["ctl"]:
        return control_client(args_list[1:])
    args = build_parser().parse_args(args_list)
    names = [spec.name for spec in args.printer]
    if len(set(names)) != len(names):
        _say("error: printer names must be unique")
        return 2
    for option, named, known in (
        ("--no-status", args.no_status, set(names)),
        ("--nagle", args.nagle, {*names, "*"}),
        ("--rtt-ms", [name for name, _ in args.rtt_ms], {*names, "*"}),
    ):
        unknown = sorted(set(named) - known)
        if unknown:
            _say(f"error: {option} names no printer: {', '.join(unknown)}")
            return 2
    try:
        rtt_ms = {name: float(ms) for name, ms in args.rtt_ms}
    except ValueError as exc:
        _say(f"error: --rtt-ms: {exc}")
        return 2
    printers: dict[str, EmulatedPrinter] = {}
    echo = _echo(threading.Lock())
    stop = threading.Event()
    control: ControlServer | None = None
    with _signals_set(stop):
        try:
            for spec in args.printer:
                printer = EmulatedPrinter(
                    spec.name,
                    spec.host,
                    spec.port,
                    chars_per_line=spec.chars_per_line or args.chars_per_line,
                    out_dir=args.out,
                    png=args.png,
                    keep_data_while_unready=not args.drop_while_unready,
                    answers_status=spec.name not in args.no_status,
                    nagle=bool({spec.name, "*"} & set(args.nagle)),
                    rtt_ms=rtt_ms.get(spec.name, rtt_ms.get("*", 0.0)),
                )
                if not args.quiet:
                    printer.add_listener(echo)
                printers[spec.name] = printer
            _configure(printers, args)
            for printer in printers.values():
                printer.start()
                _say(f"printer {printer.name} listening on {printer.host}:{printer.port}")
            if args.control is not None:
                control = ControlServer(list(printers.values()), *args.control)
                control.start()
                _say(f"control port on {control.host}:{control.port}")
            while not stop.wait(0.5):
                pass
        except (OSError, ValueError) as exc:
            _say(f"error: {exc}")
            return 1
        finally:
            if control is not None:
                control.stop()
            for printer in printers.values():
                printer.stop()
    _say("emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
