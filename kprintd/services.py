"""Background duties of `kprintd run`: one small service shape, one runner, the small duties.

Owns the shape every duty that runs on a clock shares (Service: a name, a Schedule from the
settings, `run_once()` returning what it did as counts, `start()`/`stop()`), the loop that runs
each on its interval (a failed run is logged once per outage and tried again at the next turn; a
bug never ends the loop), and the duties small enough to need no module of their own: lease
rescue, the heartbeat and its watch on the listener, health-check pruning, unserved-ticket
alerts, the route sweep and idle printer connections. The printer health checks live in
kprintd/health.py and the ticket purge in kprintd/retention.py, in this same shape.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Protocol

import psycopg
import structlog

from kprintd.alerts import Alerts
from kprintd.db import Database
from kprintd.printers import PrinterLinks

log = structlog.get_logger("kprintd.services")

Counts = dict[str, int]

# kitchen_unserved_routes() lists a ticket 30 s after its creation; looked for this often (or every
# health interval, when that is shorter), it is announced within a minute of it.
UNSERVED_CHECK_S = 15.0
# How often the listener's flag is looked at; a change is written to the heartbeat at once. A beat
# that failed is tried again after LISTENING_RETRY_S.
LISTENING_POLL_S = 0.25
LISTENING_RETRY_S = 2.0
PRUNE_BATCH = 1000
PRUNE_BATCHES_PER_ROUND = 10
# Printer connections nobody used for this long are closed at the next sweep.
IDLE_PRINTER_CONNECTION_S = 5.0
STOP_STAMP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Schedule:
    """When a service runs: first `first_after_s` after it starts, then every `interval_s`."""

    interval_s: float
    first_after_s: float


class Service(ABC):
    """One background duty, run on its schedule until stopped."""

    name: ClassVar[str]  # what log lines call it

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @abstractmethod
    async def run_once(self) -> Counts:
        """Do the duty once; returns what it did, as counts."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(self.schedule.first_after_s)
        while True:
            await self.guarded_run()
            await asyncio.sleep(self.schedule.interval_s)

    async def guarded_run(self) -> Counts | None:
        """run_once, with a database outage logged once and a bug logged, never raised."""
        try:
            counts = await self.run_once()
        except psycopg.Error as exc:
            if not self._failing:
                log.warning(
                    f"{self.name} failed; trying again at the next turn",
                    service=self.name,
                    error=str(exc).strip(),
                    next_attempt_in_s=self.schedule.interval_s,
                )
            self._failing = True
            return None
        except Exception:
            log.exception(f"{self.name} crashed", service=self.name)
            return None
        if self._failing:
            self._failing = False
            log.info(f"{self.name} works again", service=self.name)
        if any(counts.values()):
            log.debug("service ran", service=self.name, **counts)
        return counts


class ServiceRunner:
    """Starts and stops the daemon's background services together."""

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = list(services)

    def start(self) -> None:
        for service in self.services:
            service.start()

    async def stop(self) -> None:
        await asyncio.gather(*(service.stop() for service in self.services))


class Activity(Protocol):
    """What the heartbeat reports of the dispatcher (kprintd.dispatch.Dispatcher)."""

    @property
    def listening(self) -> bool: ...

    @property
    def tickets_printed(self) -> int: ...


class LeaseRescue(Service):
    """Gives back tickets whose lease expired (their daemon stopped or hung mid-print)."""

    name = "lease rescue"

    def __init__(self, schedule: Schedule, db: Database, rescued: Callable[[], None]) -> None:
        super().__init__(schedule)
        self._db = db
        self._rescued = rescued  # wake the routes of the tickets given back

    async def run_once(self) -> Counts:
        reclaimed = await self._db.reclaim_expired_leases()
        if reclaimed:
            log.warning("reclaimed tickets whose printer service stopped", tickets=reclaimed)
            self._rescued()
        return {"reclaimed": reclaimed}


class RouteSweep(Service):
    """Wakes every route with tickets waiting: NOTIFY is not durable."""

    name = "route sweep"

    def __init__(self, schedule: Schedule, scan: Callable[[], Awaitable[int]]) -> None:
        super().__init__(schedule)
        self._scan = scan

    async def run_once(self) -> Counts:
        return {"waiting": await self._scan()}


class IdlePrinterConnections(Service):
    """Lets go of printer connections nobody used lately: many printers serve one client at a
    time."""

    name = "idle printer connections"

    def __init__(self, schedule: Schedule, links: PrinterLinks) -> None:
        super().__init__(schedule)
        self._links = links

    async def run_once(self) -> Counts:
        return {"closed": await self._links.close_idle(IDLE_PRINTER_CONNECTION_S)}


class Heartbeat(Service):
    """Upserts the daemon's heartbeat row (kitchen_daemon_beat in sql/schema/43_health.sql):
    alive, what it printed, whether it listens for new tickets and, if not, since when."""

    name = "heartbeat"

    def __init__(self, schedule: Schedule, db: Database, activity: Activity) -> None:
        super().__init__(schedule)
        self._db = db
        self._activity = activity
        self.started_at = datetime.now(UTC)
        # Not listening until the listener says so: since the start.
        self._not_listening_since: datetime | None = self.started_at
        self.written_listening: bool | None = None  # what the last beat written said

    def listening(self) -> tuple[bool, datetime | None]:
        """Is the daemon listening for new tickets, and if not, since when (as first seen here)."""
        listening = bool(self._activity.listening)
        if listening:
            self._not_listening_since = None
        elif self._not_listening_since is None:
            self._not_listening_since = datetime.now(UTC)
        return listening, self._not_listening_since

    async def run_once(self) -> Counts:
        listening, since = self.listening()
        printed = self._activity.tickets_printed
        await self._db.beat(self.started_at, printed, listening, since)
        self.written_listening = listening
        return {"beats": 1}

    async def stopped(self) -> None:
        """Stamp the heartbeat as cleanly stopped; a database that is gone is no reason to wait."""
        with contextlib.suppress(psycopg.Error, TimeoutError):
            await asyncio.wait_for(
                self._db.daemon_stopped(self._activity.tickets_printed), STOP_STAMP_TIMEOUT_S
            )


class ListeningWatch(Service):
    """Beats as soon as the listener's flag differs from what the heartbeat says, so `kprintd
    status` shows a daemon that stopped listening within a second or so."""

    name = "listening watch"

    def __init__(self, schedule: Schedule, heartbeat: Heartbeat, activity: Activity) -> None:
        super().__init__(schedule)
        self._heartbeat = heartbeat
        self._activity = activity
        self._retry_at = 0.0

    async def run_once(self) -> Counts:
        loop = asyncio.get_running_loop()
        if self._activity.listening == self._heartbeat.written_listening:
            return {"beats": 0}
        if loop.time() < self._retry_at:
            return {"beats": 0}
        try:
            await self._heartbeat.run_once()
        except BaseException:
            self._retry_at = loop.time() + LISTENING_RETRY_S
            raise
        return {"beats": 1}


class HealthPruning(Service):
    """Deletes health-check rows past their retention, in small batches
    (kitchen_prune_health_checks in sql/schema/43_health.sql)."""

    name = "health pruning"

    def __init__(self, schedule: Schedule, db: Database, retention_days: int) -> None:
        super().__init__(schedule)
        self._db = db
        self._retention_days = retention_days

    async def run_once(self) -> Counts:
        deleted = 0
        for _ in range(PRUNE_BATCHES_PER_ROUND):
            batch = await self._db.prune_health_checks(PRUNE_BATCH)
            deleted += batch
            if batch < PRUNE_BATCH:
                break
        if deleted:
            log.info("pruned old health checks", rows=deleted, retention_days=self._retention_days)
        return {"deleted": deleted}


class UnservedTickets(Service):
    """Looks for tickets nothing will print (kitchen_unserved_routes in sql/schema/55_reports.sql),
    in every scope, not only this daemon's: such a ticket is outside every running daemon's
    scope. Each route with such tickets raises one ticket_unserved, and one
    ticket_unserved_cleared when none is left."""

    name = "unserved tickets"

    def __init__(self, schedule: Schedule, db: Database, alerts: Alerts) -> None:
        super().__init__(schedule)
        self._db = db
        self._alerts = alerts

    async def run_once(self) -> Counts:
        found = await self._db.unserved_routes()
        return {"routes": len(found), "alerts": await self._alerts.unserved(found)}
