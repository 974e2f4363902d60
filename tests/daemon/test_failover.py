"""The failover step on its own: one claimed batch across a route's printers, with an in-memory
printer I/O (the real one is tested over TCP by the daemon tests), and its outcomes as the
database receives them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kprintd.config import Settings
from kprintd.db import (
    ClaimedJob,
    Failed,
    Outcome,
    Printed,
    PrinterFailure,
    Released,
    RoutePrinter,
    outcome_json,
)
from kprintd.failover import BatchResult, Precheck, PrinterTry, print_batch
from kprintd.transport import PrinterError

SETTINGS = Settings(database_url="postgresql:///unused", unreachable_grace_s=900)
DUPLICATE_WARNING = b"MAY BE A DUPLICATE"


def printer(printer_id: int, name: str) -> RoutePrinter:
    return RoutePrinter(
        printer_id=printer_id,
        printer_name=name,
        host=f"10.0.0.{printer_id}",
        port=9100,
        priority=printer_id,
        paper_width_mm=80,
        chars_per_line=48,
        header_line=None,
        buzzer=False,
        copies=1,
        large_item_font=False,
        codepage="CP437",
        cut_mode="full",
    )


PRIMARY, BACKUP, LAST = printer(1, "primary"), printer(2, "backup"), printer(3, "last")


def job(
    ticket_id: int, *, attempt: int = 1, waited: timedelta = timedelta(0), **document: Any
) -> ClaimedJob:
    body: dict[str, Any] = {
        "ticket_id": ticket_id,
        "station": "kitchen",
        "ticket_type": "order",
        "bill_number": f"B-{ticket_id}",
        "sent_at": (datetime.now(UTC) - waited).isoformat(),
        "lines": [{"quantity": 1, "name": f"Dish {ticket_id}"}],
        "attempt": attempt,
    }
    return ClaimedJob(ticket_id, attempt, 3, body | document)


class FakePrinters:
    """Printer I/O in memory: each printer takes every send, or fails the ones scripted."""

    def __init__(self, **failures: list[PrinterError | None]) -> None:
        self.failures = failures
        self.sent: dict[str, list[bytes]] = {}
        self.calls: list[str] = []

    async def send(self, printer: RoutePrinter, data: bytes) -> None:
        self.calls.append(printer.printer_name)
        script = self.failures.get(printer.printer_name, [])
        error = script.pop(0) if script else None
        if error is not None:
            raise error
        self.sent.setdefault(printer.printer_name, []).append(data)


def run(
    jobs: list[ClaimedJob],
    printers: list[RoutePrinter],
    io: FakePrinters,
    **options: Any,
) -> BatchResult:
    return asyncio.run(print_batch(jobs, printers, io, SETTINGS, station="kitchen", **options))


def printed(outcome: Outcome) -> Printed:
    assert isinstance(outcome, Printed), outcome
    return outcome


def failed(outcome: Outcome) -> Failed:
    assert isinstance(outcome, Failed), outcome
    return outcome


def refused(code: str = "connection_refused", *, may_have_printed: bool = False) -> PrinterError:
    return PrinterError(code, f"{code} (test)", may_have_printed=may_have_printed)


def test_the_first_printer_prints_the_whole_batch_in_one_send() -> None:
    io = FakePrinters()
    result = run([job(1), job(2)], [PRIMARY, BACKUP], io)
    assert io.calls == ["primary"]
    assert [printed(o).printer for o in result.outcomes] == [PRIMARY, PRIMARY]
    assert [printed(o).tried for o in result.outcomes] == [1, 1]
    assert not any(printed(o).retry_banner for o in result.outcomes)
    assert sum(printed(o).bytes for o in result.outcomes) == len(io.sent["primary"][0])
    assert DUPLICATE_WARNING not in io.sent["primary"][0]
    assert [(t.printer, t.error) for t in result.tries] == [(PRIMARY, None)]
    assert result.printer_failures == [] and result.printed == 2


def test_a_refused_printer_passes_the_batch_to_its_backup_without_a_retry_banner() -> None:
    # Refused before any byte: nothing can be on paper, so no RETRY banner on the backup.
    io = FakePrinters(primary=[refused()])
    result = run([job(1), job(2)], [PRIMARY, BACKUP], io)
    assert io.calls == ["primary", "backup"]
    assert [printed(o).printer for o in result.outcomes] == [BACKUP, BACKUP]
    assert [printed(o).tried for o in result.outcomes] == [2, 2]
    assert not any(printed(o).retry_banner for o in result.outcomes)
    assert DUPLICATE_WARNING not in io.sent["backup"][0]
    assert [t.printer for t in result.tries] == [PRIMARY, BACKUP]
    assert result.printer_failures == [PrinterFailure(1, "connection_refused (test)")]


def test_a_printer_dying_mid_batch_sends_the_whole_batch_again_under_a_retry_banner() -> None:
    # The batch is one write confirmed by one status answer: without the answer, no ticket of it
    # is confirmed, and any of them may be on paper.
    io = FakePrinters(primary=[refused("connection_lost", may_have_printed=True)])
    result = run([job(1), job(2), job(3)], [PRIMARY, BACKUP], io)
    assert [printed(o).printer for o in result.outcomes] == [BACKUP] * 3
    assert all(printed(o).retry_banner for o in result.outcomes)
    assert io.sent["backup"][0].count(DUPLICATE_WARNING) == 3
    assert "primary" not in io.sent


def test_a_ticket_sent_again_keeps_its_retry_banner_on_every_printer() -> None:
    io = FakePrinters()
    result = run([job(1, attempt=2, is_retry=True)], [PRIMARY], io)
    assert printed(result.outcomes[0]).retry_banner
    assert DUPLICATE_WARNING in io.sent["primary"][0]


def test_each_printers_turn_is_told_as_it_ends_before_the_next_is_tried() -> None:
    io = FakePrinters(primary=[refused()])
    heard: list[tuple[str, str | None, list[str]]] = []

    def tried(turn: PrinterTry) -> None:
        code = turn.error.code if turn.error else None
        heard.append((turn.printer.printer_name, code, list(io.calls)))

    result = run([job(1)], [PRIMARY, BACKUP], io, tried=tried)
    assert heard == [
        ("primary", "connection_refused", ["primary"]),
        ("backup", None, ["primary", "backup"]),
    ]
    assert [(t.printer.printer_name, t.error) for t in result.tries][1] == ("backup", None)


def test_when_every_printer_fails_each_ticket_fails_with_every_printer_named() -> None:
    io = FakePrinters(primary=[refused()], backup=[refused("paper_out")])
    result = run([job(1, attempt=2), job(2)], [PRIMARY, BACKUP], io)
    first, second = (failed(o) for o in result.outcomes)
    assert first.error_code == "paper_out", "the last printer's reason"
    assert first.error_message == (
        "primary (10.0.0.1:9100): connection_refused (test); "
        "backup (10.0.0.2:9100): paper_out (test)"
    )
    assert (first.ticket_id, first.attempt, second.attempt) == (1, 2, 1)
    assert first.retryable and not first.may_have_printed
    # Nothing reached paper and the ticket is fresh: the attempt is given back.
    assert first.refund_attempt
    assert 0.8 * 4 <= first.retry_delay_s <= 1.2 * 4, "base 2 s, doubled for attempt 2"
    assert [f.printer_id for f in result.printer_failures] == [1, 2]
    assert result.printed == 0


def test_a_failure_that_may_have_printed_uses_up_the_attempt() -> None:
    io = FakePrinters(primary=[refused("send_timeout", may_have_printed=True)])
    [outcome] = run([job(1)], [PRIMARY], io).outcomes
    assert failed(outcome).may_have_printed and not failed(outcome).refund_attempt


def test_a_ticket_waiting_past_the_grace_period_uses_up_its_attempts() -> None:
    io = FakePrinters(primary=[refused()])
    [outcome] = run([job(1, waited=timedelta(hours=1))], [PRIMARY], io).outcomes
    assert failed(outcome).retryable and not failed(outcome).refund_attempt
    assert failed(outcome).retry_delay_s <= 1.2 * SETTINGS.retry_max_delay_s


def test_a_printer_the_warm_up_found_unable_to_print_is_skipped() -> None:
    io = FakePrinters()
    precheck = Precheck(PRIMARY, refused("cover_open"))
    result = run([job(1)], [PRIMARY, BACKUP], io, precheck=precheck)
    assert io.calls == ["backup"], "no byte for the printer with its cover open"
    [outcome] = result.outcomes
    assert printed(outcome).printer == BACKUP and printed(outcome).tried == 2
    assert not printed(outcome).retry_banner
    assert [(t.printer, t.error and t.error.code) for t in result.tries] == [
        (PRIMARY, "cover_open"),
        (BACKUP, None),
    ]


def test_a_warm_up_that_found_the_printer_ready_changes_nothing() -> None:
    io = FakePrinters()
    result = run([job(1)], [PRIMARY, BACKUP], io, precheck=Precheck(PRIMARY, None))
    assert io.calls == ["primary"] and printed(result.outcomes[0]).printer == PRIMARY


def test_printers_are_tried_in_the_order_given() -> None:
    io = FakePrinters(last=[refused()])
    result = run([job(1)], [LAST, BACKUP, PRIMARY], io)
    assert io.calls == ["last", "backup"]
    assert printed(result.outcomes[0]).printer == BACKUP


def test_unreadable_and_empty_tickets_fail_for_good_and_the_rest_print() -> None:
    io = FakePrinters()
    broken = ClaimedJob(1, 1, 3, {"station": "kitchen"})
    result = run([broken, job(2, lines=[]), job(3)], [PRIMARY], io)
    bad, empty, good = result.outcomes
    assert (failed(bad).error_code, failed(bad).retryable) == ("bad_document", False)
    assert (failed(empty).error_code, failed(empty).retryable) == ("empty_ticket", False)
    assert failed(empty).error_message == "the ticket has no items"
    assert printed(good).ticket_id == 3
    assert len(io.sent["primary"]) == 1


def test_a_ticket_that_cannot_render_fails_alone() -> None:
    io = FakePrinters()
    # The document says nothing of its fields' types; a queue number that is not one reaches
    # the renderer, which cannot print it.
    result = run([job(1, queue_number="A-1"), job(2)], [PRIMARY], io)
    first, second = result.outcomes
    assert (failed(first).error_code, failed(first).retryable) == ("render_error", False)
    assert printed(second).ticket_id == 2
    assert printed(second).bytes == len(io.sent["primary"][0])


def test_a_route_without_printers_fails_its_tickets_at_once() -> None:
    result = run([job(1), job(2)], [], FakePrinters())
    for outcome in result.outcomes:
        assert failed(outcome).error_code == "no_printer" and not failed(outcome).retryable
        assert failed(outcome).error_message == (
            "no active printer is configured for station 'kitchen'"
        )
    assert result.tries == []


def test_a_stopping_daemon_gives_the_batch_back_unsent() -> None:
    io = FakePrinters()
    broken = ClaimedJob(2, 1, 3, {})
    result = run([job(1, attempt=3), broken], [PRIMARY], io, releasing=True)
    assert result.outcomes[0] == Released(1, 3)
    assert failed(result.outcomes[1]).error_code == "bad_document"
    assert io.calls == []


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            Printed(7, 2, BACKUP, duration_ms=12, bytes=345, tried=2, retry_banner=True),
            {
                "ticket_id": 7,
                "attempt": 2,
                "outcome": "printed",
                "printer_id": 2,
                "printer_name": "backup",
                "printer_ip": "10.0.0.2",
                "duration_ms": 12,
                "bytes": 345,
                "tried": 2,
            },
        ),
        (
            Failed(7, 1, "paper_out", "out of paper", False, 2.5, True, True),
            {
                "ticket_id": 7,
                "attempt": 1,
                "outcome": "failed",
                "error_code": "paper_out",
                "error_message": "out of paper",
                "may_have_printed": False,
                "retry_delay_s": 2.5,
                "retryable": True,
                "refund_attempt": True,
            },
        ),
        (Released(7, 1), {"ticket_id": 7, "attempt": 1, "outcome": "released"}),
    ],
)
def test_outcomes_reach_kitchen_finish_print_jobs_as_it_reads_them(
    outcome: Outcome, expected: dict[str, Any]
) -> None:
    assert outcome_json(outcome) == expected
