"""Ticket retention inside `kprintd run`: the nightly kitchen_purge.

Owns the daemon's retention task. When KPRINTD_TICKET_RETENTION_DAYS is set, it calls
kitchen_purge (sql/schema/44_admin.sql) shortly after the daemon starts and every 24 hours
after, and logs what each purge removed and kept. The database does the work, in one transaction,
and keeps the permanent record (kitchen_purgelog); this module only decides when. Unset, the task
does nothing and tickets are kept for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from kprintd.config import Settings

log = structlog.get_logger("kprintd.retention")

ACTOR = "kprintd:retention"
# Not at once: a restarted daemon first catches up on the tickets that waited for it.
FIRST_PURGE_DELAY_S = 60.0
PURGE_INTERVAL_S = 24 * 3600.0


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


class RetentionService:
    """The daemon's retention task: one kitchen_purge now and then, never two at once."""

    def __init__(
        self,
        settings: Settings,
        pool: AsyncConnectionPool[AsyncConnection[Any]],
        *,
        first_delay_s: float = FIRST_PURGE_DELAY_S,
        interval_s: float = PURGE_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self._first_delay_s = first_delay_s
        self._interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        """Purge after the first delay, then every interval, until `stop`; at once if unset."""
        days = self.settings.ticket_retention_days
        if days is None:
            return
        delay = self._first_delay_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            await self._guarded_purge(days)
            delay = self._interval_s

    async def purge(self, days: int) -> PurgeRecord:
        """One kitchen_purge of final tickets older than `days` days; its kitchen_purgelog row."""
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(PurgeRecord))
            await cur.execute(
                "SELECT id, cutoff, tickets_deleted, items_deleted, log_rows_deleted,"
                " tickets_kept_not_final, tickets_kept_referenced, digest"
                " FROM kprintd.kitchen_purge(make_interval(days => %s), %s)",
                (days, ACTOR),
            )
            record = await cur.fetchone()
        if record is None:
            raise RuntimeError("kitchen_purge returned no row")
        return record

    async def _guarded_purge(self, days: int) -> None:
        """A failed purge changed nothing (one transaction): say so and wait for the next turn."""
        try:
            record = await self.purge(days)
        except psycopg.Error as exc:
            log.warning(
                "ticket purge failed; trying again at the next turn",
                retention_days=days,
                error=str(exc).strip(),
                next_attempt_in_s=self._interval_s,
            )
            return
        except Exception:
            # A bug must not end the task: the next turn may well succeed.
            log.exception("ticket purge crashed", retention_days=days)
            return
        log.info(
            "purged old tickets",
            retention_days=days,
            purge_id=record.id,
            cutoff=record.cutoff.isoformat(),
            tickets=record.tickets_deleted,
            items=record.items_deleted,
            log_rows=record.log_rows_deleted,
            kept_not_final=record.tickets_kept_not_final,
            kept_referenced=record.tickets_kept_referenced,
            digest=record.digest,
        )
