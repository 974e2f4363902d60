"""The system under test: PostgreSQL, a seeded restaurant and `kprintd run`, from kprintd.harness.

Owns what is the benchmark's own in starting them, and above all stopping them again: everything
is registered on the caller's ExitStack, so an error or Ctrl-C anywhere still stops the daemon and
the cluster (the printers, in bench.printers, work the same way). The cluster is durable (see
Cluster). The daemon is a child process (`python -m kprintd.cli run`, configured only through
KPRINTD_* variables like under systemd, ready when it says READY=1 on NOTIFY_SOCKET), so its
memory is its own and it does not share a GIL with the load generator; it is put in its own
session and dies with the benchmark.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.printers import Printer
from kprintd.harness import DaemonProcess, PostgresServer, Restaurant, embedded_server
from kprintd.harness.pgembed import process_alive

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
        self.server: PostgresServer = stack.enter_context(embedded_server(durable=durable))
        self.server.prepare_template(TEMPLATE_DB)
        self._databases = itertools.count(1)

    @property
    def admin_conninfo(self) -> str:
        return self.server.admin_conninfo

    def postmaster_pid(self) -> int:
        return self.server.postmaster_pid()

    def new_database(self, label: str) -> str:
        """A new migrated database (a copy of the template); returns its conninfo."""
        return self.server.new_database(f"bench_{next(self._databases)}_{label}")


def seed_restaurant(
    conninfo: str, name: str, stations: Sequence[tuple[str, Printer]]
) -> Restaurant:
    """One brand whose stations each have one product and one printer, seeded as a POS would."""
    restaurant = Restaurant(conninfo, name=name)
    for station, printer in stations:
        restaurant.product(station)
        restaurant.add_printer(station, printer.host, printer.port, name=printer.name)
    return restaurant


def launch_daemon(
    stack: contextlib.ExitStack, database_url: str, workdir: Path, label: str
) -> DaemonProcess:
    """`kprintd run` with production defaults, JSON logs to a file in `workdir`; wait_ready()
    waits for it, and it is killed with `stack` at the latest."""
    daemon = DaemonProcess(
        {"database_url": database_url, "log_format": "json"},
        workdir / f"{label}-daemon.log",
        notify_socket=workdir / f"{label}-notify.sock",
    )
    return stack.enter_context(daemon)


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
