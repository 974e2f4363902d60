"""The POS side of the benchmark and the stopwatch at the printers.

Owns generating load on a schedule exactly as a POS does (kprintd.harness.Pos: a bill, its items,
`kitchen_create_tickets(bill)`, COMMIT), noting the moment each COMMIT returned, and collecting the
moment each ticket's cut reached its emulated printer. Both times are time.monotonic() (see
bench.printers), so they compare directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.printers import Cut
from kprintd.harness import Pos


@dataclass(frozen=True)
class Sent:
    """A ticket the POS created, and when its transaction's COMMIT returned."""

    ticket_id: int
    station: str
    committed_at: float  # time.monotonic()
    measured: bool  # False during the warm-up
    # When conn.commit() was called. The cut may come before the POS process gets the CPU back
    # after its COMMIT (two cores for everything), so committed_at can be late; "cut - commit
    # issued" bounds the latency from above (it includes the COMMIT's own round trip).
    commit_issued_at: float


class CutRecorder:
    """Every cut reported by the printers (`record` is called from their reader threads)."""

    def __init__(self) -> None:
        self._cuts: list[Cut] = []
        self._changed = threading.Condition()

    def record(self, cut: Cut) -> None:
        with self._changed:
            self._cuts.append(cut)
            self._changed.notify_all()

    def cuts(self) -> list[Cut]:
        with self._changed:
            return list(self._cuts)

    def wait_for_tickets(self, ticket_ids: set[int], timeout: float) -> bool:
        """Wait until every one of `ticket_ids` was cut; False if the timeout came first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                seen = {cut.ticket_id for cut in self._cuts}
                if ticket_ids <= seen:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))

    def wait_for_count(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` cuts arrived; False if the timeout came first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._cuts) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
            return True


def steady_load(
    pos: Pos, stations: Sequence[str], rate: float, warmup_s: float, measure_s: float
) -> list[Sent]:
    """One single-item bill every 1/rate s, rotating over `stations`, on an absolute schedule.

    The first `warmup_s` seconds are sent the same way but marked not measured: printer
    connections are opened then, as they would be long before a busy evening starts.
    """
    interval = 1.0 / rate
    total = round((warmup_s + measure_s) * rate)
    warmup = round(warmup_s * rate)
    sent: list[Sent] = []
    start = time.monotonic()
    for n in range(total):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        station = stations[n % len(stations)]
        order = pos.send(station)
        sent.extend(
            Sent(i, station, order.committed_at, n >= warmup, order.commit_issued_at)
            for i in order.ticket_ids
        )
    return sent
