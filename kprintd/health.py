"""Printer health monitoring inside `kprintd run`: checks, the routing they feed, alerts, retention.

Owns the daemon's health task. Every `health_interval_s` it upserts the daemon's heartbeat, asks
every active printer of the daemon's scope for its real-time status (Dispatcher.links.check: on
the printer's own connection slot, never while it prints; all printers at once, each bounded by
the printer timeouts), records one kitchen_printerhealthcheck row per printer, and prunes health
rows past their retention in small batches (sql/0020_printer_health.sql). A printer marked as never
answering status requests (kitchen_stationprinter.answers_status = false) is only connected to;
one inside a planned maintenance window is not checked at all (sql/0023).

It also owns what the daemon announces about printers and stations. The circuit breakers of
Dispatcher.board are the one shared record of "is this printer down": a check that says a printer
cannot print trips its breaker (routing then skips it for its backup until a check or a probe says
it is back); a check that says it can print closes it, unless the printer failed in a way a status
check cannot disprove (it lost ticket data while answering its status: a probe ticket decides).
Whoever opens a breaker announces printer_down and whoever closes it printer_recovered (the
dispatcher does so for print failures and successes), so a change is announced once, whichever
side saw it first. This module adds why a printer is down (offline, cover open, paper out, error),
paper running low, and stations left without a working printer; each change raises one alert on
kitchen_alert, never one per check.

The heartbeat also says whether the daemon is listening for new tickets (Dispatcher.listening:
its LISTEN connection is up and read) and since when it is not (sql/0029). The flag is looked at
every LISTENING_POLL_S and a change is written at once, not at the next health interval, so
`kprintd status` shows a daemon that stopped listening within a second or so.

Every UNSERVED_CHECK_S it also looks for tickets nothing will print (sql/0028_unserved_tickets.sql):
in every scope, not only its own, since such a ticket is outside every running daemon's scope.
Each route (brand, store, station) with such tickets raises one ticket_unserved, and one
ticket_unserved_cleared when none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from kprintd import __version__
from kprintd.config import Settings
from kprintd.db import RouteKey, scope_args
from kprintd.dispatch import Dispatcher
from kprintd.printer_status import PaperState, PrinterState
from kprintd.routing import BreakerState, CircuitBreaker
from kprintd.transport import PrinterAddress, PrinterError, describe_unprintable

log = structlog.get_logger("kprintd.health")

# Printer states as kitchen_printer_state() (sql/0020) names them.
OK = "ok"
PAPER_LOW = "paper_low"
DOWN_STATES = frozenset({"offline", "cover_open", "paper_out", "error"})
# A printer the dispatcher announced down (printer_down) after a failed print, reason unknown here.
DOWN_BY_PRINTING = "down"

# Print failures a good status check does not disprove: the printer answers its status but lost
# or swallowed ticket data, or (status_flood) the device pushed status blocks faster than a printer
# would and was hung up on: a short DLE EOT exchange passing says nothing about the next print. Only
# a probe (one real ticket, half-open breaker) can clear them.
PRINT_ONLY_ERRORS = frozenset(
    {"send_timeout", "connection_lost", "no_status_reply", "status_flood"}
)

# kitchen_unserved_routes() lists a ticket 30 s after its creation; looked for this often (or every
# health interval, when that is shorter), it is announced within a minute of it.
UNSERVED_CHECK_S = 15.0

# How often the listener's flag is looked at; a change is written to the heartbeat at once. A beat
# that failed is tried again after LISTENING_RETRY_S.
LISTENING_POLL_S = 0.25
LISTENING_RETRY_S = 2.0

PRUNE_BATCH = 1000
PRUNE_BATCHES_PER_ROUND = 10
STOP_STAMP_TIMEOUT_S = 2.0

_PAPER = {PaperState.OK: "ok", PaperState.NEAR_END: "low", PaperState.OUT: "out"}

_DOWN_WORDS = {
    "offline": "is offline",
    "cover_open": "has its cover open",
    "paper_out": "is out of paper",
    "error": "reports an error",
}


@dataclass(frozen=True)
class Observation:
    """What one check found, in the columns of kitchen_printerhealthcheck."""

    is_online: bool
    response_time_ms: int | None
    paper_status: str
    error_code: str | None = None
    error_message: str | None = None
    cutter_ok: bool | None = None
    temperature_ok: bool | None = None


def observe_state(state: PrinterState, response_time_ms: int) -> Observation:
    """A printer that answered DLE EOT. An autocutter error is shown as a paper jam (its usual
    cause); the auto-recoverable error bit is the print head's temperature error."""
    problem = describe_unprintable(state)
    paper = _PAPER[state.paper]
    if state.cutter_error and state.paper is not PaperState.OUT:
        paper = "jam"
    return Observation(
        is_online=state.online,
        response_time_ms=response_time_ms,
        paper_status=paper,
        error_code=problem.code if problem else None,
        error_message=problem.message if problem else None,
        cutter_ok=not state.cutter_error,
        temperature_ok=not state.auto_recoverable_error,
    )


def observe_reached(response_time_ms: int) -> Observation:
    """A printer that never answers status requests took the connection: online, and nothing
    more is known (kprintd.kitchen_printer_state(): no_status)."""
    return Observation(is_online=True, response_time_ms=response_time_ms, paper_status="unknown")


def observe_error(error: PrinterError) -> Observation:
    """A printer that could not be asked. One that took the connection but did not answer the
    status request is online with an unknown status (many cheap printers never answer); one that
    answered garbage is online and in error; anything else is offline."""
    if error.code == "no_status_reply":
        return Observation(is_online=True, response_time_ms=None, paper_status="unknown")
    return Observation(
        is_online=error.code == "bad_status_reply",
        response_time_ms=None,
        paper_status="unknown",
        error_code=error.code,
        error_message=error.message,
    )


def reconcile(announced: str | None, breaker: CircuitBreaker) -> str | None:
    """The printer state last announced, by this monitor or by the dispatcher.

    The breaker records the dispatcher's announcements: it is open after a printer_down and
    closed after a printer_recovered, whoever raised them.
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
        # Already announced down by the dispatcher, whose message said why.
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
class HealthTarget:
    """An active printer in the daemon's scope, as kprintd.kitchen_health_printers() lists it."""

    printer_id: int
    printer_name: str
    host: str
    port: int
    brand_id: uuid.UUID
    store_id: uuid.UUID | None
    station: str
    answers_status: bool = True

    @property
    def address(self) -> PrinterAddress:
        return PrinterAddress(self.host, self.port)


@dataclass(frozen=True)
class StationKey:
    """A station of one brand, in one store (None: the brand's printers that serve every store)."""

    brand_id: uuid.UUID
    store_id: uuid.UUID | None
    station: str


def station_groups(targets: Iterable[HealthTarget]) -> dict[StationKey, list[HealthTarget]]:
    """The printers that can print each station's tickets, as routing picks them: a store's own
    printers plus the brand-wide ones (store NULL), which serve every store of the brand."""
    stores: dict[tuple[uuid.UUID, str], set[uuid.UUID]] = {}
    brand_wide: dict[tuple[uuid.UUID, str], list[HealthTarget]] = {}
    groups: dict[StationKey, list[HealthTarget]] = {}
    for target in targets:
        key = (target.brand_id, target.station)
        if target.store_id is None:
            brand_wide.setdefault(key, []).append(target)
        else:
            stores.setdefault(key, set()).add(target.store_id)
            groups.setdefault(StationKey(target.brand_id, target.store_id, key[1]), []).append(
                target
            )
    for (brand_id, station), printers in brand_wide.items():
        store_ids: Iterable[uuid.UUID | None] = stores.get((brand_id, station)) or (None,)
        for store_id in store_ids:
            groups.setdefault(StationKey(brand_id, store_id, station), []).extend(printers)
    return groups


@dataclass(frozen=True)
class UnservedRoute:
    """A route whose waiting tickets nothing will print, as kitchen_unserved_routes() lists it."""

    route: RouteKey
    brand: str | None
    reason: str
    waiting: int
    oldest_created_at: datetime
    oldest_ticket_id: int
    message: str


class HealthStore:
    """The health monitor's calls to the SQL functions of sql/0020_printer_health.sql and
    sql/0028_unserved_tickets.sql."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]], settings: Settings):
        self._pool = pool
        self._settings = settings

    async def targets(self) -> list[HealthTarget]:
        brand_ids, store_id = scope_args(self._settings)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT printer_id, printer_name, host, port, brand_id, store_id, station,"
                " answers_status FROM kprintd.kitchen_health_printers(%s, %s)",
                (brand_ids, store_id),
            )
            rows = await cur.fetchall()
        return [HealthTarget(*row) for row in rows]

    async def record(self, checks: dict[int, Observation]) -> dict[int, str]:
        """Writes the rows; returns each printer's state as kitchen_printer_state() sees it."""
        payload = [
            {"printer_id": printer_id, **dataclasses.asdict(observation)}
            for printer_id, observation in checks.items()
        ]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT printer_id, state FROM kprintd.kitchen_record_health_checks(%s::jsonb)",
                (json.dumps(payload),),
            )
            rows = await cur.fetchall()
        return {int(row[0]): str(row[1]) for row in rows}

    async def prune(self) -> int:
        deleted = 0
        for _ in range(PRUNE_BATCHES_PER_ROUND):
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT kprintd.kitchen_prune_health_checks(%s, %s)",
                    (self._settings.health_retention_days, PRUNE_BATCH),
                )
                row = await cur.fetchone()
            batch = int(row[0]) if row else 0
            deleted += batch
            if batch < PRUNE_BATCH:
                break
        return deleted

    async def beat(
        self,
        started_at: datetime,
        tickets_printed: int,
        listening: bool,
        not_listening_since: datetime | None,
    ) -> None:
        brand_ids, store_id = scope_args(self._settings)
        async with self._pool.connection() as conn:
            await conn.execute(
                "SELECT kprintd.kitchen_daemon_beat(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    self._settings.daemon_id,
                    socket.gethostname(),
                    os.getpid(),
                    __version__,
                    store_id,
                    brand_ids,
                    self._settings.health_interval_s,
                    started_at,
                    tickets_printed,
                    listening,
                    not_listening_since,
                ),
            )

    async def unserved(self) -> list[UnservedRoute]:
        """Every unserved route, whatever this daemon's scope."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT brand_id, store_id, station, brand, reason, waiting, oldest_created_at,"
                " oldest_ticket_id, message FROM kprintd.kitchen_unserved_routes()"
            )
            rows = await cur.fetchall()
        return [UnservedRoute(RouteKey(*row[:3]), *row[3:]) for row in rows]

    async def stopped(self, tickets_printed: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "SELECT kprintd.kitchen_daemon_stopped(%s, %s)",
                (self._settings.daemon_id, tickets_printed),
            )


class HealthMonitor:
    """The daemon's health task and its memory of what it announced."""

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool[AsyncConnection[Any]],
        dispatcher: Dispatcher,
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.store = HealthStore(pool, settings)
        self.started_at = datetime.now(UTC)
        self._announced: dict[int, str] = {}
        self._stations_down: set[StationKey] = set()
        self._unserved: dict[RouteKey, UnservedRoute] = {}
        self._db_ok: bool | None = None
        # Not listening until the listener says so: since the start.
        self._not_listening_since: datetime | None = self.started_at
        self._beat_listening: bool | None = None  # what the last beat written said
        self._beats = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Beat at once, then check, record, alert and prune every interval, look for unserved
        tickets on their own shorter cadence, and beat again whenever the listener starts or stops
        listening, until `stop`."""
        await self._guarded("heartbeat", self._beat())
        await asyncio.gather(
            self._printer_rounds(stop), self._unserved_rounds(stop), self._listening_rounds(stop)
        )

    async def _printer_rounds(self, stop: asyncio.Event) -> None:
        while await self._wait(stop, self.settings.health_interval_s):
            await self._guarded("heartbeat", self._beat())
            await self._guarded("health check", self.check_round())
            await self._guarded("health pruning", self._prune())

    async def _unserved_rounds(self, stop: asyncio.Event) -> None:
        # A shorter health interval asks for quicker news; it holds for this check too.
        cadence = min(UNSERVED_CHECK_S, self.settings.health_interval_s)
        while await self._wait(stop, cadence):
            await self._guarded("unserved tickets", self.unserved_round())

    async def _listening_rounds(self, stop: asyncio.Event) -> None:
        """Beat as soon as the listener's flag differs from what the heartbeat says."""
        retry_at = 0.0
        loop = asyncio.get_running_loop()
        while await self._wait(stop, LISTENING_POLL_S):
            if self.dispatcher.listening == self._beat_listening or loop.time() < retry_at:
                continue
            beats = self._beats
            await self._guarded("heartbeat", self._beat())
            if self._beats == beats:  # not written: the database is away, or a bug
                retry_at = loop.time() + LISTENING_RETRY_S

    def listening(self) -> tuple[bool, datetime | None]:
        """Is the daemon listening for new tickets, and if not, since when (as first seen here)."""
        listening = bool(self.dispatcher.listening)
        if listening:
            self._not_listening_since = None
        elif self._not_listening_since is None:
            self._not_listening_since = datetime.now(UTC)
        return listening, self._not_listening_since

    @staticmethod
    async def _wait(stop: asyncio.Event, seconds: float) -> bool:
        """Sleep `seconds`; False once `stop` is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        return not stop.is_set()

    async def stopped(self) -> None:
        """Stamp the heartbeat as cleanly stopped; a database that is gone is no reason to wait."""
        with contextlib.suppress(psycopg.Error, TimeoutError):
            await asyncio.wait_for(
                self.store.stopped(self.dispatcher.tickets_printed), STOP_STAMP_TIMEOUT_S
            )

    async def _guarded(self, what: str, work: Awaitable[None]) -> None:
        """Run one step; a database outage is logged once, a bug never ends the task."""
        try:
            await work
        except psycopg.Error as exc:
            if self._db_ok is not False:
                log.warning("database unreachable; skipped", step=what, error=str(exc).strip())
            self._db_ok = False
            return
        except Exception:
            log.exception("health monitor error", step=what)
            return
        if self._db_ok is False:
            log.info("health monitor reaches the database again")
        self._db_ok = True

    async def _beat(self) -> None:
        listening, since = self.listening()
        await self.store.beat(self.started_at, self.dispatcher.tickets_printed, listening, since)
        self._beat_listening = listening
        self._beats += 1

    async def _prune(self) -> None:
        deleted = await self.store.prune()
        if deleted:
            log.info(
                "pruned old health checks",
                rows=deleted,
                retention_days=self.settings.health_retention_days,
            )

    async def check_round(self) -> None:
        """Check every printer once, record the rows, then update routing and announce changes."""
        targets = await self.store.targets()
        if not targets:
            return
        addresses = sorted({t.address for t in targets}, key=str)
        # One row saying the printer never answers is enough not to keep it busy waiting.
        mute = {t.address for t in targets if not t.answers_status}
        results = await asyncio.gather(
            *(self._check(address, address not in mute) for address in addresses),
            return_exceptions=True,
        )
        by_address: dict[PrinterAddress, Observation] = {}
        for address, result in zip(addresses, results, strict=True):
            if isinstance(result, BaseException):
                log.error("health check crashed", printer_address=str(address), error=repr(result))
            else:
                by_address[address] = result
        checks = {t.printer_id: by_address[t.address] for t in targets if t.address in by_address}
        states = await self.store.record(checks)
        for target in targets:
            state = states.get(target.printer_id)
            if state is not None:
                await self._printer_state(target, state, checks[target.printer_id])
        await self._station_states(targets)

    async def _check(self, address: PrinterAddress, answers_status: bool) -> Observation:
        started = time.monotonic()
        try:
            if not answers_status:
                await self.dispatcher.links.reach(address)
                return observe_reached(int((time.monotonic() - started) * 1000))
            state = await self.dispatcher.links.check(address)
        except PrinterError as exc:
            return observe_error(exc)
        return observe_state(state, int((time.monotonic() - started) * 1000))

    async def _printer_state(self, target: HealthTarget, state: str, seen: Observation) -> None:
        if state not in DOWN_STATES and state not in (OK, PAPER_LOW):
            return  # no_status: the check proves nothing either way
        breaker = self.dispatcher.board.breaker(target.printer_id)
        previous = reconcile(self._announced.get(target.printer_id), breaker)
        if state in DOWN_STATES:
            # The breaker remembers why it opened: the state a check found, or the dispatcher's
            # printer error code.
            trip(breaker, state)
        elif breaker.last_error in PRINT_ONLY_ERRORS:
            return
        else:
            breaker.record_success()
        self._announced[target.printer_id] = state
        kind = alert_for_change(previous, state)
        if kind is None:
            return
        name, station = target.printer_name, target.station
        if kind == "printer_down":
            severity = "warning"
            # Offline and error say more in the printer's own words; the others say it all.
            detail = f": {seen.error_message}" if state in ("offline", "error") else ""
            message = (
                f"Printer '{name}' for {station} {_DOWN_WORDS[state]}{detail}. "
                "Its tickets go to a backup printer if there is one."
            )
        elif kind == "printer_paper_low":
            severity = "warning"
            back = " can print again, but" if previous in DOWN_STATES | {DOWN_BY_PRINTING} else ""
            message = (
                f"Printer '{name}' for {station}{back} is running low on paper: change the roll."
            )
        else:
            severity = "info"
            message = f"Printer '{name}' for {station} is ready again."
        await self.dispatcher.send_alert(
            kind,
            severity,
            message,
            {
                "station": station,
                "brand_id": target.brand_id,
                "store_id": target.store_id,
                "printer_id": target.printer_id,
                "printer": name,
                "printer_address": str(target.address),
                "state": state,
                "previous_state": previous,
                "error_code": seen.error_code,
                "source": "health_check",
            },
        )

    async def _station_states(self, targets: list[HealthTarget]) -> None:
        board = self.dispatcher.board
        for key, printers in station_groups(targets).items():
            working = [
                p for p in printers if board.breaker(p.printer_id).state is BreakerState.CLOSED
            ]
            details = {
                "station": key.station,
                "brand_id": key.brand_id,
                "store_id": key.store_id,
                "printers": [p.printer_name for p in printers],
                "source": "health_check",
            }
            if not working and key not in self._stations_down:
                self._stations_down.add(key)
                names = ", ".join(f"'{p.printer_name}'" for p in printers)
                await self.dispatcher.send_alert(
                    "station_unroutable",
                    "critical",
                    f"Station '{key.station}' has no working printer ({names}): its tickets "
                    "cannot print until one is back.",
                    details | {"reason": "all_printers_down"},
                )
            elif working and key in self._stations_down:
                self._stations_down.discard(key)
                await self.dispatcher.send_alert(
                    "station_recovered",
                    "info",
                    f"Station '{key.station}' can print again, on '{working[0].printer_name}'.",
                    details,
                )

    async def unserved_round(self) -> None:
        """Announce each route whose tickets nothing will print once while it stays so, and
        once more when none of its tickets is left unserved."""
        found = {u.route: u for u in await self.store.unserved()}
        for route, unserved in found.items():
            if route in self._unserved:
                continue
            await self.dispatcher.alert(
                "ticket_unserved",
                "critical",
                f"{unserved.message}. Nothing prints them until someone acts.",
                route,
                None,
                source="health_check",
                brand=unserved.brand,
                reason=unserved.reason,
                waiting=unserved.waiting,
                oldest_ticket_id=unserved.oldest_ticket_id,
                oldest_created_at=unserved.oldest_created_at.isoformat(),
            )
        for route, gone in self._unserved.items():
            if route in found:
                continue
            store = f"store {route.store_id}" if route.store_id else "no store"
            await self.dispatcher.alert(
                "ticket_unserved_cleared",
                "info",
                f"No ticket for {route.station} of brand {gone.brand or route.brand_id} ({store})"
                " waits unserved any more.",
                route,
                None,
                source="health_check",
                brand=gone.brand,
                reason=gone.reason,
            )
        self._unserved = found
