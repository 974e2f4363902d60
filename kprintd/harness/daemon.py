"""Running kprintd for real in tests: in-process (a thread with its own event loop) or as a
`kprintd run` subprocess that can be SIGTERMed or SIGKILLed, plus emulated printers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import uvloop
from psycopg.rows import dict_row

from kprintd.config import Settings
from kprintd.daemon import Daemon
from kprintd.emulator import EmulatedPrinter

# Each test gets printers on its own loopback addresses, so a printer left over by a failed test
# never answers for the next one; the second octet follows the process, so test runs going on
# side by side (two checkouts, a CI job beside a developer's) rarely share a /16.
_SECOND_OCTET = 100 + os.getpid() % 150
_addresses = (
    f"127.{_SECOND_OCTET}.{a}.{b}" for a, b in itertools.product(range(0, 250), range(2, 250))
)

FAST_SETTINGS: dict[str, Any] = {
    "printer_connect_timeout_s": 0.5,
    "printer_send_timeout_s": 0.5,
    "retry_base_delay_s": 0.2,
    "retry_max_delay_s": 0.5,
    "sweep_interval_s": 0.5,
    "lease_s": 5.0,
    "breaker_open_s": 30.0,
    "shutdown_timeout_s": 5.0,
    "log_format": "json",
    "log_level": "warning",
}


def next_loopback() -> str:
    return next(_addresses)


def start_printer(name: str, **kwargs: Any) -> EmulatedPrinter:
    printer = EmulatedPrinter(name, host=next_loopback(), port=9100, **kwargs)
    printer.start()
    return printer


class RunningDaemon:
    """A Daemon on its own event loop thread; `stop()` behaves like SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.daemon: Daemon | None = None
        self.exit_code: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kprintd-daemon", daemon=True)

    def _main(self) -> None:
        async def body() -> int:
            self._loop = asyncio.get_running_loop()
            self.daemon = Daemon(self.settings)
            self._started.set()
            return await self.daemon.run()

        self.exit_code = uvloop.run(body())

    def start(self, ready_timeout: float = 15.0) -> RunningDaemon:
        self._thread.start()
        if not self._started.wait(ready_timeout):
            raise TimeoutError("daemon thread did not start")
        deadline = time.monotonic() + ready_timeout
        while not (self.daemon and self.daemon.ready.is_set()):
            if time.monotonic() > deadline:
                raise TimeoutError("daemon did not become ready")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        if self._loop is not None and self.daemon is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.daemon.request_stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("daemon did not stop")
        return self.exit_code


# Logins the test run creates (tests/conftest.py), one per duty of sql/0033_roles.sql.
LOGINS = {
    "kprintd_daemon": "kprintd_test_daemon",
    "kprintd_pos": "kprintd_test_pos",
    "kprintd_manager": "kprintd_test_manager",
    "kprintd_auditor": "kprintd_test_auditor",
}
LOGIN_PASSWORD = "kprintd-test"


def as_login(database_url: str, duty: str) -> str:
    """The same database, connected as the test login of a duty (a kprintd_* group role)."""
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    params.update(user=LOGINS[duty], password=LOGIN_PASSWORD)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


@contextlib.contextmanager
def running_daemon(database_url: str, **overrides: Any) -> Iterator[RunningDaemon]:
    """`kprintd run` in-process, logged in as the daemon's role, as in a store."""
    settings = Settings(
        database_url=as_login(database_url, "kprintd_daemon"), **{**FAST_SETTINGS, **overrides}
    )
    daemon = RunningDaemon(settings).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def daemon_env(database_url: str, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPRINTD_")}
    for key, value in {**FAST_SETTINGS, "database_url": database_url, **overrides}.items():
        env[f"KPRINTD_{key.upper()}"] = str(value)
    return env


@contextlib.contextmanager
def daemon_process(
    database_url: str, log_path: Path, **overrides: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """`kprintd run` as a child process; killed at the end if the test did not stop it."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kprintd.cli", "run"],
            env=daemon_env(as_login(database_url, "kprintd_daemon"), **overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)


def wait_until(
    condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


def query(database_url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def ticket_statuses(database_url: str) -> dict[int, str]:
    rows = query(database_url, "SELECT id, status FROM kitchen_kitchenticket ORDER BY id")
    return {r["id"]: r["status"] for r in rows}


def all_settled(database_url: str) -> bool:
    rows = query(
        database_url,
        "SELECT count(*) AS n FROM kitchen_kitchenticket WHERE status IN ('new', 'printing')",
    )
    return bool(rows[0]["n"] == 0)


def listener_connected(database_url: str) -> bool:
    """True once a kprintd daemon LISTENs on this test's database."""
    rows = query(
        database_url,
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE application_name = 'kprintd-listener' AND datname = current_database()",
    )
    return bool(rows[0]["n"])


def ticket_id_of(received_text: str) -> int:
    import re

    match = re.search(r"Ticket #(\d+)", received_text)
    assert match, f"no ticket id in:\n{received_text}"
    return int(match.group(1))


def has_retry_banner(received_text: str) -> bool:
    return "R E T R Y" in received_text


class Restaurant:
    """One brand with products per station and printers on loopback emulators."""

    def __init__(self, url: str, store_id: uuid.UUID | None = None) -> None:
        self.url = url
        self.store_id = store_id
        self.printers: list[EmulatedPrinter] = []
        self.brand_id = query(
            url, "INSERT INTO core_brand (name) VALUES ('Warung Test') RETURNING id"
        )[0]["id"]
        self.products: dict[str, uuid.UUID] = {}
        self._bills = 0

    def product(self, station: str) -> uuid.UUID:
        if station not in self.products:
            self.products[station] = query(
                self.url,
                "INSERT INTO core_product (brand_id, name, printer_target)"
                " VALUES (%s, %s, %s) RETURNING id",
                (self.brand_id, f"{station.title()} Special", station),
            )[0]["id"]
        return self.products[station]

    def printer(
        self, station: str, priority: int = 1, name: str | None = None, **kwargs: Any
    ) -> EmulatedPrinter:
        emulator = start_printer(name or f"{station}-{priority}", **kwargs)
        self.printers.append(emulator)
        query(
            self.url,
            "INSERT INTO kitchen_stationprinter (brand_id, store_id, station_code, printer_name,"
            " printer_ip, printer_port, priority) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                self.brand_id,
                self.store_id,
                station,
                emulator.name,
                emulator.host,
                emulator.port,
                priority,
            ),
        )
        return emulator

    def send(self, *stations: str, max_retries: int | None = None) -> list[int]:
        """A bill with one item per station, sent to the kitchen; returns the ticket ids."""
        self._bills += 1
        # As the POS: its own login, in the kprintd_pos role (sql/0033_roles.sql). A test that
        # also changes the tickets' max_retries before they commit acts as their owner instead.
        login = as_login(self.url, "kprintd_pos") if max_retries is None else self.url
        with psycopg.connect(login) as conn:
            bill_id = conn.execute(
                "INSERT INTO pos_bill (brand_id, store_id, bill_number, table_number)"
                " VALUES (%s, %s, %s, '7') RETURNING id",
                (self.brand_id, self.store_id, f"B-{self._bills}-{uuid.uuid4().hex[:6]}"),
            ).fetchone()[0]  # type: ignore[index]
            for station in stations:
                conn.execute(
                    "INSERT INTO pos_billitem (bill_id, product_id, quantity, printer_target)"
                    " VALUES (%s, %s, 1, %s)",
                    (bill_id, self.product(station), station),
                )
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM kitchen_create_tickets(%s) ORDER BY id", (bill_id,)
                ).fetchall()
            ]
            if max_retries is not None:
                conn.execute(
                    "UPDATE kitchen_kitchenticket SET max_retries = %s WHERE id = ANY(%s)",
                    (max_retries, ids),
                )
        return ids

    def stop(self) -> None:
        for printer in self.printers:
            printer.stop()


def log_actions(url: str, ticket_id: int) -> list[str]:
    rows = query(
        url,
        "SELECT action FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id",
        (ticket_id,),
    )
    return [r["action"] for r in rows]


def ticket(url: str, ticket_id: int) -> dict[str, Any]:
    return query(url, "SELECT * FROM kitchen_kitchenticket WHERE id = %s", (ticket_id,))[0]


def received_alerts(listener: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """What a connection LISTENing on kitchen_alert (the `alerts` fixture) has heard so far."""
    return [json.loads(n.payload) for n in listener.notifies(timeout=0.3)]


def alerts_process(url: str, *args: str) -> subprocess.Popen[str]:
    """`kprintd alerts ARGS` as a child process, returned once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kprintd.cli", "alerts", *args],
        env=daemon_env(as_login(url, "kprintd_auditor")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert "listening for alerts" in process.stderr.readline()
    return process
