"""The benchmark scenarios: light-load latency, latency next to a black-hole printer, and bursts.

Owns what each scenario sets up, what load it drives and what it measures. Every scenario gets a
fresh migrated database, its own printers and its own `kprintd run` child process (production
settings), all stopped when it ends, so no scenario inherits another's backlog, breakers or
connections.
"""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import machine
from bench.load import CutRecorder, Sent, steady_load
from bench.printers import Kind, Printer, PrinterProcess, launch_printers
from bench.stack import Cluster, launch_daemon, seed_restaurant
from bench.stats import LatencySummary, percentile
from kprintd.harness import DaemonProcess, Pos, Restaurant

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
    pos_cost_rounds: int = 200  # POS transactions of each shape, with and without kprintd
    bursts: int = 3  # bursts in a row against one daemon: throughput each time, memory after each
    pgqueuer_jobs: int = 10_000  # pgqueuer's no-op drain on the same cluster, for scale
    rate_per_s: float = 20.0
    light_stations: tuple[str, ...] = ("grill", "wok", "fryer", "salad", "bar")
    burst_stations: int = 10
    # The Nagle-style printers' burst: fewer bursts (no memory verdict rides on it).
    nagle_bursts: int = 1
    # A single station's printer at these distances: a short latency run, a short burst.
    distance_rtts_ms: tuple[float, ...] = (2.0, 10.0, 30.0)
    distance_tickets: int = 50  # measured latency tickets, one station, after 0.5 s of warm-up
    distance_burst: int = 200

    @property
    def burst_tickets(self) -> int:
        return self.burst_bills * self.burst_stations


# Trimmed to keep `make bench` near ten minutes on two cores: no burst on the emulators, one
# Nagle-style burst (the prompt printers keep three, for the memory verdict), 1,000 bills a burst.
FULL = Sizes(
    warmup_s=2.0, measure_s=20.0, burst_bills=1_000, drain_timeout_s=120.0, emulator_burst=False
)
QUICK = Sizes(
    warmup_s=0.3,
    measure_s=1.5,
    burst_bills=30,
    drain_timeout_s=20.0,
    emulator_burst=False,
    pos_cost_rounds=5,
    bursts=2,
    pgqueuer_jobs=200,
    distance_rtts_ms=(10.0,),
    distance_tickets=5,
    distance_burst=20,
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
    nagle: bool  # the printers' TCP stack holds small replies (bench.printers)
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
    """The burst daemon's resident memory (KiB): idle before, after each burst, and the peak."""

    rss_before_kib: int
    rss_after_kib: int  # after the last burst
    rss_peak_kib: int
    rss_after_each_kib: tuple[int, ...] = ()


@dataclass(frozen=True)
class ThroughputResult:
    printer_kind: Kind
    nagle: bool
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
    tickets_per_s_each: tuple[float, ...] = ()  # every burst; tickets_per_s is the median


@dataclass(frozen=True)
class DistanceResult:
    """One station whose printer answers `rtt_ms` after each request (lean, prompt stack)."""

    rtt_ms: float
    latency: LatencySummary  # from COMMIT issued, the measured tickets
    burst_tickets: int
    burst_printed: int
    burst_tickets_per_s: float  # (printed - 1) / (last cut - first cut)
    burst_commit_to_last_cut_s: float
    # Counted by the printer (reads that asked for a reply; DLE EOT requests answered), split at
    # the burst's COMMIT: the light load (warm-up included) before, the burst after.
    light_tickets: int
    light_round_trips: int
    light_status_requests: int
    burst_round_trips: int
    burst_status_requests: int

    @property
    def light_round_trips_per_ticket(self) -> float:
        return self.light_round_trips / self.light_tickets if self.light_tickets else math.nan

    @property
    def burst_round_trips_per_ticket(self) -> float:
        return self.burst_round_trips / self.burst_printed if self.burst_printed else math.nan


@dataclass(frozen=True)
class PosCostShape:
    """One bill shape: the POS's transaction with and without kitchen_create_tickets."""

    stations: int
    items: int
    rounds: int
    without_ms: float  # median, first INSERT -> COMMIT returned
    with_ms: float
    without_p90_ms: float
    with_p90_ms: float
    commit_without_ms: float  # median of the COMMIT alone (the WAL flush)
    commit_with_ms: float
    wal_without_bytes: float  # median WAL bytes of the whole transaction
    wal_with_bytes: float
    tickets: int  # created by one send
    rows_written: dict[str, int]  # kprintd's rows (insert + update + delete) by table, one send

    @property
    def ratio(self) -> float:
        return self.with_ms / self.without_ms if self.without_ms else math.nan

    @property
    def kprintd_rows(self) -> int:
        return sum(self.rows_written.values())


@dataclass(frozen=True)
class PgqueuerResult:
    """pgqueuer's no-op drain on the same cluster; `error` when it could not run."""

    jobs: int = 0
    seconds: float = math.nan
    jobs_per_s: float = math.nan
    version: str = ""
    error: str = ""


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
    nagle: bool = False,
    rtt_ms: float = 0.0,
) -> _Site:
    """Printers and daemon start in parallel; each station gets one product and one printer."""
    conninfo = cluster.new_database(label)
    database = psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]
    recorder = CutRecorder()
    printers = [
        Printer(f"{s}-1", "black_hole" if s == black_hole else "none", nagle=nagle, rtt_ms=rtt_ms)
        for s in stations
    ]
    processes = launch_printers(stack, kind, printers, recorder.record)
    daemon = launch_daemon(stack, conninfo, workdir, str(database))
    for process in processes:
        process.wait_ready()
    restaurant = seed_restaurant(
        conninfo, f"Bench {label}", list(zip(stations, printers, strict=True))
    )
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
    cluster: Cluster,
    workdir: Path,
    sizes: Sizes,
    kind: Kind,
    black_hole: str | None,
    nagle: bool = False,
) -> tuple[LatencyResult, list[Sent], str]:
    """Drive the light load against a fresh daemon; optionally one more, black-holed station."""
    with contextlib.ExitStack() as stack:
        stations = list(sizes.light_stations)
        if black_hole is not None:
            stations.append(black_hole)
        label = f"{'isolation' if black_hole else 'latency'}_{kind}{'_nagle' if nagle else ''}"
        site = _open_site(stack, cluster, workdir, label, stations, kind, black_hole, nagle)
        pos = Pos(site.restaurant, application_name="bench-pos")
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
        nagle=nagle,
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


def latency(
    cluster: Cluster, workdir: Path, sizes: Sizes, kind: Kind, nagle: bool = False
) -> LatencyResult:
    """Light steady load over the light stations: COMMIT -> cut latency."""
    result, _, _ = _light_load(cluster, workdir, sizes, kind, black_hole=None, nagle=nagle)
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


def burst(
    cluster: Cluster, workdir: Path, sizes: Sizes, kind: Kind, nagle: bool = False
) -> ThroughputResult:
    """`sizes.bursts` bursts in a row against one daemon (`sizes.nagle_bursts` on Nagle-style
    printers), each created in one transaction while the daemon idles, then drained. Throughput
    is the median burst's; memory is read after each."""
    with contextlib.ExitStack() as stack:
        stations = [f"line{n:02d}" for n in range(1, sizes.burst_stations + 1)]
        label = f"burst_{kind}{'_nagle' if nagle else ''}"
        site = _open_site(stack, cluster, workdir, label, stations, kind, nagle=nagle)
        pos = Pos(site.restaurant, application_name="bench-pos")
        stack.callback(pos.close)

        rss_before = machine.rss_kib(site.daemon.pid)
        rounds: list[tuple[list[int], float, float, CpuUse]] = []
        rss_after: list[int] = []
        expected = 0
        for _ in range(sizes.nagle_bursts if nagle else sizes.bursts):
            insert_started = time.monotonic()
            ticket_ids = pos.burst(sizes.burst_bills, stations)
            committed_at = pos.commit()
            expected += len(ticket_ids)
            before = _CpuSnapshot.take(site, cluster)
            site.recorder.wait_for_count(expected, sizes.drain_timeout_s)
            cpu = before.until(_CpuSnapshot.take(site, cluster))
            _wait_settled(site.conninfo, ticket_ids, SETTLE_TIMEOUT_S)
            rss_after.append(machine.rss_kib(site.daemon.pid))
            rounds.append((ticket_ids, insert_started, committed_at, cpu))
        memory = MemoryResult(
            rss_before_kib=rss_before,
            rss_after_kib=rss_after[-1],
            rss_peak_kib=machine.peak_rss_kib(site.daemon.pid),
            rss_after_each_kib=tuple(rss_after),
        )
        site.stop()

    cuts = site.recorder.cuts()
    per_round = []
    for ticket_ids, insert_started, committed_at, cpu in rounds:
        wanted = set(ticket_ids)
        mine = [cut for cut in cuts if cut.ticket_id in wanted]
        times = sorted(cut.received_at for cut in mine)
        printed = len({cut.ticket_id for cut in mine})
        span = times[-1] - times[0] if len(times) > 1 else math.nan
        rate = (printed - 1) / span if printed > 1 else 0.0
        per_round.append((rate, times, committed_at, insert_started, cpu))
    median = sorted(per_round, key=lambda r: r[0])[len(per_round) // 2]
    rate, times, committed_at, insert_started, cpu = median
    per_printer = Counter(cut.printer for cut in cuts)
    all_ids = {t for ids, *_ in rounds for t in ids}
    distinct = {cut.ticket_id for cut in cuts}
    return ThroughputResult(
        printer_kind=kind,
        nagle=nagle,
        tickets=len(all_ids),
        printers=len(site.printers),
        insert_s=committed_at - insert_started,
        printed=len(distinct & all_ids),
        duplicates=len(cuts) - len(distinct),
        commit_to_first_cut_ms=(times[0] - committed_at) * 1000 if times else math.nan,
        first_to_last_cut_s=times[-1] - times[0] if len(times) > 1 else math.nan,
        tickets_per_s=rate,
        commit_to_last_cut_s=times[-1] - committed_at if times else math.nan,
        per_printer_min=min((per_printer[p.name] for p in site.printers), default=0),
        per_printer_max=max((per_printer[p.name] for p in site.printers), default=0),
        cpu=cpu,
        memory=memory,
        tickets_per_s_each=tuple(r[0] for r in per_round),
    )


def distance(cluster: Cluster, workdir: Path, sizes: Sizes, rtt_ms: float) -> DistanceResult:
    """One station, its lean printer `rtt_ms` away: a short light load, then one burst."""
    station = "pass"
    with contextlib.ExitStack() as stack:
        label = f"distance_{rtt_ms:g}ms".replace(".", "_")
        site = _open_site(stack, cluster, workdir, label, [station], "lean", rtt_ms=rtt_ms)
        pos = Pos(site.restaurant, application_name="bench-pos")
        stack.callback(pos.close)
        rate = sizes.rate_per_s
        sent = steady_load(pos, [station], rate, 0.5, sizes.distance_tickets / rate)
        site.recorder.wait_for_tickets({s.ticket_id for s in sent}, LIGHT_LOAD_GRACE_S)
        _wait_settled(site.conninfo, [s.ticket_id for s in sent], SETTLE_TIMEOUT_S)
        ticket_ids = pos.burst(sizes.distance_burst, [station])
        committed_at = pos.commit()
        site.recorder.wait_for_tickets(set(ticket_ids), sizes.drain_timeout_s)
        _wait_settled(site.conninfo, ticket_ids, SETTLE_TIMEOUT_S)
        site.stop()

    cuts = site.recorder.cuts()
    first_cut: dict[int, float] = {}
    for cut in cuts:
        first_cut.setdefault(cut.ticket_id, cut.received_at)
    measured = [s for s in sent if s.measured]
    from_issued = [
        first_cut[s.ticket_id] - s.commit_issued_at if s.ticket_id in first_cut else math.inf
        for s in measured
    ]
    wanted = set(ticket_ids)
    times = sorted(c.received_at for c in cuts if c.ticket_id in wanted)
    printed = len(wanted & set(first_cut))
    span = times[-1] - times[0] if len(times) > 1 else math.nan
    trips = site.processes[0].trips
    light = [requests for _, requests, at in trips if at < committed_at]
    burst_ = [requests for _, requests, at in trips if at >= committed_at]
    return DistanceResult(
        rtt_ms=rtt_ms,
        latency=LatencySummary.of(from_issued),
        burst_tickets=len(ticket_ids),
        burst_printed=printed,
        burst_tickets_per_s=(printed - 1) / span if printed > 1 else 0.0,
        burst_commit_to_last_cut_s=times[-1] - committed_at if times else math.nan,
        light_tickets=len(sent),
        light_round_trips=len(light),
        light_status_requests=sum(light),
        burst_round_trips=len(burst_),
        burst_status_requests=sum(burst_),
    )


# (stations, items) per bill: issue #15's three shapes.
POS_COST_SHAPES = ((1, 3), (3, 10), (5, 30))
POS_COST_WARMUP_ROUNDS = 5
_POS_TABLES = frozenset({"public.pos_bill", "public.pos_billitem"})


def _pos_transaction(
    conn: psycopg.Connection,
    wal: psycopg.Connection,
    brand_id: uuid.UUID,
    products: list[uuid.UUID],
    create_tickets: bool,
) -> tuple[float, float, float, int]:
    """One POS send: bill, items (one INSERT), optionally kitchen_create_tickets, COMMIT.

    (first INSERT -> COMMIT returned s, COMMIT alone s, WAL bytes, tickets). The WAL position is
    read on a second connection before and after, outside the timed part.
    """  # fmt: skip
    start_lsn = wal.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert start_lsn is not None
    started = time.monotonic()
    tickets = 0
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO pos_bill (brand_id, bill_number, table_number)"
            " VALUES (%s, 'COST', '7') RETURNING id",
            (brand_id,),
        )
        bill = cur.fetchone()
        assert bill is not None
        cur.execute(
            "INSERT INTO pos_billitem (bill_id, product_id, quantity)"
            " SELECT %s, p, 1 FROM unnest(%s::uuid[]) p",
            (bill[0], products),
        )
        if create_tickets:
            cur.execute("SELECT id FROM kprintd.kitchen_create_tickets(%s)", (bill[0],))
            tickets = len(cur.fetchall())
    issued = time.monotonic()
    conn.commit()
    done = time.monotonic()
    row = wal.execute(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s::pg_lsn)", (start_lsn[0],)
    ).fetchone()
    assert row is not None
    return done - started, done - issued, float(row[0]), tickets


_XACT_WRITES = (
    "SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del"
    " FROM pg_stat_xact_user_tables"
)


def _rows_written(
    conn: psycopg.Connection, brand_id: uuid.UUID, products: list[uuid.UUID]
) -> tuple[int, dict[str, int]]:
    """One send with kitchen_create_tickets, counting the rows it wrote.

    pg_stat_xact_user_tables also holds earlier transactions' counts not yet flushed to the
    shared statistics, so the rows are its difference from the start to the end of this one.
    """
    with conn.cursor() as cur:
        cur.execute(_XACT_WRITES)
        before = {str(name): int(n) for name, n in cur.fetchall()}
        cur.execute(
            "INSERT INTO pos_bill (brand_id, bill_number, table_number)"
            " VALUES (%s, 'ROWS', '7') RETURNING id",
            (brand_id,),
        )
        bill = cur.fetchone()
        assert bill is not None
        cur.execute(
            "INSERT INTO pos_billitem (bill_id, product_id, quantity)"
            " SELECT %s, p, 1 FROM unnest(%s::uuid[]) p",
            (bill[0], products),
        )
        cur.execute("SELECT id FROM kprintd.kitchen_create_tickets(%s)", (bill[0],))
        tickets = len(cur.fetchall())
        cur.execute(_XACT_WRITES)
        after = {str(name): int(n) for name, n in cur.fetchall()}
    conn.commit()
    rows = {
        name: n - before.get(name, 0)
        for name, n in after.items()
        if name not in _POS_TABLES and n - before.get(name, 0) > 0
    }
    return tickets, rows


def pos_cost(cluster: Cluster, sizes: Sizes) -> list[PosCostShape]:
    """What kitchen_create_tickets adds to the POS's own transaction, interleaved with and
    without it, bill shape by bill shape, on the same database; no daemon listens."""
    from bench.printers import Printer

    conninfo = cluster.new_database("pos_cost")
    stations = [f"st{n}" for n in range(1, max(s for s, _ in POS_COST_SHAPES) + 1)]
    restaurant = seed_restaurant(
        conninfo,
        "Bench POS cost",
        [(station, Printer(f"{station}-1", host="127.0.0.1", port=9)) for station in stations],
    )
    shapes = {
        shape: [restaurant.products[stations[i % shape[0]]] for i in range(shape[1])]
        for shape in POS_COST_SHAPES
    }
    samples: dict[tuple[int, int, bool], list[tuple[float, float, float, int]]] = {}
    with (
        psycopg.connect(conninfo, application_name="bench-pos") as conn,
        psycopg.connect(conninfo, autocommit=True) as wal,
    ):
        for n in range(POS_COST_WARMUP_ROUNDS + sizes.pos_cost_rounds):
            for shape, products in shapes.items():
                # Alternate which goes first, so neither always follows the other.
                for create in (n % 2 == 0, n % 2 == 1):
                    sample = _pos_transaction(conn, wal, restaurant.brand_id, products, create)
                    if n >= POS_COST_WARMUP_ROUNDS:
                        samples.setdefault((*shape, create), []).append(sample)
        rows = {shape: _rows_written(conn, restaurant.brand_id, p) for shape, p in shapes.items()}

    def med(values: list[float], p: float = 50) -> float:
        return percentile(sorted(values), p)

    out = []
    for shape in POS_COST_SHAPES:
        without, with_ = samples[(*shape, False)], samples[(*shape, True)]
        tickets, written = rows[shape]
        out.append(
            PosCostShape(
                stations=shape[0],
                items=shape[1],
                rounds=len(with_),
                without_ms=med([s[0] for s in without]) * 1000,
                with_ms=med([s[0] for s in with_]) * 1000,
                without_p90_ms=med([s[0] for s in without], 90) * 1000,
                with_p90_ms=med([s[0] for s in with_], 90) * 1000,
                commit_without_ms=med([s[1] for s in without]) * 1000,
                commit_with_ms=med([s[1] for s in with_]) * 1000,
                wal_without_bytes=med([s[2] for s in without]),
                wal_with_bytes=med([s[2] for s in with_]),
                tickets=tickets,
                rows_written=written,
            )
        )
    return out


def pgqueuer_noop(cluster: Cluster, sizes: Sizes) -> PgqueuerResult:
    """pgqueuer (an optional dependency) drains no-op jobs on a fresh database of this cluster."""
    name = "bench_pgqueuer"
    with psycopg.connect(cluster.admin_conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    result = subprocess.run(
        [sys.executable, "-m", "bench.pgqueuer_noop", cluster.server.conninfo(name),
         str(sizes.pgqueuer_jobs)],
        capture_output=True, text=True, timeout=600, check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    lines = result.stdout.strip().splitlines()
    try:
        document = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        document = {}
    if "jobs_per_s" not in document:
        error = document.get("error") or (result.stderr.strip().splitlines() or ["no output"])[-1]
        return PgqueuerResult(error=str(error))
    return PgqueuerResult(
        jobs=int(document["jobs"]),
        seconds=float(document["seconds"]),
        jobs_per_s=float(document["jobs_per_s"]),
        version=str(document.get("version", "")),
    )
