"""Printer status as defined by Epson ESC/POS: real-time (DLE EOT n, n = 1..4) and pushed
(Automatic Status Back, enabled by GS a n).

This module owns the meaning of the four status bytes a printer returns to
``DLE EOT n`` and of the four-byte block it pushes on every change once ASB is
on: how to build them from a simulated printer state (used by the emulator)
and how to parse them back (used by the daemon's printer transport). It does
no I/O.

Bit layout (bits 1 and 4 are always 1, bits 0 and 7 always 0, so every valid
answer matches ``0xx1xx10``):

=====  ==========================  ======================================
n      name                        bits
=====  ==========================  ======================================
1      printer status              2 drawer pin 3 high, 3 offline,
                                   5 waiting for online recovery,
                                   6 paper feed button pressed
2      offline cause               2 cover open, 3 paper fed by button,
                                   5 printing stopped by paper end,
                                   6 error occurred
3      error cause                 3 autocutter error, 5 unrecoverable error,
                                   6 automatically recoverable error
4      roll paper sensor           2+3 near end detected, 5+6 paper end
=====  ==========================  ======================================

An ASB block is four bytes; its first matches ``0xx1xx00`` and the other three
``0xx0xxxx``, so it is told apart from DLE EOT answers by bits 0 and 1 of its
first byte:

=====  ==========================  ======================================
byte   name                        bits
=====  ==========================  ======================================
1      printer information         2 drawer pin 3 high, 3 offline,
                                   5 cover open, 6 paper fed by button
2      error information           3 autocutter error, 5 unrecoverable error,
                                   6 automatically recoverable error
3      paper sensor information    0+1 near end detected, 2+3 paper end
4      paper sensor information    reserved
=====  ==========================  ======================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum, IntEnum

DLE_EOT = b"\x10\x04"

STATUS_BACK_ITEMS = 0b0000_1110
"""GS a n bits: online/offline, errors and the roll paper sensor (not the cash drawer)."""
ENABLE_STATUS_BACK = b"\x1d\x61" + bytes([STATUS_BACK_ITEMS])
STATUS_BACK_SIZE = 4

_STATUS_BACK_FIRST_ONES = 0b0001_0000
_STATUS_BACK_FIRST_MASK = 0b1001_0011
_STATUS_BACK_REST_MASK = 0b1001_0000

_FIXED_ONES = 0b0001_0010
_FIXED_MASK = 0b1001_0011


class StatusRequest(IntEnum):
    """The ``n`` of ``DLE EOT n``."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER_SENSOR = 4

    @property
    def command(self) -> bytes:
        return DLE_EOT + bytes([self.value])


ALL_STATUS_REQUESTS: bytes = b"".join(r.command for r in StatusRequest)
"""The four requests back to back; a printer answers with four bytes in order."""


class PaperState(Enum):
    OK = "ok"
    NEAR_END = "near_end"
    OUT = "out"


@dataclass(frozen=True)
class PrinterState:
    """What a printer reports about itself; the emulator simulates exactly this."""

    online: bool = True
    cover_open: bool = False
    paper: PaperState = PaperState.OK
    cutter_error: bool = False
    unrecoverable_error: bool = False
    auto_recoverable_error: bool = False
    drawer_pin3_high: bool = False
    feed_button_pressed: bool = False

    @property
    def has_error(self) -> bool:
        return self.cutter_error or self.unrecoverable_error or self.auto_recoverable_error

    @property
    def can_print(self) -> bool:
        """True when paper would advance: online, closed, paper present and no error."""
        return (
            self.online
            and not self.cover_open
            and self.paper is not PaperState.OUT
            and not self.has_error
        )


def _bit(flag: bool, bit: int) -> int:
    return (1 << bit) if flag else 0


def build_status_byte(request: StatusRequest | int, state: PrinterState) -> int:
    """The byte a printer in ``state`` answers to ``DLE EOT request``."""
    kind = StatusRequest(request)
    if kind is StatusRequest.PRINTER:
        value = (
            _bit(state.drawer_pin3_high, 2)
            | _bit(not state.can_print, 3)
            # A real printer waits for recovery after a recoverable error (e.g. cover
            # opened mid-print); we report it for any error that blocks printing.
            | _bit(state.has_error, 5)
            | _bit(state.feed_button_pressed, 6)
        )
    elif kind is StatusRequest.OFFLINE_CAUSE:
        value = (
            _bit(state.cover_open, 2)
            | _bit(state.feed_button_pressed, 3)
            | _bit(state.paper is PaperState.OUT, 5)
            | _bit(state.has_error, 6)
        )
    elif kind is StatusRequest.ERROR_CAUSE:
        value = (
            _bit(state.cutter_error, 3)
            | _bit(state.unrecoverable_error, 5)
            | _bit(state.auto_recoverable_error, 6)
        )
    else:
        # Printers whose roll has run out also see it at the near-end sensor.
        near_end = state.paper is not PaperState.OK
        value = (0b0000_1100 if near_end else 0) | (
            0b0110_0000 if state.paper is PaperState.OUT else 0
        )
    return value | _FIXED_ONES


def build_status_response(request: StatusRequest | int, state: PrinterState) -> bytes:
    return bytes([build_status_byte(request, state)])


def is_status_byte(value: int) -> bool:
    """True if ``value`` has the fixed bits every DLE EOT answer carries."""
    return 0 <= value <= 0xFF and value & _FIXED_MASK == _FIXED_ONES


def _check(value: int) -> int:
    if not is_status_byte(value):
        raise ValueError(f"0x{value:02x} is not a DLE EOT status byte")
    return value


@dataclass(frozen=True)
class PrinterStatusBits:
    """Answer to DLE EOT 1."""

    offline: bool
    drawer_pin3_high: bool
    waiting_for_online_recovery: bool
    feed_button_pressed: bool


@dataclass(frozen=True)
class OfflineCauseBits:
    """Answer to DLE EOT 2."""

    cover_open: bool
    feeding_by_button: bool
    paper_end_stop: bool
    error: bool


@dataclass(frozen=True)
class ErrorCauseBits:
    """Answer to DLE EOT 3."""

    autocutter_error: bool
    unrecoverable_error: bool
    auto_recoverable_error: bool


@dataclass(frozen=True)
class PaperSensorBits:
    """Answer to DLE EOT 4."""

    near_end: bool
    paper_end: bool


def parse_printer_status(value: int) -> PrinterStatusBits:
    v = _check(value)
    return PrinterStatusBits(
        offline=bool(v & 0x08),
        drawer_pin3_high=bool(v & 0x04),
        waiting_for_online_recovery=bool(v & 0x20),
        feed_button_pressed=bool(v & 0x40),
    )


def parse_offline_cause(value: int) -> OfflineCauseBits:
    v = _check(value)
    return OfflineCauseBits(
        cover_open=bool(v & 0x04),
        feeding_by_button=bool(v & 0x08),
        paper_end_stop=bool(v & 0x20),
        error=bool(v & 0x40),
    )


def parse_error_cause(value: int) -> ErrorCauseBits:
    v = _check(value)
    return ErrorCauseBits(
        autocutter_error=bool(v & 0x08),
        unrecoverable_error=bool(v & 0x20),
        auto_recoverable_error=bool(v & 0x40),
    )


def parse_paper_sensor(value: int) -> PaperSensorBits:
    v = _check(value)
    # Either bit of each pair means "detected": some models set only one of them.
    return PaperSensorBits(near_end=bool(v & 0x0C), paper_end=bool(v & 0x60))


def state_from_responses(
    responses: Mapping[StatusRequest, int] | Mapping[int, int],
) -> PrinterState:
    """Rebuild a :class:`PrinterState` from answers to some or all of DLE EOT 1..4.

    Missing answers leave the corresponding fields at their healthy defaults, so
    a caller that only asks for n=1 and n=4 still gets a useful result.
    Raises ``ValueError`` if an answer is not a valid status byte.
    """
    by_kind = {StatusRequest(k): v for k, v in responses.items()}
    online = True
    drawer = feed = False
    cover_open = False
    cutter = unrecoverable = auto_recoverable = False
    paper = PaperState.OK
    if StatusRequest.PRINTER in by_kind:
        p = parse_printer_status(by_kind[StatusRequest.PRINTER])
        online, drawer, feed = not p.offline, p.drawer_pin3_high, p.feed_button_pressed
    if StatusRequest.OFFLINE_CAUSE in by_kind:
        o = parse_offline_cause(by_kind[StatusRequest.OFFLINE_CAUSE])
        cover_open = o.cover_open
        if o.paper_end_stop:
            paper = PaperState.OUT
    if StatusRequest.ERROR_CAUSE in by_kind:
        e = parse_error_cause(by_kind[StatusRequest.ERROR_CAUSE])
        cutter, unrecoverable = e.autocutter_error, e.unrecoverable_error
        auto_recoverable = e.auto_recoverable_error
    if StatusRequest.PAPER_SENSOR in by_kind:
        s = parse_paper_sensor(by_kind[StatusRequest.PAPER_SENSOR])
        if s.paper_end:
            paper = PaperState.OUT
        elif s.near_end and paper is not PaperState.OUT:
            paper = PaperState.NEAR_END
    return _with_offline(
        PrinterState(
            cover_open=cover_open,
            paper=paper,
            cutter_error=cutter,
            unrecoverable_error=unrecoverable,
            auto_recoverable_error=auto_recoverable,
            drawer_pin3_high=drawer,
            feed_button_pressed=feed,
        ),
        online,
    )


def _with_offline(state: PrinterState, online: bool) -> PrinterState:
    # "Offline" is derived from its causes when they are known; a printer that says
    # it is offline without a cause we can see is simply offline.
    if not online and state.can_print:
        return replace(state, online=False)
    return state


def build_status_back(state: PrinterState) -> bytes:
    """The ASB block a printer in ``state`` pushes when its status changes."""
    printer = (
        _bit(state.drawer_pin3_high, 2)
        | _bit(not state.can_print, 3)
        | _STATUS_BACK_FIRST_ONES
        | _bit(state.cover_open, 5)
        | _bit(state.feed_button_pressed, 6)
    )
    errors = (
        _bit(state.cutter_error, 3)
        | _bit(state.unrecoverable_error, 5)
        | _bit(state.auto_recoverable_error, 6)
    )
    paper = (0b0000_0011 if state.paper is not PaperState.OK else 0) | (
        0b0000_1100 if state.paper is PaperState.OUT else 0
    )
    return bytes([printer, errors, paper, 0])


def is_status_back_start(value: int) -> bool:
    """True if ``value`` can begin an ASB block (and so is no DLE EOT answer)."""
    return value & _STATUS_BACK_FIRST_MASK == _STATUS_BACK_FIRST_ONES


def state_from_status_back(block: bytes) -> PrinterState:
    """Parse an ASB block; raises ``ValueError`` if its fixed bits are wrong."""
    if (
        len(block) != STATUS_BACK_SIZE
        or not is_status_back_start(block[0])
        or any(b & _STATUS_BACK_REST_MASK for b in block[1:])
    ):
        raise ValueError(f"{block.hex(' ')} is not an automatic status back block")
    printer, errors, paper_bits = block[0], block[1], block[2]
    paper = PaperState.OK
    if paper_bits & 0b0000_1100:
        paper = PaperState.OUT
    elif paper_bits & 0b0000_0011:
        paper = PaperState.NEAR_END
    return _with_offline(
        PrinterState(
            cover_open=bool(printer & 0x20),
            paper=paper,
            cutter_error=bool(errors & 0x08),
            unrecoverable_error=bool(errors & 0x20),
            auto_recoverable_error=bool(errors & 0x40),
            drawer_pin3_high=bool(printer & 0x04),
            feed_button_pressed=bool(printer & 0x40),
        ),
        online=not printer & 0x08,
    )
