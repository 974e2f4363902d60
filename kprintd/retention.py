"""Ticket retention inside `kprintd run`: the nightly kitchen_purge.

Owns the retention service (kprintd/services.py's shape). When KPRINTD_TICKET_RETENTION_DAYS is
set, it calls kitchen_purge (sql/schema/44_admin.sql) shortly after the daemon starts and
every 24 hours after, and logs what each purge removed and kept. The database does the work, in
one transaction (a failed purge changed nothing and is tried at the next turn), and keeps the
permanent record (kitchen_purgelog); this module only decides when. Unset, the daemon does not
run it and tickets are kept for ever.
"""

from __future__ import annotations

import structlog

from kprintd.db import Database
from kprintd.services import Counts, Schedule, Service

log = structlog.get_logger("kprintd.retention")

ACTOR = "kprintd:retention"
# Not at once: a restarted daemon first catches up on the tickets that waited for it.
FIRST_PURGE_DELAY_S = 60.0
PURGE_INTERVAL_S = 24 * 3600.0
SCHEDULE = Schedule(interval_s=PURGE_INTERVAL_S, first_after_s=FIRST_PURGE_DELAY_S)


class TicketRetention(Service):
    """One kitchen_purge of final tickets older than `days` days a turn."""

    name = "ticket purge"

    def __init__(self, schedule: Schedule, db: Database, days: int) -> None:
        super().__init__(schedule)
        self._db = db
        self.days = days

    async def run_once(self) -> Counts:
        record = await self._db.purge(self.days, ACTOR)
        log.info(
            "purged old tickets",
            retention_days=self.days,
            purge_id=record.id,
            cutoff=record.cutoff.isoformat(),
            tickets=record.tickets_deleted,
            items=record.items_deleted,
            log_rows=record.log_rows_deleted,
            kept_not_final=record.tickets_kept_not_final,
            kept_referenced=record.tickets_kept_referenced,
            digest=record.digest,
        )
        return {
            "tickets": record.tickets_deleted,
            "items": record.items_deleted,
            "log_rows": record.log_rows_deleted,
        }
