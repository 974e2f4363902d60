"""`kprintd status` and `kprintd alerts`: what the person at the store server and scripts see.

Owns both commands. `status` reads kitchen_status_report() (sql/0022_status_report.sql, as last
redefined by sql/0028_unserved_tickets.sql; it also decides what needs attention) and shows it as
one screen, or as JSON with --json; its exit code is for cron and Nagios-style checks: 0 all well,
1 something needs attention, 2 the database cannot be read (or the configuration is wrong, which
the command line reports). `alerts` LISTENs on kitchen_alert and prints each alert as it comes, as
a line for people or as JSON lines, until Ctrl-C/SIGTERM, --count alerts or --timeout seconds.
Text for people shows control characters from the database escaped.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, TextIO

import psycopg

from kprintd.config import Settings
from kprintd.db import ALERT_CHANNEL, scope_args

EXIT_OK = 0
EXIT_ATTENTION = 1
EXIT_UNREACHABLE = 2
EXIT_TIMED_OUT = 1  # kprintd alerts: --timeout ended before --count alerts came

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 10_000
RECONNECT_MAX_S = 10.0
POLL_S = 0.5  # how often `kprintd alerts` looks at its stop flag and deadline
# Printer states that stop printing (kitchen_printer_state()); shown in capitals.
CANNOT_PRINT = frozenset({"offline", "cover_open", "paper_out", "error"})
# C0, DEL and C1: a printer or brand name from the database must not drive the terminal (move the
# cursor, clear the screen, recolour, rewrite the line) of whoever reads the status.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character shown as an escape (ESC as \\x1b)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _fail(message: str) -> int:
    print(f"kprintd: {message}", file=sys.stderr)
    return EXIT_UNREACHABLE


# --- kprintd status -------------------------------------------------------------------------------


def fetch_report(settings: Settings) -> dict[str, Any]:
    brand_ids, store_id = scope_args(settings)
    with psycopg.connect(
        settings.database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="kprintd-status",
        # A check run by cron or Nagios must answer, not hang behind a lock.
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    ) as conn:
        row = conn.execute("SELECT kitchen_status_report(%s, %s)", (brand_ids, store_id)).fetchone()
    assert row is not None
    report: dict[str, Any] = row[0]
    return report


def status(settings: Settings, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        report = fetch_report(settings)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return _fail(f"cannot read the status from the database: {reason}")
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True), file=out)
    else:
        print(render_status(report), file=out)
    return EXIT_ATTENTION if report["attention"] else EXIT_OK


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def ago(value: str | None, now: datetime) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago'; '-' for never."""
    at = _when(value)
    if at is None:
        return "-"
    return f"{duration((now - at).total_seconds())} ago"


def duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    # Escaped before measuring, so a cell with a control character keeps its column aligned.
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    return [
        "  "
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def _local(value: str | None) -> str:
    """A timestamp of the report in this machine's zone, to the minute."""
    when = _when(value)
    return f"{when.astimezone():%Y-%m-%d %H:%M}" if when else "?"


def _clip(text: str | None, width: int = 40) -> str:
    if not text:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _where_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """BRAND and STORE columns, each only when the rows span more than one."""
    return tuple(
        header
        for header, key in (("BRAND", "brand"), ("STORE", "store_id"))
        if len({row[key] for row in rows}) > 1
    )


def _where(row: dict[str, Any], columns: tuple[str, ...]) -> tuple[str, ...]:
    cells = {"BRAND": row["brand"] or "-", "STORE": (row["store_id"] or "all")[:8]}
    return tuple(cells[c] for c in columns)


def render_status(report: dict[str, Any]) -> str:
    now = datetime.fromisoformat(report["generated_at"])
    lines = [f"kprintd status at {now.astimezone():%Y-%m-%d %H:%M:%S %Z}", ""]

    lines.append("Daemons")
    for d in report["daemons"]:
        lines.append(
            f"  {d['daemon_id']}  {d['state'].upper() if d['state'] != 'alive' else 'alive'}"
            f"  seen {ago(d['last_seen_at'], now)}  started {ago(d['started_at'], now)}"
            f"  {d['tickets_printed']} printed  v{d['version']}"
        )
    if not report["daemons"]:
        lines.append("  none has run in the last day")

    lines += ["", "Printers"]
    printers = report["printers"]
    if printers:
        where = _where_columns(printers)
        lines += _table(
            (*where, "STATION", "PRINTER", "ADDRESS", "STATE", "PAPER", "CHECKED", "LAST PRINT",
             "ERROR"),
            [
                (
                    *_where(p, where),
                    p["station"],
                    p["printer_name"],
                    p["address"],
                    p["state"].upper() if p["state"] in CANNOT_PRINT else p["state"],
                    p["paper_status"] or "-",
                    ago(p["checked_at"], now),
                    ago(p["last_print_at"], now),
                    _clip(p["error_message"] or p["last_error_message"]),
                )
                for p in printers
            ],
        )  # fmt: skip
    else:
        lines.append("  no active printer")
    windows = report.get("maintenance") or []
    if windows:
        lines += ["", "Planned maintenance"]
        for m in windows:
            if m["state"] == "active":
                span = f"until {_local(m['ends_at'])}"
            else:
                span = f"from {_local(m['starts_at'])} to {_local(m['ends_at'])}"
            waits = "" if m["station_keeps_printing"] else "  (the station's tickets wait)"
            lines.append(
                f"  {m['printer_name']} ({m['station']})  {m['state']} {span}"
                f"  {_clip(m['reason'])}{waits}"
            )

    lines += ["", "Queues"]
    queues = report["queues"]
    if queues:
        where = _where_columns(queues)
        lines += _table(
            (*where, "STATION", "WAITING", "DUE", "PRINTING", "OLDEST WAITING"),
            [
                (
                    *_where(q, where),
                    q["station"],
                    str(q["waiting"]),
                    str(q["due"]),
                    str(q["printing"]),
                    ago(q["oldest_waiting_since"], now),
                )
                for q in queues
            ],
        )
    else:
        lines.append("  nothing waiting")

    lines += ["", f"Failed tickets in the last 24 h: {report['failed_24h']}"]
    for f in report["failed_tickets"]:
        lines.append(
            f"  #{f['ticket_id']} {f['station']} bill {f['bill_number']}"
            f"  {ago(f['failed_at'], now)}  {_clip(f['error_message'], 60)}"
        )
    lines.append(f"Stuck tickets: {report['stuck_count']}")
    for s in report["stuck_tickets"]:
        lines.append(
            f"  #{s['ticket_id']} {s['station']} bill {s['bill_number']}  {s['status']}"
            f"  {s['reason'].replace('_', ' ')} since {ago(s['stuck_since'], now)}"
        )
    unserved = report.get("unserved") or []
    lines.append(f"Unserved tickets: {report.get('unserved_count', 0)}")
    if unserved:
        lines += _table(
            ("STATION", "BRAND", "STORE", "WAITING", "OLDEST", "REASON"),
            [
                (
                    u["station"],
                    u["brand"] or u["brand_id"] or "-",
                    (u["store_id"] or "none")[:8],
                    str(u["waiting"]),
                    f"#{u['oldest_ticket_id']} {ago(u['oldest_created_at'], now)}",
                    u["reason"].replace("_", " "),
                )
                for u in unserved
            ],
        )

    alerts = report.get("recent_alerts") or []
    lines.append(f"Alerts in the last hour: {report.get('alerts_1h', 0)}")
    lines += [f"  {format_alert(json.dumps(a), as_json=False)}" for a in alerts[:5]]

    lines.append("")
    if report["attention"]:
        lines.append("NEEDS ATTENTION")
        lines += [f"  ! {a['message']}" for a in report["attention"]]
    else:
        lines.append("All well.")
    return "\n".join(printable(line) for line in lines)


# --- kprintd alerts -------------------------------------------------------------------------------


def format_alert(payload: str, as_json: bool) -> str:
    """One alert as one line: JSON (unchanged fields, compact) or text for a person."""
    try:
        alert = json.loads(payload)
        if not isinstance(alert, dict):
            raise ValueError("not an object")
    except ValueError:
        alert = {"type": "unreadable", "severity": "warning", "message": payload}
    if as_json:
        return json.dumps(alert, separators=(",", ":"), sort_keys=True)
    at = _when(alert.get("at"))
    when = at.astimezone().strftime("%H:%M:%S") if at else "--:--:--"
    where = " / ".join(str(alert[k]) for k in ("station", "printer") if alert.get(k))
    where = f"[{where}] " if where else ""
    return printable(
        f"{when}  {str(alert.get('severity', '?')).upper():<8}  {alert.get('type', '?')}  "
        f"{where}{alert.get('message', '')}"
    )


class _StopFlag:
    """Set by SIGINT/SIGTERM; the listen loop checks it every POLL_S."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_StopFlag]:
    flag = _StopFlag()
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _listen(
    settings: Settings, after_id: int | None, since_s: float | None = None
) -> tuple[psycopg.Connection[Any], int, list[tuple[int | None, str]]]:
    """LISTEN on kitchen_alert; returns the connection, the last kitchen_alertlog row before
    LISTEN (`after_id` when given) and the alerts sent since then or in the last `since_s` s.

    The row is read before LISTEN and the log again after it: an alert raised in between is
    read from the log, and one raised later is heard. Its alert_id tells the copies apart.
    """
    conn = psycopg.connect(
        settings.database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="kprintd-alerts",
    )
    try:
        if after_id is None:
            row = conn.execute("SELECT coalesce(max(id), 0) FROM kitchen_alertlog").fetchone()
            after_id = int(row[0]) if row else 0
        conn.execute(f"LISTEN {ALERT_CHANNEL}")
        rows = conn.execute(
            "SELECT alert_id, alert::text FROM kitchen_alerts_after(%s, %s)",
            (after_id, timedelta(seconds=since_s) if since_s is not None else None),
        ).fetchall()
    except psycopg.Error:
        conn.close()
        raise
    return conn, after_id, [(int(r[0]), str(r[1])) for r in rows]


def _alert_id(payload: str) -> int | None:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        return int(json.loads(payload)["alert_id"])
    return None


def alerts(
    settings: Settings,
    as_json: bool,
    count: int | None = None,
    timeout: float | None = None,
    out: TextIO | None = None,
    since_s: float | None = None,
) -> int:
    """Print alerts until Ctrl-C/SIGTERM (exit 0), `count` alerts (exit 0) or `timeout` seconds
    (exit 0, or 1 when fewer than `count` alerts came). With `since_s`, first those of the last
    `since_s` seconds from kitchen_alertlog. Exit 2 when the database cannot be reached at start;
    a connection lost later is reconnected with backoff, and the alerts raised meanwhile are read
    from kitchen_alertlog, so none is missed and none is printed twice."""
    out = out or sys.stdout
    try:
        listening = _listen(settings, None, since_s)
    except psycopg.Error as exc:
        return _fail(f"cannot listen for alerts: {' '.join(str(exc).split())}")
    conn: psycopg.Connection[Any] | None = listening[0]
    # Everything of the first read is shown (the last `since_s` included); later, only news.
    last_id, backlog = 0, listening[2]
    print(f"listening for alerts on {ALERT_CHANNEL} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout if timeout else math.inf
    received = 0
    delay = POLL_S
    next_attempt = 0.0
    with _stop_on_signals() as stop:
        while not stop.set and (left := deadline - time.monotonic()) > 0:
            for alert_id, payload in backlog:
                if alert_id is None or alert_id > last_id:  # None: not from kitchen_raise_alert
                    last_id = max(last_id, alert_id or 0)
                    print(format_alert(payload, as_json), file=out, flush=True)
                    received += 1
                    if count and received >= count:
                        if conn is not None:
                            conn.close()
                        return EXIT_OK
            last_id = max(last_id, listening[1])
            backlog = []
            if conn is None:
                if time.monotonic() < next_attempt:
                    time.sleep(min(left, POLL_S))
                    continue
                try:
                    listening = _listen(settings, last_id)
                except psycopg.OperationalError:
                    next_attempt = time.monotonic() + delay
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                conn, _, backlog = listening
                print(
                    "listening again; alerts raised meanwhile follow", file=sys.stderr, flush=True
                )
                delay = POLL_S
                continue
            try:
                backlog = [
                    (_alert_id(notify.payload), notify.payload)
                    for notify in conn.notifies(timeout=min(left, POLL_S), stop_after=1)
                ]
            except psycopg.OperationalError as exc:
                print(
                    f"kprintd: lost the database connection ({' '.join(str(exc).split())});"
                    " reconnecting",
                    file=sys.stderr,
                    flush=True,
                )
                conn.close()
                conn = None
        timed_out = not stop.set
    if conn is not None:
        conn.close()
    return EXIT_TIMED_OUT if timed_out and count and received < count else EXIT_OK
