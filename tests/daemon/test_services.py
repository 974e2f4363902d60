"""The daemon's background duties, one run_once at a time against a real PostgreSQL (and, for the
printer checks, emulated printers over loopback TCP), plus the runner they share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import pytest
from structlog.testing import capture_logs

from kprintd import services
from kprintd.alerts import Alerts
from kprintd.config import Settings
from kprintd.db import Database, create_pool
from kprintd.harness import Restaurant, make_brand, query
from kprintd.health import HealthChecks
from kprintd.printers import PrinterLinks, Printers
from kprintd.retention import TicketRetention
from kprintd.services import (
    Counts,
    HealthPruning,
    Heartbeat,
    IdlePrinterConnections,
    LeaseRescue,
    ListeningWatch,
    RouteSweep,
    Schedule,
    Service,
    UnservedTickets,
)
from kprintd.transport import PrinterAddress
from tests.daemon.test_unserved_tickets import beat
from tests.sql.test_retention import counts, make_ticket

T = TypeVar("T")
EVERY = Schedule(3600.0, 0.0)


def with_database(database_url: str, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` with a Database on a small pool of `database_url`."""

    async def scenario() -> T:
        settings = Settings(database_url=database_url, daemon_id="test:1")
        pool = create_pool(settings, max_size=2)
        await pool.open(wait=True)
        try:
            return await work(Database(pool, settings))
        finally:
            await pool.close()

    return asyncio.run(scenario())


@dataclass
class Activity:
    listening: bool = False
    tickets_printed: int = 0


def alert_types(database_url: str) -> list[str]:
    rows = query(database_url, "SELECT alert_type FROM kitchen_alertlog WHERE sent ORDER BY id")
    return [row["alert_type"] for row in rows]


def test_lease_rescue_gives_back_tickets_of_a_daemon_that_vanished(
    database_url: str, restaurant: Restaurant
) -> None:
    restaurant.send("kitchen")
    query(
        database_url,
        "SELECT * FROM kitchen_claim_print_jobs('gone:1', 0.001, %s, NULL, 'kitchen', 5)",
        (restaurant.brand_id,),
    )
    woken: list[bool] = []

    async def work(db: Database) -> tuple[Counts, Counts]:
        rescue = LeaseRescue(EVERY, db, lambda: woken.append(True))
        await asyncio.sleep(0.05)  # the lease is a millisecond long
        return await rescue.run_once(), await rescue.run_once()

    assert with_database(database_url, work) == ({"reclaimed": 1}, {"reclaimed": 0})
    assert woken == [True], "the routes are woken once, when tickets came back"
    [row] = query(database_url, "SELECT status, claimed_by FROM kitchen_kitchenticket")
    assert (row["status"], row["claimed_by"]) == ("new", None)


def test_the_route_sweep_reports_the_tickets_waiting() -> None:
    async def scan() -> int:
        return 3

    assert asyncio.run(RouteSweep(EVERY, scan).run_once()) == {"waiting": 3}


def test_idle_printer_connections_are_closed(
    restaurant: Restaurant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "IDLE_PRINTER_CONNECTION_S", 0.0)
    printer = restaurant.printer("kitchen")

    async def scenario() -> tuple[Counts, Counts]:
        links = PrinterLinks(Settings(database_url="postgresql:///unused"))
        await links.check(PrinterAddress(printer.host, printer.port))
        idle = IdlePrinterConnections(EVERY, links)
        try:
            return await idle.run_once(), await idle.run_once()
        finally:
            await links.close_all()

    assert asyncio.run(scenario()) == ({"closed": 1}, {"closed": 0})


def test_the_heartbeat_says_what_the_daemon_printed_and_whether_it_listens(
    database_url: str,
) -> None:
    activity = Activity()

    async def work(db: Database) -> list[dict[str, Any]]:
        heartbeat = Heartbeat(EVERY, db, activity)
        rows = []
        for listening, printed in [(False, 0), (True, 5)]:
            activity.listening, activity.tickets_printed = listening, printed
            assert await heartbeat.run_once() == {"beats": 1}
            rows += query(database_url, "SELECT * FROM kitchen_daemon_status")
        await heartbeat.stopped()
        rows += query(database_url, "SELECT * FROM kitchen_daemon_status")
        return rows

    not_listening, listening, stopped = with_database(database_url, work)
    assert not_listening["state"] == "alive" and not_listening["listening"] is False
    assert not_listening["not_listening_since"] is not None
    assert listening["listening"] and listening["tickets_printed"] == 5
    assert listening["not_listening_since"] is None
    assert stopped["state"] == "stopped"


def test_the_listening_watch_beats_only_when_the_flag_changes(database_url: str) -> None:
    activity = Activity()

    async def work(db: Database) -> list[int]:
        heartbeat = Heartbeat(EVERY, db, activity)
        watch = ListeningWatch(EVERY, heartbeat, activity)
        beats = [(await watch.run_once())["beats"]]  # nothing written yet: news
        beats.append((await watch.run_once())["beats"])
        activity.listening = True
        beats.append((await watch.run_once())["beats"])
        beats.append((await watch.run_once())["beats"])
        return beats

    assert with_database(database_url, work) == [1, 0, 1, 0]
    [row] = query(database_url, "SELECT listening FROM kitchen_daemon_status")
    assert row["listening"] is True


def test_health_pruning_deletes_old_rows_in_batches(
    database_url: str, restaurant: Restaurant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "PRUNE_BATCH", 2)
    restaurant.printer("kitchen", name="kitchen")
    for age in [timedelta(days=45)] * 5 + [timedelta(days=1)]:
        query(
            database_url,
            "INSERT INTO kitchen_printerhealthcheck (printer_id, checked_at, is_online)"
            " SELECT id, now() - %s, true FROM kitchen_stationprinter",
            (age,),
        )

    async def work(db: Database) -> tuple[Counts, Counts]:
        pruning = HealthPruning(EVERY, db, retention_days=30)
        return await pruning.run_once(), await pruning.run_once()

    assert with_database(database_url, work) == ({"deleted": 5}, {"deleted": 0})
    assert len(query(database_url, "SELECT id FROM kitchen_printerhealthcheck")) == 1


def test_unserved_tickets_are_announced_once_and_once_more_when_served(
    database_url: str, restaurant: Restaurant, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    restaurant.printer("kitchen")
    (ticket_id,) = restaurant.send("kitchen")
    query(
        database_url,
        "UPDATE kitchen_kitchenticket SET created_at = now() - interval '1 minute' WHERE id = %s",
        (ticket_id,),
    )

    async def work(db: Database) -> list[Counts]:
        unserved = UnservedTickets(EVERY, db, Alerts(db, "test:1"))
        found = [await unserved.run_once(), await unserved.run_once()]
        beat(conn, "store-server:1")  # a daemon serving every store starts
        return [*found, await unserved.run_once()]

    assert with_database(database_url, work) == [
        {"routes": 1, "alerts": 1},
        {"routes": 1, "alerts": 0},
        {"routes": 0, "alerts": 1},
    ]
    assert alert_types(database_url) == ["ticket_unserved", "ticket_unserved_cleared"]


def test_health_checks_record_each_printer_and_announce_what_changed(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen = restaurant.printer("kitchen", name="kitchen")
    printers = Printers(Settings(database_url=database_url))

    async def work(db: Database) -> list[Counts]:
        checks = HealthChecks(EVERY, db, printers, Alerts(db, "test:1"))
        try:
            found = [await checks.run_once()]
            kitchen.set_cover_open(True)
            found += [await checks.run_once(), await checks.run_once()]
            kitchen.set_cover_open(False)
            return [*found, await checks.run_once()]
        finally:
            await printers.links.close_all()

    assert with_database(database_url, work) == [
        {"printers": 1, "alerts": 0},
        {"printers": 1, "alerts": 2},
        {"printers": 1, "alerts": 0},
        {"printers": 1, "alerts": 2},
    ]
    assert alert_types(database_url) == [
        "printer_down",
        "station_unroutable",
        "printer_recovered",
        "station_recovered",
    ]
    assert len(query(database_url, "SELECT id FROM kitchen_printerhealthcheck")) == 4


def test_ticket_retention_purges_old_final_tickets(
    database_url: str, conn: psycopg.Connection[dict[str, Any]]
) -> None:
    brand: UUID = make_brand(conn)
    old = make_ticket(conn, brand, age="31 days")
    young = make_ticket(conn, brand, age="29 days")

    async def work(db: Database) -> Counts:
        return await TicketRetention(EVERY, db, days=30).run_once()

    purged = with_database(database_url, work)
    assert purged["tickets"] == 1 and purged["items"] == 2
    assert counts(conn, old)[0] == 0 and counts(conn, young)[0] == 1


class Flaky(Service):
    name = "flaky duty"

    def __init__(self, failures: list[BaseException]) -> None:
        super().__init__(Schedule(0.01, 0.0))
        self.failures = failures
        self.runs = 0

    async def run_once(self) -> Counts:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"runs": self.runs}


def test_the_runner_logs_an_outage_once_survives_a_bug_and_runs_on() -> None:
    outage = psycopg.OperationalError("the database is away")
    duty = Flaky([outage, outage, RuntimeError("a bug"), outage])

    async def scenario() -> None:
        duty.start()
        while duty.runs < 6:
            await asyncio.sleep(0.01)
        await duty.stop()

    with capture_logs() as logs:
        asyncio.run(scenario())
    events = [e["event"] for e in logs if e["log_level"] != "debug"]
    assert events == [
        "flaky duty failed; trying again at the next turn",
        "flaky duty crashed",
        "flaky duty works again",
    ]
