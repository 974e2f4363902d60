"""The admin commands: `kprintd tickets`, `reprint`, `reset`, `mark-printed` and `mark-failed`.

For the person at the store server without psql. Owns listing tickets (recent ones from
kitchen_ticket_list(); failed and stuck ones from the views kitchen_failed_tickets and
kitchen_stuck_tickets, through kitchen_failed_ticket_list() and kitchen_stuck_ticket_list(); the
tickets of one bill, found through kitchen_bill_lookup()) and the four admin actions, SQL functions
called once each, in their own transaction, with the actor the person gives (all in
sql/schema/44_admin.sql and 55_reports.sql). The database decides what is
allowed; this module only says it in one line.

Exit codes: 0 done; 1 refused (unknown ticket or bill, an impossible transition, a bad actor,
reason or item list, a ticket locked by someone else) or interrupted; 2 the database cannot be
used (cannot connect, permission denied, schema not migrated, no answer in time). Errors are one
line on stderr, also with --json. Text for people shows control and invisible characters from
the database escaped (monitor.printable); JSON keeps the values as they are.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from kprintd.config import Settings
from kprintd.db import scope_args
from kprintd.monitor import duration, printable

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_DATABASE = 2

CONNECT_TIMEOUT_S = 5
# A person waits at the prompt: a lock held elsewhere or a slow query ends in a clear line.
LOCK_TIMEOUT_MS = 5_000
STATEMENT_TIMEOUT_MS = 15_000
_OPTIONS = f"-c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS}"
DEFAULT_LIMIT = 20
BIGINT_MAX = 2**63 - 1
ERROR_WIDTH = 50

Connection = psycopg.Connection[dict[str, Any]]

# The database's refusals of an action or a lookup: the person asked for something impossible.
_REFUSED: tuple[type[psycopg.Error], ...] = (
    errors.NoDataFound,  # P0002 unknown ticket (or bill)
    errors.ObjectNotInPrerequisiteState,  # 55000 an impossible transition
    errors.InvalidParameterValue,  # 22023 bad actor, blank reason, items not on the ticket
    errors.NullValueNotAllowed,  # 22004
)
_NOT_MIGRATED: tuple[type[psycopg.Error], ...] = (
    errors.InvalidSchemaName,  # 3F000 no kprintd schema: not migrated
    errors.UndefinedFunction,
    errors.UndefinedTable,
    errors.UndefinedColumn,
)
# Hints of the admin functions speak SQL; the person at the prompt has commands. A hint that
# changes wording is shown as the database gives it.
_HINT_WORDS = {
    "kitchen_reprint()": "kprintd reprint",
    "kitchen_reset_ticket()": "kprintd reset",
    "kitchen_mark_printed()": "kprintd mark-printed",
    "kitchen_mark_failed()": "kprintd mark-failed",
    "(kitchen_kitchenticketitem.bill_item_id)": "(as kprintd tickets --bill lists them)",
}
_FUNCTION_PREFIX = re.compile(r"^kitchen_\w+: ")
# The subset of an action's returned kitchen_kitchenticket row that --json shows.
_TICKET_FIELDS = (
    ("ticket_id", "id"),
    ("bill_id", "bill_id"),
    ("station", "printer_target"),
    ("ticket_type", "ticket_type"),
    ("status", "status"),
    ("print_attempts", "print_attempts"),
    ("max_retries", "max_retries"),
    ("may_have_printed", "may_have_printed"),
    ("next_attempt_at", "next_attempt_at"),
    ("printed_at", "printed_at"),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
)


class Refused(Exception):
    """A lookup found nothing: one line, exit 1."""


# --- plumbing -------------------------------------------------------------------------------------


def _say(message: str, code: int) -> int:
    print(printable(f"kprintd: {message}"), file=sys.stderr)
    return code


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _explain(exc: psycopg.Error, with_hint: bool = True) -> str:
    """The server's message without the function's name in front, and its hint in commands."""
    message = _FUNCTION_PREFIX.sub("", _one_line(exc.diag.message_primary or str(exc)))
    hint = _one_line(exc.diag.message_hint) if with_hint else ""
    for sql_words, cli_words in _HINT_WORDS.items():
        hint = hint.replace(sql_words, cli_words)
    message = message or type(exc).__name__
    return f"{message}. {hint}" if hint else message


def _run(settings: Settings, command: str, work: Callable[[Connection], int]) -> int:
    """Connect, run `work`, and turn every database error into one line and an exit code."""
    try:
        conn: Connection = psycopg.connect(
            settings.database_url,
            autocommit=True,  # every call is its own transaction, committed when it returns
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="kprintd-admin",
            options=_OPTIONS,
            row_factory=dict_row,
        )
    except psycopg.Error as exc:
        return _say(
            f"{command}: cannot connect to the database: {_one_line(str(exc))}", EXIT_DATABASE
        )
    try:
        with conn:
            return work(conn)
    except Refused as exc:
        return _say(f"{command}: {exc}", EXIT_REFUSED)
    except _REFUSED as exc:
        return _say(f"{command}: {_explain(exc)}", EXIT_REFUSED)
    except errors.LockNotAvailable:
        return _say(
            f"{command}: the ticket is locked by another transaction (a print in progress?);"
            " try again in a moment",
            EXIT_REFUSED,
        )
    except errors.InsufficientPrivilege as exc:
        return _say(
            f"{command}: {_explain(exc)}. Run it with a database login that is a member of the"
            " manager role (KPRINTD_DATABASE_URL)",
            EXIT_DATABASE,
        )
    except _NOT_MIGRATED as exc:
        # PostgreSQL's hint ("add explicit type casts") would mislead: the function is missing.
        return _say(
            f"{command}: {_explain(exc, with_hint=False)}."
            " Is the schema up to date? (kprintd migrate --status)",
            EXIT_DATABASE,
        )
    except errors.QueryCanceled:
        return _say(
            f"{command}: the database did not answer within {STATEMENT_TIMEOUT_MS // 1000} s",
            EXIT_DATABASE,
        )
    except psycopg.Error as exc:
        return _say(f"{command}: {_explain(exc)}", EXIT_DATABASE)
    except KeyboardInterrupt:
        # The call is cancelled, but its COMMIT may have come first: do not claim either way.
        return _say(
            f"{command}: interrupted; whether it was done shows in kprintd tickets", EXIT_REFUSED
        )


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)  # uuid, inet, anything else


def _print_json(document: Any, out: TextIO) -> None:
    print(json.dumps(document, indent=2, default=_json_value), file=out)


def _when(value: datetime | None, today: date) -> str:
    """Local time: to the second today, else date and minute."""
    if value is None:
        return "-"
    local = value.astimezone()
    return f"{local:%H:%M:%S}" if local.date() == today else f"{local:%Y-%m-%d %H:%M}"


def _clip(text: str, width: int = ERROR_WIDTH) -> str:
    text = _one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _error(row: dict[str, Any]) -> str:
    code, message = row.get("error_code") or "", row.get("error_message") or ""
    if not (code or message):
        return "-"
    return _clip(f"{code}: {message}" if code and message else code or message)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    # Escaped before measuring, so a cell with a control character keeps its column aligned.
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in (list(headers), *cells)
    ]


def _kind(row: dict[str, Any]) -> str:
    kind = str(row["ticket_type"])
    if row.get("is_reprint"):
        original = row.get("original_ticket_id")
        kind += f" (reprint of #{original})" if original else " (reprint)"
    return kind


# --- kprintd tickets ------------------------------------------------------------------------------

_TICKET_HEADERS = (
    "ID", "BILL", "STATION", "TYPE", "STATUS", "TRIES", "CREATED", "PRINTED", "ERROR",
)  # fmt: skip


def _ticket_cells(row: dict[str, Any], today: date) -> tuple[str, ...]:
    return (
        str(row["ticket_id"]),
        str(row["bill_number"] or f"id {row['bill_id']}"),
        str(row["station"]),
        _kind(row),
        str(row["status"]),
        f"{row['print_attempts']}/{row['max_retries']}",
        _when(row["created_at"], today),
        _when(row["printed_at"], today),
        _error(row),
    )


def _items(row: dict[str, Any]) -> list[str]:
    lines = []
    for item in row["items"] or []:
        void = "  VOID" if item.get("is_void") else ""
        lines.append(
            f"      item {item.get('bill_item_id')}: {item.get('quantity')} x"
            f" {_one_line(str(item.get('name')))}{void}"
        )
    return lines


def _scope(settings: Settings) -> dict[str, Any]:
    brand_ids, store_id = scope_args(settings)
    return {"brand_ids": brand_ids, "store_id": store_id}


def _recent(conn: Connection, settings: Settings, limit: int) -> list[dict[str, Any]]:
    scope = _scope(settings)
    return conn.execute(
        "SELECT * FROM kprintd.kitchen_ticket_list(%s, NULL, %s::uuid[], %s::uuid)",
        (limit, scope["brand_ids"], scope["store_id"]),
    ).fetchall()


# The listings of the monitoring views, by their time column (sql/schema/55_reports.sql).
_FAILED = "SELECT * FROM kprintd.kitchen_failed_ticket_list(%s, %s::uuid[], %s::uuid)"
_STUCK = "SELECT * FROM kprintd.kitchen_stuck_ticket_list(%s, %s::uuid[], %s::uuid)"


def _from_view(conn: Connection, settings: Settings, query: str, limit: int) -> Any:
    """The last `limit` rows of a monitoring view in scope by its time column, oldest first."""
    scope = _scope(settings)
    return conn.execute(query, (limit, scope["brand_ids"], scope["store_id"])).fetchall()


def _bill_id(text: str) -> int | None:
    """The bill id `text` may be, or None."""
    text = text.strip()
    if text.isascii() and text.isdigit() and 0 < int(text) <= BIGINT_MAX:
        return int(text)
    return None


def _bills(conn: Connection, settings: Settings, bill: str) -> list[dict[str, Any]]:
    """Every bill in scope numbered `bill` or with id `bill`, with its tickets under "tickets"."""
    scope = _scope(settings)
    bills = conn.execute(
        "SELECT * FROM kprintd.kitchen_bill_lookup(%s, %s::bigint, %s::uuid[], %s::uuid)",
        (bill, _bill_id(bill), scope["brand_ids"], scope["store_id"]),
    ).fetchall()
    if not bills:
        by_id = " or with that id" if _bill_id(bill) is not None else ""
        raise Refused(f"no bill numbered {bill!r}{by_id} has tickets")
    tickets = conn.execute(
        "SELECT * FROM kprintd.kitchen_ticket_list(NULL, %s::bigint[], %s::uuid[], %s::uuid)",
        ([b["bill_id"] for b in bills], scope["brand_ids"], scope["store_id"]),
    ).fetchall()
    for b in bills:
        b["tickets"] = [t for t in tickets if t["bill_id"] == b["bill_id"]]
    return bills


def tickets(
    settings: Settings,
    *,
    failed: bool = False,
    stuck: bool = False,
    bill: str | None = None,
    limit: int = DEFAULT_LIMIT,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """`kprintd tickets`: the last `limit` tickets, or the failed ones, the stuck ones, or every
    ticket of one bill (by number or id); as a table or, with `as_json`, one JSON object."""
    stream = out or sys.stdout

    def work(conn: Connection) -> int:
        today = datetime.now().astimezone().date()
        if bill is not None:
            bills = _bills(conn, settings, bill)
            if as_json:
                _print_json({"listing": "bill", "bill": bill, "bills": bills}, stream)
            else:
                print("\n".join(_render_bills(bills, today)), file=stream)
            return EXIT_OK
        if failed:
            listing = "failed"
            rows = _from_view(conn, settings, _FAILED, limit)
        elif stuck:
            listing = "stuck"
            rows = _from_view(conn, settings, _STUCK, limit)
        else:
            listing = "recent"
            rows = _recent(conn, settings, limit)
        if as_json:
            _print_json({"listing": listing, "limit": limit, "tickets": rows}, stream)
        else:
            print("\n".join(_RENDER[listing](rows, today, limit)), file=stream)
        return EXIT_OK

    return _run(settings, "tickets", work)


def _more(rows: list[dict[str, Any]], limit: int) -> list[str]:
    return [f"(the last {limit}; --limit N shows more)"] if len(rows) >= limit else []


def _render_recent(rows: list[dict[str, Any]], today: date, limit: int) -> list[str]:
    if not rows:
        return ["No tickets."]
    lines = [f"Tickets, oldest first ({len(rows)})"]
    lines += _table(_TICKET_HEADERS, [_ticket_cells(r, today) for r in rows])
    return lines + _more(rows, limit)


def _render_failed(rows: list[dict[str, Any]], today: date, limit: int) -> list[str]:
    if not rows:
        return ["No failed tickets."]
    lines = [f"Failed tickets, oldest first ({len(rows)})"]
    lines += _table(
        ("ID", "BILL", "STATION", "TYPE", "FAILED", "TRIES", "BY", "ERROR"),
        [
            (
                str(r["ticket_id"]),
                str(r["bill_number"] or f"id {r['bill_id']}"),
                str(r["station"]),
                _kind(r),
                _when(r["failed_at"], today),
                f"{r['print_attempts']}/{r['max_retries']}",
                str(r["failed_by"] or "-"),
                _error(r),
            )
            for r in rows
        ],
    )
    lines += _more(rows, limit)
    lines += [
        "",
        "Printer fixed: kprintd reset ID --actor WHO prints it again."
        " The kitchen has it: kprintd mark-printed ID --actor WHO.",
    ]
    return lines


def _render_stuck(rows: list[dict[str, Any]], today: date, limit: int) -> list[str]:
    if not rows:
        return ["No stuck tickets."]
    lines = [f"Stuck tickets, oldest first ({len(rows)})"]
    lines += _table(
        ("ID", "BILL", "STATION", "STATUS", "REASON", "FOR", "TRIES", "ERROR"),
        [
            (
                str(r["ticket_id"]),
                str(r["bill_number"] or f"id {r['bill_id']}"),
                str(r["station"]),
                str(r["status"]),
                str(r["reason"]).replace("_", " "),
                duration(r["stuck_for"].total_seconds()) if r["stuck_for"] else "-",
                f"{r['print_attempts']}/{r['max_retries']}",
                _error(r),
            )
            for r in rows
        ],
    )
    lines += _more(rows, limit)
    lines += [
        "",
        "out of attempts: kprintd reset ID --actor WHO. overdue: is a daemon running for its"
        " store? (kprintd status)",
    ]
    return lines


_RENDER: dict[str, Callable[[list[dict[str, Any]], date, int], list[str]]] = {
    "recent": _render_recent,
    "failed": _render_failed,
    "stuck": _render_stuck,
}


def _render_bills(bills: list[dict[str, Any]], today: date) -> list[str]:
    lines: list[str] = []
    for b in bills:
        if lines:
            lines.append("")
        counts = ", ".join(
            f"{b[key]} {word}"
            for key, word in (
                ("printed_count", "printed"),
                ("new_count", "waiting"),
                ("printing_count", "printing"),
                ("failed_count", "failed"),
            )
            if b[key]
        )
        lines.append(
            f"Bill {b['bill_number']} (id {b['bill_id']}): {b['ticket_count']} ticket(s),"
            f" {counts}; kitchen status {b['kitchen_status'].upper()}"
        )
        rows = b["tickets"]
        table = _table(_TICKET_HEADERS, [_ticket_cells(r, today) for r in rows])
        lines.append(table[0])
        for row, line in zip(rows, table[1:], strict=True):
            lines += [line, *_items(row)]
    if len(bills) > 1:
        lines += ["", f"{len(bills)} bills match: by number and by id."]
    return [printable(line) for line in lines]


# --- the actions ----------------------------------------------------------------------------------


def _ticket(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(column) for name, column in _TICKET_FIELDS}


def _done(out: TextIO | None, as_json: bool, document: dict[str, Any], line: str) -> int:
    stream = out or sys.stdout
    if as_json:
        _print_json(document, stream)
    else:
        print(printable(line), file=stream)
    return EXIT_OK


def reprint(
    settings: Settings,
    ticket_id: int,
    actor: str,
    item_ids: Sequence[int] | None = None,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """kitchen_reprint(): a new ticket with the REPRINT banner, of every item or of `item_ids`."""

    def work(conn: Connection) -> int:
        row = conn.execute(
            "SELECT kprintd.kitchen_reprint(%s::bigint, %s::text, %s::bigint[]) AS new_ticket_id",
            (ticket_id, actor, list(item_ids) if item_ids else None),
        ).fetchone()
        assert row is not None
        new_id = int(row["new_ticket_id"])
        which = "items " + ", ".join(map(str, item_ids)) if item_ids else "all items"
        return _done(
            out,
            as_json,
            {
                "action": "reprint",
                "ticket_id": ticket_id,
                "new_ticket_id": new_id,
                "item_ids": list(item_ids) if item_ids else None,
                "actor": actor,
            },
            f"ticket {ticket_id} reprinted as ticket {new_id} ({which}) by {actor};"
            " it prints with a REPRINT banner",
        )

    return _run(settings, "reprint", work)


def reset(
    settings: Settings,
    ticket_id: int,
    actor: str,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """kprintd.kitchen_reset_ticket(): a failed or stuck ticket back in the queue."""

    def work(conn: Connection) -> int:
        row = conn.execute(
            "SELECT * FROM kprintd.kitchen_reset_ticket(%s::bigint, %s::text)", (ticket_id, actor)
        ).fetchone()
        assert row is not None
        retry = (
            "; it prints with a RETRY banner (it may be on paper already)"
            if row["may_have_printed"]
            else ""
        )
        return _done(
            out,
            as_json,
            {"action": "reset", "ticket_id": ticket_id, "actor": actor, "ticket": _ticket(row)},
            f"ticket {ticket_id} reset by {actor}: back in the queue, due now{retry}",
        )

    return _run(settings, "reset", work)


def mark_printed(
    settings: Settings,
    ticket_id: int,
    actor: str,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """kprintd.kitchen_mark_printed(): the kitchen has the ticket; nothing prints."""

    def work(conn: Connection) -> int:
        row = conn.execute(
            "SELECT * FROM kprintd.kitchen_mark_printed(%s::bigint, %s::text)", (ticket_id, actor)
        ).fetchone()
        assert row is not None
        return _done(
            out,
            as_json,
            {
                "action": "mark-printed",
                "ticket_id": ticket_id,
                "actor": actor,
                "ticket": _ticket(row),
            },
            f"ticket {ticket_id} marked printed by {actor}; it will not print",
        )

    return _run(settings, "mark-printed", work)


def mark_failed(
    settings: Settings,
    ticket_id: int,
    actor: str,
    reason: str,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """kprintd.kitchen_mark_failed(): give up on a ticket that waits or prints, with a reason."""

    def work(conn: Connection) -> int:
        row = conn.execute(
            "SELECT * FROM kprintd.kitchen_mark_failed(%s::bigint, %s::text, %s::text)",
            (ticket_id, actor, reason),
        ).fetchone()
        assert row is not None
        return _done(
            out,
            as_json,
            {
                "action": "mark-failed",
                "ticket_id": ticket_id,
                "actor": actor,
                "reason": reason,
                "ticket": _ticket(row),
            },
            f"ticket {ticket_id} marked failed by {actor}: {reason}",
        )

    return _run(settings, "mark-failed", work)
