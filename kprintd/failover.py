"""Failover: one attempt at a claimed batch of tickets, across the printers of their route.

Owns what happens to each ticket of a batch between the claim and the record: reading its
document, rendering it for each printer's template, trying the route's printers in the order
given (the first takes every ticket it can; what it refuses goes to the next), the RETRY banner
for a ticket that may already be on paper, and the typed outcome of each ticket (Printed, Failed
with its retry terms, Released) with every printer that failed on the way. No database, no
breakers, no alerts: printer I/O comes in through PrinterIO, and the caller tells the printers'
owner and the alerts what the result shows.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from structlog.typing import FilteringBoundLogger

from kprintd.config import Settings
from kprintd.db import ClaimedJob, Failed, Outcome, Printed, PrinterFailure, Released, RoutePrinter
from kprintd.render import PrintLayout, TicketDocument, TicketLine, render_ticket
from kprintd.transport import PrinterError

log: FilteringBoundLogger = structlog.get_logger("kprintd.failover")

DEFAULT_CODEPAGE = "CP437"


class PrinterIO(Protocol):
    async def send(self, printer: RoutePrinter, data: bytes) -> None:
        """Print `data` on `printer`; raises PrinterError saying whether paper may have moved."""


@dataclass(frozen=True)
class Precheck:
    """What the warm-up status check found: `problem` None when `printer` can print."""

    printer: RoutePrinter
    problem: PrinterError | None


@dataclass(frozen=True)
class PrinterTry:
    """One printer's turn with the batch: `error` None when it printed what it was sent."""

    printer: RoutePrinter
    error: PrinterError | None = None


@dataclass(frozen=True)
class BatchResult:
    """Each claimed ticket's outcome, in claim order, and the printers tried, in order."""

    outcomes: list[Outcome]
    tries: list[PrinterTry]

    @property
    def printer_failures(self) -> list[PrinterFailure]:
        return [
            PrinterFailure(t.printer.printer_id, t.error.message)
            for t in self.tries
            if t.error is not None
        ]

    @property
    def printed(self) -> int:
        return sum(isinstance(o, Printed) for o in self.outcomes)


def retry_delay(settings: Settings, attempt: int, waited_s: float = 0.0) -> float:
    """Backoff with jitter, so a printer coming back is not hit by every ticket at once.

    It grows with the attempt number and, for tickets whose attempts are given back while no
    printer is reachable, with how long the ticket has been waiting.
    """
    exponential = settings.retry_base_delay_s * 2 ** max(attempt - 1, 0)
    base = min(settings.retry_max_delay_s, max(exponential, waited_s / 2))
    jittered: float = base * random.uniform(0.8, 1.2)
    return round(jittered, 3)


def ticket_from_document(document: dict[str, Any]) -> TicketDocument:
    """The renderer's view of kprintd.kitchen_ticket_document() JSON."""
    return TicketDocument(
        ticket_id=int(document["ticket_id"]),
        station=str(document["station"]),
        ticket_type=str(document["ticket_type"]),
        bill_number=str(document["bill_number"]),
        sent_at=datetime.fromisoformat(document["sent_at"]),
        lines=tuple(
            TicketLine(
                quantity=int(line["quantity"]),
                name=str(line["name"]),
                modifiers=tuple(str(m) for m in line.get("modifiers") or ()),
                notes=str(line.get("notes") or ""),
                station=str(line.get("station") or ""),
                is_void=bool(line.get("is_void")),
            )
            for line in document.get("lines") or ()
        ),
        bill_type=str(document.get("bill_type") or "dine_in"),
        table_number=document.get("table_number"),
        queue_number=document.get("queue_number"),
        customer_name=document.get("customer_name"),
        is_reprint=bool(document.get("is_reprint")),
        original_ticket_id=document.get("original_ticket_id"),
        is_retry=bool(document.get("is_retry")),
        attempt=int(document.get("attempt") or 1),
    )


@functools.cache
def time_zone(name: str | None) -> ZoneInfo | None:
    """The zone a template names; None (the machine's zone) when it names none or one this
    machine's time zone database lacks: the time on paper must never cost the ticket."""
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone in print template; using the machine's", time_zone=name)
        return None


def layout_for(printer: RoutePrinter) -> PrintLayout:
    """The printer's layout; a template naming an unknown codepage falls back to CP437.

    A typo in kitchen_printtemplate must cost accents on paper, never the station's tickets.
    """
    layout = partial(
        PrintLayout,
        chars_per_line=printer.chars_per_line,
        paper_width_mm=printer.paper_width_mm,
        buzzer=printer.buzzer,
        copies=printer.copies,
        large_item_font=printer.large_item_font,
        header_line=printer.header_line,
        cut=printer.cut_mode,
        timezone=time_zone(printer.time_zone),
    )
    try:
        return layout(codepage=printer.codepage)
    except ValueError as exc:
        log.warning(
            "unusable print template; using CP437", printer=printer.printer_name, error=str(exc)
        )
        return layout(codepage=DEFAULT_CODEPAGE)


@dataclass
class _Attempt:
    """What happened to one claimed ticket during this attempt, across the printers tried."""

    job: ClaimedJob
    document: TicketDocument | None = None
    may_have_printed: bool = False
    errors: list[str] = field(default_factory=list)
    last_error: PrinterError | None = None
    outcome: Outcome | None = None


async def print_batch(
    jobs: Sequence[ClaimedJob],
    printers: Sequence[RoutePrinter],
    io: PrinterIO,
    settings: Settings,
    *,
    station: str,
    precheck: Precheck | None = None,
    releasing: bool = False,
    tried: Callable[[PrinterTry], None] = lambda _: None,
    logger: FilteringBoundLogger = log,
) -> BatchResult:
    """Print `jobs` on the first of `printers` (in the order to try them, none in maintenance)
    that takes them; `releasing` (the daemon is stopping): send nothing and give them back.

    `tried` hears of each printer's turn as it ends, before the next printer is tried: whoever
    keeps track of printers learns at once that one failed.
    """
    run = _Failover(io, settings, tried, logger)
    attempts = [run.read(job) for job in jobs]
    if releasing:
        for attempt in attempts:
            if attempt.outcome is None:
                attempt.outcome = Released(attempt.job.ticket_id, attempt.job.attempt)
    elif not printers:
        message = f"no active printer is configured for station '{station}'"
        for attempt in attempts:
            if attempt.outcome is None:
                # Retrying cannot help until someone configures a printer: fail at once, once.
                attempt.outcome = run.failure(attempt, "no_printer", message, retryable=False)
            logger.error("ticket failed", ticket_id=attempt.job.ticket_id, reason=message)
    else:
        for printer in printers:
            pending = [a for a in attempts if a.outcome is None]
            if not pending:
                break
            if (
                precheck is not None
                and precheck.printer == printer
                and precheck.problem is not None
            ):
                # The warm-up already found this printer unable to print: next one.
                run.printer_failed(printer, pending, precheck.problem, time.monotonic())
                continue
            await run.try_printer(printer, pending)
        for attempt in attempts:
            if attempt.outcome is None:
                error = attempt.last_error
                attempt.outcome = run.failure(
                    attempt,
                    error.code if error else "no_printer",
                    "; ".join(attempt.errors) or "no printer could take the ticket",
                )
    return BatchResult([a.outcome for a in attempts if a.outcome is not None], run.tries)


class _Failover:
    """The steps of print_batch, sharing its printer I/O, settings, log and tries."""

    def __init__(
        self,
        io: PrinterIO,
        settings: Settings,
        tried: Callable[[PrinterTry], None],
        logger: FilteringBoundLogger,
    ) -> None:
        self.io = io
        self.settings = settings
        self.tried = tried
        self.log = logger
        self.tries: list[PrinterTry] = []

    def turn_ended(self, tried: PrinterTry) -> None:
        self.tries.append(tried)
        self.tried(tried)

    def read(self, job: ClaimedJob) -> _Attempt:
        attempt = _Attempt(job)
        try:
            attempt.document = ticket_from_document(job.document)
        except (KeyError, TypeError, ValueError) as exc:
            attempt.outcome = self.failure(
                attempt, "bad_document", f"unreadable ticket: {exc}", retryable=False
            )
            return attempt
        if not attempt.document.lines:
            # A blank slip tells the cook nothing and hides the mistake: fail it loudly.
            attempt.outcome = self.failure(
                attempt, "empty_ticket", "the ticket has no items", retryable=False
            )
        return attempt

    def failure(
        self, attempt: _Attempt, code: str, message: str, *, retryable: bool = True
    ) -> Failed:
        waited_s = 0.0
        if attempt.document is not None:
            waited_s = max(0.0, (datetime.now(UTC) - attempt.document.sent_at).total_seconds())
        # Nothing reached paper, so this attempt risked no duplicate: within the grace period it
        # is given back, and a station waiting for a paper roll does not fail its tickets.
        refund = not attempt.may_have_printed and waited_s < self.settings.unreachable_grace_s
        return Failed(
            ticket_id=attempt.job.ticket_id,
            attempt=attempt.job.attempt,
            error_code=code,
            error_message=message[:2000],
            may_have_printed=attempt.may_have_printed,
            retry_delay_s=retry_delay(self.settings, attempt.job.attempt, waited_s),
            retryable=retryable,
            refund_attempt=retryable and refund,
        )

    async def try_printer(self, printer: RoutePrinter, pending: list[_Attempt]) -> None:
        layout = layout_for(printer)
        payloads: list[bytes] = []
        sendable: list[_Attempt] = []
        for number, attempt in enumerate(pending):
            if number:
                # A batch of big tickets renders one at a time, letting other stations run between.
                await asyncio.sleep(0)
            document = attempt.document
            assert document is not None
            if attempt.may_have_printed and not document.is_retry:
                document = replace(document, is_retry=True)
            try:
                payloads.append(render_ticket(document, layout))
                sendable.append(attempt)
            except Exception as exc:
                self.log.exception("ticket could not be rendered", ticket_id=attempt.job.ticket_id)
                attempt.outcome = self.failure(
                    attempt, "render_error", f"cannot render: {exc}", retryable=False
                )
        if not sendable:
            return
        started = time.monotonic()
        try:
            await self.io.send(printer, b"".join(payloads))
        except PrinterError as exc:
            self.printer_failed(printer, sendable, exc, started)
            return
        duration_ms = int((time.monotonic() - started) * 1000)
        self.turn_ended(PrinterTry(printer))
        for attempt, payload in zip(sendable, payloads, strict=True):
            retry_banner = attempt.may_have_printed or bool(
                attempt.document and attempt.document.is_retry
            )
            attempt.outcome = Printed(
                ticket_id=attempt.job.ticket_id,
                attempt=attempt.job.attempt,
                printer=printer,
                duration_ms=duration_ms,
                bytes=len(payload),
                tried=len(attempt.errors) + 1,
                retry_banner=retry_banner,
            )
            self.log.info(
                "ticket printed",
                ticket_id=attempt.job.ticket_id,
                printer=printer.printer_name,
                attempt=attempt.job.attempt,
                retry_banner=retry_banner,
                duration_ms=duration_ms,
            )

    def printer_failed(
        self, printer: RoutePrinter, sent: list[_Attempt], exc: PrinterError, started: float
    ) -> None:
        duration_ms = int((time.monotonic() - started) * 1000)
        self.turn_ended(PrinterTry(printer, exc))
        for attempt in sent:
            attempt.errors.append(
                f"{printer.printer_name} ({printer.host}:{printer.port}): {exc.message}"
            )
            attempt.last_error = exc
            attempt.may_have_printed = attempt.may_have_printed or exc.may_have_printed
            self.log.warning(
                "printer failed",
                ticket_id=attempt.job.ticket_id,
                printer=printer.printer_name,
                error_code=exc.code,
                error=exc.message,
                duration_ms=duration_ms,
            )
