"""The printer emulator: ESC/POS network printers on loopback, and the decoder that reads them."""

from kprintd.emulator.printer import (
    ASB_FLOOD_BLOCKS_PER_S,
    DEFAULT_CONTROL,
    LOOPBACK,
    NO_FAULT,
    ControlServer,
    EmulatedPrinter,
    Fault,
    FaultMode,
    PrinterStats,
    ReceivedTicket,
    TicketListener,
    check_loopback,
    main,
)

__all__ = [
    "ASB_FLOOD_BLOCKS_PER_S",
    "DEFAULT_CONTROL",
    "LOOPBACK",
    "NO_FAULT",
    "ControlServer",
    "EmulatedPrinter",
    "Fault",
    "FaultMode",
    "PrinterStats",
    "ReceivedTicket",
    "TicketListener",
    "check_loopback",
    "main",
]
