"""Printer health checks inside `kprintd run`: what each printer says, written down and acted on.

Owns the health-check service (kprintd/services.py's shape). Every `health_interval_s` it asks
every active printer of the daemon's scope for its real-time status (PrinterLinks.check: on the
printer's own connection slot, never while it prints; all printers at once, each bounded by the
printer timeouts), records one kitchen_printerhealthcheck row per printer
(sql/schema/43_health.sql), and tells the printers' owner (kprintd/printers.py) what each check
found: that is where a printer is decided down or back, and where the news to announce comes from;
the alerts (kprintd/alerts.py) word and send it. A printer marked as never answering status
requests
(kitchen_stationprinter.answers_status = false) is only connected to; one inside a planned
maintenance window is not checked at all (sql/schema/42_claims.sql). It also announces stations
left without a working printer, once when it happens and once when one is back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from kprintd.alerts import Alerts
from kprintd.db import Database, HealthTarget, Observation, RouteKey
from kprintd.printer_status import PaperState, PrinterState
from kprintd.printers import Printers
from kprintd.services import Counts, Schedule, Service
from kprintd.transport import PrinterAddress, PrinterError, describe_unprintable

log = structlog.get_logger("kprintd.health")

_PAPER = {PaperState.OK: "ok", PaperState.NEAR_END: "low", PaperState.OUT: "out"}


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


class HealthChecks(Service):
    """Checks every printer once a round, records the rows, then updates routing and announces
    changes."""

    name = "health check"

    def __init__(
        self, schedule: Schedule, db: Database, printers: Printers, alerts: Alerts
    ) -> None:
        super().__init__(schedule)
        self._db = db
        self._printers = printers
        self._alerts = alerts

    async def run_once(self) -> Counts:
        targets = await self._db.health_targets()
        if not targets:
            return {"printers": 0, "alerts": 0}
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
        states = await self._db.record_health_checks(checks)
        alerts = 0
        for target in targets:
            state = states.get(target.printer_id)
            news = None if state is None else self._printers.checked(target.printer_id, state)
            if news is not None:
                alerts += 1
                await self._alerts.printer_checked(target, news, checks[target.printer_id])
        for key, group in station_groups(targets).items():
            alerts += await self._alerts.station_working(
                RouteKey(key.brand_id, key.store_id, key.station),
                [p.printer_name for p in group],
                [p.printer_name for p in group if not self._printers.is_down(p.printer_id)],
            )
        return {"printers": len(checks), "alerts": alerts}

    async def _check(self, address: PrinterAddress, answers_status: bool) -> Observation:
        links = self._printers.links
        started = time.monotonic()
        try:
            if not answers_status:
                await links.reach(address)
                return observe_reached(int((time.monotonic() - started) * 1000))
            state = await links.check(address)
        except PrinterError as exc:
            return observe_error(exc)
        return observe_state(state, int((time.monotonic() - started) * 1000))
