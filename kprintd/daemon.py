"""`kprintd run`: the long-running service around the dispatcher.

Owns the process lifecycle: the LISTEN connection and its reconnects, the startup and periodic
safety scans (NOTIFY is not durable), systemd readiness/status/watchdog, and a bounded, clean
shutdown on SIGTERM/SIGINT. State changes are logged once, not once per retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from typing import Any

import psycopg
import structlog
import uvloop

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
from kprintd.health import HealthMonitor
from kprintd.sdnotify import SystemdNotifier, watchdog_interval_s

log = structlog.get_logger("kprintd.daemon")

RECONNECT_MAX_S = 15.0
LISTENER_PING_S = 10.0
LISTENER_PING_TIMEOUT_S = 5.0
IDLE_PRINTER_CONNECTION_S = 5.0


class Daemon:
    def __init__(self, settings: Settings, notifier: SystemdNotifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or SystemdNotifier.from_environment()
        # Each route worker holds a connection only for the duration of one call.
        self.pool = create_pool(settings, max_size=10)
        self.db = Database(self.pool, settings)
        self.dispatcher = Dispatcher(settings, self.db)
        self.health = HealthMonitor(settings, self.pool, self.dispatcher)
        self.stop_requested = asyncio.Event()
        self.ready = asyncio.Event()
        self._db_reachable: bool | None = None
        self._backlog = 0

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

    async def _scan(self) -> None:
        self._backlog = await self.dispatcher.scan()
        printed = self.dispatcher.tickets_printed
        self.notifier.status(f"listening; {self._backlog} ticket(s) waiting; {printed} printed")

    async def _listen_forever(self) -> None:
        delay = 0.1
        while not self.stop_requested.is_set():
            try:
                conn = await open_listener(self.settings, TICKET_CHANNEL, PRINTERS_CHANNEL)
            except psycopg.OperationalError as exc:
                self._database_state(False, str(exc).strip())
                await self._sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            try:
                # LISTEN first, then scan: a ticket committed in between is seen by one or both.
                # Printer changes made while nobody listened are read again the same way.
                self.dispatcher.printers_changed()
                await self._scan()
                self._database_state(True)
                delay = 0.1
                if not self.ready.is_set():
                    self.ready.set()
                    self.notifier.ready(f"listening; {self._backlog} ticket(s) waiting")
                await self._pump(conn)
            except (psycopg.Error, TimeoutError) as exc:
                self._database_state(False, str(exc).strip() or "the database stopped answering")
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _pump(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        while not self.stop_requested.is_set():
            async for notify in conn.notifies(timeout=1.0):
                if notify.channel == PRINTERS_CHANNEL:
                    self.dispatcher.printers_changed()
                    continue
                notice = notice_from_payload(notify.payload)
                if notice is None:
                    log.warning(
                        "unreadable notification; scanning instead", payload=notify.payload[:200]
                    )
                    await self._scan()
                elif in_scope(self.settings, notice.route.brand_id, notice.route.store_id):
                    self.dispatcher.wake(notice.route, notice)
                if self.stop_requested.is_set():
                    return
            if loop.time() - last_ping >= LISTENER_PING_S:
                # A silent network can leave a dead socket looking idle; a query proves it is not.
                await asyncio.wait_for(conn.execute("SELECT 1"), LISTENER_PING_TIMEOUT_S)
                last_ping = loop.time()

    async def _sweep_forever(self) -> None:
        await self.ready.wait()
        while not self.stop_requested.is_set():
            await self._sleep(self.settings.sweep_interval_s)
            if self.stop_requested.is_set():
                return
            with contextlib.suppress(psycopg.Error):
                await self._scan()
            await self.dispatcher.links.close_idle(IDLE_PRINTER_CONNECTION_S)

    async def _watchdog_forever(self, interval: float) -> None:
        while not self.stop_requested.is_set():
            self.notifier.watchdog()
            await self._sleep(interval)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), seconds)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Off the main thread (tests, the demo) there are no signals to handle: asyncio says
            # so with RuntimeError, uvloop with ValueError.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)
        await self.pool.open(wait=False)
        tasks = [
            asyncio.create_task(self._listen_forever(), name="listener"),
            asyncio.create_task(self._sweep_forever(), name="sweep"),
            asyncio.create_task(self.health.run(self.stop_requested), name="health"),
        ]
        interval = watchdog_interval_s()
        if interval:
            tasks.append(asyncio.create_task(self._watchdog_forever(interval), name="watchdog"))
        await self.stop_requested.wait()
        self.notifier.stopping("finishing prints in flight")
        await self.dispatcher.stop(self.settings.shutdown_timeout_s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.health.stopped()
        await self.pool.close()
        log.info("stopped", printed=self.dispatcher.tickets_printed)
        return 0


def run(settings: Settings) -> int:
    # uvloop's event loop (libuv, in C) takes about 0.1 ms off a ticket's way to paper on an idle
    # machine: every hop through the loop costs less (docs/benchmarks.md, third pass).
    return uvloop.run(Daemon(settings).run())
