"""Printers on loopback for the benchmark, in child processes that report every cut.

Owns two kinds of printer, both on their own loopback address at port 9100, both answering the
DLE EOT status requests kprintd sends after each job (and before it, to a printer that does not
push its status) and both turning on Automatic Status Back when asked (GS a):

* "emulator": the project's EmulatedPrinter, unchanged, one child process per printer (ten in one
  Python process would serialize on its GIL, and the benchmark would measure that queue). It
  decodes every ticket onto paper, which costs it more CPU per ticket than kprintd spends.
* "lean": one child for all printers, a thread per connection, that only tokenizes the stream
  (kprintd's own StreamDecoder), answers status (its state never changes, so ASB sends only
  the first block) and notes each cut, stamped with the moment the
  bytes carrying it arrived; "black_hole" accepts and never reads. The verdicts are measured with
  these, so that they measure kprintd and PostgreSQL rather than the emulators, which would
  share the same two cores.

Either kind can play an ordinary embedded TCP stack (`Printer.nagle`: no TCP_NODELAY, one send()
per reply, so a small reply waits until the one before is acknowledged) and a printer at a
distance (`Printer.rtt_ms`: each reply leaves that long after the bytes asking for it arrived;
on loopback the request itself arrives at once, so only the reply's way is stretched).

Lean printers also report each round trip: a read that asked for at least one reply (the daemon
then waits for the answer), as a line "trip <printer index> <status requests in it> <arrived_at>"
(status requests = DLE EOT). That is the benchmark's count of round trips per ticket: kprintd's
own tally (PrinterLinks.trips) lives in the daemon, a child process the benchmark cannot read.

Each cut comes back as a line "<printer index> <ticket id> <received_at>" on the child's stdout;
the ticket id is read from the footer every ticket carries ("Ticket #<id>"). received_at is
time.monotonic() in the child: on Linux that is the one system-wide CLOCK_MONOTONIC, so it
compares directly with the POS's commit times in the parent.

`python -m bench.printers KIND NAME@HOST@FAULT[@OPTIONS]...` is the child's entry point; OPTIONS
is a comma-separated list of `nagle` and `rtt=MS`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kprintd.emulator import EmulatedPrinter, Fault, ReceivedTicket
from kprintd.emulator.escpos_decode import Command, StreamDecoder, Text
from kprintd.printer_status import (
    STATUS_BACK_ITEMS,
    PrinterState,
    build_status_back,
    build_status_response,
)

Kind = Literal["emulator", "lean"]
PRINTER_PORT = 9100
PR_SET_PDEATHSIG = 1
TICKET_FOOTER = re.compile(r"Ticket #(\d+)")
CUT_COMMANDS = frozenset({"GS V", "ESC i", "ESC m"})
EXIT_ADDRESS_IN_USE = 3
REPOSITORY = Path(__file__).resolve().parent.parent

# One loopback address per printer, in a block the test suite does not use; an address another
# run holds is skipped.
_addresses = (f"127.77.{a}.{b}" for a, b in itertools.product(range(256), range(2, 255)))


@dataclass(frozen=True)
class Cut:
    """A ticket's cut command arriving at a printer."""

    ticket_id: int  # -1 when the paper carries no "Ticket #<id>" footer
    printer: str
    received_at: float  # time.monotonic()


@dataclass
class Printer:
    """What the restaurant's kitchen_stationprinter row needs to know."""

    name: str
    fault: str = "none"
    host: str = ""
    port: int = PRINTER_PORT
    nagle: bool = False  # an ordinary TCP stack: small replies wait for the ACK of the one before
    rtt_ms: float = 0.0  # a printer at a distance: each reply leaves this long after its request

    @property
    def options(self) -> str:
        """The child's OPTIONS field for this printer."""
        options = (["nagle"] if self.nagle else []) + (
            [f"rtt={self.rtt_ms:g}"] if self.rtt_ms else []
        )
        return ",".join(options) or "-"


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when the benchmark dies, however it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class PrinterProcess:
    """The parent's handle on one child serving `printers`; `on_cut` runs on a reader thread."""

    def __init__(self, kind: Kind, printers: list[Printer], on_cut: Callable[[Cut], None]) -> None:
        self.kind = kind
        self.printers = printers
        self._on_cut = on_cut
        # Round trips as (printer name, status requests in it, arrived_at), lean printers only.
        self.trips: list[tuple[str, int, float]] = []
        self.process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def launch(self) -> None:
        """Start the child on fresh loopback addresses; `wait_ready` confirms it listens."""
        for printer in self.printers:
            printer.host = next(_addresses, "")
            if not printer.host:
                raise RuntimeError("no free loopback address left for an emulated printer")
        specs = [f"{p.name}@{p.host}@{p.fault}@{p.options}" for p in self.printers]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.printers", self.kind, *specs],
            cwd=REPOSITORY,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def wait_ready(self) -> None:
        """Return once every printer listens, moving to other addresses while some are taken."""
        while True:
            assert self.process is not None and self.process.stdout is not None
            if self.process.stdout.readline().strip() == "ready":
                break
            if self.process.wait(10) != EXIT_ADDRESS_IN_USE:
                names = ", ".join(p.name for p in self.printers)
                raise RuntimeError(f"printer(s) {names} exited with {self.process.returncode}")
            self.launch()
        self._reader = threading.Thread(target=self._read, name="printer-cuts", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("trip "):
                _, index, requests, arrived_at = line.split()
                self.trips.append(
                    (self.printers[int(index)].name, int(requests), float(arrived_at))
                )
                continue
            index, ticket_id, received_at = line.split()
            self._on_cut(Cut(int(ticket_id), self.printers[int(index)].name, float(received_at)))

    @property
    def pid(self) -> int:
        assert self.process is not None, "printer not started"
        return self.process.pid

    def request_stop(self) -> None:
        """Close its stdin: the child stops its printers and exits."""
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def stop(self) -> None:
        """Stop the child and collect every cut it reported."""
        if self.process is None:
            return
        self.request_stop()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self._reader is not None:
            self._reader.join(10)


def launch_printers(
    stack: contextlib.ExitStack, kind: Kind, printers: list[Printer], on_cut: Callable[[Cut], None]
) -> list[PrinterProcess]:
    """Launch the children (one per emulator, one for all lean printers); `stack` stops them.

    Call `wait_ready` on each before use.
    """
    groups = [[p] for p in printers] if kind == "emulator" else [printers]
    processes = [PrinterProcess(kind, group, on_cut) for group in groups]
    for process in processes:
        stack.callback(process.stop)
        process.launch()
    return processes


# --------------------------------------------------------------------------- the child


class _Reporter:
    """Writes cut lines to stdout, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def cut(self, index: int, ticket_id: str, received_at: float) -> None:
        with self._lock:
            sys.stdout.write(f"{index} {ticket_id} {received_at!r}\n")
            sys.stdout.flush()

    def trip(self, index: int, requests: int, arrived_at: float) -> None:
        with self._lock:
            sys.stdout.write(f"trip {index} {requests} {arrived_at!r}\n")
            sys.stdout.flush()


def _serve_emulators(specs: Sequence[_Spec], reporter: _Reporter) -> None:
    printers: list[EmulatedPrinter] = []

    def listener(index: int) -> Callable[[ReceivedTicket], None]:
        def report(ticket: ReceivedTicket) -> None:
            match = TICKET_FOOTER.search(ticket.text)
            reporter.cut(index, match[1] if match else "-1", ticket.received_at)

        return report

    try:
        for index, spec in enumerate(specs):
            printer = EmulatedPrinter(
                spec.name,
                host=spec.host,
                port=PRINTER_PORT,
                fault=Fault.parse(spec.fault),
                nagle=spec.nagle,
                rtt_ms=spec.rtt_ms,
            )
            printer.add_listener(listener(index))
            printer.start()
            printers.append(printer)
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    finally:
        for printer in printers:
            printer.stop()


class _LeanPrinters:
    """The lean printers of one child: tokenize, answer status, report cuts; nothing else.

    A thread per connection blocked in recv(): the fewest steps between bytes arriving and
    the answer going back, as a printer's firmware would do it.
    """

    def __init__(self, specs: Sequence[_Spec], reporter: _Reporter) -> None:
        for spec in specs:
            if spec.fault not in ("none", "black_hole"):
                raise ValueError(f"lean printers know no fault {spec.fault!r}")
        self._specs = specs
        self._reporter = reporter
        self._state = PrinterState()
        self._footer = re.compile(TICKET_FOOTER.pattern.encode())
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def run(self) -> None:
        listeners = [socket.create_server((spec.host, PRINTER_PORT)) for spec in self._specs]
        for index, listener in enumerate(listeners):
            self._start(self._accept, index, listener)
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or dies)
        self._stopping.set()
        for listener in listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, index: int, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            # A prompt stack sends each reply at once; an ordinary one (nagle) holds a small reply
            # while the one before is unacknowledged.
            nodelay = 0 if self._specs[index].nagle else 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
            with self._lock:
                self._connections.add(conn)
            self._start(self._serve, index, conn)

    def _serve(self, index: int, conn: socket.socket) -> None:
        try:
            if self._specs[index].fault == "black_hole":
                # Accept, never read, never answer: the connection stays open until we stop.
                self._stopping.wait()
            else:
                with contextlib.suppress(OSError):
                    self._print(index, conn)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _print(self, index: int, conn: socket.socket) -> None:
        spec = self._specs[index]
        decoder = StreamDecoder()
        text: list[bytes] = []
        while data := conn.recv(65536):
            # A cut arrived when the bytes carrying it did, not when this Python reached it.
            arrived_at = time.monotonic()
            replies: list[bytes] = []
            requests = 0
            for event in decoder.feed(data):
                if isinstance(event, Text):
                    text.append(event.raw)
                elif isinstance(event, Command) and event.name == "DLE EOT":
                    requests += 1
                    replies.append(build_status_response(event.params[0], self._state))
                elif isinstance(event, Command) and event.name == "GS a":
                    if event.params[0] & STATUS_BACK_ITEMS:
                        replies.append(build_status_back(self._state))
                elif isinstance(event, Command) and event.name in CUT_COMMANDS:
                    match = self._footer.search(b"".join(text))
                    text.clear()
                    ticket_id = match[1].decode() if match else "-1"
                    self._reporter.cut(index, ticket_id, arrived_at)
            if not replies:
                continue
            self._reporter.trip(index, requests, arrived_at)
            if spec.rtt_ms:
                time.sleep(max(0.0, arrived_at + spec.rtt_ms / 1000 - time.monotonic()))
            if spec.nagle:
                for reply in replies:  # one send() each, as the firmware produces them
                    conn.sendall(reply)
            else:
                conn.sendall(b"".join(replies))


@dataclass(frozen=True)
class _Spec:
    name: str
    host: str
    fault: str
    nagle: bool = False
    rtt_ms: float = 0.0


def _spec(text: str) -> _Spec:
    name, host, fault, *rest = text.split("@")
    nagle, rtt_ms = False, 0.0
    for option in (rest[0] if rest else "-").split(","):
        if option == "nagle":
            nagle = True
        elif option.startswith("rtt="):
            rtt_ms = float(option.removeprefix("rtt="))
        elif option not in ("-", ""):
            raise ValueError(f"unknown printer option {option!r}")
    return _Spec(name, host, fault, nagle, rtt_ms)


def main(argv: list[str]) -> int:
    kind, specs = argv[0], [_spec(text) for text in argv[1:]]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    reporter = _Reporter()
    try:
        if kind == "emulator":
            _serve_emulators(specs, reporter)
        else:
            _LeanPrinters(specs, reporter).run()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return EXIT_ADDRESS_IN_USE
        raise
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
