"""Turning scenario results into verdicts, a table for people and a JSON file for tools.

Owns the targets (and so what PASS means), the printed table and the layout of
bench/results/latest.json. A missed target is a MISS in the report, never an error. Verdicts are
given on the runs with lean printers; the same runs with the project's emulators are shown
beside them as a cross-check, without a verdict (bench.printers says why).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.machine import Machine
from bench.scenarios import (
    CpuUse,
    DistanceResult,
    IsolationResult,
    LatencyResult,
    PgqueuerResult,
    PosCostShape,
    ThroughputResult,
)

LATENCY_P50_MAX_MS = 2.0
LATENCY_P99_MAX_MS = 10.0
THROUGHPUT_MIN_PER_S = 1_500.0
ISOLATION_P99_MAX_RATIO = 2.0
# Printers with an ordinary TCP stack (Nagle-style) must not make the paper much later (issue #15).
NAGLE_P50_MAX_RATIO = 1.5
# kitchen_create_tickets may at most double the POS's own bill transaction (issue #15).
POS_COST_MAX_RATIO = 2.0
# Memory is flat over repeated bursts when RSS after the last is within this of after the first.
MEMORY_GROWTH_MAX = 0.05
# Above this share of one core used by processes that are not ours, a figure is flagged noisy
# (in windows long enough for /proc's 10 ms CPU ticks to say so).
OTHER_CPU_WARNING = 0.10
WARNING_MIN_WINDOW_S = 2.0


@dataclass(frozen=True)
class Check:
    figure: str
    measured: str
    target: str
    passed: bool | None  # None: a figure without a target

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Results:
    mode: str
    started_at: str
    machine: Machine
    sizes: dict[str, Any]
    durable: bool = True
    latency: LatencyResult | None = None
    nagle_latency: LatencyResult | None = None
    emulator_latency: LatencyResult | None = None
    isolation: IsolationResult | None = None
    throughput: ThroughputResult | None = None
    nagle_throughput: ThroughputResult | None = None
    distances: list[DistanceResult] = dataclasses.field(default_factory=list)
    emulator_throughput: ThroughputResult | None = None
    pos_cost: list[PosCostShape] | None = None
    pgqueuer: PgqueuerResult | None = None
    runtime_s: float = math.nan

    def measurements(self) -> list[tuple[str, CpuUse]]:
        """Every measurement window, named, with the CPU it saw."""
        named: list[tuple[str, LatencyResult | ThroughputResult | None]] = [
            ("latency", self.latency),
            ("latency on Nagle-style printers", self.nagle_latency),
            ("latency on emulators", self.emulator_latency),
            ("isolation", self.isolation.healthy if self.isolation else None),
            ("burst", self.throughput),
            ("burst on Nagle-style printers", self.nagle_throughput),
            ("burst on emulators", self.emulator_throughput),
        ]
        return [(name, result.cpu) for name, result in named if result is not None]


def _ms(value: float) -> str:
    return "lost" if math.isinf(value) else f"{value:.2f} ms"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _latency_checks(lat: LatencyResult) -> list[Check]:
    summary = lat.from_commit_issued
    checks = [
        Check("latency p50 (POS issues COMMIT -> cut)", _ms(summary.p50_ms), "<= 2 ms",
              summary.p50_ms <= LATENCY_P50_MAX_MS),
        Check("latency p99", _ms(summary.p99_ms), "<= 10 ms",
              summary.p99_ms <= LATENCY_P99_MAX_MS),
        Check("latency max", _ms(summary.max_ms), "", None),
        Check("  from COMMIT returned: p50 / p99",
              f"{_ms(lat.latency.p50_ms)} / {_ms(lat.latency.p99_ms)}", "", None),
        Check("  the POS's COMMIT itself: p50 / p99",
              f"{_ms(lat.commit.p50_ms)} / {_ms(lat.commit.p99_ms)}", "", None),
    ]  # fmt: skip
    if summary.lost:
        checks.append(Check("latency: tickets never printed", str(summary.lost), "0", False))
    return checks


def _burst_checks(tp: ThroughputResult, with_target: bool) -> list[Check]:
    each = ", ".join(f"{r:,.0f}" for r in tp.tickets_per_s_each)
    bursts = max(1, len(tp.tickets_per_s_each))
    stack = "Nagle-style" if tp.nagle else "prompt"
    if with_target:
        median = f"median of {bursts} bursts" if bursts > 1 else "1 burst"
        checks = [
            Check(
                f"throughput, {stack} printers, {median} of {tp.tickets // bursts:,} tickets "
                f"on {tp.printers} printers ({each})",
                f"{tp.tickets_per_s:,.0f} tickets/s",
                f">= {THROUGHPUT_MIN_PER_S:,.0f}/s",
                tp.tickets_per_s >= THROUGHPUT_MIN_PER_S,
            )
        ]
    else:
        checks = [Check("  same burst, emulators", f"{tp.tickets_per_s:,.0f} tickets/s", "", None)]
    if tp.printed != tp.tickets or tp.duplicates:
        checks.append(
            Check(
                f"burst ({tp.printer_kind}, {stack} printers): printed exactly once",
                f"{tp.printed:,} of {tp.tickets:,}, {tp.duplicates} duplicates",
                "all, 0 duplicates",
                False,
            )
        )
    return checks


def checks(results: Results) -> list[Check]:
    out: list[Check] = []
    if results.latency is not None:
        out += _latency_checks(results.latency)
    if results.nagle_latency is not None:
        nag = results.nagle_latency.from_commit_issued
        out.append(
            Check(
                "latency, Nagle-style printers: p50 / p99",
                f"{_ms(nag.p50_ms)} / {_ms(nag.p99_ms)}",
                "",
                None,
            )
        )
        if nag.lost:
            out.append(Check("Nagle-style: tickets never printed", str(nag.lost), "0", False))
        if results.latency is not None:
            ratio = nag.p50_ms / results.latency.from_commit_issued.p50_ms
            out.append(
                Check(
                    "latency p50, Nagle-style / prompt",
                    f"{ratio:.2f}x",
                    f"<= {NAGLE_P50_MAX_RATIO:g}x",
                    ratio <= NAGLE_P50_MAX_RATIO,
                )
            )
    if results.emulator_latency is not None:
        emu = results.emulator_latency.from_commit_issued
        out.append(
            Check(
                "  same load, emulators: p50 / p99",
                f"{_ms(emu.p50_ms)} / {_ms(emu.p99_ms)}",
                "",
                None,
            )
        )
    if results.isolation is not None:
        iso = results.isolation.healthy.from_commit_issued
        station = results.isolation.black_hole_station
        out.append(Check(f"isolation p99 ('{station}' black-holed)", _ms(iso.p99_ms), "", None))
        if iso.lost:
            out.append(Check("isolation: tickets never printed", str(iso.lost), "0", False))
        if results.latency is not None:
            ratio = iso.p99_ms / results.latency.from_commit_issued.p99_ms
            out.append(
                Check(
                    "isolation p99 / latency p99",
                    f"{ratio:.2f}x",
                    f"<= {ISOLATION_P99_MAX_RATIO:g}x",
                    ratio <= ISOLATION_P99_MAX_RATIO,
                )
            )
    if results.throughput is not None:
        out += _burst_checks(results.throughput, with_target=True)
    if results.nagle_throughput is not None:
        out += _burst_checks(results.nagle_throughput, with_target=True)
    if results.emulator_throughput is not None:
        out += _burst_checks(results.emulator_throughput, with_target=False)
    if results.throughput is not None:
        mem = results.throughput.memory
        out += [
            Check("daemon RSS before the bursts", _mib(mem.rss_before_kib), "", None),
            Check("daemon RSS peak (VmHWM)", _mib(mem.rss_peak_kib), "", None),
        ]
        after = mem.rss_after_each_kib or (mem.rss_after_kib,)
        growth = (after[-1] - after[0]) / after[0] if after[0] else math.nan
        out.append(
            Check(
                "daemon RSS after each burst (flat?)",
                " / ".join(_mib(k) for k in after) + f" ({growth * 100:+.1f} %)",
                f"last <= first +{MEMORY_GROWTH_MAX * 100:g} %",
                growth <= MEMORY_GROWTH_MAX if len(after) > 1 else None,
            )
        )
    if results.pgqueuer is not None:
        pq = results.pgqueuer
        out.append(
            Check(
                "  for scale: pgqueuer no-op drain, same cluster",
                f"{pq.jobs_per_s:,.0f} jobs/s ({pq.jobs:,} jobs, pgqueuer {pq.version})"
                if not pq.error
                else f"not run: {pq.error}",
                "",
                None,
            )
        )
    for dist in results.distances:
        lost = f", {dist.latency.lost} lost" if dist.latency.lost else ""
        out.append(
            Check(
                f"printer {dist.rtt_ms:g} ms away, 1 station: latency p50 / burst drain / "
                "round trips per ticket, light load and burst",
                f"{_ms(dist.latency.p50_ms)}{lost} / {dist.burst_tickets_per_s:,.0f} tickets/s / "
                f"{dist.light_round_trips_per_ticket:.2f} and "
                f"{dist.burst_round_trips_per_ticket:.2f}",
                "",
                None,
            )
        )
        if dist.burst_printed != dist.burst_tickets or dist.latency.lost:
            out.append(
                Check(
                    f"printer {dist.rtt_ms:g} ms away: every ticket printed",
                    f"burst {dist.burst_printed} of {dist.burst_tickets}, {dist.latency.lost} lost",
                    "all",
                    False,
                )
            )
    for shape in results.pos_cost or []:
        out.append(
            Check(
                f"POS cost, {shape.stations} station(s) / {shape.items} items: with / without",
                f"{shape.with_ms:.2f} / {shape.without_ms:.2f} ms = {shape.ratio:.2f}x",
                f"<= {POS_COST_MAX_RATIO:g}x",
                shape.ratio <= POS_COST_MAX_RATIO,
            )
        )
    return out


def pos_cost_table(shapes: list[PosCostShape]) -> list[str]:
    """The POS's transaction with and without kitchen_create_tickets, shape by shape."""
    header = (
        "bill", "tickets", "txn without", "txn with", "added", "COMMIT without / with",
        "WAL without", "WAL with", "WAL added / ticket", "kprintd rows / ticket",
    )  # fmt: skip
    rows = [header]
    for s in shapes:
        tickets = max(s.tickets, 1)
        rows.append(
            (
                f"{s.stations} st / {s.items} items",
                str(s.tickets),
                f"{s.without_ms:.2f} ms",
                f"{s.with_ms:.2f} ms",
                f"{s.with_ms - s.without_ms:+.2f} ms ({s.ratio:.2f}x)",
                f"{s.commit_without_ms:.2f} / {s.commit_with_ms:.2f} ms",
                f"{s.wal_without_bytes:,.0f} B",
                f"{s.wal_with_bytes:,.0f} B",
                f"{(s.wal_with_bytes - s.wal_without_bytes) / tickets:,.0f} B",
                f"{s.kprintd_rows / tickets:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"POS cost: medians of {shapes[0].rounds if shapes else 0} interleaved transactions each"
        " (first INSERT -> COMMIT returned; no daemon listening)"
    ]
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for s in shapes:
        tables = ", ".join(f"{name.removeprefix('public.')} {n}" for name, n in
                           sorted(s.rows_written.items()))  # fmt: skip
        lines.append(f"  {s.stations} st / {s.items} items, rows kprintd wrote: {tables}")
    return lines


def table(results: Results) -> str:
    rows = [("figure", "measured", "target", "result")]
    rows += [(c.figure, c.measured, c.target, c.verdict) for c in checks(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    settings = (
        "durable cluster (production settings)"
        if results.durable
        else "FSYNC OFF: NOT production settings, a second table for comparison only"
    )
    lines = [
        f"kprintd benchmark ({results.mode}, {settings}), {results.started_at}",
        f"machine: {results.machine}",
        "",
    ]
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    if results.pos_cost:
        lines += ["", *pos_cost_table(results.pos_cost)]
    lines += ["", *_details(results), *_warnings(results), f"runtime: {results.runtime_s:.1f} s"]
    return "\n".join(line.rstrip() for line in lines)


def _per_burst(tp: ThroughputResult) -> int:
    """Tickets printed in one burst: the CPU window is the median burst's."""
    return max(tp.printed // max(1, len(tp.tickets_per_s_each)), 1)


def _cpu(cpu: CpuUse) -> str:
    """CPU use as a share of one core, by whom."""

    def share(seconds: float) -> str:
        return f"{seconds / cpu.wall_s * 100:.0f} %"

    return (
        f"CPU (% of one core): daemon {share(cpu.daemon_s)}, PostgreSQL {share(cpu.postgres_s)}, "
        f"printers {share(cpu.printers_s)}, load generator {share(cpu.load_s)}, "
        f"other processes {share(cpu.other_s)}; machine "
        f"{cpu.machine_busy_s / cpu.machine_capacity_s * 100:.0f} % busy"
    )


def _latency_details(name: str, lat: LatencyResult) -> list[str]:
    summary = lat.from_commit_issued
    return [
        f"{name} ({lat.printer_kind} printers, from COMMIT issued): {summary.samples} tickets over "
        f"{lat.measured_s:g} s at {lat.achieved_rate_per_s:.1f}/s on {len(lat.stations)} "
        f"stations; min {_ms(summary.min_ms)}, p50 {_ms(summary.p50_ms)}, "
        f"p90 {_ms(summary.p90_ms)}, p99 {_ms(summary.p99_ms)}, max {_ms(summary.max_ms)}",
        f"  {_cpu(lat.cpu)}",
    ]


def _details(results: Results) -> list[str]:
    lines: list[str] = []
    if results.latency is not None:
        lines += _latency_details("latency", results.latency)
    if results.nagle_latency is not None:
        lines += _latency_details("latency, Nagle-style", results.nagle_latency)
    if results.emulator_latency is not None:
        lines += _latency_details("latency", results.emulator_latency)
    if results.isolation is not None:
        iso = results.isolation
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(iso.black_hole_statuses.items()))
        lines += _latency_details("isolation", iso.healthy)
        lines.append(
            f"  {iso.black_hole_tickets} tickets went to the black hole "
            f"(at the end: {statuses or 'none'})"
        )
    for tp in (results.throughput, results.nagle_throughput, results.emulator_throughput):
        if tp is None:
            continue
        per_ticket = tp.cpu.per_ticket_us(_per_burst(tp))
        stack = ", Nagle-style" if tp.nagle else ""
        lines += [
            f"burst ({tp.printer_kind}{stack} printers, the median burst): created in "
            f"{tp.insert_s:.1f} s (one transaction); first cut "
            f"{tp.commit_to_first_cut_ms:.0f} ms after COMMIT, last "
            f"after {tp.commit_to_last_cut_s:.1f} s; {tp.per_printer_min:,}-"
            f"{tp.per_printer_max:,} tickets per printer over all bursts",
            f"  {_cpu(tp.cpu)}",
            "  CPU per ticket: "
            + ", ".join(f"{who} {us:.0f} us" for who, us in per_ticket.items()),
        ]
    for dist in results.distances:
        lat = dist.latency
        lines.append(
            f"distance {dist.rtt_ms:g} ms (lean printer, one station, from COMMIT issued): "
            f"{lat.samples} tickets, p50 {_ms(lat.p50_ms)}, p99 {_ms(lat.p99_ms)}; burst of "
            f"{dist.burst_tickets} drained at {dist.burst_tickets_per_s:,.0f}/s, last cut "
            f"{dist.burst_commit_to_last_cut_s:.1f} s after COMMIT; counted by the printer: "
            f"light load {dist.light_round_trips} round trips, {dist.light_status_requests} "
            f"status requests for {dist.light_tickets} tickets (warm-up included), burst "
            f"{dist.burst_round_trips} round trips, {dist.burst_status_requests} status requests "
            f"for {dist.burst_printed} tickets"
        )
    return lines


def _warnings(results: Results) -> list[str]:
    return [
        f"WARNING: other processes used {cpu.other_s / cpu.wall_s * 100:.0f} % of a core "
        f"during '{name}': its figures are likely inflated"
        for name, cpu in results.measurements()
        if cpu.wall_s >= WARNING_MIN_WINDOW_S and cpu.other_s / cpu.wall_s > OTHER_CPU_WARNING
    ]


def _plain(value: Any) -> Any:
    """JSON-safe: dataclasses as objects, NaN and infinity as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(results: Results, path: Path) -> None:
    document = _plain(results)
    document["checks"] = [
        {"figure": c.figure.strip(), "measured": c.measured, "target": c.target,
         "result": c.verdict}
        for c in checks(results)
    ]  # fmt: skip
    for key in ("throughput", "nagle_throughput", "emulator_throughput"):
        tp = getattr(results, key)
        if tp is not None:
            document[key]["cpu"]["per_ticket_us"] = tp.cpu.per_ticket_us(_per_burst(tp))
    for entry, dist in zip(document["distances"], results.distances, strict=True):
        entry["light_round_trips_per_ticket"] = _plain(dist.light_round_trips_per_ticket)
        entry["burst_round_trips_per_ticket"] = _plain(dist.burst_round_trips_per_ticket)
    document["warnings"] = _warnings(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
