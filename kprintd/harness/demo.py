"""`make demo`: a short dinner service at an Indonesian restaurant, played end to end on loopback.

Owns the showcase and nothing else: from the harness (kprintd.harness) it starts a throwaway
PostgreSQL, emulated ESC/POS printers on 127.0.2.1-5:9100 and the real daemon (on its own thread
and event loop) and sets the restaurant up as its admin screen would, then plays the POS in plain
SQL: an order, an addition, a void, a
manager's reprint, the main kitchen printer dying (failover to the backup) and the bar printer
running out of paper (the ticket waits and prints once paper is back). Every ticket is shown as it
is cut and saved as text, PNG and raw ESC/POS under --out; a summary with per-printer counts,
commit-to-cut latencies and one ticket's audit trail ends the run. Everything is stopped and
removed afterwards, also on failure and Ctrl-C. Never used in production.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import queue
import re
import statistics
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from kprintd.config import Settings
from kprintd.db import ALERT_CHANNEL, TICKET_CHANNEL
from kprintd.emulator import EmulatedPrinter, FaultMode, ReceivedTicket
from kprintd.harness import DaemonError, Restaurant, RunningDaemon, embedded_server, start_printer
from kprintd.harness.pgembed import EmbeddedPostgresError
from kprintd.logs import configure_logging
from kprintd.printer_status import PaperState

T = TypeVar("T")

POS_ACTOR = "pos:terminal-1"
MANAGER = "manager:Budi"
PRINT_TIMEOUT_S = 15.0  # one ticket, even with the 2 s printer timeout and a retry in between

# kprintd's production defaults, pinned so that a KPRINTD_* variable in the environment cannot
# change the story (a store or brand scope would leave every ticket unprinted).
DAEMON_SETTINGS: dict[str, Any] = {
    "daemon_id": "demo",
    "store_id": None,
    "brand_ids": (),
    "printer_connect_timeout_s": 2.0,
    "printer_send_timeout_s": 2.0,
    "retry_base_delay_s": 2.0,
    "retry_max_delay_s": 60.0,
    "breaker_failure_threshold": 1,
    "breaker_open_s": 15.0,
    "sweep_interval_s": 30.0,
    "lease_s": 30.0,
    "shutdown_timeout_s": 10.0,
}


class DemoFailure(Exception):
    """The service did not go as scripted; the message says what was expected and what happened."""


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(title: str) -> None:
    say()
    say(f"== {title} " + "=" * max(0, 76 - len(title)))


def wrapped(prefix: str, text: str, indent: int = 6, width: int = 100) -> None:
    """`text` after `prefix` on lines of at most `width` columns; the rest indented `indent`."""
    lines = textwrap.wrap(
        " ".join(text.split()), width=width, initial_indent=prefix, subsequent_indent=" " * indent
    )
    for line in lines:
        say(line)


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --------------------------------------------------------------------------- the restaurant


@dataclass(frozen=True)
class PrinterSpec:
    name: str  # emulator name, and the prefix of its files in the output folder
    label: str  # kitchen_stationprinter.printer_name
    station: str
    priority: int
    host: str
    paper_mm: int
    columns: int


PRINTERS = (
    PrinterSpec("kitchen-main", "Kitchen main", "kitchen", 1, "127.0.2.1", 80, 48),
    PrinterSpec("kitchen-backup", "Kitchen backup", "kitchen", 2, "127.0.2.2", 80, 48),
    PrinterSpec("bar", "Bar", "bar", 1, "127.0.2.3", 58, 32),
    PrinterSpec("dessert", "Dessert", "dessert", 1, "127.0.2.4", 80, 48),
    PrinterSpec("checker", "Checker (pass)", "checker", 1, "127.0.2.5", 80, 48),
)
SPECS = {p.name: p for p in PRINTERS}

# The dessert printer's maintenance window in scene 7.
MAINTENANCE_S = 1.5

BRAND = "Warung Nusantara"
STORE = "Kemang"
MENU = {
    "kitchen": (
        "Nasi Goreng Spesial",
        "Sate Ayam (10 tusuk)",
        "Rendang Sapi",
        "Kerupuk Udang",
        "Mie Goreng Jawa",
        "Ayam Bakar Taliwang",
    ),
    "bar": ("Es Teh Manis", "Jus Alpukat", "Es Jeruk", "Es Kelapa Muda", "Kopi Tubruk"),
    "dessert": ("Es Campur", "Klepon", "Pisang Goreng"),
}


@dataclass(frozen=True)
class Item:
    product: str
    quantity: int = 1
    modifiers: tuple[str, ...] = ()
    notes: str = ""

    def __str__(self) -> str:
        text = f"{self.quantity} x {self.product}"
        text += "".join(f"  + {m}" for m in self.modifiers)
        return text + (f'  note "{self.notes}"' if self.notes else "")


@dataclass(frozen=True)
class Alert:
    """One kitchen_alert notification, as a manager's dashboard would receive it."""

    severity: str
    message: str


Event = ReceivedTicket | Alert


def ticket_id_of(received: ReceivedTicket) -> int:
    match = re.search(r"Ticket #(\d+)", received.text)
    if match is None:
        raise DemoFailure(f"{received.printer} printed something without a ticket number")
    return int(match.group(1))


def stale_output(out: Path) -> list[Path]:
    """Files an earlier run left in `out` under this demo's names."""
    stems = "|".join(re.escape(p.name) for p in PRINTERS)
    pattern = re.compile(rf"^(?:{stems})-\d{{4}}\.(?:txt|png|bin)$")
    return [f for f in out.glob("*") if pattern.match(f.name)] + [out / "kprintd.log"]


# --------------------------------------------------------------------------- moving parts


class AlertListener:
    """LISTENs on kitchen_alert, like a manager's dashboard, and queues what it hears."""

    def __init__(self, conninfo: str, events: queue.Queue[Event]) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True)
        self._conn.execute(f"LISTEN {ALERT_CHANNEL}")
        self._events = events
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for notify in self._conn.notifies(timeout=0.2):
                alert = json.loads(notify.payload)
                self._events.put(Alert(str(alert.get("severity")), str(alert.get("message"))))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


@contextlib.contextmanager
def daemon_log(path: Path) -> Iterator[None]:
    """kprintd's log (info and up, JSON lines as journald gets them) goes to `path`."""
    saved = structlog.get_config()
    with open(path, "w", encoding="utf-8") as log_file:
        configure_logging("info", "json")
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log_file))
        try:
            yield
        finally:
            structlog.configure(**saved)


# --------------------------------------------------------------------------- the service


class Service:
    """Plays the POS in SQL, shows every ticket and alert as it arrives, and checks the outcome."""

    def __init__(
        self,
        conninfo: str,
        printers: dict[str, EmulatedPrinter],
        events: queue.Queue[Event],
        daemon: RunningDaemon,
    ) -> None:
        self.printers = printers
        self.events = events
        self.daemon = daemon
        self.pos = psycopg.connect(conninfo, autocommit=True)
        self.db: psycopg.Connection[DictRow] = psycopg.connect(
            conninfo, autocommit=True, row_factory=dict_row
        )
        self.restaurant = Restaurant(conninfo, uuid.uuid4(), name=BRAND, pos_url=conninfo)
        self.brand_id = self.restaurant.brand_id
        self.store_id = self.restaurant.store_id
        self.products = self.restaurant.products
        self.committed_at: dict[int, float] = {}  # ticket id -> time.monotonic() before COMMIT
        self.kind: dict[int, str] = {}  # ticket id -> 'bar order', 'kitchen reprint of #1', ...
        self.received: dict[int, ReceivedTicket] = {}

    def close(self) -> None:
        self.pos.close()
        self.db.close()

    # -- setup

    def configure(self) -> None:
        """What the restaurant's admin screen writes once: brand, menu, printers, header."""
        for station, names in MENU.items():
            for name in names:
                self.restaurant.product(station, name)
        for p in PRINTERS:
            self.restaurant.add_printer(
                p.station,
                p.host,
                self.printers[p.name].port,
                name=p.label,
                priority=p.priority,
                paper_width_mm=p.paper_mm,
                chars_per_line=p.columns,
            )
        self.pos.execute(
            "INSERT INTO kitchen_printtemplate (brand_id, header_line) VALUES (%s, %s)",
            (self.brand_id, f"{BRAND} - {STORE}"),
        )
        say(f"  core_brand '{BRAND}', store {STORE} (store_id {self.store_id})")
        say(f"  core_product: {len(self.products)} dishes and drinks, each with its station")
        say("  kitchen_printtemplate: a header line for every ticket of the brand")
        say("  kitchen_stationprinter (emulated printers, listening on loopback):")
        for p in PRINTERS:
            role = "primary" if p.priority == 1 else f"backup (priority {p.priority})"
            say(
                f"    {p.label:<15} station {p.station:<8} {role:<21}"
                f" {p.host}:{self.printers[p.name].port:<5}  {p.paper_mm} mm, {p.columns} columns"
            )

    # -- playing the POS

    def _pos(self, sql: str, params: Sequence[Any] = (), *, echo: bool = True) -> list[Any]:
        if echo:
            wrapped("  POS> ", psycopg.ClientCursor(self.pos).mogrify(sql, params), indent=11)
        cursor = self.pos.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def _commit(self) -> float:
        say(f"  POS> COMMIT   -- the NOTIFY on {TICKET_CHANNEL} reaches kprintd now")
        committed = time.monotonic()
        self.pos.execute("COMMIT")
        return committed

    def open_bill(self, bill_number: str, **details: Any) -> int:
        columns = ["brand_id", "store_id", "bill_number", *details]
        bill_id: int = self._pos(
            f"INSERT INTO pos_bill ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id",
            (str(self.brand_id), str(self.store_id), bill_number, *details.values()),
        )[0][0]
        say(f"         -> bill {bill_id}")
        return bill_id

    def add_items(self, bill_id: int, items: Sequence[Item]) -> list[int]:
        sql = (
            "INSERT INTO pos_billitem (bill_id, product_id, quantity, modifiers, notes)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id"
        )
        wrapped("  POS> ", f"{sql}   -- once per item:", indent=11)
        ids: list[int] = []
        for item in items:
            params = (
                bill_id,
                self.products[item.product],
                item.quantity,
                Jsonb(list(item.modifiers)),
                item.notes,
            )
            ids.append(self._pos(sql, params, echo=False)[0][0])
            say(f"         {item}")
        return ids

    def send_to_kitchen(self, bill_id: int) -> list[int]:
        """kitchen_create_tickets() and COMMIT; returns the new tickets' ids."""
        rows = self._pos(
            "SELECT id, printer_target, ticket_type FROM kitchen_create_tickets(%s, NULL, %s)",
            (bill_id, POS_ACTOR),
        )
        kinds = {int(r[0]): f"{r[1]} {r[2]}" if r[1] != r[2] else str(r[1]) for r in rows}
        say("         -> " + ", ".join(f"ticket #{i} {k}" for i, k in kinds.items()))
        committed = self._commit()
        self._sent(kinds, committed)
        return list(kinds)

    def _sent(self, kinds: dict[int, str], committed: float) -> None:
        self.kind.update(kinds)
        self.committed_at.update(dict.fromkeys(kinds, committed))

    # -- watching the printers

    def _show(self, event: Event) -> None:
        if isinstance(event, Alert):
            wrapped(f"  ALERT ({event.severity}) on {ALERT_CHANNEL}: ", event.message)
            return
        ticket_id = ticket_id_of(event)
        spec = SPECS[event.printer]
        self.received.setdefault(ticket_id, event)
        committed = self.committed_at.get(ticket_id)
        after = f", {duration(event.received_at - committed)} after commit" if committed else ""
        kind = self.kind.get(ticket_id, "?")
        say(f"  >>> {spec.label} ({spec.host}) cut ticket #{ticket_id} ({kind}){after}:")
        say(textwrap.indent(event.text.rstrip("\n"), "      "))

    def pump(self, wait: float) -> None:
        """Show whatever printed or was alerted, waiting up to `wait` seconds for the first."""
        self.daemon.check()
        try:
            self._show(self.events.get(timeout=wait))
            while True:
                self._show(self.events.get_nowait())
        except queue.Empty:
            return

    def until(self, condition: Callable[[], T | None], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while (value := condition()) is None or value is False:
            if time.monotonic() > deadline:
                raise DemoFailure(f"timed out after {timeout:g} s waiting for {what}")
            self.pump(0.02)
        return value

    def pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.pump(min(left, 0.05))

    def scene(self, pace: float, title: str) -> None:
        """A pause, so the service can be followed live (late alerts show up), then a heading."""
        self.pause(pace)
        heading(title)

    def expect(self, where: dict[int, str], timeout: float = PRINT_TIMEOUT_S) -> None:
        """Wait until each ticket was cut on the printer named, and kprintd recorded it printed."""
        deadline = time.monotonic() + timeout
        while missing := [t for t in where if t not in self.received]:
            if time.monotonic() > deadline or "failed" in self._statuses(missing):
                raise DemoFailure(self._not_printed(missing))
            self.pump(0.05)
        wrong = [
            f"ticket #{t} came out of {self.received[t].printer}, not {name}"
            for t, name in where.items()
            if self.received[t].printer != name
        ]
        if wrong:
            raise DemoFailure("; ".join(wrong))
        self.until(
            lambda: self._statuses(list(where)) == {"printed"},
            5.0,
            f"kprintd to record tickets {', '.join(f'#{t}' for t in where)} as printed",
        )

    def _statuses(self, ticket_ids: list[int]) -> set[str]:
        rows = self.db.execute(
            "SELECT status FROM kitchen_kitchenticket WHERE id = ANY(%s)", (ticket_ids,)
        ).fetchall()
        return {r["status"] for r in rows}

    def _not_printed(self, missing: list[int]) -> str:
        rows = self.db.execute(
            "SELECT id, printer_target, status, print_attempts, error_message"
            " FROM kitchen_kitchenticket WHERE id = ANY(%s) ORDER BY id",
            (missing,),
        ).fetchall()
        states = "; ".join(
            f"#{r['id']} ({r['printer_target']}) is {r['status']} after {r['print_attempts']}"
            f" attempt(s){': ' + r['error_message'] if r['error_message'] else ''}"
            for r in rows
        )
        return f"a ticket did not print: {states}. See kprintd.log in the output folder."

    # -- the story

    def play(self, pace: float) -> int:
        """The seven scenes; returns the ticket whose audit trail tells the most (paper out)."""
        self.scene(pace, "1. Table 12 orders: food, drinks and dessert")
        say("  One send creates one ticket per station, plus a checker ticket for the pass.")
        self._pos("BEGIN")
        table = self.open_bill("KMG-0187", bill_type="dine_in", table_number="12")
        items = self.add_items(
            table,
            [
                Item(
                    "Nasi Goreng Spesial",
                    2,
                    ("Extra pedas", "Telur mata sapi"),
                    "Pedas level 3 🌶️🌶️🌶️ — alergi kacang!",
                ),
                Item("Sate Ayam (10 tusuk)", 1, ("Bumbu kacang terpisah",)),
                Item("Rendang Sapi", 1, notes="Nasi setengah porsi"),
                Item("Es Teh Manis", 2, ("Gula sedikit",)),
                Item("Jus Alpukat", 1, ("Tanpa susu coklat",)),
                Item("Es Campur", 1),
                Item("Klepon", 2),
            ],
        )
        say("  (Thermal printers have no emoji: kprintd prints '?' for them, never garbage.)")
        first = self.send_to_kitchen(table)
        kitchen_order = next(t for t in first if self.kind[t] == "kitchen order")
        self.expect(self._by_station(first))

        self.scene(pace, "2. Table 12 orders more: an ADDITION")
        self._pos("BEGIN")
        self.add_items(table, [Item("Kerupuk Udang", 2), Item("Es Jeruk", 1, ("Tanpa es",))])
        self.expect(self._by_station(self.send_to_kitchen(table)))

        self.scene(pace, "3. A sent item is voided: a VOID ticket")
        say("  The bar has run out of avocados; the waiter voids the Jus Alpukat.")
        self._pos("BEGIN")
        self._pos("UPDATE pos_billitem SET is_void = true WHERE id = %s", (items[4],))
        self.expect(self._by_station(self.send_to_kitchen(table)))

        self.scene(pace, "4. The manager reprints the kitchen order: a REPRINT")
        say(f"  Sambal spilled on ticket #{kitchen_order}; manager Budi prints it again.")
        committed = time.monotonic()
        (reprint,) = self._pos("SELECT kitchen_reprint(%s, %s)", (kitchen_order, MANAGER))[0]
        say(f"         -> ticket #{reprint} (autocommit: NOTIFY goes out at once)")
        self._sent({reprint: f"kitchen reprint of #{kitchen_order}"}, committed)
        self.expect({reprint: "kitchen-main"})

        self.scene(pace, "5. The main kitchen printer dies: failover to the backup")
        say("  It hangs: its network card still accepts connections, but it never answers.")
        self.printers["kitchen-main"].set_fault(FaultMode.BLACK_HOLE)
        # An open connection picks the fault up between two reads (50 ms): the ticket must find
        # the printer hung, not be read by it just before.
        self.pause(0.2)
        self._pos("BEGIN")
        takeaway = self.open_bill(
            "KMG-0188", bill_type="takeaway", queue_number=17, customer_name="Pak Andi"
        )
        self.add_items(
            takeaway, [Item("Mie Goreng Jawa", 1, ("Tanpa sayur",)), Item("Ayam Bakar Taliwang")]
        )
        ids = self.send_to_kitchen(takeaway)
        self.expect(self._by_station(ids, kitchen="kitchen-backup"))
        if "R E T R Y" in self.printers["kitchen-backup"].tickets()[-1].text:
            why = (
                "Its last word was 'ready' (it pushes every status change), so kprintd sent it"
                f" the ticket and waited {DAEMON_SETTINGS['printer_send_timeout_s']:g} s for a"
                " confirmation that never came. It may still print those bytes when it comes"
                " back, so the backup's copy says RETRY: a possible duplicate is never silent."
            )
        else:
            why = (
                "kprintd asked it for its status before sending the ticket and got no answer"
                f" within {DAEMON_SETTINGS['printer_send_timeout_s']:g} s: it never got the"
                " ticket, so the backup's copy needs no RETRY banner."
            )
        wrapped("  ", why, indent=3)
        row = self.db.execute(
            "SELECT failed_prints, last_error_message FROM kitchen_stationprinter"
            " WHERE printer_name = 'Kitchen main'"
        ).fetchone()
        assert row is not None
        wrapped(
            "  kitchen_stationprinter 'Kitchen main': ",
            f"failed_prints={row['failed_prints']},"
            f" last_error_message={row['last_error_message']!r}",
        )
        say(
            f"  kprintd now sends kitchen tickets to the backup for"
            f" {DAEMON_SETTINGS['breaker_open_s']:g} s, then tries the main printer again."
        )

        self.scene(pace, "6. The bar printer runs out of paper: the ticket waits")
        bar = self.printers["bar"]
        bar.set_paper(PaperState.OUT)
        say("  The bar printer's paper roll runs out (it reports 'paper end' when asked).")
        self._pos("BEGIN")
        self.add_items(table, [Item("Es Kelapa Muda", 2), Item("Kopi Tubruk", 1, ("Tanpa gula",))])
        ids = self.send_to_kitchen(table)
        waiting = next(t for t in ids if self.kind[t].startswith("bar"))
        self.expect({t: "checker" for t in ids if t != waiting})
        retry_in = self.until(
            lambda: self._retry_delay(waiting), 10.0, "kprintd to find the bar printer out of paper"
        )
        say(
            f"  kprintd: the bar has no other printer, so ticket #{waiting} stays queued;"
            f" next try in {retry_in:.1f} s."
        )
        wrapped(
            "  ",
            "(Attempts that cannot have printed anything do not use up the ticket's max_retries for"
            " 15 minutes, KPRINTD_UNREACHABLE_GRACE_S, so a paper change never fails a ticket.)",
            indent=3,
        )
        self.pause(0.5)
        bar.set_paper(PaperState.OK)
        say("  The bartender loads a new roll.")
        self.expect({waiting: "bar"})

        self.scene(pace, "7. The dessert printer goes in for maintenance: its tickets wait")
        say("  IT books the only dessert printer for a head cleaning, starting now:")
        booking = (
            "INSERT INTO kitchen_stationprinterschedule (printer_id, starts_at, ends_at, reason,"
            " created_by) SELECT id, now(), now() + interval '%s seconds', 'print head cleaned',"
            " 'it:rina' FROM kitchen_stationprinter WHERE printer_name = 'Dessert'"
        )
        wrapped("  IT> ", booking % MAINTENANCE_S, indent=10)
        self.db.execute(booking % MAINTENANCE_S)
        plan = self.db.execute(
            "SELECT printer_name, state, station_keeps_printing FROM kitchen_printer_maintenance"
        ).fetchone()
        assert plan is not None
        say(
            f"  kitchen_printer_maintenance: {plan['printer_name']} {plan['state']},"
            f" station_keeps_printing={plan['station_keeps_printing']}"
        )
        self._pos("BEGIN")
        self.add_items(table, [Item("Pisang Goreng", 2, ("Keju",))])
        ids = self.send_to_kitchen(table)
        held = next(t for t in ids if self.kind[t].startswith("dessert"))
        self.expect({t: "checker" for t in ids if t != held})
        say(f"  Ticket #{held} waits, unclaimed ('new'), until the window ends: no failure.")
        self.expect({held: "dessert"}, timeout=PRINT_TIMEOUT_S + MAINTENANCE_S)
        self.pause(pace)
        return waiting

    def _by_station(self, ticket_ids: list[int], kitchen: str = "kitchen-main") -> dict[int, str]:
        printers = {"kitchen": kitchen, "bar": "bar", "dessert": "dessert", "checker": "checker"}
        return {t: printers[self.kind[t].split()[0]] for t in ticket_ids}

    def _retry_delay(self, ticket_id: int) -> float | None:
        row = self.db.execute(
            "SELECT (metadata ->> 'retry_in_s')::float AS retry_in FROM kitchen_kitchenticketlog"
            " WHERE ticket_id = %s AND action = 'retry' ORDER BY id LIMIT 1",
            (ticket_id,),
        ).fetchone()
        return None if row is None else float(row["retry_in"])

    # -- the summary

    def summary(self, out: Path, png: bool, ticket: int) -> None:
        heading("Summary")
        stats = {
            r["printer_name"]: r
            for r in self.db.execute(
                "SELECT printer_name, total_prints, failed_prints FROM kitchen_stationprinter"
            ).fetchall()
        }
        say("  Tickets cut per printer; total_prints / failed_prints as kprintd recorded them:")
        for p in PRINTERS:
            tickets = self.printers[p.name].tickets()
            kinds = Counter(
                self.kind.get(ticket_id_of(t), "?").removeprefix(f"{p.station} ") for t in tickets
            )
            shown = ", ".join(kind if n == 1 else f"{kind} x{n}" for kind, n in kinds.items())
            counts = f"{stats[p.label]['total_prints']} / {stats[p.label]['failed_prints']}"
            say(f"    {p.label:<15} {p.host:<10} {len(tickets):>2} cut   {counts:<6} {shown}")

        latencies = {
            t: r.received_at - self.committed_at[t]
            for t, r in self.received.items()
            if t in self.committed_at
        }
        slowest = max(latencies, key=latencies.__getitem__)
        say()
        say(f"  Latency from the POS's COMMIT to the paper cut, over {len(latencies)} tickets:")
        wrapped(
            "    ",
            f"p50 {duration(statistics.median(latencies.values()))},"
            f" max {duration(latencies[slowest])} (#{slowest}, {self.kind[slowest]})."
            " The slow three: the failover waited 2 s for the hung printer, the paper-out ticket"
            " for its retry, the dessert ticket for the end of the maintenance window.",
            indent=4,
        )

        say()
        say(f"  Audit trail of ticket #{ticket} ({self.kind[ticket]}) in kitchen_kitchenticketlog:")
        rows = self.db.execute(
            "SELECT to_char(timestamp, 'HH24:MI:SS.MS') AS at, old_status, new_status, action,"
            " actor, host(printer_ip) AS ip, duration_ms, error_code"
            " FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id",
            (ticket,),
        ).fetchall()
        say(
            f"    {'timestamp':<12}  {'old -> new':<20} {'action':<14} {'actor':<16}"
            f" {'printer_ip':<10} {'ms':>4}  error_code"
        )
        for r in rows:
            change = f"{r['old_status'] or '-'} -> {r['new_status']}"
            ms = "" if r["duration_ms"] is None else str(r["duration_ms"])
            row = (
                f"    {r['at']:<12}  {change:<20} {r['action']:<14} {r['actor']:<16}"
                f" {r['ip'] or '':<10} {ms:>4}  {r['error_code'] or ''}"
            )
            say(row.rstrip())
        files = "text, PNG and raw ESC/POS" if png else "text and raw ESC/POS"
        say()
        say(f"  Every ticket is in {out}/ ({files}),")
        say(f"  kprintd's own log (JSON lines, as journald would get them) in {out}/kprintd.log.")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kprintd.harness.demo",
        description="A short restaurant service with kprintd, a throwaway PostgreSQL and emulated "
        "printers, all on this machine (loopback only).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-output"),
        help="folder for the printed tickets and kprintd's log (default: demo-output)",
    )
    parser.add_argument("--no-png", action="store_true", help="do not render PNGs of the tickets")
    parser.add_argument(
        "--printer-port",
        type=int,
        default=9100,
        metavar="PORT",
        help="TCP port of the emulated printers (default: 9100, the raw printing port;"
        " 0 picks free ports, so that the demo can run next to another one)",
    )
    parser.add_argument(
        "--pause",
        type=float,
        default=1.5,
        metavar="SECONDS",
        help="pause between scenes, to follow the service live (default: 1.5; 0 for none)",
    )
    return parser


def start_printers(
    stack: contextlib.ExitStack, port: int, out: Path, png: bool, events: queue.Queue[Event]
) -> dict[str, EmulatedPrinter]:
    printers: dict[str, EmulatedPrinter] = {}
    for spec in PRINTERS:
        try:
            printer = start_printer(
                spec.name, spec.host, port, chars_per_line=spec.columns, out_dir=out, png=png
            )
        except OSError as exc:
            raise DemoFailure(
                f"cannot start the emulated printer {spec.label} on {spec.host}:{port}:"
                f" {exc.strerror or exc} (is another demo running?)"
            ) from None
        printer.add_listener(events.put)
        stack.callback(printer.stop)
        printers[spec.name] = printer
    return printers


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
    started = time.monotonic()
    out: Path = args.out
    png = not args.no_png
    say(f"kprintd demo: an evening at {BRAND} ({STORE}), entirely on this machine.")
    say("The POS is played in SQL; the printers are emulated on loopback; kprintd is the real one.")

    heading("Setting up")
    out.mkdir(parents=True, exist_ok=True)
    for old in stale_output(out):
        old.unlink(missing_ok=True)
    try:
        server = stack.enter_context(embedded_server())
    except EmbeddedPostgresError as exc:
        raise DemoFailure(str(exc)) from None
    assert server.embedded is not None
    conninfo = server.create_database("pos")
    say(f"  Throwaway PostgreSQL in {server.embedded.base_dir} (Unix socket only), database 'pos'")
    applied = server.migrate("pos")
    wrapped(
        "  kprintd migrate: ",
        f"applied {len(applied)} SQL files ({applied[0].filename} ... {applied[-1].filename})",
    )

    events: queue.Queue[Event] = queue.Queue()
    printers = start_printers(stack, args.printer_port, out, png, events)
    alerts = AlertListener(conninfo, events)
    stack.callback(alerts.stop)

    daemon = RunningDaemon(Settings(database_url=conninfo, **DAEMON_SETTINGS))
    service = Service(conninfo, printers, events, daemon)
    stack.callback(service.close)
    service.configure()

    stack.enter_context(daemon_log(out / "kprintd.log"))
    stack.callback(daemon.stop)  # before the log file closes
    daemon.start()
    say(f"  kprintd (what `kprintd run` starts, here on a thread): listening on {TICKET_CHANNEL}")
    say(f"  The manager's dashboard LISTENs on {ALERT_CHANNEL}.")

    audited = service.play(max(args.pause, 0.0))
    service.summary(out, png, audited)

    heading("Closing time")
    code = daemon.stop()
    if code != 0:
        raise DemoFailure(f"kprintd stopped with exit code {code}")
    printed = daemon.daemon.dispatcher.tickets_printed if daemon.daemon else 0
    say(f"  kprintd stopped cleanly after printing {printed} tickets (as on SIGTERM).")
    say("  The printers and the throwaway PostgreSQL are stopped and removed next.")
    say(f"  The whole service took {time.monotonic() - started:.1f} s.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # a non-UTF-8 terminal still gets the tickets
    try:
        with contextlib.ExitStack() as stack:
            run(args, stack)
    except (DemoFailure, DaemonError) as exc:
        print(f"\nkprintd demo FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted; everything the demo started was stopped.", file=sys.stderr)
        return 130
    say("Done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
