"""Printer state: the one owner of what kprintd knows about each printer.

Owns the per-printer connection slots (PrinterLinks: one connection per printer at a time, reused
for tickets sent back to back, with its round-trip tally), the circuit breakers (routing.py) that
are the one record of "is this printer down", and the rules that turn what printing and health
checks saw into that record and into news worth announcing. Printing and the health checks both
report here; neither decides on its own that a printer is down or back.

Whoever changes a breaker's state learns that the change is news: a failed print that opens it is
a printer_down, a print that closes it a printer_recovered, so a change is announced once,
whichever side saw it first. A health check that finds a printer down trips its breaker; one that
finds it fine closes it, unless the printer failed in a way a status check cannot disprove (it
lost ticket data while answering its status: a probe ticket decides).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kprintd.config import Settings
from kprintd.db import RoutePrinter
from kprintd.printer_status import PrinterState
from kprintd.routing import BreakerState, CircuitBreaker, P, PrinterBoard
from kprintd.transport import (
    PrinterAddress,
    PrinterConnection,
    PrinterError,
    describe_unprintable,
)

# A status answer this fresh stands for the status request before a job: the warm-up check (asked
# while the claim is in flight, a millisecond before the job) or the previous job's confirmation.
# A printer that pushes its status changes (ASB) needs no such answer while it says it is ready.
PRECHECK_FRESH_S = 0.1

# Printer states as kitchen_printer_state() (sql/schema/42_claims.sql) names them.
OK = "ok"
PAPER_LOW = "paper_low"
DOWN_STATES = frozenset({"offline", "cover_open", "paper_out", "error"})
# A printer announced down after a failed print, reason unknown to the health checks.
DOWN_BY_PRINTING = "down"

# Print failures a good status check does not disprove: the printer answers its status but lost
# or swallowed ticket data, or (status_flood) the device pushed status blocks faster than a printer
# would and was hung up on: a short DLE EOT exchange passing says nothing about the next print. Only
# a probe (one real ticket, half-open breaker) can clear them.
PRINT_ONLY_ERRORS = frozenset(
    {"send_timeout", "connection_lost", "no_status_reply", "status_flood"}
)


@dataclass
class _PrinterSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connection: PrinterConnection | None = None


@dataclass
class PrinterTrips:
    """Round trips to one printer (PrinterConnection.round_trips), by what they were for.

    A send is one write of one or more tickets. A ticket should cost no round trip before its
    bytes (`before`: the printer pushes its changes, or the warm-up answered just now) and one to
    confirm them. `checks` are warm-ups and health checks, which overlap claims, not tickets.
    """

    sends: int = 0
    before: int = 0
    confirm: int = 0
    checks: int = 0


class PrinterLinks:
    """One connection slot per printer address, shared by every route that prints there."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._slots: dict[PrinterAddress, _PrinterSlot] = {}
        # Round trips per printer since start, for the benchmark and the curious.
        self.trips: dict[PrinterAddress, PrinterTrips] = {}

    def _slot(self, address: PrinterAddress) -> _PrinterSlot:
        return self._slots.setdefault(address, _PrinterSlot())

    def _trips(self, address: PrinterAddress) -> PrinterTrips:
        return self.trips.setdefault(address, PrinterTrips())

    async def _status(
        self, slot: _PrinterSlot, address: PrinterAddress, *, before_job: bool = False
    ) -> PrinterState:
        """Status over the slot's connection, reopening it if the printer closed it while idle."""
        timeout = self._settings.printer_send_timeout_s
        trips = self._trips(address)
        if slot.connection is not None:
            connection, since = slot.connection, slot.connection.round_trips
            try:
                return await connection.status(timeout)
            except PrinterError as exc:
                if exc.code != "connection_lost":
                    raise
                await self._drop(slot)
            finally:
                _tally(trips, before_job, connection.round_trips - since)
        slot.connection = connection = await PrinterConnection.open(
            address, self._settings.printer_connect_timeout_s
        )
        try:
            return await connection.status(timeout)
        finally:
            _tally(trips, before_job, connection.round_trips)

    @staticmethod
    async def _drop(slot: _PrinterSlot) -> None:
        if slot.connection is not None:
            connection, slot.connection = slot.connection, None
            await connection.close()

    async def send(self, printer: RoutePrinter, data: bytes) -> None:
        """Print `data` on `printer`; raises PrinterError saying whether paper may have moved."""
        address = PrinterAddress(printer.host, printer.port)
        slot = self._slot(address)
        async with slot.lock:
            if not printer.answers_status:
                await self._send_unconfirmed(slot, address, data)
                return
            try:
                # Ask first unless the warm-up just did or the printer pushes its changes: a
                # ticket sent to a printer that died since its last job would have to be
                # reprinted elsewhere with a RETRY banner.
                connection = slot.connection
                if connection is None or not (
                    connection.known_ready() or connection.ready_within(PRECHECK_FRESH_S)
                ):
                    state = await self._status(slot, address, before_job=True)
                    problem = describe_unprintable(state)
                    if problem is not None:
                        raise problem
                connection = slot.connection
                assert connection is not None
                trips, since = self._trips(address), connection.round_trips
                trips.sends += 1
                try:
                    after = await connection.print_job(data, self._settings.printer_send_timeout_s)
                finally:
                    trips.confirm += connection.round_trips - since
                problem = describe_unprintable(after)
                if problem is not None:
                    problem.may_have_printed = True
                    problem.message += " (reported right after the ticket was sent)"
                    raise problem
            except PrinterError:
                await self._drop(slot)
                raise

    async def _send_unconfirmed(
        self, slot: _PrinterSlot, address: PrinterAddress, data: bytes
    ) -> None:
        """One fresh connection per job, closed after it: without a status reply, a connection
        the printer dropped while idle cannot be told from a live one, and raw-port print
        servers expect one job per connection."""
        await self._drop(slot)
        connection = await PrinterConnection.open(address, self._settings.printer_connect_timeout_s)
        try:
            await connection.send_unconfirmed(data, self._settings.printer_send_timeout_s)
        finally:
            await connection.close()

    def known_ready(self, printer: RoutePrinter) -> bool:
        """Is `printer` connected, pushing its status changes, and ready by the last of them?"""
        slot = self._slots.get(PrinterAddress(printer.host, printer.port))
        return slot is not None and slot.connection is not None and slot.connection.known_ready()

    async def reach(self, address: PrinterAddress) -> None:
        """Connect and hang up, on the printer's slot: all a check can ask of a printer that
        never answers status requests. Raises PrinterError when it cannot be reached."""
        slot = self._slot(address)
        async with slot.lock:
            await self._drop(slot)
            connection = await PrinterConnection.open(
                address, self._settings.printer_connect_timeout_s
            )
            await connection.close()

    async def check(self, address: PrinterAddress) -> PrinterState:
        """The printer's real-time status, asked on its own slot: never while it is printing.

        Raises PrinterError when the printer cannot be reached or does not answer.
        """
        slot = self._slot(address)
        async with slot.lock:
            try:
                return await self._status(slot, address)
            except PrinterError:
                await self._drop(slot)
                raise

    async def close_idle(self, idle_seconds: float) -> int:
        """Let go of connections nobody used lately: many printers serve one client at a time.
        Returns how many were closed."""
        now = time.monotonic()
        closed = 0
        for slot in self._slots.values():
            if slot.lock.locked() or slot.connection is None:
                continue
            if now - slot.connection.last_used >= idle_seconds:
                await self._drop(slot)
                closed += 1
        return closed

    async def close_all(self) -> None:
        for slot in self._slots.values():
            await self._drop(slot)


def _tally(trips: PrinterTrips, before_job: bool, count: int) -> None:
    if before_job:
        trips.before += count
    else:
        trips.checks += count


def reconcile(announced: str | None, breaker: CircuitBreaker) -> str | None:
    """The printer state last announced, by a health check or by printing.

    The breaker records what printing announced: it is open after a printer_down and closed after
    a printer_recovered, whoever raised them.
    """
    closed = breaker.state is BreakerState.CLOSED
    if not closed and announced not in DOWN_STATES:
        return DOWN_BY_PRINTING
    if closed and announced in DOWN_STATES:
        return OK
    return announced


def alert_for_change(previous: str | None, current: str) -> str | None:
    """The alert a printer going from `previous` to `current` raises; None if there is no news.

    `previous` None means nothing was announced yet (the daemon just started): a printer found
    fine then is no news, one found down or low on paper is.
    """
    if current == previous:
        return None
    if current in DOWN_STATES:
        # Already announced down by printing, whose message said why.
        return None if previous == DOWN_BY_PRINTING else "printer_down"
    if current == PAPER_LOW:
        return "printer_paper_low"
    return None if previous in (None, OK) else "printer_recovered"


def trip(breaker: CircuitBreaker, error: str) -> None:
    """Open the breaker now (whatever its failure threshold) and restart its cool-down."""
    breaker.record_failure(error)
    while breaker.state is not BreakerState.OPEN:
        breaker.record_failure(error)


@dataclass(frozen=True)
class CheckNews:
    """A health check changed what is known of a printer: `kind` is the alert to raise."""

    kind: str
    state: str
    previous: str | None


class Printers:
    """Connections, breakers and announced states of every printer the daemon talks to."""

    def __init__(self, settings: Settings) -> None:
        self.links = PrinterLinks(settings)
        self.board = PrinterBoard(settings.breaker_failure_threshold, settings.breaker_open_s)
        self._announced: dict[int, str] = {}

    def order(self, printers: Sequence[P]) -> list[P]:
        """The order to try `printers` in (PrinterBoard.order: claims a half-open probe)."""
        return self.board.order(printers)

    def is_down(self, printer_id: int) -> bool:
        return self.board.breaker(printer_id).state is not BreakerState.CLOSED

    def first_up(self, printers: Sequence[P]) -> P | None:
        """The first of `printers` not known to be down."""
        return next((p for p in printers if not self.is_down(p.printer_id)), None)

    def tried(self, printer_id: int, error_code: str | None) -> bool:
        """A print went through (`error_code` None) or failed; True when that changes whether
        the printer is down: announce printer_recovered or printer_down."""
        breaker = self.board.breaker(printer_id)
        return (
            breaker.record_success() if error_code is None else breaker.record_failure(error_code)
        )

    def checked(self, printer_id: int, state: str) -> CheckNews | None:
        """A health check found the printer in `state` (kitchen_printer_state()); the news to
        announce, if any. A state that proves nothing either way (no_status) changes nothing."""
        if state not in DOWN_STATES and state not in (OK, PAPER_LOW):
            return None
        breaker = self.board.breaker(printer_id)
        previous = reconcile(self._announced.get(printer_id), breaker)
        if state in DOWN_STATES:
            # The breaker remembers why it opened: the state a check found, or the print error.
            trip(breaker, state)
        elif breaker.last_error in PRINT_ONLY_ERRORS:
            return None
        else:
            breaker.record_success()
        self._announced[printer_id] = state
        kind = alert_for_change(previous, state)
        return None if kind is None else CheckNews(kind, state, previous)
