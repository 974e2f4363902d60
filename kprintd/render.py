"""Kitchen ticket rendering: a pure function from a ticket and a print layout to ESC/POS bytes.

This module owns what a kitchen ticket looks like on paper (sections, banners,
wrapping to the printer's column count) and the text-safety rules that keep POS
data from ever turning into printer commands. Command bytes are produced by
python-escpos (``escpos.printer.Dummy``); nothing here does I/O.
"""

from __future__ import annotations

import functools
import re
import textwrap
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

from escpos.magicencode import Encoder
from escpos.printer import Dummy

MIN_CHARS_PER_LINE = 16
"""Narrowest layout we can keep tidy: double-size text still gets 8 columns."""

TICKET_TYPES = ("order", "addition", "void", "checker")
CUT_MODES = ("full", "partial")

Align = Literal["left", "center", "right"]


@dataclass(frozen=True)
class TicketLine:
    """One item on the ticket."""

    quantity: int
    name: str
    modifiers: tuple[str, ...] = ()
    notes: str = ""
    station: str = ""  # used by checker tickets to group by station
    is_void: bool = False  # a cancelled item: printed with a VOID mark (checker and void tickets)


@dataclass(frozen=True)
class TicketDocument:
    ticket_id: int
    station: str  # 'kitchen', 'bar', 'dessert', 'checker', ...
    ticket_type: str  # 'order' | 'addition' | 'void' | 'checker'
    bill_number: str
    sent_at: datetime  # tz-aware; printed in the layout's local time as HH:MM
    lines: tuple[TicketLine, ...]
    bill_type: str = "dine_in"  # 'dine_in', 'takeaway', 'delivery', ...
    table_number: str | None = None
    queue_number: int | None = None
    customer_name: str | None = None
    is_reprint: bool = False
    original_ticket_id: int | None = None
    is_retry: bool = False  # sent again after a failure: may be a duplicate
    attempt: int = 1


@dataclass(frozen=True)
class PrintLayout:
    """Printer settings plus the per station/brand template ("PrintTemplate").

    ``timezone`` is the restaurant's zone for the printed time; ``None`` means the
    zone of the machine running the daemon.
    """

    chars_per_line: int = 32
    paper_width_mm: int = 80
    buzzer: bool = False
    copies: int = 1
    large_item_font: bool = True
    header_line: str | None = None
    codepage: str = "CP437"
    cut: str = "partial"
    timezone: tzinfo | None = None

    def __post_init__(self) -> None:
        if self.chars_per_line < MIN_CHARS_PER_LINE:
            raise ValueError(
                f"chars_per_line must be at least {MIN_CHARS_PER_LINE}, got {self.chars_per_line}"
            )
        if self.copies < 1:
            raise ValueError(f"copies must be at least 1, got {self.copies}")
        if self.cut not in CUT_MODES:
            raise ValueError(f"cut must be one of {CUT_MODES}, got {self.cut!r}")
        resolve_codepage(self.codepage)


# --------------------------------------------------------------------------- codepages

# The default profile lists every code page python-escpos can address with ESC t.
_PROFILE_CODEPAGES: dict[str, str] = {
    name: number for name, number in Dummy().profile.get_code_pages().items() if name != "Unknown"
}


class _CharTable(dict[int, int]):
    """python-escpos's character rule as a str.translate table, filled in as text is seen."""

    def __init__(self, charmap: dict[str, int], default: int) -> None:
        # ASCII is always itself, whatever a code page's table lists for it.
        super().__init__((ord(char), byte) for char, byte in charmap.items() if ord(char) >= 128)
        self._default = default

    def __missing__(self, codepoint: int) -> int:
        byte = codepoint if codepoint < 128 else self._default
        self[codepoint] = byte
        return byte


class TableEncoder(Encoder):  # type: ignore[misc]
    """python-escpos's Encoder with the same tables, encoding a line at a time.

    The library encodes character by character in Python, which was the largest part of
    rendering a ticket; the bytes are identical (tests/test_render.py compares them).
    """

    def __init__(self, codepages: dict[str, str]) -> None:
        super().__init__(codepages)
        self._tables: dict[tuple[str, str], _CharTable] = {}

    def encode(self, text: str, encoding: str, defaultchar: str = "?") -> bytes:
        table = self._tables.get((encoding, defaultchar))
        if table is None:
            charmap = self._get_codepage_char_map(encoding)
            table = self._tables[encoding, defaultchar] = _CharTable(charmap, ord(defaultchar))
        return text.translate(table).encode("latin-1")


_ENCODER = TableEncoder(_PROFILE_CODEPAGES)


def _codepage_key(name: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", name.upper())


@functools.cache
def supported_codepages() -> tuple[str, ...]:
    """Code page names (python-escpos spelling) that have a known character table."""
    # can_encode answers False when python-escpos has no character table for a page.
    return tuple(name for name in _PROFILE_CODEPAGES if _ENCODER.can_encode(name, "A"))


@functools.cache
def resolve_codepage(name: str) -> str:
    """Map a configured code page ("cp437", "PC858", "1252", "iso-8859-15") to its escpos name.

    Raises ``ValueError`` for a code page python-escpos cannot print with.
    """
    key = _codepage_key(name)
    if key.isdigit():
        key = "CP" + key
    key = re.sub(r"^(PC|WINDOWS|WIN)", "CP", key)
    for candidate in supported_codepages():
        if _codepage_key(candidate) == key:
            return candidate
    raise ValueError(f"unsupported codepage {name!r}; known: {', '.join(supported_codepages())}")


# --------------------------------------------------------------------------- text safety

# Unicode categories that never print: controls (C0, C1, DEL), format characters
# (bidi overrides, zero-width joiners), surrogates, private use, unassigned, and
# line/paragraph separators. Everything else either prints or becomes REPLACEMENT.
_NEVER_PRINTED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
REPLACEMENT = "?"
# Control characters that separate words; the rest (ESC, GS, DLE, FS, ...) are dropped.
_LAYOUT_WHITESPACE = frozenset("\t\n\r\v\f\x85")

# Typographic characters NFKC leaves alone but cooks read fine in ASCII.
_FALLBACKS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2212": "-",
    "\u2022": "*",
    "\u20ac": "EUR",
}


def _printable_in(codepage: str, text: str) -> bool:
    return bool(text) and all(
        unicodedata.category(c) not in _NEVER_PRINTED and _ENCODER.can_encode(codepage, c)
        for c in text
    )


@functools.lru_cache(maxsize=8192)
def _map_char(char: str, codepage: str) -> str:
    """What to print for one (NFC) character: itself, an equivalent, '' or REPLACEMENT."""
    category = unicodedata.category(char)
    if char in _LAYOUT_WHITESPACE or category in ("Zs", "Zl", "Zp"):
        return " "
    if category in _NEVER_PRINTED:
        return ""
    if _printable_in(codepage, char):
        return char
    if category.startswith("M"):
        # A combining mark NFC could not fold into its base: the base still prints.
        return ""
    compat = unicodedata.normalize("NFKC", char)
    if compat != char and _printable_in(codepage, compat):
        return compat
    stripped = "".join(
        c
        for c in unicodedata.normalize("NFKD", char)
        if not unicodedata.category(c).startswith("M")
    )
    if stripped != char and _printable_in(codepage, stripped):
        return stripped
    fallback = _FALLBACKS.get(char, "")
    if _printable_in(codepage, fallback):
        return fallback
    return REPLACEMENT


def sanitize_text(text: str, codepage: str = "CP437") -> str:
    """Make POS text safe and printable in ``codepage``.

    Control and format characters are removed, whitespace becomes single spaces,
    and every character left is one the code page has (composed, a compatibility
    equivalent, the base letter without accents, or ``?``). Each character of the
    result therefore prints as exactly one byte and one column, which is what the
    wrapping arithmetic relies on: East Asian wide characters and emoji become
    ``?`` rather than two-column glyphs the printer does not have.
    """
    cp = resolve_codepage(codepage)
    mapped = "".join(_map_char(c, cp) for c in unicodedata.normalize("NFC", text))
    return " ".join(mapped.split())


def _sanitize_paragraphs(text: str, codepage: str) -> list[str]:
    """Like :func:`sanitize_text`, keeping the author's line breaks (for notes)."""
    paragraphs = (sanitize_text(part, codepage) for part in text.splitlines())
    return [p for p in paragraphs if p]


# --------------------------------------------------------------------------- layout helpers


def wrap(text: str, width: int, indent: int = 0) -> list[str]:
    """Word-wrap ``text`` to ``width`` columns, hard-breaking words that are too long.

    Continuation lines are indented by ``indent`` columns (at most half the width,
    so even pathological prefixes leave room for text). Every returned line is at
    most ``width`` characters; ``text`` must be sanitized (one column per char).
    """
    if len(text) <= width and text.isprintable() and text[-1:].strip():
        # Most ticket lines already fit: textwrap would hand back the same single line.
        return [text]
    lines = textwrap.wrap(
        text,
        width=width,
        subsequent_indent=" " * min(indent, width // 2),
        break_long_words=True,
        break_on_hyphens=True,
    )
    return lines or [""]


def _two_columns(left: str, right: str, width: int) -> list[str]:
    if len(left) + 1 + len(right) <= width:
        return [left + " " * (width - len(left) - len(right)) + right]
    return wrap(left, width) + [r.rjust(width) for r in wrap(right, width)]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


_BILL_TYPE_LABELS = {"dine_in": "Dine-in", "takeaway": "Takeaway", "delivery": "Delivery"}


def _bill_type_label(bill_type: str, codepage: str) -> str:
    label = _BILL_TYPE_LABELS.get(bill_type.strip().lower())
    if label is not None:
        return label
    return sanitize_text(bill_type.replace("_", " "), codepage).capitalize()


@dataclass(frozen=True)
class Banner:
    """A full-width inverted warning: big ``title`` and a normal-size explanation."""

    title: str
    detail: str


def banners_for(ticket: TicketDocument, codepage: str = "CP437") -> list[Banner]:
    """The warnings a ticket carries, most important first."""
    result: list[Banner] = []
    kind = ticket.ticket_type.strip().lower()
    if kind == "void":
        result.append(Banner("VOID", "CANCEL THESE ITEMS"))
    elif kind == "addition":
        result.append(Banner("ADDITION", "ADD TO AN ORDER ALREADY SENT"))
    elif kind not in TICKET_TYPES:
        # An unknown type is shown rather than silently printed as a plain order.
        result.append(Banner(sanitize_text(kind, codepage).upper() or REPLACEMENT, "TICKET TYPE"))
    if ticket.is_reprint:
        original = (
            f"COPY OF TICKET #{ticket.original_ticket_id}"
            if ticket.original_ticket_id is not None
            else "COPY OF AN EARLIER TICKET"
        )
        result.append(Banner("REPRINT", original))
    if ticket.is_retry:
        result.append(Banner("RETRY", f"ATTEMPT {ticket.attempt} - MAY BE A DUPLICATE"))
    return result


# --------------------------------------------------------------------------- rendering


_Style = tuple[bool, bool, bool, bool, Align]


class _TicketWriter:
    """Emits sanitized, pre-wrapped lines through python-escpos, sending styles on change."""

    def __init__(self, layout: PrintLayout, codepage: str) -> None:
        # One shared encoder: python-escpos would otherwise rebuild its code page tables for
        # every ticket, which was a third of the daemon's CPU in a burst.
        self.printer = Dummy(magic_encode_args={"encoder": _ENCODER})
        self.width = layout.chars_per_line
        self.big_width = layout.chars_per_line // 2
        self.printer.hw("INIT")
        self.printer.charcode(codepage)
        self._style: _Style = (False, False, False, False, "left")  # state after ESC @

    def lines(
        self,
        lines: Iterable[str],
        *,
        big: bool = False,
        tall: bool = False,
        bold: bool = False,
        invert: bool = False,
        align: Align = "left",
    ) -> None:
        style: _Style = (big, tall, bold, invert, align)
        if style != self._style:
            self.printer.set(
                align=align,
                bold=bold,
                invert=invert,
                normal_textsize=not (big or tall),
                double_width=big,
                double_height=big or tall,
            )
            self._style = style
        for line in lines:
            self.printer.textln(line)

    def rule(self, char: str = "-") -> None:
        self.lines([char * self.width])

    def blank(self) -> None:
        self.lines([""])


def _item_block(w: _TicketWriter, line: TicketLine, layout: PrintLayout, codepage: str) -> None:
    prefix = ("VOID " if line.is_void else "") + f"{line.quantity}x "
    text = prefix + sanitize_text(line.name, codepage)
    if layout.large_item_font:
        w.lines(wrap(text, w.big_width, len(prefix)), big=True, bold=True)
    else:
        w.lines(wrap(text, w.width, len(prefix)), bold=True)
    modifiers = [sanitize_text(m, codepage) for m in line.modifiers]
    w.lines(row for m in modifiers if m for row in wrap("  + " + m, w.width, indent=4))
    notes = _sanitize_paragraphs(line.notes, codepage)
    if notes:
        w.lines((row for n in notes for row in wrap("  NOTE: " + n, w.width, indent=8)), bold=True)


def _group_by_station(lines: Iterable[TicketLine]) -> list[tuple[str, list[TicketLine]]]:
    groups: dict[str, list[TicketLine]] = {}
    for line in lines:
        groups.setdefault(line.station.strip().lower(), []).append(line)
    return list(groups.items())


def render_ticket(ticket: TicketDocument, layout: PrintLayout) -> bytes:
    """Render ``ticket`` to ESC/POS bytes: ``layout.copies`` identical copies, each cut."""
    codepage = resolve_codepage(layout.codepage)
    w = _TicketWriter(layout, codepage)
    width, big = w.width, w.big_width

    if layout.header_line:
        header = sanitize_text(layout.header_line, codepage)
        if header:
            w.lines(wrap(header, width), bold=True, align="center")

    for banner in banners_for(ticket, codepage):
        w.lines(
            (row.center(big) for row in wrap(banner.title, big)), big=True, bold=True, invert=True
        )
        w.lines((row.center(width) for row in wrap(banner.detail, width)), bold=True, invert=True)
        w.blank()

    station = sanitize_text(ticket.station, codepage).upper() or REPLACEMENT
    w.lines(wrap(station, big), big=True, bold=True, align="center")
    bill_number = sanitize_text(ticket.bill_number, codepage)
    order_number = f"#{ticket.queue_number}" if ticket.queue_number is not None else bill_number
    w.lines(wrap(order_number, big), big=True, bold=True, align="center")
    w.rule()

    bill_type = _bill_type_label(ticket.bill_type, codepage)
    if ticket.table_number:
        table = sanitize_text(ticket.table_number, codepage)
        w.lines(wrap(f"TABLE {table}", big, indent=6), big=True, bold=True)
    if bill_type != _BILL_TYPE_LABELS["dine_in"]:
        # Takeaway and delivery are packed, not plated: as prominent as a table number.
        w.lines(wrap(bill_type.upper(), big), big=True, bold=True)
    if ticket.customer_name:
        customer = sanitize_text(ticket.customer_name, codepage)
        if customer:
            w.lines(wrap(customer, width), tall=True, bold=True)
    sent = ticket.sent_at.astimezone(layout.timezone).strftime("%H:%M")
    w.lines(_two_columns(bill_type, f"Sent {sent}", width))
    if ticket.queue_number is not None:
        w.lines(wrap(f"Bill {bill_number}", width, indent=5))
    w.rule()

    if ticket.ticket_type.strip().lower() == "checker":
        for group_station, group in _group_by_station(ticket.lines):
            name = sanitize_text(group_station, codepage).upper() or "NO STATION"
            w.lines((f" {row} ".center(width, "=") for row in wrap(name, width - 4)), bold=True)
            for line in group:
                _item_block(w, line, layout, codepage)
    else:
        for line in ticket.lines:
            _item_block(w, line, layout, codepage)

    w.rule()
    item_count = sum(line.quantity for line in ticket.lines)
    w.lines(_two_columns(f"Ticket #{ticket.ticket_id}", _plural(item_count, "item"), width))
    if ticket.is_reprint and ticket.original_ticket_id is not None:
        w.lines(wrap(f"Reprint of ticket #{ticket.original_ticket_id}", width))
    if ticket.is_retry:
        w.lines(wrap(f"Retry, attempt {ticket.attempt}", width))

    if layout.buzzer:
        w.printer.buzzer(times=2, duration=4)
    w.printer.cut(mode="FULL" if layout.cut == "full" else "PART")
    one_copy: bytes = w.printer.output
    return one_copy * layout.copies
