"""`make demo` end to end: `python -m kprintd.harness.demo` runs its whole service, leaves evidence.

Runs the demo as `make demo` does, in a subprocess with its own PostgreSQL and printers on
127.0.2.1-5, but on free ports rather than 9100: a `make demo` or another test run may be going on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole demo runs once, for all the tests below

EXPECTED_TICKETS = {"kitchen-main": 3, "kitchen-backup": 1, "bar": 4, "dessert": 2, "checker": 6}


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    def texts(self, printer: str) -> list[str]:
        return [p.read_text(encoding="utf-8") for p in sorted(self.out.glob(f"{printer}-*.txt"))]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    out = tmp_path_factory.mktemp("demo-output")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kprintd.harness.demo",
            "--out",
            str(out),
            "--pause",
            "0",
            "--printer-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    yield DemoRun(result.returncode, result.stdout, result.stderr, out)


def test_the_demo_succeeds_quickly_and_says_so(demo: DemoRun) -> None:
    assert demo.returncode == 0, demo.stderr or demo.stdout[-2000:]
    assert "FAILED" not in demo.stderr
    took = re.search(r"The whole service took ([\d.]+) s", demo.stdout)
    assert took and float(took.group(1)) < 40
    assert demo.stdout.rstrip().endswith("Done.")


def test_each_printer_cut_the_tickets_of_the_story(demo: DemoRun) -> None:
    for printer, count in EXPECTED_TICKETS.items():
        for suffix in ("txt", "png", "bin"):
            files = list(demo.out.glob(f"{printer}-[0-9][0-9][0-9][0-9].{suffix}"))
            assert len(files) == count, f"{printer}: {len(files)} .{suffix} files, not {count}"
    assert all(p.stat().st_size > 0 for p in demo.out.glob("*.png"))


def test_every_ticket_printed_exactly_once(demo: DemoRun) -> None:
    numbers = [
        int(m)
        for printer in EXPECTED_TICKETS
        for text in demo.texts(printer)
        for m in re.findall(r"\|Ticket #(\d+) ", text)
    ]
    assert sorted(numbers) == list(range(1, sum(EXPECTED_TICKETS.values()) + 1))


def test_the_tickets_carry_their_banners(demo: DemoRun) -> None:
    order, addition, reprint = demo.texts("kitchen-main")
    assert "K I T C H E N" in order and "A D D I T I O N" not in order
    assert "NOTE: Pedas level 3 ??? - alergi kacang!" in order, "emoji print as '?'"
    assert "A D D I T I O N" in addition
    assert "R E P R I N T" in reprint and "COPY OF TICKET #3" in reprint

    bar = demo.texts("bar")
    assert ["A D D I T I O N" in t for t in bar] == [False, True, False, True]
    assert "V O I D" in bar[2] and "A l p u k a t" in bar[2]

    (failover,) = demo.texts("kitchen-backup")
    assert "T A K E A W A Y" in failover and "Pak Andi" in failover
    assert "R E T R Y" in failover, "the hung printer took the ticket and never confirmed it"

    assert all("C H E C K E R" in t for t in demo.texts("checker"))
    held = demo.texts("dessert")[-1]
    assert "P i s a n g" in held and "R E T R Y" not in held, "held, not retried"


def test_the_console_shows_failover_paper_wait_maintenance_and_an_audit_trail(
    demo: DemoRun,
) -> None:
    console = demo.stdout
    unwrapped = " ".join(console.split())
    assert ">>> Kitchen backup (127.0.2.2) cut ticket #11 (kitchen order)" in unwrapped
    assert "Printer 'Kitchen main' for kitchen stopped printing" in unwrapped
    assert "Printer 'Bar' for bar stopped printing: the printer is out of paper" in unwrapped
    assert "POS> SELECT kitchen_reprint(3, 'manager:Budi')" in unwrapped
    assert "Dessert active, station_keeps_printing=False" in unwrapped
    assert "Every printer of station 'dessert' is in planned maintenance" in unwrapped
    assert ">>> Dessert (127.0.2.4) cut ticket #15 (dessert addition)" in unwrapped
    trail = console[console.index("Audit trail of ticket #13") :]
    actions = re.findall(r"^ +[\d:.]+ +\S+ -> \S+ +(\w+)", trail, flags=re.MULTILINE)
    assert actions == [
        "created",
        "print_start",
        "print_failed",
        "retry",
        "print_start",
        "print_success",
    ]
    assert re.search(r"p50 \d+ ms, max [\d.]+ s", console)
    assert "ticket printed" in (demo.out / "kprintd.log").read_text(encoding="utf-8")
