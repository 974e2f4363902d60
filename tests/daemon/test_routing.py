"""Pure routing logic: circuit breakers, printer order, retry backoff, payload parsing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from kprintd.config import Settings
from kprintd.db import notice_from_payload
from kprintd.failover import retry_delay, ticket_from_document
from kprintd.routing import BreakerState, CircuitBreaker, PrinterBoard


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Printer:
    printer_id: int


def test_breaker_opens_skips_then_probes_once_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, open_seconds=10, clock=clock)
    assert breaker.record_failure("refused") is False
    assert breaker.allows_attempt()
    assert breaker.record_failure("refused") is True, "the second failure opens it"
    assert not breaker.allows_attempt()
    clock.now += 10
    assert breaker.allows_attempt(), "cool-down over: one probe"
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allows_attempt(), "only one probe at a time"
    assert breaker.record_success() is True, "the probe succeeding is a recovery"
    assert breaker.state is BreakerState.CLOSED
    assert breaker.record_success() is False


def test_failed_probe_reopens_without_a_second_down_event() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    assert breaker.record_failure("timeout") is True
    clock.now += 5
    assert breaker.allows_attempt()
    assert breaker.record_failure("timeout") is False, "still down: not a new outage"
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allows_attempt()


def test_unused_probe_rearms_after_the_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_seconds=5, clock=clock)
    breaker.record_failure("refused")
    clock.now += 5
    assert breaker.allows_attempt()
    clock.now += 4
    assert not breaker.allows_attempt()
    clock.now += 1
    assert breaker.allows_attempt(), "a probe that was never sent must not block it forever"


@given(events=st.lists(st.sampled_from(["ok", "fail", "tick", "ask"]), max_size=60))
def test_breaker_never_allows_an_open_printer_before_its_cool_down(events: list[str]) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, open_seconds=3, clock=clock)
    for event in events:
        if event == "ok":
            breaker.record_success()
        elif event == "fail":
            breaker.record_failure("x")
        elif event == "tick":
            clock.now += 1
        else:
            was = breaker.state
            opened_at = breaker.opened_at
            allowed = breaker.allows_attempt()
            if was is BreakerState.CLOSED:
                assert allowed
            elif clock.now - opened_at < 3:
                assert not allowed


def test_board_puts_tripped_printers_last_as_a_last_resort() -> None:
    clock = FakeClock()
    board = PrinterBoard(failure_threshold=1, open_seconds=30, clock=clock)
    primary, backup, spare = Printer(1), Printer(2), Printer(3)
    assert board.order([primary, backup, spare]) == [primary, backup, spare]
    board.breaker(1).record_failure("refused")
    assert board.order([primary, backup, spare]) == [backup, spare, primary]
    board.breaker(2).record_failure("refused")
    board.breaker(3).record_failure("refused")
    assert board.order([primary, backup, spare]) == [primary, backup, spare]


@settings(max_examples=200)
@given(attempt=st.integers(min_value=0, max_value=50))
def test_retry_delay_grows_and_is_capped(attempt: int) -> None:
    config = Settings(database_url="postgresql:///x", retry_base_delay_s=2, retry_max_delay_s=60)
    delay = retry_delay(config, attempt)
    expected = min(60.0, 2.0 * 2 ** max(attempt - 1, 0))
    assert 0.8 * expected - 0.001 <= delay <= 1.2 * expected + 0.001


def test_retry_delay_grows_with_waiting_when_attempts_are_given_back() -> None:
    config = Settings(database_url="postgresql:///x", retry_base_delay_s=2, retry_max_delay_s=30)
    assert retry_delay(config, 1, waited_s=0) <= 2.4
    assert 0.8 * 10 <= retry_delay(config, 1, waited_s=20) <= 1.2 * 10
    assert retry_delay(config, 1, waited_s=600) <= 1.2 * 30


def test_notice_from_payload_reads_the_trigger_payload_and_rejects_junk() -> None:
    brand = uuid.uuid4()
    notice = notice_from_payload(
        f'{{"ticket_id": 1, "station": "bar", "brand_id": "{brand}", "store_id": null}}'
    )
    assert notice is not None
    route = notice.route
    assert (route.station, route.brand_id, route.store_id) == ("bar", brand, None)
    for junk in ["", "not json", "[]", '{"ticket_id": 1}', '{"station": "bar", "brand_id": "x"}']:
        assert notice_from_payload(junk) is None


def test_ticket_document_becomes_a_renderable_ticket() -> None:
    ticket = ticket_from_document(
        {
            "ticket_id": 7,
            "station": "kitchen",
            "ticket_type": "addition",
            "bill_number": "B-1",
            "sent_at": "2026-11-25T12:00:00.5+07:00",
            "table_number": "12",
            "queue_number": None,
            "is_retry": True,
            "attempt": 2,
            "lines": [
                {"quantity": 2, "name": "Nasi Goreng", "modifiers": ["pedas"], "notes": "🌶"},
            ],
        }
    )
    assert ticket.ticket_id == 7 and ticket.is_retry and ticket.attempt == 2
    assert ticket.sent_at.utcoffset() is not None
    assert ticket.lines[0].modifiers == ("pedas",)
    assert ticket.lines[0].notes == "🌶"
