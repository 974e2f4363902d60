"""`kprintd status` and `kprintd alerts`: what the person at the store server and scripts see.

Owns both commands. `status` reads kitchen_status_report() (sql/schema/55_reports.sql; it
also decides what needs attention) and
shows it as one screen, or as JSON with --json; its exit code is for cron and Nagios-style checks:
0 all well, 1 something needs attention, 2 the database cannot be read (or the configuration is
wrong, which the command line reports). `alerts` prints each alert as it comes, as a line for
people or as JSON lines, until Ctrl-C/SIGTERM, --count alerts or --timeout seconds.

Anyone who can connect can NOTIFY on kitchen_alert, grants or not, so `alerts` never reads a
payload: a notification only wakes it, and what it prints, and how far it has read, come from
kitchen_alertlog (kitchen_alerts_after()), which only kitchen_raise_alert()'s callers can write.
Text for people shows control and invisible characters from the database escaped.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
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
# `kprintd alerts` reads the log at least this often, notified or not (the read also proves the
# connection alive); a burst of notifications is answered by one read, after READ_GAP_S.
REREAD_S = 10.0
READ_GAP_S = 0.05
# Each read also looks at the alerts raised within this last window, not only at those after the
# last id read: an alert whose transaction commits after a later one's (ids are taken before the
# commit) is still shown, once.
LATE_COMMIT_WINDOW = timedelta(minutes=2)
# An alert longer than this (a kitchen_alertlog row written by hand) is shown as unreadable.
ALERT_MAX_CHARS = 100_000
# Printer states that stop printing (kitchen_printer_state()); shown in capitals.
CANNOT_PRINT = frozenset({"offline", "cover_open", "paper_out", "error"})
# A printer or brand name from the database must not drive the terminal (move the cursor, clear
# the screen, recolour, rewrite the line) of whoever reads the status, nor hide what it says: C0,
# DEL and C1 controls, format characters (zero-width, bidirectional overrides, ...), surrogates,
# line and paragraph separators and spaces other than the plain one are shown escaped: the
# characters kitchen_valid_station() (sql/schema/41_tickets.sql) refuses in station codes.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"})
_HIDDEN_EXTRA = frozenset("\u034f\u115f\u1160\u3164\uffa0")  # grapheme joiner, Hangul fillers


def _hidden(char: str) -> bool:
    if char in _HIDDEN_EXTRA:
        return True
    return char != " " and unicodedata.category(char) in _HIDDEN_CATEGORIES


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every control or invisible character shown as an escape (ESC as \\x1b, a
    zero-width space as \\u200b)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(c) if _hidden(c) else c for c in text)


def _fail(message: str) -> int:
    print(printable(f"kprintd: {message}"), file=sys.stderr)
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
        row = conn.execute(
            "SELECT kprintd.kitchen_status_report(%s, %s)", (brand_ids, store_id)
        ).fetchone()
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
        deaf = ""
        since = _when(d.get("not_listening_since"))
        if d["state"] == "alive" and d.get("listening") is False and since is not None:
            # Shown at once, before it needs attention (30 s): a slow reconnect shows too.
            deaf = f"  NOT LISTENING for {duration((now - since).total_seconds())}"
        lines.append(
            f"  {d['daemon_id']}  {d['state'].upper() if d['state'] != 'alive' else 'alive'}{deaf}"
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
    lines += [f"  {format_alert(a, as_json=False)}" for a in alerts[:5]]

    lines.append("")
    if report["attention"]:
        lines.append("NEEDS ATTENTION")
        lines += [f"  ! {a['message']}" for a in report["attention"]]
    else:
        lines.append("All well.")
    return "\n".join(printable(line) for line in lines)


# --- kprintd alerts -------------------------------------------------------------------------------


def _unreadable(text: str, alert_id: int | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {"type": "unreadable", "severity": "warning", "message": text[:200]}
    if alert_id is not None:
        alert["alert_id"] = alert_id
    return alert


def parse_alert(text: str, alert_id: int | None = None) -> dict[str, Any]:
    """An alert's JSON read defensively: one too long, nested too deeply, with a number Python
    cannot hold, or not an object comes back as an 'unreadable' alert, never as an exception."""
    try:
        if len(text) > ALERT_MAX_CHARS:
            raise ValueError("too long")
        alert = json.loads(text)
        if not isinstance(alert, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError):
        return _unreadable(text, alert_id)
    return alert


def _alert_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def format_alert(alert: dict[str, Any] | str, as_json: bool) -> str:
    """One alert as one line: JSON (its fields unchanged, compact, ASCII) or text for a person,
    with control and invisible characters escaped. A string is parsed first (parse_alert())."""
    if isinstance(alert, str):
        alert = parse_alert(alert)
    if as_json:
        try:
            return json.dumps(alert, separators=(",", ":"), sort_keys=True, allow_nan=False)
        except (ValueError, RecursionError):
            unreadable = _unreadable("an alert JSON cannot show", alert.get("alert_id"))
            return json.dumps(unreadable, separators=(",", ":"), sort_keys=True)
    at = _alert_time(alert.get("at"))
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


Alert = tuple[int, str]  # kitchen_alertlog.id, the alert's JSON as text


@dataclass
class AlertLog:
    """What `kprintd alerts` has read of kitchen_alertlog: the highest id read, and the ids read
    among those the next read returns again (the late-commit window), which are not shown twice."""

    last_id: int = 0
    read_ids: set[int] = field(default_factory=set)

    def read(self, conn: psycopg.Connection[Any], since: timedelta | None = None) -> list[Alert]:
        """The alerts sent after last_id, or raised within LATE_COMMIT_WINDOW (or `since`, when
        longer), that no earlier read returned; oldest first."""
        window = max(since, LATE_COMMIT_WINDOW) if since is not None else LATE_COMMIT_WINDOW
        rows = [
            (int(row[0]), str(row[1]))
            for row in conn.execute(
                "SELECT alert_id, alert::text FROM kprintd.kitchen_alerts_after(%s, %s)"
                " ORDER BY alert_id",
                (self.last_id, window),
            ).fetchall()
        ]
        new = [row for row in rows if row[0] not in self.read_ids]
        # A row the next read returns again is one of these (last_id only grows, the window only
        # moves on): remembering these is enough.
        self.read_ids = {alert_id for alert_id, _ in rows}
        self.last_id = max([self.last_id, *self.read_ids])
        return new

    def start(self, conn: psycopg.Connection[Any], since: timedelta | None) -> list[Alert]:
        """The first read: what was sent after the log's last row at this moment, and with
        `since` also what was sent in that last interval."""
        row = conn.execute("SELECT kprintd.kitchen_last_alert_id()").fetchone()
        start_id = int(row[0]) if row else 0
        self.last_id, self.read_ids = start_id, set()
        rows = self.read(conn, since)
        # Read after the rows: one committed in between is not among them, so a later read shows
        # it (it is in the late-commit window).
        wanted: set[int] = set()
        if since is not None:
            wanted = {
                int(r[0])
                for r in conn.execute(
                    "SELECT alert_id FROM kprintd.kitchen_alerts_after(%s, %s)", (start_id, since)
                ).fetchall()
            }
        return [row for row in rows if row[0] > start_id or row[0] in wanted]


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    """A connection LISTENing on kitchen_alert."""
    conn = psycopg.connect(
        settings.database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="kprintd-alerts",
    )
    try:
        conn.execute(f"LISTEN {ALERT_CHANNEL}")
    except BaseException:
        conn.close()
        raise
    return conn


def _woken(conn: psycopg.Connection[Any], timeout: float) -> bool:
    """Wait up to `timeout` for notifications on kitchen_alert; True when any came.

    Their payloads are never looked at: anyone who can connect can send one, so a notification
    only says "read the log now". A burst is answered with one read.
    """
    woken = False
    try:
        for _ in conn.notifies(timeout=timeout, stop_after=1):
            woken = True
        if woken:
            time.sleep(READ_GAP_S)
            for _ in conn.notifies(timeout=0):
                pass
    except UnicodeDecodeError:
        # Bytes the client encoding cannot decode (a SQL_ASCII database passes any on): still a
        # notification.
        woken = True
    return woken


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
    `since_s` seconds. Exit 2 when the database cannot be reached at start; a connection lost later
    is reconnected with backoff, and the alerts raised meanwhile are printed then, none twice.

    Only alerts in kitchen_alertlog are printed, read with kitchen_alerts_after(): a notification
    wakes this loop, and the log says what to print."""
    out = out or sys.stdout
    log = AlertLog()
    since = timedelta(seconds=since_s) if since_s is not None else None
    try:
        first = _connect(settings)
        try:
            backlog = log.start(first, since)
        except BaseException:
            first.close()
            raise
    except psycopg.Error as exc:
        return _fail(f"cannot listen for alerts: {_one_line(exc)}")
    conn: psycopg.Connection[Any] | None = first
    print(f"listening for alerts on {ALERT_CHANNEL} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout if timeout else math.inf
    received = 0
    delay = POLL_S
    next_attempt = 0.0
    next_read = time.monotonic() + REREAD_S
    with _stop_on_signals() as stop:
        while not stop.set and (left := deadline - time.monotonic()) > 0:
            for alert_id, text in backlog:
                print(format_alert(parse_alert(text, alert_id), as_json), file=out, flush=True)
                received += 1
                if count and received >= count:
                    if conn is not None:
                        conn.close()
                    return EXIT_OK
            backlog = []
            if conn is None:
                if time.monotonic() < next_attempt:
                    time.sleep(min(left, POLL_S))
                    continue
                try:
                    conn = _connect(settings)
                    backlog = log.read(conn)
                except psycopg.Error:
                    if conn is not None:
                        conn.close()
                        conn = None
                    next_attempt = time.monotonic() + delay
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    continue
                print(
                    "listening again; alerts raised meanwhile follow", file=sys.stderr, flush=True
                )
                delay = POLL_S
                next_read = time.monotonic() + REREAD_S
                continue
            try:
                if _woken(conn, min(left, POLL_S)) or time.monotonic() >= next_read:
                    backlog = log.read(conn)
                    next_read = time.monotonic() + REREAD_S
            except psycopg.Error as exc:
                print(
                    printable(
                        f"kprintd: lost the database connection ({_one_line(exc)}); reconnecting"
                    ),
                    file=sys.stderr,
                    flush=True,
                )
                conn.close()
                conn = None
        timed_out = not stop.set
    if conn is not None:
        conn.close()
    return EXIT_TIMED_OUT if timed_out and count and received < count else EXIT_OK
