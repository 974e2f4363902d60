"""`python -m bench.run` (`make bench`): run the scenarios, print the table, write the JSON.

Owns the command line (--quick for a smoke test of a few seconds, --only to run some scenarios,
--output for the JSON path), the order of the scenarios, and the guarantee that the daemon, the
printers and PostgreSQL are gone when it returns, also after Ctrl-C or SIGTERM. Exits 0 when every
scenario ran, whatever the verdicts; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import scenarios
from bench.machine import describe_machine
from bench.report import Results, table, write_json
from bench.stack import Cluster, work_directory

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"
SCENARIOS = ("latency", "isolation", "pos_cost", "burst", "distance", "pgqueuer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="Benchmark kprintd against its targets."
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke test of a few seconds"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--fsync-off",
        action="store_true",
        help="the labelled second variant: fsync, synchronous_commit and full_page_writes off "
        "(not production settings; default: all on, as a store's server runs)",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default: {DEFAULT_OUTPUT})"
    )
    return parser


def run(args: argparse.Namespace) -> Results:
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    selected = args.only or SCENARIOS
    started = time.monotonic()

    def _progress(message: str) -> None:
        print(f"-- [{time.monotonic() - started:5.1f} s] {message}", flush=True)

    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(work_directory())
        _progress("starting a throwaway PostgreSQL cluster and migrating it")
        cluster = Cluster(stack, durable=not args.fsync_off)
        results = Results(
            mode="quick" if args.quick else "full",
            durable=cluster.durable,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            machine=describe_machine(cluster.admin_conninfo),
            sizes=dataclasses.asdict(sizes),
        )
        _progress(f"machine: {results.machine}")
        if "latency" in selected:
            _progress(
                f"latency: {sizes.rate_per_s:g} tickets/s over {len(sizes.light_stations)} "
                f"stations for {sizes.warmup_s:g} + {sizes.measure_s:g} s, lean printers"
            )
            results.latency = scenarios.latency(cluster, workdir, sizes, "lean")
            _progress("latency: the same load on Nagle-style lean printers (nagle=True)")
            results.nagle_latency = scenarios.latency(cluster, workdir, sizes, "lean", nagle=True)
            _progress("latency: the same load on the project's emulators")
            results.emulator_latency = scenarios.latency(cluster, workdir, sizes, "emulator")
        if "isolation" in selected:
            _progress("isolation: the same load, plus a station whose printer is a black hole")
            results.isolation = scenarios.isolation(cluster, workdir, sizes, "lean")
        if "pos_cost" in selected:
            _progress(
                f"POS cost: {sizes.pos_cost_rounds} transactions of each bill shape with and "
                "without kitchen_create_tickets, interleaved"
            )
            results.pos_cost = scenarios.pos_cost(cluster, sizes)
        if "burst" in selected:
            _progress(
                f"burst: {sizes.bursts} x {sizes.burst_tickets:,} tickets on "
                f"{sizes.burst_stations} lean printers, one daemon"
            )
            results.throughput = scenarios.burst(cluster, workdir, sizes, "lean")
            _progress(
                f"burst: {sizes.nagle_bursts} x {sizes.burst_tickets:,} tickets on "
                f"{sizes.burst_stations} Nagle-style lean printers, one daemon"
            )
            results.nagle_throughput = scenarios.burst(cluster, workdir, sizes, "lean", nagle=True)
            if sizes.emulator_burst:
                _progress("burst: the same on the project's emulators")
                results.emulator_throughput = scenarios.burst(cluster, workdir, sizes, "emulator")
        if "distance" in selected:
            for rtt_ms in sizes.distance_rtts_ms:
                _progress(
                    f"distance: one station, its printer {rtt_ms:g} ms away: "
                    f"{sizes.distance_tickets} tickets at {sizes.rate_per_s:g}/s, then a burst "
                    f"of {sizes.distance_burst}"
                )
                results.distances.append(scenarios.distance(cluster, workdir, sizes, rtt_ms))
        if "pgqueuer" in selected:
            _progress(f"pgqueuer: draining {sizes.pgqueuer_jobs:,} no-op jobs on the same cluster")
            results.pgqueuer = scenarios.pgqueuer_noop(cluster, sizes)
    results.runtime_s = time.monotonic() - started
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the cleanup below runs for both.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("interrupted: daemon, printers and PostgreSQL stopped", file=sys.stderr)
        return 130
    print()
    print(table(results))
    write_json(results, args.output)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
