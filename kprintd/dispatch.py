"""Claiming and dispatch: turns due tickets into paper, one worker per route.

Owns the route workers (one per brand/store/station, so a jammed station never delays another),
the per-printer connection slots (one connection per printer at a time, reused for tickets sent
back to back), failover across a station's printers within one attempt, retry backoff, and the
rule that a claim is committed before any byte leaves for a printer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import structlog

from kprintd.config import Settings
from kprintd.db import ClaimedJob, Database, RouteKey, RoutePrinter, TicketNotice
from kprintd.printer_status import PrinterState
from kprintd.render import PrintLayout, TicketDocument, TicketLine, render_ticket
from kprintd.routing import BreakerState, PrinterBoard
from kprintd.transport import (
    PrinterAddress,
    PrinterConnection,
    PrinterError,
    describe_unprintable,
)

log = structlog.get_logger("kprintd.dispatch")

# Tickets claimed per round trip. Large enough to clear a burst quickly, small enough that a
# printer failing mid-batch only sends a handful of tickets to the backup with a RETRY banner.
CLAIM_BATCH = 16
# A status answer this fresh stands for the status request before a job: the warm-up check (asked
# while the claim is in flight, a millisecond before the job) or the previous job's confirmation.
# A printer that pushes its status changes (ASB) needs no such answer while it says it is ready.
PRECHECK_FRESH_S = 0.1
# How long a route trusts its list of printers without hearing of a change. Changes are announced
# on kitchen_printers_changed and apply to the next ticket; this only bounds the damage of a bug.
PRINTER_LIST_MAX_AGE_S = 600.0
# A route with nothing to print for this long lets its worker go; its next ticket starts a new
# one. Anyone who can connect can NOTIFY: without this, made-up routes would each keep a worker
# polling the database forever.
ROUTE_IDLE_RETIRE_S = 900.0
# Nor does a notification start a worker for a route that has none: 25,000 made-up routes in one
# transaction once meant 25,000 workers, a daemon grown from 59 to 323 MiB and a real ticket 14 s
# late (issue #14). It asks for one look at which routes have tickets waiting
# (kitchen_due_routes), shared by every notification heard until it runs, one at a time and no
# more often than this.
DUE_CHECK_MIN_INTERVAL_S = 0.05
DEFAULT_CODEPAGE = "CP437"
DB_RETRY_MAX_S = 10.0


def retry_delay(settings: Settings, attempt: int, waited_s: float = 0.0) -> float:
    """Backoff with jitter, so a printer coming back is not hit by every ticket at once.

    It grows with the attempt number and, for tickets whose attempts are given back while no
    printer is reachable, with how long the ticket has been waiting.
    """
    exponential = settings.retry_base_delay_s * 2 ** max(attempt - 1, 0)
    base = min(settings.retry_max_delay_s, max(exponential, waited_s / 2))
    jittered: float = base * random.uniform(0.8, 1.2)
    return round(jittered, 3)


def ticket_from_document(document: dict[str, Any]) -> TicketDocument:
    """The renderer's view of kprintd.kitchen_ticket_document() JSON."""
    return TicketDocument(
        ticket_id=int(document["ticket_id"]),
        station=str(document["station"]),
        ticket_type=str(document["ticket_type"]),
        bill_number=str(document["bill_number"]),
        sent_at=datetime.fromisoformat(document["sent_at"]),
        lines=tuple(
            TicketLine(
                quantity=int(line["quantity"]),
                name=str(line["name"]),
                modifiers=tuple(str(m) for m in line.get("modifiers") or ()),
                notes=str(line.get("notes") or ""),
                station=str(line.get("station") or ""),
                is_void=bool(line.get("is_void")),
            )
            for line in document.get("lines") or ()
        ),
        bill_type=str(document.get("bill_type") or "dine_in"),
        table_number=document.get("table_number"),
        queue_number=document.get("queue_number"),
        customer_name=document.get("customer_name"),
        is_reprint=bool(document.get("is_reprint")),
        original_ticket_id=document.get("original_ticket_id"),
        is_retry=bool(document.get("is_retry")),
        attempt=int(document.get("attempt") or 1),
    )


@functools.cache
def time_zone(name: str | None) -> ZoneInfo | None:
    """The zone a template names; None (the machine's zone) when it names none or one this
    machine's time zone database lacks: the time on paper must never cost the ticket."""
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone in print template; using the machine's", time_zone=name)
        return None


def layout_for(printer: RoutePrinter) -> PrintLayout:
    """The printer's layout; a template naming an unknown codepage falls back to CP437.

    A typo in kitchen_printtemplate must cost accents on paper, never the station's tickets.
    """
    layout = partial(
        PrintLayout,
        chars_per_line=printer.chars_per_line,
        paper_width_mm=printer.paper_width_mm,
        buzzer=printer.buzzer,
        copies=printer.copies,
        large_item_font=printer.large_item_font,
        header_line=printer.header_line,
        cut=printer.cut_mode,
        timezone=time_zone(printer.time_zone),
    )
    try:
        return layout(codepage=printer.codepage)
    except ValueError as exc:
        log.warning(
            "unusable print template; using CP437", printer=printer.printer_name, error=str(exc)
        )
        return layout(codepage=DEFAULT_CODEPAGE)


def _still_current(fetched_at: float, printers: list[RoutePrinter], now: float) -> bool:
    """May a route go on using the printers it read at `fetched_at`? Changes are announced, but
    only each printer's next maintenance window is known: once one ends, another may begin."""
    if now - fetched_at >= PRINTER_LIST_MAX_AGE_S:
        return False
    return not any(p.maintenance_until is not None and p.maintenance_until <= now for p in printers)


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

    async def close_idle(self, idle_seconds: float) -> None:
        """Let go of connections nobody used lately: many printers serve one client at a time."""
        now = time.monotonic()
        for slot in self._slots.values():
            if slot.lock.locked() or slot.connection is None:
                continue
            if now - slot.connection.last_used >= idle_seconds:
                await self._drop(slot)

    async def close_all(self) -> None:
        for slot in self._slots.values():
            await self._drop(slot)


def _tally(trips: PrinterTrips, before_job: bool, count: int) -> None:
    if before_job:
        trips.before += count
    else:
        trips.checks += count


_Precheck = tuple[RoutePrinter, "PrinterError | None"]


@dataclass
class _Attempt:
    """What happened to one claimed ticket during this attempt, across the printers tried."""

    job: ClaimedJob
    document: TicketDocument | None
    may_have_printed: bool = False
    errors: list[str] = field(default_factory=list)
    last_error: PrinterError | None = None
    result: dict[str, Any] | None = None


class Dispatcher:
    """Owns the route workers and wakes them when tickets arrive or come due."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
    ) -> None:
        self.settings = settings
        self.db = db
        self.board = PrinterBoard(settings.breaker_failure_threshold, settings.breaker_open_s)
        self.links = PrinterLinks(settings)
        self.stopping = asyncio.Event()
        self._workers: dict[RouteKey, RouteWorker] = {}
        self.tickets_printed = 0
        # Set by the daemon: True while its LISTEN connection is up and read. While it is False,
        # new tickets wait for the sweep, which the heartbeat should tell whoever looks.
        self.listening = False
        self._due_check: asyncio.Task[None] | None = None
        self._due_check_wanted = False
        self._due_check_wakes_all = False

    def printers_changed(self) -> None:
        """Printers, templates or maintenance windows changed: every route reads them again
        before its next ticket, and a route holding tickets for maintenance looks at once."""
        for worker in self._workers.values():
            worker.forget_printers()

    def retire(self, worker: RouteWorker) -> None:
        """Forget an idle route's worker (it is about to return); a wake starts a new one."""
        if self._workers.get(worker.route) is worker:
            del self._workers[worker.route]

    def notice(self, notice: TicketNotice) -> None:
        """A kitchen_ticket_new notification: its route's worker claims at once, and prints what
        the claim returns. A route without a worker only gets the due-route check (anyone can
        NOTIFY), which starts one if a ticket waits there."""
        if self.stopping.is_set():
            return
        worker = self._workers.get(notice.route)
        if worker is None:
            self.check_due_routes()
            return
        worker.wake()

    def wake(self, route: RouteKey) -> None:
        """Wake the worker of a route known to have waiting tickets, starting one if need be."""
        if self.stopping.is_set():
            return
        worker = self._workers.get(route)
        if worker is None:
            worker = RouteWorker(self, route)
            self._workers[route] = worker
            worker.start()
        worker.wake()

    def check_due_routes(self, *, lost: bool = False) -> None:
        """Look soon for routes with tickets waiting, and start a worker for each that has none;
        when notifications were `lost`, wake the others too. Calls made before the look share
        it; a call made while it runs gets one more after it."""
        if self.stopping.is_set():
            return
        self._due_check_wanted = True
        self._due_check_wakes_all |= lost
        if self._due_check is None or self._due_check.done():
            self._due_check = asyncio.create_task(self._check_due_routes(), name="due routes")

    async def _check_due_routes(self) -> None:
        loop = asyncio.get_running_loop()
        pause = DUE_CHECK_MIN_INTERVAL_S
        failing = False
        while self._due_check_wanted and not self.stopping.is_set():
            wake_all = self._due_check_wakes_all
            self._due_check_wanted = self._due_check_wakes_all = False
            started = loop.time()
            try:
                for due in await self.db.due_routes():
                    # A route that has a worker is woken by its notifications themselves.
                    if wake_all or due.route not in self._workers:
                        self.wake(due.route)
                pause = DUE_CHECK_MIN_INTERVAL_S
                failing = False
            except Exception as exc:
                # Looked for again after a pause: the ticket that asked may be waiting on a route
                # without a worker, and nothing else would look before the sweep.
                self._due_check_wanted = True
                self._due_check_wakes_all |= wake_all
                if not failing:
                    failing = True
                    if isinstance(exc, psycopg.Error):
                        log.warning("cannot look for due routes; retrying", error=str(exc).strip())
                    else:
                        log.exception("looking for due routes failed; retrying")
                pause = min(pause * 2, DB_RETRY_MAX_S)
            await asyncio.sleep(max(0.0, started + pause - loop.time()))

    async def scan(self) -> int:
        """Reclaim expired leases and wake every route with waiting tickets; returns the backlog."""
        reclaimed = await self.db.reclaim_expired_leases()
        if reclaimed:
            log.warning("reclaimed tickets whose printer service stopped", tickets=reclaimed)
        backlog = 0
        for due in await self.db.due_routes():
            backlog += due.waiting
            self.wake(due.route)
        return backlog

    async def alert(
        self,
        kind: str,
        severity: str,
        message: str,
        route: RouteKey,
        printer: RoutePrinter | None,
        **extra: Any,
    ) -> None:
        """One alert on kitchen_alert; losing an alert must never stop printing.

        Printing raises them (`source` "print"), as the health monitor does from its checks
        (`source` "health_check"), with the same fields where both know them.
        """
        details: dict[str, Any] = {
            "station": route.station,
            "brand_id": route.brand_id,
            "store_id": route.store_id,
            "source": "print",
        }
        if printer is not None:
            details |= {
                "printer_id": printer.printer_id,
                "printer": printer.printer_name,
                "printer_address": f"{printer.host}:{printer.port}",
            }
        await self.send_alert(kind, severity, message, details | extra)

    async def send_alert(
        self, kind: str, severity: str, message: str, details: dict[str, Any]
    ) -> None:
        """Log the alert and raise it in the database, naming this daemon, so that a change
        another daemon already announced is not announced twice (sql/0024)."""
        emit = log.info if severity == "info" else log.warning
        emit("alert", alert=kind, severity=severity, station=details["station"], message=message)
        details = details | {"daemon": self.settings.daemon_id}
        try:
            sent = await self.db.raise_alert(kind, severity, message, details)
        except psycopg.Error as exc:
            log.warning("alert could not be sent", alert=kind, error=str(exc).strip())
            return
        if not sent:
            log.info("alert already announced by another daemon", alert=kind)

    async def stop(self, timeout: float) -> None:
        """Stop claiming; let in-flight prints finish within `timeout`, then cancel the rest."""
        self.stopping.set()
        if self._due_check is not None:
            self._due_check.cancel()
            await asyncio.wait([self._due_check])
        workers = list(self._workers.values())
        for worker in workers:
            worker.wake()
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "prints still in flight at shutdown were abandoned", routes=len(pending)
                )
                await asyncio.wait(pending, timeout=1)
        await self.links.close_all()


class RouteWorker:
    """Prints the tickets of one route, oldest first, one batch at a time."""

    def __init__(self, dispatcher: Dispatcher, route: RouteKey) -> None:
        self.dispatcher = dispatcher
        self.route = route
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unroutable = False
        self._db_down = False
        self._on_hold = False
        self._printer_list: tuple[float, list[RoutePrinter]] | None = None
        self._last_claimed = time.monotonic()
        self.log = log.bind(station=route.station, brand_id=str(route.brand_id))

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"route {self.route}")

    def wake(self) -> None:
        self._wake.set()

    def forget_printers(self) -> None:
        self._printer_list = None
        if self._on_hold:
            self.wake()

    async def _run(self) -> None:
        settings = self.dispatcher.settings
        stopping = self.dispatcher.stopping
        db_backoff = 0.2
        while not stopping.is_set():
            self._wake.clear()
            hold_s: float | None = None
            try:
                hold_s = await self._drain()
                wait_s = await self.dispatcher.db.seconds_until_due(self.route)
                if hold_s is not None and wait_s is not None:
                    # A window cancelled or cut short wakes the route (printers_changed).
                    wait_s = max(wait_s, hold_s)
                if self._db_down:
                    self._db_down = False
                    self.log.info("database reachable again")
                db_backoff = 0.2
            except psycopg.Error as exc:
                if not self._db_down:
                    self._db_down = True
                    self.log.warning("database unreachable; retrying", error=str(exc).strip())
                wait_s = db_backoff
                db_backoff = min(db_backoff * 2, DB_RETRY_MAX_S)
            except Exception:
                # A bug must not kill the route: log it, back off, carry on.
                self.log.exception("route worker error; retrying")
                wait_s = db_backoff
                db_backoff = min(db_backoff * 2, DB_RETRY_MAX_S)
            if wait_s is None:
                if self._idle_for_good(hold_s):
                    return
                wait_s = settings.sweep_interval_s
            if wait_s <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait_s, settings.sweep_interval_s)):
                    await self._wake.wait()

    def _idle_for_good(self, hold_s: float | None) -> bool:
        """Nothing waits on the route and nothing was claimed for ROUTE_IDLE_RETIRE_S: retire.
        No await between the check and the retirement, so no wake can fall in between."""
        idle_s = time.monotonic() - self._last_claimed
        if hold_s is not None or self._wake.is_set() or idle_s < ROUTE_IDLE_RETIRE_S:
            return False
        self.dispatcher.retire(self)
        return True

    async def _printers(self) -> list[RoutePrinter]:
        now = time.monotonic()
        if self._printer_list is None or not _still_current(*self._printer_list, now):
            self._printer_list = (now, await self.dispatcher.db.route_printers(self.route))
        return self._printer_list[1]

    async def _drain(self) -> float | None:
        """Print what is due, a batch at a time. Returns how long the route is on hold (every
        printer in planned maintenance: its tickets wait unclaimed), or None."""
        while not self.dispatcher.stopping.is_set():
            configured = await self._printers()
            now = time.monotonic()
            printers = [p for p in configured if not p.in_maintenance(now)]
            if configured and not printers:
                return await self._hold(configured, now)
            if self._on_hold:
                self._on_hold = False
                await self.dispatcher.alert(
                    "station_recovered",
                    "info",
                    f"Station '{self.route.station}' prints again on '{printers[0].printer_name}':"
                    " its planned maintenance is over.",
                    self.route,
                    None,
                    reason="maintenance_over",
                    printers=[p.printer_name for p in printers],
                )
            warm_up = self._warm_up(self._first_healthy(printers))
            try:
                jobs = await self.dispatcher.db.claim(self.route, CLAIM_BATCH)
            finally:
                # Awaited, never cancelled: a status answer arriving after a cancel would be
                # read as the answer to the next request on that connection.
                precheck = await warm_up if warm_up is not None else None
            if jobs:
                self._last_claimed = time.monotonic()
                await self._print(jobs, printers, precheck)
            if len(jobs) < CLAIM_BATCH:
                return None
        return None

    async def _hold(self, printers: list[RoutePrinter], now: float) -> float:
        """Every printer of the route is in maintenance: announce it once; returns the seconds
        until the first window ends."""
        hold_s = min(p.maintenance_until or now for p in printers) - now
        if not self._on_hold:
            self._on_hold = True
            first = printers[0]
            ends = (datetime.now(UTC) + timedelta(seconds=hold_s)).astimezone(
                time_zone(first.time_zone)
            )
            await self.dispatcher.alert(
                "station_in_maintenance",
                "warning",
                f"Every printer of station '{self.route.station}' is in planned maintenance "
                f"until {ends:%H:%M}: its tickets wait and print when the first one is back.",
                self.route,
                None,
                until=ends.isoformat(),
                printers=[p.printer_name for p in printers],
            )
        return hold_s

    def _first_healthy(self, printers: list[RoutePrinter]) -> RoutePrinter | None:
        """The printer the next ticket most likely goes to: the first whose breaker is closed.
        Only those qualify for the warm-up: probes stay with tickets."""
        board = self.dispatcher.board
        for printer in printers:
            if board.breaker(printer.printer_id).state is BreakerState.CLOSED:
                return printer
        return None

    def _warm_up(self, printer: RoutePrinter | None) -> asyncio.Task[_Precheck] | None:
        """Ask the route's first healthy printer for its status while the claim is in flight.

        The two round trips overlap, so the status request no longer sits between the commit
        and the paper. Not asked of a printer whose pushed status (ASB) says it is ready: the
        request would only cost both ends a wake-up while the claim runs.
        """
        if printer is None or not printer.answers_status:
            return None  # nobody to ask, or nothing to ask it
        if self.dispatcher.links.known_ready(printer):
            return None
        return asyncio.create_task(self._check(printer))

    async def _check(self, printer: RoutePrinter) -> _Precheck:
        """Never raises: tickets may already be claimed when its answer is read."""
        try:
            state = await self.dispatcher.links.check(PrinterAddress(printer.host, printer.port))
        except PrinterError as exc:
            return printer, exc
        except Exception as exc:
            self.log.exception("status check failed unexpectedly", printer=printer.printer_name)
            return printer, PrinterError("io", f"status check failed: {exc}")
        return printer, describe_unprintable(state)

    async def _print(
        self,
        jobs: list[ClaimedJob],
        printers: list[RoutePrinter],
        precheck: _Precheck | None = None,
    ) -> None:
        """Print claimed `jobs` on the first of `printers` (those not in maintenance) that
        takes them, then record every outcome."""
        dispatcher = self.dispatcher
        attempts: list[_Attempt] = []
        for job in jobs:
            attempt = _Attempt(job, None)
            attempts.append(attempt)
            try:
                attempt.document = ticket_from_document(job.document)
            except (KeyError, TypeError, ValueError) as exc:
                attempt.result = self._failure(
                    attempt, "bad_document", f"unreadable ticket: {exc}", retryable=False
                )
                continue
            if not attempt.document.lines:
                # A blank slip tells the cook nothing and hides the mistake: fail it loudly.
                attempt.result = self._failure(
                    attempt, "empty_ticket", "the ticket has no items", retryable=False
                )
        failures: list[dict[str, Any]] = []
        if dispatcher.stopping.is_set():
            for attempt in attempts:
                if attempt.result is None:
                    attempt.result = {
                        "ticket_id": attempt.job.ticket_id,
                        "attempt": attempt.job.attempt,
                        "outcome": "released",
                    }
        elif not printers:
            await self._no_printer(attempts)
        else:
            self._unroutable = False
            for printer in dispatcher.board.order(printers):
                pending = [a for a in attempts if a.result is None]
                if not pending:
                    break
                if precheck is not None and precheck[0] == printer and precheck[1] is not None:
                    # The warm-up already found this printer unable to print: next one.
                    started = time.monotonic()
                    await self._printer_failed(printer, pending, failures, precheck[1], started)
                    continue
                await self._try_printer(printer, pending, failures)
            for attempt in attempts:
                if attempt.result is None:
                    error = attempt.last_error
                    attempt.result = self._failure(
                        attempt,
                        error.code if error else "no_printer",
                        "; ".join(attempt.errors) or "no printer could take the ticket",
                    )
        await self._record([a.result for a in attempts if a.result is not None], failures)

    def _failure(
        self, attempt: _Attempt, code: str, message: str, *, retryable: bool = True
    ) -> dict[str, Any]:
        settings = self.dispatcher.settings
        waited_s = 0.0
        if attempt.document is not None:
            waited_s = max(0.0, (datetime.now(UTC) - attempt.document.sent_at).total_seconds())
        # Nothing reached paper, so this attempt risked no duplicate: within the grace period it
        # is given back, and a station waiting for a paper roll does not fail its tickets.
        refund = not attempt.may_have_printed and waited_s < settings.unreachable_grace_s
        return {
            "ticket_id": attempt.job.ticket_id,
            "attempt": attempt.job.attempt,
            "outcome": "failed",
            "error_code": code,
            "error_message": message[:2000],
            "may_have_printed": attempt.may_have_printed,
            "retry_delay_s": retry_delay(settings, attempt.job.attempt, waited_s),
            "retryable": retryable,
            "refund_attempt": retryable and refund,
        }

    async def _no_printer(self, attempts: list[_Attempt]) -> None:
        message = f"no active printer is configured for station '{self.route.station}'"
        for attempt in attempts:
            if attempt.result is None:
                # Retrying cannot help until someone configures a printer: fail at once, once.
                attempt.result = self._failure(attempt, "no_printer", message, retryable=False)
            self.log.error("ticket failed", ticket_id=attempt.job.ticket_id, reason=message)
        if not self._unroutable:
            self._unroutable = True
            await self.dispatcher.alert(
                "station_unroutable",
                "critical",
                f"Station '{self.route.station}' has no active printer: its tickets fail until "
                "one is configured in kitchen_stationprinter.",
                self.route,
                None,
                reason="no_printer",
            )

    async def _try_printer(
        self,
        printer: RoutePrinter,
        pending: list[_Attempt],
        failures: list[dict[str, Any]],
    ) -> None:
        layout = layout_for(printer)
        payloads: list[bytes] = []
        sendable: list[_Attempt] = []
        for number, attempt in enumerate(pending):
            if number:
                # A batch of big tickets renders one at a time, letting other stations run between.
                await asyncio.sleep(0)
            document = attempt.document
            assert document is not None
            if attempt.may_have_printed and not document.is_retry:
                document = replace(document, is_retry=True)
            try:
                payloads.append(render_ticket(document, layout))
                sendable.append(attempt)
            except Exception as exc:
                self.log.exception("ticket could not be rendered", ticket_id=attempt.job.ticket_id)
                attempt.result = self._failure(
                    attempt, "render_error", f"cannot render: {exc}", retryable=False
                )
        if not sendable:
            return
        started = time.monotonic()
        breaker = self.dispatcher.board.breaker(printer.printer_id)
        try:
            await self.dispatcher.links.send(printer, b"".join(payloads))
        except PrinterError as exc:
            await self._printer_failed(printer, sendable, failures, exc, started)
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        if breaker.record_success():
            await self.dispatcher.alert(
                "printer_recovered",
                "info",
                f"Printer '{printer.printer_name}' for {self.route.station} is printing again.",
                self.route,
                printer,
            )
        for attempt, payload in zip(sendable, payloads, strict=True):
            attempt.result = {
                "ticket_id": attempt.job.ticket_id,
                "attempt": attempt.job.attempt,
                "outcome": "printed",
                "printer_id": printer.printer_id,
                "printer_name": printer.printer_name,
                "printer_ip": printer.host,
                "duration_ms": duration_ms,
                "bytes": len(payload),
                "tried": len(attempt.errors) + 1,
            }
            self.log.info(
                "ticket printed",
                ticket_id=attempt.job.ticket_id,
                printer=printer.printer_name,
                attempt=attempt.job.attempt,
                retry_banner=attempt.may_have_printed
                or bool(attempt.document and attempt.document.is_retry),
                duration_ms=duration_ms,
            )
        self.dispatcher.tickets_printed += len(sendable)

    async def _printer_failed(
        self,
        printer: RoutePrinter,
        sendable: list[_Attempt],
        failures: list[dict[str, Any]],
        exc: PrinterError,
        started: float,
    ) -> None:
        duration_ms = int((time.monotonic() - started) * 1000)
        failures.append({"printer_id": printer.printer_id, "error_message": exc.message})
        for attempt in sendable:
            attempt.errors.append(
                f"{printer.printer_name} ({printer.host}:{printer.port}): {exc.message}"
            )
            attempt.last_error = exc
            attempt.may_have_printed = attempt.may_have_printed or exc.may_have_printed
            self.log.warning(
                "printer failed",
                ticket_id=attempt.job.ticket_id,
                printer=printer.printer_name,
                error_code=exc.code,
                error=exc.message,
                duration_ms=duration_ms,
            )
        if self.dispatcher.board.breaker(printer.printer_id).record_failure(exc.code):
            await self.dispatcher.alert(
                "printer_down",
                "warning",
                f"Printer '{printer.printer_name}' for {self.route.station} stopped printing: "
                f"{exc.message}. Its tickets go to a backup printer if there is one.",
                self.route,
                printer,
                error_code=exc.code,
            )

    async def _record(self, results: list[dict[str, Any]], failures: list[dict[str, Any]]) -> None:
        """Write the outcomes; a database outage here is waited out, never forgotten."""
        delay = 0.2
        held = False
        while True:
            try:
                records = await self.dispatcher.db.finish(results, failures)
                break
            except psycopg.OperationalError as exc:
                # Stopping does not end this loop: Dispatcher.stop() cancels it after its timeout,
                # and the leases then bring the tickets back with a RETRY banner.
                if not held:
                    held = True
                    self.log.warning(
                        "cannot record print outcomes yet; holding them until the database is back",
                        tickets=[r["ticket_id"] for r in results],
                        error=str(exc).strip(),
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)
        if held:
            self.log.info("held print outcomes recorded", tickets=[r["ticket_id"] for r in results])
        for record in records:
            if not record.recorded:
                self.log.warning(
                    "ticket lease was lost before its outcome was recorded",
                    ticket_id=record.ticket_id,
                )
            elif record.final_status == "failed":
                self.log.error("ticket failed for good", ticket_id=record.ticket_id)
