"""The system under test: PostgreSQL, a seeded restaurant and `kprintd run`.

Owns starting each piece and, above all, stopping it again: everything is registered on the
caller's ExitStack, so an error or Ctrl-C anywhere still stops the daemon and the cluster (the
printers, in bench.printers, work the same way). The daemon is a child process (`python -m
kprintd.cli run`, configured only through KPRINTD_* variables like under systemd), so its memory
is its own and it does not share a GIL with the load generator; it is put in its own session and
dies with the benchmark.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from bench.printers import Printer, die_with_parent
from kprintd import migrate
from kprintd.harness.pgembed import EmbeddedPostgres, copy_database, process_alive

TEMPLATE_DB = "kprintd_bench_template"
WORKDIR_PREFIX = "kprintd-bench-"


class Cluster:
    """A throwaway PostgreSQL cluster with a migrated template; one fresh database per scenario.

    Durable by default, as a store's server runs: fsync, synchronous_commit and full_page_writes
    on (PostgreSQL's defaults), so every COMMIT waits for its WAL flush. `durable=False` is the
    labelled fsync-off variant (`--fsync-off`).
    """

    def __init__(self, stack: contextlib.ExitStack, *, durable: bool = True) -> None:
        self.durable = durable
        self.server = EmbeddedPostgres(durable=durable)
        stack.callback(self.server.destroy)
        self.server.start()
        with psycopg.connect(self.server.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        migrate.migrate(self.server.conninfo(TEMPLATE_DB))
        self._databases = itertools.count(1)

    @property
    def admin_conninfo(self) -> str:
        return self.server.conninfo()

    def postmaster_pid(self) -> int:
        return int((self.server.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])

    def new_database(self, label: str) -> str:
        """A new migrated database (a copy of the template); returns its conninfo."""
        name = f"bench_{next(self._databases)}_{label}"
        copy_database(self.server.conninfo(), name, TEMPLATE_DB)
        return self.server.conninfo(name)


class Restaurant:
    """One brand whose stations each have one product and one printer, seeded as a POS would."""

    def __init__(self, conninfo: str, name: str) -> None:
        self.conninfo = conninfo
        with psycopg.connect(conninfo) as conn:
            row = conn.execute(
                "INSERT INTO core_brand (name) VALUES (%s) RETURNING id", (name,)
            ).fetchone()
        assert row is not None
        self.brand_id: uuid.UUID = row[0]
        self.products: dict[str, uuid.UUID] = {}

    def add_station(self, station: str, printer: Printer) -> None:
        with psycopg.connect(self.conninfo) as conn:
            row = conn.execute(
                "INSERT INTO core_product (brand_id, name, printer_target)"
                " VALUES (%s, %s, %s) RETURNING id",
                (self.brand_id, f"{station.title()} Special", station),
            ).fetchone()
            assert row is not None
            self.products[station] = row[0]
            conn.execute(
                "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name,"
                " printer_ip, printer_port) VALUES (%s, %s, %s, %s, %s)",
                (self.brand_id, station, printer.name, printer.host, printer.port),
            )


class DaemonProcess:
    """`kprintd run` as a child process: production defaults, JSON logs to a file in `workdir`."""

    def __init__(self, database_url: str, workdir: Path, label: str) -> None:
        self.log_path = workdir / f"{label}-daemon.log"
        self.settings = {"database_url": database_url, "log_format": "json"}
        self.process: subprocess.Popen[bytes] | None = None
        self._notify_path = workdir / f"{label}-notify.sock"
        self._notify: socket.socket | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "daemon not started"
        return self.process.pid

    def _environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KPRINTD_", "WATCHDOG_")) and key != "NOTIFY_SOCKET"
        }
        env.update({f"KPRINTD_{key.upper()}": str(value) for key, value in self.settings.items()})
        env["NOTIFY_SOCKET"] = str(self._notify_path)
        return env

    def launch(self, stack: contextlib.ExitStack) -> None:
        """Start the daemon; `wait_ready` waits for it. It is killed with `stack` at the latest."""
        self._notify = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        self._notify.bind(str(self._notify_path))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kprintd.cli", "run"],
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        stack.callback(self.kill)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once the daemon said READY=1 (systemd's protocol: it listens and has scanned)."""
        assert self.process is not None and self._notify is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"kprintd run exited with {code} at start:\n{self.log_tail()}")
            self._notify.settimeout(0.2)
            try:
                message = self._notify.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if "READY=1" in message.split("\n"):
                # Later status messages find no socket, which the daemon shrugs off.
                self._notify.close()
                return
        raise RuntimeError(f"kprintd run was not ready within {timeout:g} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as systemd stops it, and wait for the exit."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout)

    def kill(self) -> None:
        """Cleanup: whatever is left of the daemon is gone after this."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def work_directory() -> Iterator[Path]:
    """Scratch space for daemon logs and sockets, removed afterwards.

    Those a killed run left behind (their owner.pid names a dead process) are removed first.
    """
    for owner in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*/owner.pid"):
        with contextlib.suppress(OSError, ValueError):
            if not process_alive(int(owner.read_text())):
                shutil.rmtree(owner.parent, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX) as directory:
        (Path(directory) / "owner.pid").write_text(str(os.getpid()))
        yield Path(directory)
