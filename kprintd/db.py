"""Database access for the daemon: the connection pool and one typed call per SQL function.

Owns every round trip kprintd makes to PostgreSQL at run time, and the types that cross it: what
a claim returns, the print outcomes recorded (Printed, Failed, Released, PrinterFailure: turned
into kitchen_finish_print_jobs' JSON here and nowhere else), health checks, heartbeats, purges.
The SQL itself lives in sql/; this module only calls the functions defined there and maps their
rows to Python types. The claim, the one call on every ticket's way to paper, goes through
psycopg's libpq interface (psycopg.pq) as a prepared statement; everything else through psycopg's
connections.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection, errors, postgres, pq
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from kprintd import __version__
from kprintd.config import Settings
from kprintd.transport import PrinterAddress

TICKET_CHANNEL = "kitchen_ticket_new"
# Printers, templates or maintenance windows changed (sql/schema/30_triggers.sql): routes read
# their printers again.
PRINTERS_CHANNEL = "kitchen_printers_changed"
ALERT_CHANNEL = "kitchen_alert"

# The claim as a prepared statement, made on each pooled connection the first time it claims.
CLAIM_STATEMENT = b"kprintd_claim"
CLAIM_QUERY = (
    b"SELECT ticket_id, attempt, max_retries, document"
    b" FROM kprintd.kitchen_claim_print_jobs($1, $2, $3, $4, $5, $6)"
)
# Its parameters' types, as the function declares them; their values are sent as text.
CLAIM_PARAM_TYPES = [
    postgres.types[name].oid for name in ("text", "float8", "uuid", "uuid", "text", "int4")
]

# A database behind a dead network link must be noticed in seconds, not after the kernel's
# quarter of an hour of retransmissions. (libpq ignores these on Unix sockets.)
TCP_LIVENESS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
}


@dataclass(frozen=True)
class RouteKey:
    """Where a ticket is headed: one station of one brand in one store (None = no store)."""

    brand_id: uuid.UUID | None
    store_id: uuid.UUID | None
    station: str

    def __str__(self) -> str:
        store = f"/{self.store_id}" if self.store_id else ""
        return f"{self.station}@{self.brand_id}{store}"


@dataclass(frozen=True)
class TicketNotice:
    """What the daemon takes from a kitchen_ticket_new notification (kitchen_ticket_notice in
    sql/schema/30_triggers.sql): the route to wake. Nothing else in a payload is used; what
    prints comes from the claim."""

    route: RouteKey


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value else None


def _text_or_none(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more, and a character is at least a byte:
# anything longer did not come through NOTIFY as we know it and is not worth parsing.
NOTICE_PAYLOAD_MAX_CHARS = 7999
# kitchen_kitchenticket.printer_target is VARCHAR(50): a longer station names no ticket.
STATION_MAX_CHARS = 50


def notice_from_payload(payload: str) -> TicketNotice | None:
    """Read a kitchen_ticket_new payload; None when it names no route. Never raises.

    Anyone who can connect can NOTIFY, so the payload is untrusted input: only the route it names
    is read, and other keys (a ticket id, a document, anything) are ignored.
    """
    if len(payload) > NOTICE_PAYLOAD_MAX_CHARS:
        return None
    try:
        # RecursionError: 7,000 '[' fit in a payload and nest deeper than the parser's limit.
        data = json.loads(payload)
        station = data["station"]
        brand_id = _uuid_or_none(data.get("brand_id"))
        store_id = _uuid_or_none(data.get("store_id"))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    # isprintable() also refuses NUL and lone surrogates, which PostgreSQL and the UTF-8 codec
    # would reject in every query made for the route.
    if not isinstance(station, str) or not 0 < len(station) <= STATION_MAX_CHARS:
        return None
    if not station.isprintable():
        return None
    return TicketNotice(RouteKey(brand_id, store_id, station))


@dataclass(frozen=True)
class RoutePrinter:
    printer_id: int
    printer_name: str
    host: str
    port: int
    priority: int
    paper_width_mm: int
    chars_per_line: int
    header_line: str | None
    buzzer: bool
    copies: int
    large_item_font: bool
    codepage: str
    cut_mode: str
    time_zone: str | None = None  # IANA name; None: the zone of the machine running kprintd
    # Its current or next maintenance window as time.monotonic() instants; None: none planned.
    maintenance_from: float | None = None
    maintenance_until: float | None = None
    # False: the printer never answers DLE EOT; send without asking, confirmed by the write alone.
    answers_status: bool = True

    def in_maintenance(self, at: float) -> bool:
        """Is `at` (a time.monotonic() instant) inside the printer's maintenance window?"""
        if self.maintenance_from is None or self.maintenance_until is None:
            return False
        return self.maintenance_from <= at < self.maintenance_until


@dataclass(frozen=True)
class ClaimedJob:
    ticket_id: int
    attempt: int
    max_retries: int
    document: dict[str, Any]  # kitchen_ticket_document(), built by the claim


@dataclass(frozen=True)
class DueRoute:
    route: RouteKey
    waiting: int
    next_due_at: datetime


@dataclass(frozen=True)
class Printed:
    """The ticket is on paper, on `printer`."""

    ticket_id: int
    attempt: int
    printer: RoutePrinter
    duration_ms: int
    bytes: int
    tried: int  # printers tried in this attempt, this one included
    retry_banner: bool  # printed under a RETRY banner: it may be a duplicate


@dataclass(frozen=True)
class Failed:
    """The attempt failed; the database decides from `retryable`, the ticket's attempts and
    `refund_attempt` whether it is tried again after `retry_delay_s` or fails for good."""

    ticket_id: int
    attempt: int
    error_code: str
    error_message: str
    may_have_printed: bool
    retry_delay_s: float
    retryable: bool
    refund_attempt: bool


@dataclass(frozen=True)
class Released:
    """Claimed but never sent (the daemon is stopping): the attempt is given back."""

    ticket_id: int
    attempt: int


Outcome = Printed | Failed | Released


@dataclass(frozen=True)
class PrinterFailure:
    """A printer that refused, timed out or lied during an attempt, whatever became of the
    ticket (kitchen_stationprinter.failed_prints)."""

    printer_id: int
    error_message: str


@dataclass(frozen=True)
class FinishRecord:
    ticket_id: int
    final_status: str | None
    recorded: bool


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """One element of kitchen_finish_print_jobs' p_results."""
    match outcome:
        case Printed():
            return {
                "ticket_id": outcome.ticket_id,
                "attempt": outcome.attempt,
                "outcome": "printed",
                "printer_id": outcome.printer.printer_id,
                "printer_name": outcome.printer.printer_name,
                "printer_ip": outcome.printer.host,
                "duration_ms": outcome.duration_ms,
                "bytes": outcome.bytes,
                "tried": outcome.tried,
            }
        case Failed():
            return {
                "ticket_id": outcome.ticket_id,
                "attempt": outcome.attempt,
                "outcome": "failed",
                "error_code": outcome.error_code,
                "error_message": outcome.error_message,
                "may_have_printed": outcome.may_have_printed,
                "retry_delay_s": outcome.retry_delay_s,
                "retryable": outcome.retryable,
                "refund_attempt": outcome.refund_attempt,
            }
        case Released():
            return {
                "ticket_id": outcome.ticket_id,
                "attempt": outcome.attempt,
                "outcome": "released",
            }


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
class Observation:
    """What one check found, in the columns of kitchen_printerhealthcheck."""

    is_online: bool
    response_time_ms: int | None
    paper_status: str
    error_code: str | None = None
    error_message: str | None = None
    cutter_ok: bool | None = None
    temperature_ok: bool | None = None


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


@dataclass(frozen=True)
class PurgeRecord:
    """The kitchen_purgelog row a purge wrote (the columns the log line reports)."""

    id: int
    cutoff: datetime
    tickets_deleted: int
    items_deleted: int
    log_rows_deleted: int
    tickets_kept_not_final: int
    tickets_kept_referenced: int
    digest: str


_jsonb = functools.partial(Jsonb, dumps=functools.partial(json.dumps, default=str))


def scope_args(settings: Settings) -> tuple[list[uuid.UUID] | None, uuid.UUID | None]:
    return (list(settings.brand_ids) or None, settings.store_id)


def in_scope(settings: Settings, brand_id: uuid.UUID | None, store_id: uuid.UUID | None) -> bool:
    if settings.brand_ids and brand_id not in settings.brand_ids:
        return False
    return settings.store_id is None or settings.store_id == store_id


def create_pool(settings: Settings, max_size: int) -> AsyncConnectionPool[AsyncConnection[Any]]:
    return AsyncConnectionPool(
        settings.database_url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True, "application_name": "kprintd", **TCP_LIVENESS},
        name="kprintd",
        reconnect_timeout=0,
    )


class Database:
    """Typed calls to the daemon's SQL functions (sql/schema/42_claims.sql, 43_health.sql)."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]], settings: Settings):
        self._pool = pool
        self._settings = settings

    async def claim(self, route: RouteKey, limit: int) -> list[ClaimedJob]:
        """Claim up to `limit` due tickets of `route`, each with its document as the database
        holds it now."""
        params = (
            self._settings.daemon_id,
            repr(float(self._settings.lease_s)),
            _text_or_none(route.brand_id),
            _text_or_none(route.store_id),
            route.station,
            str(limit),
        )
        async with self._pool.connection() as conn:
            encoding = conn.info.encoding
            encoded = [None if p is None else p.encode(encoding) for p in params]
            try:
                result = await _exchange(
                    conn, lambda pgconn: pgconn.send_query_prepared(CLAIM_STATEMENT, encoded)
                )
            except errors.InvalidSqlStatementName:
                # This connection has not claimed before (or the server forgot): prepare, retry.
                await _exchange(
                    conn,
                    lambda pgconn: pgconn.send_prepare(
                        CLAIM_STATEMENT, CLAIM_QUERY, param_types=CLAIM_PARAM_TYPES
                    ),
                )
                result = await _exchange(
                    conn, lambda pgconn: pgconn.send_query_prepared(CLAIM_STATEMENT, encoded)
                )
            rows = _text_rows(result, encoding)
        return [_claimed_job(row) for row in rows]

    async def route_printers(self, route: RouteKey) -> list[RoutePrinter]:
        async with self._pool.connection() as conn:
            rows, server_now = await _with_server_now(
                conn,
                "SELECT printer_id, printer_name, printer_ip, printer_port, priority,"
                " paper_width_mm, chars_per_line, header_line, buzzer, copies, large_item_font,"
                " codepage, cut_mode, time_zone, maintenance_from, maintenance_until,"
                " answers_status FROM kprintd.kitchen_route_printers(%s, %s, %s)",
                (route.brand_id, route.store_id, route.station),
            )
        now = time.monotonic()

        def monotonic(at: datetime | None) -> float | None:
            # From the server's now, so the daemon's clock may differ from its own.
            return None if at is None else now + (at - server_now).total_seconds()

        return [
            replace(
                RoutePrinter(*row[:14]),
                maintenance_from=monotonic(row[14]),
                maintenance_until=monotonic(row[15]),
                answers_status=row[16],
            )
            for row in rows
        ]

    async def finish(
        self, outcomes: Sequence[Outcome], printer_failures: Sequence[PrinterFailure]
    ) -> list[FinishRecord]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT ticket_id, final_status, recorded"
                " FROM kprintd.kitchen_finish_print_jobs(%s, %s, %s)",
                (
                    self._settings.daemon_id,
                    Jsonb([outcome_json(o) for o in outcomes]),
                    Jsonb([dataclasses.asdict(f) for f in printer_failures]),
                ),
            )
            rows = await cur.fetchall()
        return [FinishRecord(*row) for row in rows]

    async def seconds_until_due(self, route: RouteKey) -> float | None:
        """How long until this route's next ticket is due (<= 0: now); None if none waits."""
        async with self._pool.connection() as conn:
            rows, server_now = await _with_server_now(
                conn,
                "SELECT kprintd.kitchen_route_next_due(%s, %s, %s)",
                (route.brand_id, route.store_id, route.station),
            )
        due_at = rows[0][0] if rows else None
        return None if due_at is None else (due_at - server_now).total_seconds()

    async def due_routes(self) -> list[DueRoute]:
        brand_ids, store_id = scope_args(self._settings)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT brand_id, store_id, station, waiting, next_due_at"
                " FROM kprintd.kitchen_due_routes(%s, %s)",
                (brand_ids, store_id),
            )
            rows = await cur.fetchall()
        return [DueRoute(RouteKey(r[0], r[1], r[2]), r[3], r[4]) for r in rows]

    async def reclaim_expired_leases(self) -> int:
        brand_ids, store_id = scope_args(self._settings)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT kprintd.kitchen_reclaim_expired_leases(%s, %s)", (brand_ids, store_id)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def raise_alert(
        self, alert_type: str, severity: str, message: str, details: dict[str, Any]
    ) -> bool:
        """Raise one alert; False when it was held back as another daemon's repeat
        (kitchen_raise_alert in sql/schema/43_health.sql)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT kprintd.kitchen_raise_alert(%s, %s, %s, %s)",
                (alert_type, severity, message, _jsonb(details)),
            )
            row = await cur.fetchone()
        return bool(row and row[0] and row[0].get("sent"))

    async def health_targets(self) -> list[HealthTarget]:
        brand_ids, store_id = scope_args(self._settings)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT printer_id, printer_name, host, port, brand_id, store_id, station,"
                " answers_status FROM kprintd.kitchen_health_printers(%s, %s)",
                (brand_ids, store_id),
            )
            rows = await cur.fetchall()
        return [HealthTarget(*row) for row in rows]

    async def record_health_checks(self, checks: dict[int, Observation]) -> dict[int, str]:
        """Writes the rows; returns each printer's state as kitchen_printer_state() sees it."""
        payload = [
            {"printer_id": printer_id, **dataclasses.asdict(observation)}
            for printer_id, observation in checks.items()
        ]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT printer_id, state FROM kprintd.kitchen_record_health_checks(%s)",
                (Jsonb(payload),),
            )
            rows = await cur.fetchall()
        return {int(row[0]): str(row[1]) for row in rows}

    async def prune_health_checks(self, batch: int) -> int:
        """Delete up to `batch` health rows past their retention; returns how many went."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT kprintd.kitchen_prune_health_checks(%s, %s)",
                (self._settings.health_retention_days, batch),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

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

    async def daemon_stopped(self, tickets_printed: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "SELECT kprintd.kitchen_daemon_stopped(%s, %s)",
                (self._settings.daemon_id, tickets_printed),
            )

    async def unserved_routes(self) -> list[UnservedRoute]:
        """Every unserved route, whatever this daemon's scope."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT brand_id, store_id, station, brand, reason, waiting, oldest_created_at,"
                " oldest_ticket_id, message FROM kprintd.kitchen_unserved_routes()"
            )
            rows = await cur.fetchall()
        return [UnservedRoute(RouteKey(*row[:3]), *row[3:]) for row in rows]

    async def purge(self, days: int, actor: str) -> PurgeRecord:
        """One kitchen_purge of final tickets older than `days` days; its kitchen_purgelog row."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(PurgeRecord))
            await cur.execute(
                "SELECT id, cutoff, tickets_deleted, items_deleted, log_rows_deleted,"
                " tickets_kept_not_final, tickets_kept_referenced, digest"
                " FROM kprintd.kitchen_purge(%s, %s)",
                (timedelta(days=days), actor),
            )
            record = await cur.fetchone()
        if record is None:
            raise errors.DataError("kitchen_purge returned no row")
        return record


def _claimed_job(row: tuple[str | None, ...]) -> ClaimedJob:
    ticket_id, attempt, max_retries, document = row
    if ticket_id is None or attempt is None or max_retries is None or document is None:
        raise errors.DataError(f"the claim returned an incomplete row: {row}")
    return ClaimedJob(int(ticket_id), int(attempt), int(max_retries), json.loads(document))


async def _with_server_now(
    conn: AsyncConnection[Any], query: str, params: tuple[Any, ...]
) -> tuple[list[tuple[Any, ...]], datetime]:
    """The rows of `query` and the server's now(), in one round trip (a pipeline)."""
    async with conn.pipeline():
        cur = await conn.execute(query, params)
        clock = await conn.execute("SELECT now()")
    rows = await cur.fetchall()
    server_now = await clock.fetchone()
    if server_now is None:
        raise errors.OperationalError("the server did not say what time it is")
    return rows, server_now[0]


async def _exchange(
    conn: AsyncConnection[Any], send: Callable[[pq.abc.PGconn], None]
) -> pq.abc.PGresult:
    """Send one command on `conn` through libpq and wait for its result; raises it as psycopg
    would.

    Used for the claim: on a CPU gone cold since the last ticket, psycopg's own way from execute()
    to the bytes on the socket and back costs about 0.3 ms more than this, and every ticket waits
    for the claim (docs/decisions/0007-claim-through-libpq.md, 0015). The connection is left idle,
    as psycopg expects it back; a failure leaves it broken or active, and the pool discards it.
    """
    pgconn = conn.pgconn
    send(pgconn)
    loop = asyncio.get_running_loop()
    while pgconn.flush():
        await _ready(loop.add_writer, loop.remove_writer, pgconn.socket)
    pgconn.consume_input()
    while pgconn.is_busy():
        await _ready(loop.add_reader, loop.remove_reader, pgconn.socket)
        pgconn.consume_input()
    result = pgconn.get_result()
    while pgconn.get_result() is not None:
        pass  # the end of the command: the connection is idle again
    if result is None:
        raise errors.OperationalError("the server returned no result")
    if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    return result


def _text_rows(result: pq.abc.PGresult, encoding: str) -> list[tuple[str | None, ...]]:
    return [
        tuple(
            None if (value := result.get_value(row, column)) is None else value.decode(encoding)
            for column in range(result.nfields)
        )
        for row in range(result.ntuples)
    ]


async def _ready(watch: Callable[..., object], unwatch: Callable[[int], object], fd: int) -> None:
    """Wait until the event loop sees `fd` readable (or writable, as `watch` says)."""
    ready = asyncio.get_running_loop().create_future()
    watch(fd, ready.set_result, None)
    try:
        await ready
    finally:
        unwatch(fd)


async def open_listener(settings: Settings, *channels: str) -> AsyncConnection[dict[str, Any]]:
    """A dedicated autocommit connection LISTENing on `channels`."""
    conn = await AsyncConnection.connect(
        settings.database_url,
        autocommit=True,
        row_factory=dict_row,
        application_name="kprintd-listener",
        connect_timeout=5,
        **TCP_LIVENESS,
    )
    for channel in channels:
        await conn.execute(f"LISTEN {channel}")
    return conn
