"""`kprintd run`: the long-running service around the dispatcher.

Owns the process lifecycle: putting the parts together (each gets what it uses through its
constructor), the LISTEN connection, its reconnects and its supervision, the check that the
database is one this kprintd can work with (at start and after every reconnect), the safety scan
after every (re)connect (NOTIFY is not durable), which background services run and on what
schedule (kprintd/services.py), systemd readiness/status/watchdog, and a bounded, clean shutdown
on SIGTERM/SIGINT. State changes are logged once, not once per retry.

Anyone who can connect can NOTIFY, so a notification is untrusted input: one that cannot be read
is logged (a short, escaped sample) and dropped, and nothing in a payload can stop the listener.
A listener that dies anyway is restarted; if it keeps dying, the daemon exits 1 for systemd to
restart it. An error waiting cannot cure (a refused log-in, a missing database, schema or
privilege) stops the daemon with CannotRun, which `kprintd run` reports as one line, exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
import time
from typing import Any, TypeAlias

import psycopg
import structlog
import uvloop

from kprintd import migrate, retention
from kprintd.alerts import Alerts
from kprintd.config import Settings
from kprintd.db import (
    PRINTERS_CHANNEL,
    TICKET_CHANNEL,
    Database,
    create_pool,
    in_scope,
    notice_from_payload,
    open_listener,
)
from kprintd.dispatch import Dispatcher
from kprintd.health import HealthChecks
from kprintd.printers import Printers
from kprintd.sdnotify import SystemdNotifier, watchdog_interval_s
from kprintd.services import (
    LISTENING_POLL_S,
    UNSERVED_CHECK_S,
    HealthPruning,
    Heartbeat,
    IdlePrinterConnections,
    LeaseRescue,
    ListeningWatch,
    RouteSweep,
    Schedule,
    Service,
    ServiceRunner,
    UnservedTickets,
)

log = structlog.get_logger("kprintd.daemon")

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 15.0
LISTENER_PING_S = 10.0
LISTENER_PING_TIMEOUT_S = 5.0
# A listener that dies is a bug: it is restarted after a pause that doubles with each death, and
# more deaths than this within the window end the daemon, since systemd's restart is then the
# better cure (a fresh process) and the failure shows in `systemctl status`.
LISTENER_RESTARTS_MAX = 5
LISTENER_RESTART_WINDOW_S = 300.0
LISTENER_RESTART_PAUSE_S = 0.5
# Dropped notifications logged per window, each on its own line; the rest as one count. Anyone can
# send thousands, and journald drops the lines of a service that logs too fast, real ones too.
DROP_LOG_BURST = 10
DROP_LOG_WINDOW_S = 60.0
PAYLOAD_SAMPLE_CHARS = 200

EXIT_OK = 0
EXIT_LISTENER_FAILED = 1

# Errors at log-in carry no SQLSTATE in psycopg (libpq keeps it to itself), so the server's words
# are matched: PostgreSQL's messages for 28P01, 28000, 3D000 and 42501 at log-in, and libpq's when
# the server asks for a password and none was given. A server that translates its messages gets
# these retried like an outage, which is what every error got before.
_LOGIN_REFUSALS = (
    "authentication failed",  # 28P01 password; 28000 peer, ident, LDAP, certificate...
    "is not permitted to log in",  # 28000: a NOLOGIN role
    "no pg_hba.conf entry",  # 28000
    "does not exist",  # 3D000: the database; 28000: the role
    "permission denied for database",  # 42501: no CONNECT privilege
    "no password supplied",
)
# Invalid authorization, invalid catalog name, and syntax error or access rule violation (a
# missing privilege, table or function): a query that failed so fails the same way next time.
_INCURABLE_SQLSTATE_CLASSES = frozenset({"28", "3D", "42"})


class CannotRun(Exception):
    """The database refuses this daemon in a way no retry can change."""


def incurable(exc: BaseException) -> bool:
    """Is `exc` a database error that waiting and retrying cannot cure?"""
    if not isinstance(exc, psycopg.Error):
        return False
    if exc.sqlstate is not None:
        return exc.sqlstate[:2] in _INCURABLE_SQLSTATE_CLASSES
    message = str(exc)
    return any(refusal in message for refusal in _LOGIN_REFUSALS)


def one_line(exc: BaseException) -> str:
    """The error's own words on one line: the server's message without the query it quotes."""
    text = str(exc)
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        text = exc.diag.message_primary
    return " ".join(text.split()) or type(exc).__name__


def payload_sample(payload: str) -> str:
    """The start of an untrusted payload, fit for a log line: control characters and non-ASCII
    escaped (a terminal must not act on them), at most PAYLOAD_SAMPLE_CHARS characters."""
    sample = payload[:PAYLOAD_SAMPLE_CHARS].encode("unicode_escape").decode("ascii")
    return sample[:PAYLOAD_SAMPLE_CHARS]


class DropLog:
    """Logs dropped notifications: each of the first DROP_LOG_BURST of a window on its own line,
    the rest as one count once the window is over."""

    def __init__(self) -> None:
        self._window_started = -math.inf
        self._logged = 0
        self._unlogged = 0

    def drop(self, reason: str, payload: str, **fields: Any) -> None:
        self.tick()
        if self._logged >= DROP_LOG_BURST:
            self._unlogged += 1
            return
        self._logged += 1
        log.warning(
            "notification dropped",
            reason=reason,
            payload=payload_sample(payload),
            payload_chars=len(payload),
            **fields,
        )

    def tick(self) -> None:
        """Start a new window if the current one is over, reporting what it did not log."""
        now = time.monotonic()
        if now - self._window_started < DROP_LOG_WINDOW_S:
            return
        if self._unlogged:
            log.warning(
                "more notifications dropped", count=self._unlogged, window_s=DROP_LOG_WINDOW_S
            )
        self._window_started, self._logged, self._unlogged = now, 0, 0


Listener: TypeAlias = psycopg.AsyncConnection[dict[str, Any]]


class Daemon:
    def __init__(self, settings: Settings, notifier: SystemdNotifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or SystemdNotifier.from_environment()
        # Each route worker holds a connection only for the duration of one call.
        self.pool = create_pool(settings, max_size=10)
        self.db = Database(self.pool, settings)
        self.printers = Printers(settings)
        self.alerts = Alerts(self.db, settings.daemon_id)
        self.dispatcher = Dispatcher(settings, self.db, self.printers, self.alerts)
        self.lease_rescue = LeaseRescue(
            Schedule(settings.sweep_interval_s, settings.sweep_interval_s),
            self.db,
            lambda: self.dispatcher.check_due_routes(lost=True),
        )
        self.heartbeat = Heartbeat(
            Schedule(settings.health_interval_s, 0.0), self.db, self.dispatcher
        )
        self.services = ServiceRunner(self._services())
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self.exit_code = EXIT_OK
        self.cannot_run: CannotRun | None = None
        self._db_reachable: bool | None = None
        self._backlog = 0
        self._reconnect_delay = RECONNECT_MIN_S
        # The migration files this kprintd was built with, by version: the schema it expects.
        self._migrations: dict[str, str] = {}
        self._drops = DropLog()

    def _services(self) -> list[Service]:
        """The background duties, each on its own schedule."""
        settings = self.settings
        sweep = Schedule(settings.sweep_interval_s, settings.sweep_interval_s)
        health = Schedule(settings.health_interval_s, settings.health_interval_s)
        # A shorter health interval asks for quicker news; it holds for unserved tickets too.
        unserved_s = min(UNSERVED_CHECK_S, settings.health_interval_s)
        services: list[Service] = [
            self.lease_rescue,
            RouteSweep(sweep, self._scan),
            IdlePrinterConnections(sweep, self.printers.links),
            self.heartbeat,
            ListeningWatch(
                Schedule(LISTENING_POLL_S, LISTENING_POLL_S), self.heartbeat, self.dispatcher
            ),
            HealthChecks(health, self.db, self.printers, self.alerts),
            HealthPruning(health, self.db, settings.health_retention_days),
            UnservedTickets(Schedule(unserved_s, unserved_s), self.db, self.alerts),
        ]
        if settings.ticket_retention_days is not None:
            services.append(
                retention.TicketRetention(
                    retention.SCHEDULE, self.db, settings.ticket_retention_days
                )
            )
        return services

    def request_stop(self) -> None:
        if not self.stop_requested.is_set():
            log.info("stop requested; finishing prints in flight")
            self.stop_requested.set()

    def _database_state(self, reachable: bool, error: str | None = None) -> None:
        if self._db_reachable == reachable:
            return
        self._db_reachable = reachable
        if reachable:
            log.info(
                "listening for tickets", channel=TICKET_CHANNEL, daemon_id=self.settings.daemon_id
            )
        else:
            log.warning("database unreachable; reconnecting with backoff", error=error)
            self.notifier.status("database unreachable; reconnecting")

    async def _scan(self) -> int:
        """Wake every route with tickets waiting; returns how many wait."""
        self._backlog = await self.dispatcher.scan()
        printed = self.dispatcher.tickets_printed
        self.notifier.status(f"listening; {self._backlog} ticket(s) waiting; {printed} printed")
        return self._backlog

    async def _check_schema(self, conn: Listener) -> None:
        """Refuse a database without this kprintd's schema, or with an older or newer one.

        Read-only: the bookkeeping table and its lock belong to `kprintd migrate`.
        """
        if conn.info.parameter_status("client_encoding") == "SQL_ASCII":
            # psycopg then returns text as bytes, and no station, ticket or version would match.
            raise CannotRun(
                "the database's encoding is SQL_ASCII, in which kprintd cannot read text: add"
                " client_encoding=UTF8 (or the encoding its text is in) to KPRINTD_DATABASE_URL"
            )
        try:
            cur = await conn.execute("SELECT version FROM kprintd_schema_migrations")
        except psycopg.errors.UndefinedTable:
            raise CannotRun(
                "the database has no kprintd schema (no table kprintd_schema_migrations):"
                " run `kprintd migrate` first"
            ) from None
        applied = {str(row["version"]) for row in await cur.fetchall()}
        newer = sorted(applied - self._migrations.keys())
        if newer:
            raise CannotRun(
                f"the database schema is newer than this kprintd (it has migration {newer[0]},"
                " which this kprintd does not know): upgrade kprintd"
            )
        missing = sorted(self._migrations.keys() - applied)
        if missing:
            raise CannotRun(
                f"the database schema is older than this kprintd ({len(missing)} migration(s)"
                f" not applied, from {self._migrations[missing[0]]}): run `kprintd migrate`"
            )

    async def _connect(self) -> Listener:
        """A connection LISTENing for tickets, to a database with this kprintd's schema."""
        conn = await open_listener(self.settings, TICKET_CHANNEL, PRINTERS_CHANNEL)
        try:
            await self._check_schema(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return conn

    async def _connected(self) -> Listener | None:
        """Connect, waiting out what waiting can cure; None when asked to stop meanwhile.

        Raises CannotRun for the rest.
        """
        while not self.stop_requested.is_set():
            try:
                return await self._connect()
            except (psycopg.Error, TimeoutError) as exc:
                if incurable(exc):
                    raise CannotRun(one_line(exc)) from None
                self._database_state(False, one_line(exc))
            await self._backoff()
        return None

    async def _backoff(self) -> None:
        await self._sleep(self._reconnect_delay * random.uniform(0.5, 1.5))
        self._reconnect_delay = min(self._reconnect_delay * 2, RECONNECT_MAX_S)

    async def _listen_forever(self, conn: Listener | None) -> None:
        """Listen until stopped, reconnecting whenever the connection is lost. `conn`: a
        connection made at start, used first."""
        while not self.stop_requested.is_set():
            if conn is None:
                conn = await self._connected()
                if conn is None:
                    return
            try:
                # LISTEN first, then scan: a ticket committed in between is seen by one or both.
                # Printer changes made while nobody listened are read again the same way.
                self.dispatcher.printers_changed()
                await self.lease_rescue.run_once()
                await self._scan()
                self._database_state(True)
                self._reconnect_delay = RECONNECT_MIN_S
                self.dispatcher.listening = True
                if not self.ready.is_set():
                    self.ready.set()
                    self.notifier.ready(f"listening; {self._backlog} ticket(s) waiting")
                await self._pump(conn)
            except (psycopg.Error, TimeoutError) as exc:
                if incurable(exc):
                    raise CannotRun(one_line(exc)) from None
                self._database_state(False, one_line(exc))
            finally:
                self.dispatcher.listening = False
                with contextlib.suppress(Exception):
                    await conn.close()
            conn = None
            await self._backoff()

    async def _pump(self, conn: Listener) -> None:
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        while not self.stop_requested.is_set():
            try:
                async for notify in conn.notifies(timeout=1.0):
                    try:
                        self._on_notify(notify.channel, notify.payload)
                    except Exception as exc:
                        # A bug, but one payload's: drop it and go on listening.
                        self._drops.drop("error", notify.payload, error=repr(exc), exc_info=exc)
                        self.dispatcher.check_due_routes(lost=True)
                    if self.stop_requested.is_set():
                        return
            except UnicodeDecodeError as exc:
                # A SQL_ASCII database passes any bytes on, and some client encodings (WIN1252)
                # leave bytes undefined. The notifications read with it are lost: the due-route
                # check finds their tickets.
                self._drops.drop("undecodable", bytes(exc.object).decode("latin-1"))
                self.dispatcher.check_due_routes(lost=True)
            self._drops.tick()
            if loop.time() - last_ping >= LISTENER_PING_S:
                # A silent network can leave a dead socket looking idle; a query proves it is not.
                await asyncio.wait_for(conn.execute("SELECT 1"), LISTENER_PING_TIMEOUT_S)
                last_ping = loop.time()

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == PRINTERS_CHANNEL:
            self.dispatcher.printers_changed()
            return
        notice = notice_from_payload(payload)
        if notice is None:
            # Not from kitchen_ticket_notify(), whose payloads always read: nothing waits on it.
            self._drops.drop("unreadable", payload)
        elif in_scope(self.settings, notice.route.brand_id, notice.route.store_id):
            self.dispatcher.notice(notice)

    async def _supervise_listener(self, conn: Listener | None) -> None:
        """Run the listener; restart it when it dies, and stop the daemon if it keeps dying."""
        loop = asyncio.get_running_loop()
        deaths: list[float] = []
        while not self.stop_requested.is_set():
            try:
                await self._listen_forever(conn)
                return
            except CannotRun as exc:
                self.cannot_run = exc
                self.request_stop()
                return
            except Exception:
                conn = None
                self._db_reachable = None  # "listening for tickets" again once it is back
                now = loop.time()
                deaths = [t for t in deaths if now - t < LISTENER_RESTART_WINDOW_S] + [now]
                if len(deaths) > LISTENER_RESTARTS_MAX:
                    log.critical(
                        "the listener keeps failing; exiting for systemd to restart kprintd",
                        failures=len(deaths),
                        window_s=LISTENER_RESTART_WINDOW_S,
                        exc_info=True,
                    )
                    self.exit_code = EXIT_LISTENER_FAILED
                    self.request_stop()
                    return
                pause = LISTENER_RESTART_PAUSE_S * 2 ** (len(deaths) - 1)
                log.exception("the listener failed; restarting it", restart_in_s=pause)
                await self._sleep(pause)

    async def _watchdog_forever(self, interval: float) -> None:
        while not self.stop_requested.is_set():
            self.notifier.watchdog()
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), seconds)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (0) or a listener that keeps failing (1). Raises CannotRun
        for a database waiting cannot make usable: at start before anything ran, later after a
        clean stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Off the main thread (tests, the demo) there are no signals to handle: asyncio says
            # so with RuntimeError, uvloop with ValueError.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)
        try:
            found = migrate.discover(migrate.default_migrations_dir())
        except migrate.MigrationError as exc:
            raise CannotRun(f"cannot tell which schema this kprintd needs: {exc}") from None
        self._migrations = {m.version: m.filename for m in found}
        # Before any task or pool connection: a database that refuses us is one line, not a
        # stream of warnings from every part of the daemon.
        first = await self._connected()
        if first is None:
            return EXIT_OK
        await self.pool.open(wait=False)
        tasks = [asyncio.create_task(self._supervise_listener(first), name="listener")]
        self.services.start()
        interval = watchdog_interval_s()
        if interval:
            tasks.append(asyncio.create_task(self._watchdog_forever(interval), name="watchdog"))
        await self.stop_requested.wait()
        self.notifier.stopping("finishing prints in flight")
        await self.dispatcher.stop(self.settings.shutdown_timeout_s)
        await self.services.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.heartbeat.stopped()
        await self.pool.close()
        log.info("stopped", printed=self.dispatcher.tickets_printed)
        if self.cannot_run is not None:
            raise self.cannot_run
        return self.exit_code


def run(settings: Settings) -> int:
    # uvloop's event loop (libuv, in C) takes about 0.1 ms off a ticket's way to paper on an idle
    # machine: every hop through the loop costs less (docs/decisions/0005-uvloop.md, 0015).
    return uvloop.run(Daemon(settings).run())
