"""Routing memory: which printers of a station to try first, from what recent attempts showed.

Owns the per-printer circuit breaker. A printer that just failed is skipped in favour of its
backups until its cool-down ends; then exactly one ticket probes it (half-open) and its answer
closes or re-opens the breaker. Pure logic, no I/O, driven by an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TypeVar


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class CircuitBreaker:
    failure_threshold: int
    open_seconds: float
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    last_error: str | None = None

    def allows_attempt(self) -> bool:
        """May a ticket be sent to this printer now? Claims the half-open probe if it is due."""
        if self.state is BreakerState.CLOSED:
            return True
        # A probe that never got sent (a backup ahead of it succeeded) must not block the printer
        # forever, so half-open re-arms after the same cool-down as open.
        now = self.clock()
        if now - self.opened_at >= self.open_seconds:
            self.state = BreakerState.HALF_OPEN
            self.opened_at = now
            return True
        return False

    def record_success(self) -> bool:
        """Returns True when this success ends an outage (the printer is back)."""
        recovered = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.last_error = None
        return recovered

    def record_failure(self, error: str) -> bool:
        """Returns True when this failure opens the breaker (the printer is now considered down)."""
        self.consecutive_failures += 1
        self.last_error = error
        was_open = self.state is not BreakerState.CLOSED
        if self.state is BreakerState.HALF_OPEN or (
            self.consecutive_failures >= self.failure_threshold
        ):
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
        return self.state is BreakerState.OPEN and not was_open


class HasPrinterId(Protocol):
    @property
    def printer_id(self) -> int: ...


P = TypeVar("P", bound=HasPrinterId)


@dataclass
class PrinterBoard:
    """The daemon's memory of every printer's recent health, keyed by printer id."""

    failure_threshold: int
    open_seconds: float
    clock: Callable[[], float] = time.monotonic
    breakers: dict[int, CircuitBreaker] = field(default_factory=dict)

    def breaker(self, printer_id: int) -> CircuitBreaker:
        breaker = self.breakers.get(printer_id)
        if breaker is None:
            breaker = CircuitBreaker(self.failure_threshold, self.open_seconds, self.clock)
            self.breakers[printer_id] = breaker
        return breaker

    def order(self, printers: Sequence[P]) -> list[P]:
        """Printers in the order to try: healthy ones by priority, then the tripped ones.

        Tripped printers stay at the end as a last resort, so a station whose every printer
        recently failed still gets one try at each rather than failing without an attempt.
        """
        usable = [p for p in printers if self.breaker(p.printer_id).allows_attempt()]
        tripped = [p for p in printers if p not in usable]
        return usable + tripped
