"""Alerts: what kprintd announces on kitchen_alert, in which words, and only once.

Owns every alert the daemon raises, printing's and the health checks' alike: the wording of each
kind, its details (the same fields where both sides know them; `source` says which side saw it),
logging it, raising it in the database (kitchen_raise_alert in sql/schema/43_health.sql, which
holds back a change another daemon announced a moment ago), and remembering the conditions that
stand (a station on
hold, without a printer, with no working printer, with unserved tickets) so that each is
announced when it begins and when it ends, never once per ticket or check. Whether a printer is
down is not decided here (kprintd/printers.py); a change of it is worded here. Losing an alert
must never stop printing: a database error is logged and the alert dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import psycopg
import structlog

from kprintd.db import HealthTarget, Observation, RouteKey, RoutePrinter, UnservedRoute
from kprintd.printers import DOWN_BY_PRINTING, DOWN_STATES, CheckNews
from kprintd.transport import PrinterError

log = structlog.get_logger("kprintd.alerts")

_DOWN_WORDS = {
    "offline": "is offline",
    "cover_open": "has its cover open",
    "paper_out": "is out of paper",
    "error": "reports an error",
}


class AlertSink(Protocol):
    async def raise_alert(
        self, alert_type: str, severity: str, message: str, details: dict[str, Any]
    ) -> bool: ...


def _route_details(route: RouteKey, source: str) -> dict[str, Any]:
    return {
        "station": route.station,
        "brand_id": route.brand_id,
        "store_id": route.store_id,
        "source": source,
    }


def _printer_details(printer: RoutePrinter) -> dict[str, Any]:
    return {
        "printer_id": printer.printer_id,
        "printer": printer.printer_name,
        "printer_address": f"{printer.host}:{printer.port}",
    }


class Alerts:
    """Raises alerts naming this daemon, and remembers which standing conditions it announced."""

    def __init__(self, sink: AlertSink, daemon_id: str) -> None:
        self._sink = sink
        self._daemon_id = daemon_id
        # Standing conditions announced, by route: each is news when it begins and when it ends.
        self._on_hold: set[RouteKey] = set()
        self._no_printer: set[RouteKey] = set()
        self._all_down: set[RouteKey] = set()
        self._unserved: dict[RouteKey, UnservedRoute] = {}

    async def send(self, kind: str, severity: str, message: str, details: dict[str, Any]) -> bool:
        """Log the alert and raise it in the database; False when it was not sent (held back as
        another daemon's repeat, or the database is away)."""
        emit = log.info if severity == "info" else log.warning
        emit("alert", alert=kind, severity=severity, station=details["station"], message=message)
        details = details | {"daemon": self._daemon_id}
        try:
            sent = await self._sink.raise_alert(kind, severity, message, details)
        except psycopg.Error as exc:
            log.warning("alert could not be sent", alert=kind, error=str(exc).strip())
            return False
        if not sent:
            log.info("alert already announced by another daemon", alert=kind)
        return sent

    # Printing -----------------------------------------------------------------------------------

    async def printer_down(
        self, route: RouteKey, printer: RoutePrinter, error: PrinterError
    ) -> None:
        await self.send(
            "printer_down",
            "warning",
            f"Printer '{printer.printer_name}' for {route.station} stopped printing: "
            f"{error.message}. Its tickets go to a backup printer if there is one.",
            _route_details(route, "print") | _printer_details(printer) | {"error_code": error.code},
        )

    async def printer_recovered(self, route: RouteKey, printer: RoutePrinter) -> None:
        await self.send(
            "printer_recovered",
            "info",
            f"Printer '{printer.printer_name}' for {route.station} is printing again.",
            _route_details(route, "print") | _printer_details(printer),
        )

    async def station_on_hold(
        self, route: RouteKey, printers: Sequence[RoutePrinter], until: datetime
    ) -> None:
        """Every printer of the route is in planned maintenance until `until` (local time)."""
        if route in self._on_hold:
            return
        self._on_hold.add(route)
        await self.send(
            "station_in_maintenance",
            "warning",
            f"Every printer of station '{route.station}' is in planned maintenance "
            f"until {until:%H:%M}: its tickets wait and print when the first one is back.",
            _route_details(route, "print")
            | {"until": until.isoformat(), "printers": [p.printer_name for p in printers]},
        )

    async def station_off_hold(self, route: RouteKey, printers: Sequence[RoutePrinter]) -> None:
        """The route has printers out of maintenance: news if it was on hold."""
        if route not in self._on_hold:
            return
        self._on_hold.discard(route)
        await self.send(
            "station_recovered",
            "info",
            f"Station '{route.station}' prints again on '{printers[0].printer_name}':"
            " its planned maintenance is over.",
            _route_details(route, "print")
            | {"reason": "maintenance_over", "printers": [p.printer_name for p in printers]},
        )

    async def station_unroutable(self, route: RouteKey) -> None:
        """The route has no active printer at all."""
        if route in self._no_printer:
            return
        self._no_printer.add(route)
        await self.send(
            "station_unroutable",
            "critical",
            f"Station '{route.station}' has no active printer: its tickets fail until "
            "one is configured in kitchen_stationprinter.",
            _route_details(route, "print") | {"reason": "no_printer"},
        )

    def station_routable(self, route: RouteKey) -> None:
        """The route has a printer again; its next loss of every printer is news."""
        self._no_printer.discard(route)

    # Health checks ------------------------------------------------------------------------------

    async def printer_checked(
        self, target: HealthTarget, news: CheckNews, seen: Observation
    ) -> None:
        """A health check changed what is known of a printer (Printers.checked)."""
        state, previous = news.state, news.previous
        name, route = (
            target.printer_name,
            RouteKey(target.brand_id, target.store_id, target.station),
        )
        if news.kind == "printer_down":
            severity = "warning"
            # Offline and error say more in the printer's own words; the others say it all.
            detail = f": {seen.error_message}" if state in ("offline", "error") else ""
            message = (
                f"Printer '{name}' for {route.station} {_DOWN_WORDS[state]}{detail}. "
                "Its tickets go to a backup printer if there is one."
            )
        elif news.kind == "printer_paper_low":
            severity = "warning"
            back = " can print again, but" if previous in DOWN_STATES | {DOWN_BY_PRINTING} else ""
            message = (
                f"Printer '{name}' for {route.station}{back} is running low on paper:"
                " change the roll."
            )
        else:
            severity = "info"
            message = f"Printer '{name}' for {route.station} is ready again."
        await self.send(
            news.kind,
            severity,
            message,
            _route_details(route, "health_check")
            | {
                "printer_id": target.printer_id,
                "printer": name,
                "printer_address": str(target.address),
                "state": state,
                "previous_state": previous,
                "error_code": seen.error_code,
            },
        )

    async def station_working(
        self, route: RouteKey, printers: Sequence[str], working: Sequence[str]
    ) -> bool:
        """A health round found `working` of the station's `printers` not down: news when none
        is, and when one is again. Returns whether it was news."""
        details = _route_details(route, "health_check") | {"printers": list(printers)}
        if not working and route not in self._all_down:
            self._all_down.add(route)
            names = ", ".join(f"'{name}'" for name in printers)
            await self.send(
                "station_unroutable",
                "critical",
                f"Station '{route.station}' has no working printer ({names}): its tickets "
                "cannot print until one is back.",
                details | {"reason": "all_printers_down"},
            )
            return True
        elif working and route in self._all_down:
            self._all_down.discard(route)
            await self.send(
                "station_recovered",
                "info",
                f"Station '{route.station}' can print again, on '{working[0]}'.",
                details,
            )
            return True
        return False

    async def unserved(self, found: Sequence[UnservedRoute]) -> int:
        """Announce each route whose tickets nothing will print once while it stays so, and once
        more when none of its tickets is left unserved. Returns the alerts raised."""
        raised = 0
        current = {u.route: u for u in found}
        for route, unserved in current.items():
            if route in self._unserved:
                continue
            raised += 1
            await self.send(
                "ticket_unserved",
                "critical",
                f"{unserved.message}. Nothing prints them until someone acts.",
                _route_details(route, "health_check")
                | {
                    "brand": unserved.brand,
                    "reason": unserved.reason,
                    "waiting": unserved.waiting,
                    "oldest_ticket_id": unserved.oldest_ticket_id,
                    "oldest_created_at": unserved.oldest_created_at.isoformat(),
                },
            )
        gone = [u for route, u in self._unserved.items() if route not in current]
        # The latest words of each, for its all-clear.
        self._unserved = current
        for memo in gone:
            route = memo.route
            store = f"store {route.store_id}" if route.store_id else "no store"
            raised += 1
            await self.send(
                "ticket_unserved_cleared",
                "info",
                f"No ticket for {route.station} of brand {memo.brand or route.brand_id} ({store})"
                " waits unserved any more.",
                _route_details(route, "health_check")
                | {"brand": memo.brand, "reason": memo.reason},
            )
        return raised
