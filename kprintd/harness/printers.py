"""Emulated printers for the harness, each on a loopback address of its own.

Owns handing out loopback addresses (a printer left over by a failed test or scenario then never
answers for the next one) and starting kprintd.emulator's EmulatedPrinter on them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

from kprintd.emulator import EmulatedPrinter

PRINTER_PORT = 9100  # the raw printing port


def loopback_addresses(second_octet: int) -> Iterator[str]:
    """127.<second_octet>.a.b for every a and b a printer can use (no .0, .1 or broadcast)."""
    return (f"127.{second_octet}.{a}.{b}" for a, b in itertools.product(range(250), range(2, 250)))


# The test suite's block: the second octet follows the process, so test runs going on side by
# side (two checkouts, a CI job beside a developer's) rarely share a /16. The benchmark's own
# printers use 127.77.x.x (bench.printers), the demo 127.0.2.1-5 (kprintd.harness.demo).
_SECOND_OCTET = 100 + os.getpid() % 150
_addresses = loopback_addresses(_SECOND_OCTET)


def next_loopback() -> str:
    """The next unused address of this process's block."""
    return next(_addresses)


def start_printer(
    name: str, host: str | None = None, port: int = PRINTER_PORT, **kwargs: Any
) -> EmulatedPrinter:
    """An EmulatedPrinter listening on `host` (default: next_loopback()); stop() it afterwards."""
    printer = EmulatedPrinter(name, host=host or next_loopback(), port=port, **kwargs)
    printer.start()
    return printer
