"""Claiming and dispatch: turns due tickets into paper, one worker per route.

Owns the route workers (one per brand/store/station, so a jammed station never delays another)
and their loop: claim a batch (with the warm-up status check of the route's first printer in
flight at the same time), hand it to the failover step (kprintd/failover.py), tell the printers'
owner (kprintd/printers.py) and the alerts (kprintd/alerts.py) what it showed, record the
outcomes. Also which routes have workers, the per-route cache of its printers, the maintenance
hold, and the rule that a claim is committed before any byte leaves for a printer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import structlog

from kprintd.alerts import Alerts
from kprintd.config import Settings
from kprintd.db import ClaimedJob, Database, RouteKey, RoutePrinter, TicketNotice
from kprintd.failover import BatchResult, Precheck, PrinterTry, print_batch, time_zone
from kprintd.printers import Printers
from kprintd.transport import PrinterAddress, PrinterError, describe_unprintable

log = structlog.get_logger("kprintd.dispatch")

# Tickets claimed per round trip. Large enough to clear a burst quickly, small enough that a
# printer failing mid-batch only sends a handful of tickets to the backup with a RETRY banner.
CLAIM_BATCH = 16
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
DB_RETRY_MAX_S = 10.0


def _still_current(fetched_at: float, printers: list[RoutePrinter], now: float) -> bool:
    """May a route go on using the printers it read at `fetched_at`? Changes are announced, but
    only each printer's next maintenance window is known: once one ends, another may begin."""
    if now - fetched_at >= PRINTER_LIST_MAX_AGE_S:
        return False
    return not any(p.maintenance_until is not None and p.maintenance_until <= now for p in printers)


@dataclass(frozen=True)
class WorkerParts:
    """What every route worker uses, handed over by the dispatcher that starts them."""

    settings: Settings
    db: Database
    printers: Printers
    alerts: Alerts
    stopping: asyncio.Event
    retire: Callable[[RouteWorker], None]  # forget an idle worker that is about to return
    printed: Callable[[int], None]  # count tickets put on paper


class Dispatcher:
    """Owns the route workers and wakes them when tickets arrive or come due."""

    def __init__(
        self, settings: Settings, db: Database, printers: Printers, alerts: Alerts
    ) -> None:
        self._db = db
        self._printers = printers
        self.stopping = asyncio.Event()
        self._workers: dict[RouteKey, RouteWorker] = {}
        self._parts = WorkerParts(
            settings, db, printers, alerts, self.stopping, self.retire, self._count_printed
        )
        self.tickets_printed = 0
        # Set by the daemon: True while its LISTEN connection is up and read. While it is False,
        # new tickets wait for the sweep, which the heartbeat should tell whoever looks.
        self.listening = False
        self._due_check: asyncio.Task[None] | None = None
        self._due_check_wanted = False
        self._due_check_wakes_all = False

    def _count_printed(self, tickets: int) -> None:
        self.tickets_printed += tickets

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
            worker = RouteWorker(route, self._parts)
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
                for due in await self._db.due_routes():
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
        """Wake every route with waiting tickets; returns how many wait."""
        backlog = 0
        for due in await self._db.due_routes():
            backlog += due.waiting
            self.wake(due.route)
        return backlog

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
        await self._printers.links.close_all()


class RouteWorker:
    """Prints the tickets of one route, oldest first, one batch at a time."""

    def __init__(self, route: RouteKey, parts: WorkerParts) -> None:
        self.route = route
        self._parts = parts
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._db_down = False
        self._held = False
        self._printer_list: tuple[float, list[RoutePrinter]] | None = None
        self._last_claimed = time.monotonic()
        self.log = log.bind(station=route.station, brand_id=str(route.brand_id))

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"route {self.route}")

    def wake(self) -> None:
        self._wake.set()

    def forget_printers(self) -> None:
        self._printer_list = None
        if self._held:
            self.wake()

    async def _run(self) -> None:
        settings = self._parts.settings
        stopping = self._parts.stopping
        db_backoff = 0.2
        while not stopping.is_set():
            self._wake.clear()
            hold_s: float | None = None
            try:
                hold_s = await self._drain()
                wait_s = await self._parts.db.seconds_until_due(self.route)
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
        self._parts.retire(self)
        return True

    async def _drain(self) -> float | None:
        """Print what is due, a batch at a time. Returns how long the route is on hold (every
        printer in planned maintenance: its tickets wait unclaimed), or None."""
        while not self._parts.stopping.is_set():
            configured = await self._route_printers()
            now = time.monotonic()
            printers = [p for p in configured if not p.in_maintenance(now)]
            if configured and not printers:
                return await self._hold(configured, now)
            if self._held and printers:
                self._held = False
                await self._parts.alerts.station_off_hold(self.route, printers)
            warm_up = self._warm_up(printers)
            try:
                jobs = await self._parts.db.claim(self.route, CLAIM_BATCH)
            finally:
                # Awaited, never cancelled: a status answer arriving after a cancel would be
                # read as the answer to the next request on that connection.
                precheck = await warm_up if warm_up is not None else None
            if jobs:
                self._last_claimed = time.monotonic()
                batch = await self._print(jobs, printers, precheck)
                await self._record(batch)
            if len(jobs) < CLAIM_BATCH:
                return None
        return None

    async def _route_printers(self) -> list[RoutePrinter]:
        now = time.monotonic()
        if self._printer_list is None or not _still_current(*self._printer_list, now):
            self._printer_list = (now, await self._parts.db.route_printers(self.route))
        return self._printer_list[1]

    async def _hold(self, printers: list[RoutePrinter], now: float) -> float:
        """Every printer of the route is in maintenance: announce it; returns the seconds until
        the first window ends."""
        hold_s = min(p.maintenance_until or now for p in printers) - now
        self._held = True
        ends = (datetime.now(UTC) + timedelta(seconds=hold_s)).astimezone(
            time_zone(printers[0].time_zone)
        )
        await self._parts.alerts.station_on_hold(self.route, printers, ends)
        return hold_s

    def _warm_up(self, printers: list[RoutePrinter]) -> asyncio.Task[Precheck] | None:
        """Ask the route's first printer not known to be down for its status while the claim is
        in flight (probes stay with tickets).

        The two round trips overlap, so the status request no longer sits between the commit
        and the paper. Not asked of a printer whose pushed status (ASB) says it is ready: the
        request would only cost both ends a wake-up while the claim runs.
        """
        printer = self._parts.printers.first_up(printers)
        if printer is None or not printer.answers_status:
            return None  # nobody to ask, or nothing to ask it
        if self._parts.printers.links.known_ready(printer):
            return None
        return asyncio.create_task(self._check(printer))

    async def _check(self, printer: RoutePrinter) -> Precheck:
        """Never raises: tickets may already be claimed when its answer is read."""
        links = self._parts.printers.links
        try:
            state = await links.check(PrinterAddress(printer.host, printer.port))
        except PrinterError as exc:
            return Precheck(printer, exc)
        except Exception as exc:
            self.log.exception("status check failed unexpectedly", printer=printer.printer_name)
            return Precheck(printer, PrinterError("io", f"status check failed: {exc}"))
        return Precheck(printer, describe_unprintable(state))

    async def _print(
        self, jobs: list[ClaimedJob], printers: list[RoutePrinter], precheck: Precheck | None
    ) -> BatchResult:
        """Print claimed `jobs` on `printers` (those not in maintenance), telling the printers'
        owner what each printer did as it happens; then announce what that changed."""
        parts = self._parts
        releasing = parts.stopping.is_set()
        changed: list[PrinterTry] = []

        def tried(turn: PrinterTry) -> None:
            error_code = None if turn.error is None else turn.error.code
            if parts.printers.tried(turn.printer.printer_id, error_code):
                changed.append(turn)

        batch = await print_batch(
            jobs,
            [] if releasing else parts.printers.order(printers),
            parts.printers.links,
            parts.settings,
            station=self.route.station,
            precheck=precheck,
            releasing=releasing,
            tried=tried,
            logger=self.log,
        )
        for turn in changed:
            if turn.error is None:
                await parts.alerts.printer_recovered(self.route, turn.printer)
            else:
                await parts.alerts.printer_down(self.route, turn.printer, turn.error)
        if printers:
            parts.alerts.station_routable(self.route)
        elif not releasing:
            await parts.alerts.station_unroutable(self.route)
        parts.printed(batch.printed)
        return batch

    async def _record(self, batch: BatchResult) -> None:
        """Write the outcomes; a database outage here is waited out, never forgotten."""
        tickets = [outcome.ticket_id for outcome in batch.outcomes]
        delay = 0.2
        held = False
        while True:
            try:
                records = await self._parts.db.finish(batch.outcomes, batch.printer_failures)
                break
            except psycopg.OperationalError as exc:
                # Stopping does not end this loop: Dispatcher.stop() cancels it after its timeout,
                # and the leases then bring the tickets back with a RETRY banner.
                if not held:
                    held = True
                    self.log.warning(
                        "cannot record print outcomes yet; holding them until the database is back",
                        tickets=tickets,
                        error=str(exc).strip(),
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, DB_RETRY_MAX_S)
        if held:
            self.log.info("held print outcomes recorded", tickets=tickets)
        for record in records:
            if not record.recorded:
                self.log.warning(
                    "ticket lease was lost before its outcome was recorded",
                    ticket_id=record.ticket_id,
                )
            elif record.final_status == "failed":
                self.log.error("ticket failed for good", ticket_id=record.ticket_id)
