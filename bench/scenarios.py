"""The benchmark scenarios: light-load latency, latency next to a black-hole printer, and bursts.

Owns what each scenario sets up, what load it drives and what it measures. Every scenario gets a
fresh migrated database, its own printers and its own `kprintd run` child process (production
settings), all stopped when it ends, so no scenario inherits another's backlog, breakers or
connections.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import machine
from bench.load import CutRecorder, Pos, Sent, steady_load
from bench.printers import Kind, Printer, PrinterProcess, launch_printers
from bench.stack import Cluster, DaemonProcess, Restaurant
from bench.stats import LatencySummary

# Tickets of a light load print in milliseconds; one still missing after this is lost.
LIGHT_LOAD_GRACE_S = 5.0
# After the last cut, the daemon still records the last batch's outcome.
SETTLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Sizes:
    """How big and how long each scenario is."""

    warmup_s: float
    measure_s: float
    burst_bills: int  # each bill has one item for every burst station: one ticket per station
    drain_timeout_s: float
    emulator_burst: bool  # also drain the burst into the project's emulators (bench.printers)
    rate_per_s: float = 20.0
    light_stations: tuple[str, ...] = ("grill", "wok", "fryer", "salad", "bar")
    burst_stations: int = 10

    @property
    def burst_tickets(self) -> int:
        return self.burst_bills * self.burst_stations


FULL = Sizes(
    warmup_s=2.0, measure_s=20.0, burst_bills=2_000, drain_timeout_s=120.0, emulator_burst=True
)
QUICK = Sizes(
    warmup_s=0.3, measure_s=1.5, burst_bills=30, drain_timeout_s=20.0, emulator_burst=False
)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used during a measurement, by whom; `other_s` is everyone else on the machine."""

    wall_s: float
    daemon_s: float
    postgres_s: float
    printers_s: float  # the printer processes
    load_s: float  # this process: the POS load generator and the cut readers
    machine_busy_s: float
    machine_capacity_s: float  # wall time x cores

    @property
    def other_s(self) -> float:
        ours = self.daemon_s + self.postgres_s + self.printers_s + self.load_s
        return max(0.0, self.machine_busy_s - ours)

    def per_ticket_us(self, tickets: int) -> dict[str, float]:
        return {
            "daemon": self.daemon_s / tickets * 1e6,
            "postgres": self.postgres_s / tickets * 1e6,
            "printers": self.printers_s / tickets * 1e6,
            "load": self.load_s / tickets * 1e6,
            "other": self.other_s / tickets * 1e6,
        }


@dataclass(frozen=True)
class LatencyResult:
    """COMMIT returned -> cut arrived, for the measured (post-warm-up) tickets."""

    printer_kind: Kind
    stations: tuple[str, ...]
    offered_rate_per_s: float  # all stations together, black hole included
    achieved_rate_per_s: float
    measured_s: float
    latency: LatencySummary
    # The same cuts from when the POS issued its COMMIT: an upper bound (see load.Sent).
    from_commit_issued: LatencySummary
    # The POS's COMMIT itself, issued -> returned: what the POS waits for, including whatever
    # the database does for kprintd at commit (the deferred trigger that announces a ticket).
    commit: LatencySummary
    p99_ms_by_station: dict[str, float]
    cpu: CpuUse  # warm-up included


@dataclass(frozen=True)
class IsolationResult:
    healthy: LatencyResult
    black_hole_station: str
    black_hole_tickets: int
    black_hole_statuses: dict[str, int]  # kitchen_kitchenticket.status when the load ended


@dataclass(frozen=True)
class MemoryResult:
    """The burst daemon's resident memory (KiB): idle before, after, and the peak in between."""

    rss_before_kib: int
    rss_after_kib: int
    rss_peak_kib: int


@dataclass(frozen=True)
class ThroughputResult:
    printer_kind: Kind
    tickets: int
    printers: int
    insert_s: float  # creating the burst in one transaction, COMMIT included
    printed: int  # distinct tickets cut within the drain timeout
    duplicates: int
    commit_to_first_cut_ms: float
    first_to_last_cut_s: float
    tickets_per_s: float  # (printed - 1) / first_to_last_cut_s
    commit_to_last_cut_s: float
    per_printer_min: int
    per_printer_max: int
    cpu: CpuUse  # from COMMIT to the last cut
    memory: MemoryResult


@dataclass(frozen=True)
class _CpuSnapshot:
    at: float
    daemon: float
    postgres: float
    printers: float
    load: float
    busy: float
    total: float

    @classmethod
    def take(cls, site: _Site, cluster: Cluster) -> _CpuSnapshot:
        busy, total = machine.machine_busy_seconds()
        return cls(
            at=time.monotonic(),
            daemon=machine.cpu_seconds(site.daemon.pid),
            postgres=machine.process_tree_cpu_seconds(cluster.postmaster_pid()),
            printers=sum(machine.cpu_seconds(p.pid) for p in site.processes),
            load=machine.own_cpu_seconds(),
            busy=busy,
            total=total,
        )

    def until(self, later: _CpuSnapshot) -> CpuUse:
        return CpuUse(
            wall_s=later.at - self.at,
            daemon_s=later.daemon - self.daemon,
            postgres_s=later.postgres - self.postgres,
            printers_s=later.printers - self.printers,
            load_s=later.load - self.load,
            machine_busy_s=later.busy - self.busy,
            machine_capacity_s=later.total - self.total,
        )


@dataclass(frozen=True)
class _Site:
    """A fresh database with a seeded restaurant, its printers and a ready daemon."""

    conninfo: str
    restaurant: Restaurant
    recorder: CutRecorder
    printers: list[Printer]
    processes: list[PrinterProcess]
    daemon: DaemonProcess

    def stop(self) -> None:
        """Printers first: the daemon then has no print in flight to wait out."""
        for process in self.processes:
            process.request_stop()
        for process in self.processes:
            process.stop()
        self.daemon.stop()


def _open_site(
    stack: contextlib.ExitStack,
    cluster: Cluster,
    workdir: Path,
    label: str,
    stations: list[str],
    kind: Kind = "emulator",
    black_hole: str | None = None,
) -> _Site:
    """Printers and daemon start in parallel; each station gets one product and one printer."""
    conninfo = cluster.new_database(label)
    database = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
    recorder = CutRecorder()
    printers = [Printer(f"{s}-1", "black_hole" if s == black_hole else "none") for s in stations]
    processes = launch_printers(stack, kind, printers, recorder.record)
    daemon = DaemonProcess(conninfo, workdir, str(database))
    daemon.launch(stack)
    for process in processes:
        process.wait_ready()
    restaurant = Restaurant(conninfo, f"Bench {label}")
    for station, printer in zip(stations, printers, strict=True):
        restaurant.add_station(station, printer)
    daemon.wait_ready()
    return _Site(conninfo, restaurant, recorder, printers, processes, daemon)


def _ticket_statuses(conninfo: str, ticket_ids: list[int]) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM kitchen_kitchenticket WHERE id = ANY(%s) GROUP BY status",
            (ticket_ids,),
        ).fetchall()
    return {str(status): int(count) for status, count in rows}


def _wait_settled(conninfo: str, ticket_ids: list[int], timeout: float) -> bool:
    """Wait until none of the tickets is still new or printing (outcomes recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = _ticket_statuses(conninfo, ticket_ids)
        if not statuses.get("new") and not statuses.get("printing"):
            return True
        time.sleep(0.1)
    return False


def _light_load(
    cluster: Cluster, workdir: Path, sizes: Sizes, kind: Kind, black_hole: str | None
) -> tuple[LatencyResult, list[Sent], str]:
    """Drive the light load against a fresh daemon; optionally one more, black-holed station."""
    with contextlib.ExitStack() as stack:
        stations = list(sizes.light_stations)
        if black_hole is not None:
            stations.append(black_hole)
        label = f"{'isolation' if black_hole else 'latency'}_{kind}"
        site = _open_site(stack, cluster, workdir, label, stations, kind, black_hole)
        pos = Pos(site.restaurant)
        stack.callback(pos.close)
        # Every station gets the same rate as in the plain latency run, the black hole too.
        rate = sizes.rate_per_s * len(stations) / len(sizes.light_stations)
        before = _CpuSnapshot.take(site, cluster)
        sent = steady_load(pos, stations, rate, sizes.warmup_s, sizes.measure_s)
        healthy = [s for s in sent if s.measured and s.station != black_hole]
        site.recorder.wait_for_tickets({s.ticket_id for s in healthy}, LIGHT_LOAD_GRACE_S)
        cpu = before.until(_CpuSnapshot.take(site, cluster))
        site.stop()

    first_cut: dict[int, float] = {}
    for cut in site.recorder.cuts():
        first_cut.setdefault(cut.ticket_id, cut.received_at)
    by_station: dict[str, list[float]] = {}
    from_issued: list[float] = []
    for ticket in healthy:
        cut_at = first_cut.get(ticket.ticket_id)
        latency = cut_at - ticket.committed_at if cut_at is not None else math.inf
        by_station.setdefault(ticket.station, []).append(latency)
        from_issued.append(cut_at - ticket.commit_issued_at if cut_at is not None else math.inf)
    commits = [ticket.committed_at - ticket.commit_issued_at for ticket in healthy]
    result = LatencyResult(
        printer_kind=kind,
        stations=tuple(stations),
        offered_rate_per_s=rate,
        achieved_rate_per_s=len(sent) / cpu.wall_s,
        measured_s=sizes.measure_s,
        latency=LatencySummary.of([v for values in by_station.values() for v in values]),
        from_commit_issued=LatencySummary.of(from_issued),
        commit=LatencySummary.of(commits),
        p99_ms_by_station={s: LatencySummary.of(v).p99_ms for s, v in by_station.items()},
        cpu=cpu,
    )
    return result, sent, site.conninfo


def latency(cluster: Cluster, workdir: Path, sizes: Sizes, kind: Kind) -> LatencyResult:
    """Light steady load over the light stations: COMMIT -> cut latency."""
    result, _, _ = _light_load(cluster, workdir, sizes, kind, black_hole=None)
    return result


def isolation(cluster: Cluster, workdir: Path, sizes: Sizes, kind: Kind) -> IsolationResult:
    """The light load again, plus one more station whose printer swallows everything."""
    station = "pastry"
    result, sent, conninfo = _light_load(cluster, workdir, sizes, kind, black_hole=station)
    hole_ids = [s.ticket_id for s in sent if s.station == station]
    return IsolationResult(
        healthy=result,
        black_hole_station=station,
        black_hole_tickets=len(hole_ids),
        black_hole_statuses=_ticket_statuses(conninfo, hole_ids),
    )


def burst(cluster: Cluster, workdir: Path, sizes: Sizes, kind: Kind) -> ThroughputResult:
    """One transaction creates the whole burst while the daemon idles; then it drains it."""
    with contextlib.ExitStack() as stack:
        stations = [f"line{n:02d}" for n in range(1, sizes.burst_stations + 1)]
        site = _open_site(stack, cluster, workdir, f"burst_{kind}", stations, kind)
        pos = Pos(site.restaurant)
        stack.callback(pos.close)

        rss_before = machine.rss_kib(site.daemon.pid)
        insert_started = time.monotonic()
        ticket_ids = pos.burst(sizes.burst_bills, stations)
        committed_at = pos.commit()
        before = _CpuSnapshot.take(site, cluster)
        site.recorder.wait_for_count(len(ticket_ids), sizes.drain_timeout_s)
        cpu = before.until(_CpuSnapshot.take(site, cluster))
        _wait_settled(site.conninfo, ticket_ids, SETTLE_TIMEOUT_S)
        memory = MemoryResult(
            rss_before_kib=rss_before,
            rss_after_kib=machine.rss_kib(site.daemon.pid),
            rss_peak_kib=machine.peak_rss_kib(site.daemon.pid),
        )
        site.stop()

    cuts = site.recorder.cuts()
    times = sorted(cut.received_at for cut in cuts)
    per_printer = Counter(cut.printer for cut in cuts)
    distinct = {cut.ticket_id for cut in cuts}
    printed = len(distinct & set(ticket_ids))
    span = times[-1] - times[0] if len(times) > 1 else math.nan
    return ThroughputResult(
        printer_kind=kind,
        tickets=len(ticket_ids),
        printers=len(site.printers),
        insert_s=committed_at - insert_started,
        printed=printed,
        duplicates=len(cuts) - len(distinct),
        commit_to_first_cut_ms=(times[0] - committed_at) * 1000 if times else math.nan,
        first_to_last_cut_s=span,
        tickets_per_s=(printed - 1) / span if printed > 1 else 0.0,
        commit_to_last_cut_s=times[-1] - committed_at if times else math.nan,
        per_printer_min=min((per_printer[p.name] for p in site.printers), default=0),
        per_printer_max=max((per_printer[p.name] for p in site.printers), default=0),
        cpu=cpu,
        memory=memory,
    )
