"""`python -m bench.views`: are the monitoring views fast on a long history?

Owns the view benchmark: a throwaway PostgreSQL cluster (kprintd.harness), the migrated schema, a
bulk-loaded history (by default 1 million tickets and 5 million audit-log rows over a year, 12
printers checked every minute for 30 days), then each monitoring view queried the way a dashboard
or `kprintd status` asks it (over the last day where it has a time column), several times. Prints
a table with median, p95 and max per view and PASS/MISS against the 100 ms target (on p95).

The load is plain SQL with generate_series, written as a restore writes a dump: with
session_replication_role = replica, so the row triggers and foreign-key checks that guard a POS's
writes do not run a million times over (through them, the load alone took about ten minutes).
The rows carry what those triggers would have written (scope from the bill, ticket type, the
'created' audit row), with their historical timestamps. Exits 0 when every query ran, whatever
the verdicts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from kprintd.harness import PostgresServer, embedded_server

TARGET_MS = 100.0
DATABASE = "kprintd_bench_views"


@dataclass(frozen=True)
class Sizes:
    tickets: int
    days: int
    health_days: int
    runs: int


FULL = Sizes(tickets=1_000_000, days=365, health_days=30, runs=20)
QUICK = Sizes(tickets=20_000, days=30, health_days=3, runs=5)

# (label, query): each view as a dashboard would ask it.
QUERIES: tuple[tuple[str, str], ...] = (
    (
        "kitchen_printer_status",
        "SELECT * FROM kitchen_printer_status WHERE checked_at > now() - interval '1 day'",
    ),
    ("kitchen_printer_offline", "SELECT * FROM kitchen_printer_offline"),
    ("kitchen_printer_uptime_7d", "SELECT * FROM kitchen_printer_uptime_7d"),
    ("kitchen_printer_failure_rate", "SELECT * FROM kitchen_printer_failure_rate"),
    ("kitchen_print_sla", "SELECT * FROM kitchen_print_sla WHERE day >= current_date - 1"),
    (
        "kitchen_stuck_tickets",
        "SELECT * FROM kitchen_stuck_tickets WHERE created_at > now() - interval '1 day'",
    ),
    ("kitchen_stuck_tickets (all)", "SELECT * FROM kitchen_stuck_tickets"),
    (
        "kitchen_failed_tickets",
        "SELECT * FROM kitchen_failed_tickets WHERE failed_at > now() - interval '1 day'",
    ),
    (
        "kitchen_bill_status",
        "SELECT * FROM kitchen_bill_status WHERE created_at > now() - interval '1 day'",
    ),
    ("kitchen_station_queue", "SELECT * FROM kitchen_station_queue"),
    ("kitchen_daemon_status", "SELECT * FROM kitchen_daemon_status"),
    ("kprintd.kitchen_status_report()", "SELECT kprintd.kitchen_status_report()"),
)

# Two brands, two stores each, three stations; a primary and a backup printer per brand and station
# (brand-wide). Ticket n of the history belongs to bill (n + 1) / 2 and is created at an even pace
# over `days` days ending now.
LOAD_REFERENCE = (
    """
INSERT INTO core_brand (id, name) VALUES
    ('a0000000-0000-4000-8000-000000000001', 'Ayam Geprek'),
    ('a0000000-0000-4000-8000-000000000002', 'Kopi Senja')
""",
    """
INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip, priority)
SELECT b.id, s.station, format('%%s %%s %%s', b.name, s.station, p.priority),
       format('10.0.%%s.%%s', s.n, p.priority + 10 * b.n)::inet, p.priority
FROM (VALUES ('a0000000-0000-4000-8000-000000000001'::uuid, 'Ayam Geprek', 1),
             ('a0000000-0000-4000-8000-000000000002'::uuid, 'Kopi Senja', 2)) b(id, name, n)
CROSS JOIN (VALUES ('kitchen', 1), ('bar', 2), ('dessert', 3)) s(station, n)
CROSS JOIN (VALUES (1), (2)) p(priority)
ORDER BY b.n, s.n, p.priority
""",
    """
INSERT INTO pos_bill (id, brand_id, store_id, bill_number, table_number, created_at)
SELECT n,
       CASE WHEN n %% 2 = 0 THEN 'a0000000-0000-4000-8000-000000000001'::uuid
            ELSE 'a0000000-0000-4000-8000-000000000002'::uuid END,
       ('b0000000-0000-4000-8000-00000000000' || (n %% 4))::uuid,
       'B-' || n, (n %% 40)::text,
       now() - make_interval(days => %(days)s::int)
             + make_interval(days => %(days)s::int) * ((2 * n - 1)::float8 / %(tickets)s::int)
             - interval '5 seconds'
FROM generate_series(1, (%(tickets)s::int + 1) / 2) n
""",
    "SELECT setval(pg_get_serial_sequence('pos_bill', 'id'), (%(tickets)s::int + 1) / 2)",
)

# One chunk of tickets, ids first..last. The newest tickets are still queued or printing (a few
# of them stuck), about one in a thousand failed, the rest printed a few seconds after
# creation on their brand's primary printer for the station.
LOAD_TICKETS = """
INSERT INTO kitchen_kitchenticket
    (id, bill_id, brand_id, store_id, ticket_type, is_reprint, printer_target, status,
     print_attempts, max_retries, printer_ip, printer_id, error_message, error_code, last_error_at,
     created_at, printed_at, claimed_by, lease_expires_at, next_attempt_at)
SELECT n, (n + 1) / 2, sp.brand_id,
       ('b0000000-0000-4000-8000-00000000000' || ((n + 1) / 2 %% 4))::uuid,
       'order', false, g.station, g.status,
       CASE g.status WHEN 'new' THEN CASE WHEN n %% 10 = 0 THEN 3 ELSE 0 END
                     WHEN 'failed' THEN 3 ELSE 1 END,
       3,
       CASE WHEN g.status = 'printed' THEN sp.printer_ip END,
       CASE WHEN g.status = 'printed' THEN sp.id END,
       CASE WHEN g.status = 'failed' THEN 'connection refused' END,
       CASE WHEN g.status = 'failed' THEN 'connection_refused' END,
       CASE WHEN g.status = 'failed' THEN g.created_at + interval '40 seconds' END,
       g.created_at,
       CASE WHEN g.status = 'printed' THEN g.created_at + interval '3 seconds' END,
       CASE WHEN g.status = 'printing' THEN 'bench:1' END,
       CASE WHEN g.status = 'printing' THEN now() + make_interval(secs => 30 - 10 * (n %% 5)) END,
       g.created_at
FROM generate_series(%(first)s::int, %(last)s::int) n
CROSS JOIN LATERAL (
    SELECT (ARRAY['kitchen', 'bar', 'dessert'])[1 + n %% 3] AS station,
           now() - make_interval(days => %(days)s::int)
                 + make_interval(days => %(days)s::int) * (n::float8 / %(tickets)s::int)
               AS created_at,
           CASE WHEN n > %(tickets)s::int - 40 THEN 'new'
                WHEN n > %(tickets)s::int - 50 THEN 'printing'
                WHEN n %% 997 = 0 THEN 'failed'
                ELSE 'printed' END AS status
) g
JOIN kitchen_stationprinter sp
  ON sp.station_code = g.station AND sp.priority = 1
 AND sp.brand_id = CASE WHEN ((n + 1) / 2) %% 2 = 0
                        THEN 'a0000000-0000-4000-8000-000000000001'::uuid
                        ELSE 'a0000000-0000-4000-8000-000000000002'::uuid END;
"""

# The audit trail of those tickets, with historical timestamps: each ticket's 'created' row (as the
# audit trigger writes it), then two of three printed tickets failed once on their first attempt
# (start, failed, retry, start, success), the others printed at once (start, success); failed
# tickets end with print_failed.
LOAD_LOG = """
INSERT INTO kitchen_kitchenticketlog
    (ticket_id, "timestamp", old_status, new_status, action, actor, printer_ip, error_code,
     duration_ms, metadata)
SELECT t.id, t.created_at + v.after, v.old_status, v.new_status, v.action,
       CASE WHEN v.k = 0 THEN 'pos' ELSE 'printer_service' END,
       CASE WHEN v.k > 0 THEN t.printer_ip END, v.error_code,
       CASE WHEN v.action = 'print_success' THEN 80 + (t.id * 7919) %% 400 END,
       CASE WHEN v.k = 0
            THEN jsonb_build_object('items_count', 0, 'bill_id', t.bill_id,
                                    'station', t.printer_target, 'ticket_type', t.ticket_type)
            ELSE '{}'::jsonb END
FROM kitchen_kitchenticket t
CROSS JOIN LATERAL (VALUES
    (0, interval '0', NULL, 'new', 'created', NULL),
    (1, interval '50 ms', 'new', 'printing', 'print_start', NULL),
    (2, interval '2 seconds', 'printing', 'failed', 'print_failed', 'connect_timeout'),
    (3, interval '2010 ms', 'failed', 'new', 'retry', 'connect_timeout'),
    (4, interval '2500 ms', 'new', 'printing', 'print_start', NULL),
    (5, interval '3 seconds', 'printing', 'printed', 'print_success', NULL)
) v(k, after, old_status, new_status, action, error_code)
WHERE t.id BETWEEN %(first)s::int AND %(last)s::int
  AND CASE t.status
          WHEN 'printed' THEN t.id %% 3 <> 0 OR v.k IN (0, 4, 5)
          WHEN 'failed' THEN v.k IN (0, 1, 2)
          WHEN 'printing' THEN v.k IN (0, 1)
          ELSE v.k = 0
      END;
"""

# Every printer checked once a minute for health_days days; each printer is offline about one hour
# a day, and the bar printer of the second brand has been offline for the last 20 minutes.
LOAD_HEALTH = """
INSERT INTO kitchen_printerhealthcheck
    (printer_id, checked_at, is_online, response_time_ms, paper_status, error_code, error_message)
SELECT sp.id, c.checked_at, c.online, CASE WHEN c.online THEN 5 + m %% 20 END,
       CASE WHEN c.online THEN CASE WHEN m %% 500 = 250 THEN 'low' ELSE 'ok' END ELSE 'unknown' END,
       CASE WHEN NOT c.online THEN 'connect_timeout' END,
       CASE WHEN NOT c.online THEN 'no answer within 2 s' END
FROM kitchen_stationprinter sp
CROSS JOIN generate_series(0, %(health_days)s::int * 1440 - 1) m
CROSS JOIN LATERAL (
    SELECT now() - make_interval(mins => m) AS checked_at,
           NOT ((m + 97 * sp.id) %% 1440 < 60
                OR (sp.printer_name = 'Kopi Senja bar 1' AND m < 20)) AS online
) c;
"""

# The printers' lifetime counters, as kitchen_finish_print_jobs() keeps them.
PRINTER_COUNTERS = """
UPDATE kitchen_stationprinter sp
SET total_prints = c.printed, failed_prints = c.failed, last_print_at = c.last_print_at
FROM (SELECT sp2.id,
             count(*) FILTER (WHERE t.status = 'printed') AS printed,
             count(*) FILTER (WHERE t.id %% 3 <> 0) AS failed,
             max(t.printed_at) AS last_print_at
      FROM kitchen_stationprinter sp2
      JOIN kitchen_kitchenticket t ON t.printer_id = sp2.id
      GROUP BY sp2.id) c
WHERE c.id = sp.id
"""

HEARTBEAT = """
SELECT kprintd.kitchen_daemon_beat('bench:1', 'bench', 1, 'bench', NULL, NULL, 60, now(), 0)
"""


def _progress(message: str) -> None:
    print(f"-- {message}", flush=True)


def load(conn: psycopg.Connection[Any], sizes: Sizes) -> None:
    params: dict[str, Any] = {
        "tickets": sizes.tickets,
        "days": sizes.days,
        "health_days": sizes.health_days,
    }
    for statement in LOAD_REFERENCE:
        conn.execute(statement, params)
    conn.execute("SET session_replication_role = replica")
    chunk = 100_000
    started = time.monotonic()
    for first in range(1, sizes.tickets + 1, chunk):
        last = min(first + chunk - 1, sizes.tickets)
        conn.execute(LOAD_TICKETS, {**params, "first": first, "last": last})
        conn.execute(LOAD_LOG, {**params, "first": first, "last": last})
        _progress(f"tickets 1..{last:,} loaded ({time.monotonic() - started:.0f} s)")
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('kitchen_kitchenticket', 'id'), %(tickets)s::int)",
        params,
    )
    conn.execute(PRINTER_COUNTERS, params)
    conn.execute(LOAD_HEALTH, params)
    conn.execute("RESET session_replication_role")
    conn.execute(HEARTBEAT)
    _progress("vacuum analyze")
    conn.execute("VACUUM ANALYZE")


def counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    tables = ("kitchen_kitchenticket", "kitchen_kitchenticketlog", "kitchen_printerhealthcheck")
    result: dict[str, int] = {}
    for table in tables:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        result[table] = int(row.fetchone()[0])  # type: ignore[index]
    return result


@dataclass(frozen=True)
class Timing:
    label: str
    rows: int
    median_ms: float
    p95_ms: float
    max_ms: float

    @property
    def verdict(self) -> str:
        return "PASS" if self.p95_ms < TARGET_MS else "MISS"


def time_query(conn: psycopg.Connection[Any], label: str, query: str, runs: int) -> Timing:
    rows = 0
    for _ in range(2):  # warm the cache and the plan
        rows = len(conn.execute(query).fetchall())
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(query).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return Timing(label, rows, statistics.median(samples), p95, samples[-1])


def table(timings: Sequence[Timing]) -> str:
    width = max(len(t.label) for t in timings)
    lines = [f"{'view':<{width}}  {'rows':>6}  {'median':>9}  {'p95':>9}  {'max':>9}  target"]
    for t in timings:
        lines.append(
            f"{t.label:<{width}}  {t.rows:>6}  {t.median_ms:>6.1f} ms  {t.p95_ms:>6.1f} ms"
            f"  {t.max_ms:>6.1f} ms  {t.verdict} (p95 < {TARGET_MS:g} ms)"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.views",
        description="Time kprintd's monitoring views on a large bulk-loaded history.",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK.tickets:,} tickets: a smoke test"
    )
    parser.add_argument("--runs", type=int, help="timed runs per view (default: 20, quick: 5)")
    return parser


def _migrated(server: PostgresServer) -> str:
    server.create_database(DATABASE)
    server.migrate(DATABASE)
    return server.conninfo(DATABASE)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = Sizes(sizes.tickets, sizes.days, sizes.health_days, args.runs)
    try:
        _progress("starting a throwaway PostgreSQL cluster and migrating it")
        with (
            embedded_server() as server,
            psycopg.connect(_migrated(server), autocommit=True) as conn,
        ):
            started = time.monotonic()
            load(conn, sizes)
            rows = counts(conn)
            _progress(
                f"loaded in {time.monotonic() - started:.0f} s: "
                + ", ".join(f"{n:,} {t}" for t, n in rows.items())
            )
            timings = [time_query(conn, label, query, sizes.runs) for label, query in QUERIES]
    except KeyboardInterrupt:
        print("interrupted: PostgreSQL stopped", file=sys.stderr)
        return 130
    print()
    print(table(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
