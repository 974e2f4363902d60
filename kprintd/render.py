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


@functools.cache
def _printable_chars(codepage: str) -> frozenset[str]:
    """The characters that print as themselves in ``codepage`` (python-escpos's can_encode:
    ASCII and the page's table), less those of categories that never print."""
    table = _ENCODER._get_codepage_char_map(codepage)
    candidates = [*map(chr, range(128)), *table]
    return frozenset(c for c in candidates if unicodedata.category(c) not in _NEVER_PRINTED)


def _printable_in(printable: frozenset[str], text: str) -> bool:
    return bool(text) and printable.issuperset(text)


def _equivalent(char: str, printable: frozenset[str]) -> str:
    """What to print for a character the code page lacks (``printable``: what it has): a
    compatibility equivalent, the letters without their accents, a typographic fallback, or
    REPLACEMENT."""
    compat = unicodedata.normalize("NFKC", char)
    if compat != char and _printable_in(printable, compat):
        return compat
    stripped = "".join(
        c for c in unicodedata.normalize("NFKD", char) if unicodedata.category(c)[0] != "M"
    )
    if stripped != char and _printable_in(printable, stripped):
        return stripped
    fallback = _FALLBACKS.get(char, "")
    if _printable_in(printable, fallback):
        return fallback
    return REPLACEMENT


_SANITIZE_TABLE_SIZE = 16384
"""Characters remembered per code page: every alphabet a kitchen prints, about 2 MB."""

_SPACE_CATEGORIES = frozenset({"Zs", "Zl", "Zp"})
_HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)  # decomposed by rule, not listed in decomposition()
_HANGUL_JAMO = range(0x1100, 0x1200)  # what NFKD makes of them


class _SanitizeTable(dict[int, str]):
    """What to print for each (NFC) character in one code page, as a str.translate table:
    itself, an equivalent, ' ', '' or REPLACEMENT.

    Filled in as text is seen and emptied when full, so text of ever new characters cannot
    grow it without bound. Working a character out is kept cheap, because a ticket full of
    characters never seen before must not hold up the event loop either (issue #14): the
    few thousand characters that have a decomposition to try are worked out once and kept.
    """

    def __init__(self, codepage: str) -> None:
        super().__init__()
        self._printable = _printable_chars(codepage)
        self._fallbacks = {
            char: fallback if _printable_in(self._printable, fallback) else REPLACEMENT
            for char, fallback in _FALLBACKS.items()
        }
        # Hangul syllables decompose into conjoining jamo, which no code page python-escpos
        # knows has: unless this one does, each prints as REPLACEMENT.
        self._hangul_prints = any(chr(c) in self._printable for c in _HANGUL_JAMO)
        self._equivalents: dict[int, str] = {}  # at most the 5,795 decomposable characters

    def __missing__(self, codepoint: int) -> str:
        if len(self) >= _SANITIZE_TABLE_SIZE:
            self.clear()
        char = chr(codepoint)
        category = unicodedata.category(char)
        if char in _LAYOUT_WHITESPACE or category in _SPACE_CATEGORIES:
            mapped = " "
        elif category in _NEVER_PRINTED:
            mapped = ""
        elif char in self._printable:
            mapped = char
        elif category[0] == "M":
            mapped = ""  # a combining mark NFC could not fold into its base: the base prints
        elif unicodedata.decomposition(char) or (
            codepoint in _HANGUL_SYLLABLES and self._hangul_prints
        ):
            mapped = self._equivalents.get(codepoint) or _equivalent(char, self._printable)
            self._equivalents[codepoint] = mapped
        else:
            # Most characters a code page lacks (CJK, emoji, Hangul, other scripts): NFKC and
            # NFKD hand them back unchanged or unprintable, so only a fallback can print them.
            mapped = self._fallbacks.get(char, REPLACEMENT)
        self[codepoint] = mapped
        return mapped


@functools.cache
def _sanitize_table(codepage: str) -> _SanitizeTable:
    return _SanitizeTable(codepage)


def sanitize_text(text: str, codepage: str = "CP437") -> str:
    """Make POS text safe and printable in ``codepage``.

    Control and format characters are removed, whitespace becomes single spaces,
    and every character left is one the code page has (composed, a compatibility
    equivalent, the base letter without accents, or ``?``). Each character of the
    result therefore prints as exactly one byte and one column, which is what the
    wrapping arithmetic relies on: East Asian wide characters and emoji become
    ``?`` rather than two-column glyphs the printer does not have.
    """
    table = _sanitize_table(resolve_codepage(codepage))
    return " ".join(unicodedata.normalize("NFC", text).translate(table).split())


def _sanitize_paragraphs(text: str, codepage: str) -> list[str]:
    """Like :func:`sanitize_text`, keeping the author's line breaks (for notes)."""
    paragraphs = (sanitize_text(part, codepage) for part in text.splitlines())
    return [p for p in paragraphs if p]


# --------------------------------------------------------------------------- size limits

# Nothing bounds what a POS sends: issue #14 saw a 1 MB note become 500,000 printed rows and
# 750 ms of rendering on the event loop, while every other station's tickets waited. So each
# text is cut to these limits *before* it is sanitized or wrapped, and a ticket stops taking
# items once its rows or its text budget run out: rendering costs what the limits allow,
# whatever arrives (a few milliseconds at worst, see render_ticket). A cut never passes
# unseen: a shortened text ends in CUT_MARK, and whatever is left out entirely (the rest of a
# note, modifiers, items) is replaced by an inverted row saying how much is missing and to
# read it on the POS; a ticket missing items also says so in a banner at its top.

MAX_NAME_CHARS = 120
"""A product name. Menus stay well under 60 characters; 120 is never a real name cut short."""

MAX_MODIFIER_CHARS = 80
"""One modifier ("Extra pedas", "No ice, less sugar"): a short phrase, at most 3 rows."""

MAX_MODIFIERS = 20
"""Modifiers printed per item: more than one plate ever carries. The rest are counted."""

MAX_NOTE_CHARS = 500
"""One item's note: a paragraph of instructions (about 20 rows at 32 columns)."""

MAX_FIELD_CHARS = 60
"""Each header text: station, bill number, table, customer, bill and ticket type, and the
template's header line. Real ones are a few words; these print in double size."""

MAX_ITEM_LINES = 60
"""Rows one item may take (name, modifiers, note, their warnings): a full note and a dozen
modifiers fit at 32 columns. Newline floods and absurd quantities stop here."""

MAX_ITEMS = 200
"""Items on one ticket. The largest real order we know, the 120-item banquet of issue #14
(modifiers and notes on every item), prints whole at 32 columns and wider."""

MAX_TICKET_LINES = 640
"""Printed rows on one ticket, everything included (the cut's paper feed is not a row), about
2.5 m of paper: the banquet takes 610 at 32 columns."""

MAX_TICKET_CHARS = 8_000
"""Characters of item text (names, modifiers, notes, checker stations, each counted up to its
limit) one ticket may bring: what rendering time grows with, whatever they print as (text
that sanitizes to nothing prints no rows). The banquet brings 7,860."""

MAX_NUMBER_CHARS = 20
"""Quantities, ticket numbers, attempts: a bigint and its sign. Longer ones come from no
database; they are cut like text."""

CUT_MARK = "..."
"""Ends a name, modifier, note or header text that was shortened, as a word of its own (so no
row break splits it), and a number cut short. ASCII: every code page prints it."""

_VISIBLE = re.compile(r"\S")
_BLANK_TAIL = 256  # trailing whitespace past a limit that does not count as a cut


def _head(text: str, limit: int) -> tuple[str, int]:
    """``text`` cut to ``limit`` characters, and how many were cut off (0 when all of those
    are a little trailing whitespace, as text fields often carry)."""
    if len(text) <= limit:
        return text, 0
    if len(text) <= limit + _BLANK_TAIL and _VISIBLE.search(text, limit) is None:
        return text[:limit], 0
    return text[:limit], len(text) - limit


def _number(value: int) -> str:
    """``value`` in digits, cut like a text past MAX_NUMBER_CHARS (a huge one is not even
    written out: that alone would take a while)."""
    if abs(value) >= 10**MAX_NUMBER_CHARS:
        return REPLACEMENT + CUT_MARK
    text = str(value)
    return text if len(text) <= MAX_NUMBER_CHARS else text[:MAX_NUMBER_CHARS] + CUT_MARK


def clip_text(text: str, limit: int, codepage: str = "CP437") -> str:
    """``text`` sanitized (:func:`sanitize_text`) to at most ``limit`` characters, followed by
    a space and CUT_MARK when anything was cut. Sanitizing sees at most ``limit`` characters."""
    head, cut = _head(text, limit)
    clean = sanitize_text(head, codepage)
    if len(clean) > limit:  # compatibility forms grew it ("EUR" for the euro sign, ligatures)
        clean, cut = clean[:limit].rstrip(), len(clean) - limit
    if not cut:
        return clean
    return f"{clean} {CUT_MARK}" if clean else CUT_MARK


def clip_paragraphs(text: str, limit: int, codepage: str = "CP437") -> tuple[list[str], int]:
    """A note's paragraphs (:func:`_sanitize_paragraphs`) holding at most ``limit`` characters
    in all, and how many characters were left out (0: none). When some were, the last paragraph
    ends in a space and CUT_MARK (a note with nothing left to print becomes just CUT_MARK)."""
    head, cut = _head(text, limit)
    paragraphs = _sanitize_paragraphs(head, codepage)
    room = limit
    for i, paragraph in enumerate(paragraphs):
        if len(paragraph) > room:  # compatibility forms grew the note past the limit
            cut += len(paragraph) - room + sum(len(p) for p in paragraphs[i + 1 :])
            paragraphs[i:] = [paragraph[:room].rstrip()]
            break
        room -= len(paragraph)
    if cut:
        paragraphs = [p for p in paragraphs if p]
        if paragraphs:
            paragraphs[-1] += " " + CUT_MARK
        else:
            paragraphs = [CUT_MARK]
    return paragraphs, cut


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


def _wrap_phrases(text: str, width: int) -> list[str]:
    """Like :func:`wrap`, breaking first after a colon: "3 MORE MODIFIERS NOT PRINTED:" and
    "SEE POS" stay whole when they fit."""
    what, colon, where = text.partition(": ")
    if len(text) <= width or not colon:
        return wrap(text, width)
    return wrap(what + ":", width) + wrap(where, width)


def _two_columns(left: str, right: str, width: int) -> list[str]:
    if len(left) + 1 + len(right) <= width:
        return [left + " " * (width - len(left) - len(right)) + right]
    return wrap(left, width) + [r.rjust(width) for r in wrap(right, width)]


_BILL_TYPE_LABELS = {"dine_in": "Dine-in", "takeaway": "Takeaway", "delivery": "Delivery"}


def _key(text: str) -> str:
    """A type or station code as compared: trimmed, lower case, and long enough to tell that a
    text was longer than MAX_FIELD_CHARS (for :func:`clip_text`) without reading it all."""
    return text[: MAX_FIELD_CHARS + 1].strip().lower()


def _bill_type_label(bill_type: str, codepage: str) -> str:
    label = _BILL_TYPE_LABELS.get(_key(bill_type))
    if label is not None:
        return label
    # Long enough for clip_text to see that it was cut, never the whole of a huge text.
    head = bill_type[: MAX_FIELD_CHARS + _BLANK_TAIL + 1]
    return clip_text(head.replace("_", " "), MAX_FIELD_CHARS, codepage).capitalize()


@dataclass(frozen=True)
class Banner:
    """A full-width inverted warning: big ``title`` and a normal-size explanation."""

    title: str
    detail: str


def banners_for(ticket: TicketDocument, codepage: str = "CP437") -> list[Banner]:
    """The warnings a ticket carries, most important first.

    :func:`render_ticket` adds one more, INCOMPLETE, when items had to be left out.
    """
    result: list[Banner] = []
    kind = _key(ticket.ticket_type)
    if kind == "void":
        result.append(Banner("VOID", "CANCEL THESE ITEMS"))
    elif kind == "addition":
        result.append(Banner("ADDITION", "ADD TO AN ORDER ALREADY SENT"))
    elif kind not in TICKET_TYPES:
        # An unknown type is shown rather than silently printed as a plain order.
        title = clip_text(kind, MAX_FIELD_CHARS, codepage).upper() or REPLACEMENT
        result.append(Banner(title, "TICKET TYPE"))
    if ticket.is_reprint:
        original = (
            f"COPY OF TICKET #{_number(ticket.original_ticket_id)}"
            if ticket.original_ticket_id is not None
            else "COPY OF AN EARLIER TICKET"
        )
        result.append(Banner("REPRINT", original))
    if ticket.is_retry:
        attempt = _number(ticket.attempt)
        result.append(Banner("RETRY", f"ATTEMPT {attempt} - MAY BE A DUPLICATE"))
    return result


# What the paper says where something is missing. Each ends in "SEE POS", after a colon so
# that a row too narrow for the whole breaks there.


def _counted(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}S"


def items_left_out_banner(count: int) -> Banner:
    """The banner at the top of a ticket that could not print ``count`` of its items."""
    return Banner("INCOMPLETE", f"{_counted(count, 'ITEM')} NOT PRINTED: SEE POS")


def items_left_out_warning(count: int) -> str:
    """The row after the last item printed, when ``count`` more could not be."""
    return f"{_counted(count, 'MORE ITEM')} NOT PRINTED: SEE POS"


def modifiers_left_out_warning(count: int) -> str:
    """The row after an item's modifiers, when ``count`` more could not be printed."""
    return f"{_counted(count, 'MORE MODIFIER')} NOT PRINTED: SEE POS"


def note_cut_warning(count: int) -> str:
    """The row after a note of which ``count`` characters could not be printed."""
    return f"NOTE CUT - {_counted(count, 'MORE CHARACTER')}: SEE POS"


ITEM_CUT_WARNING = "REST OF THIS ITEM NOT PRINTED: SEE POS"
"""The last row of an item that would take more than MAX_ITEM_LINES rows."""


# --------------------------------------------------------------------------- rendering


_Style = tuple[bool, bool, bool, bool, Align]
_PLAIN: _Style = (False, False, False, False, "left")  # the state after ESC @


class _Rows:
    """Sanitized, pre-wrapped rows and their styles, in print order: a part of a ticket.

    Laid out before anything is printed, so a ticket's rows can be counted (and items left
    out) before the banners at its top are chosen.
    """

    def __init__(self) -> None:
        self.blocks: list[tuple[_Style, list[str]]] = []
        self.count = 0

    def add(
        self,
        lines: Iterable[str],
        *,
        big: bool = False,
        tall: bool = False,
        bold: bool = False,
        invert: bool = False,
        align: Align = "left",
    ) -> None:
        rows = list(lines)
        self.blocks.append(((big, tall, bold, invert, align), rows))
        self.count += len(rows)

    def warning(self, text: str, width: int) -> None:
        """Something is missing from the ticket: a centred inverted row, like a banner's."""
        rows = (row.center(width) for row in _wrap_phrases(text, width))
        self.add(rows, bold=True, invert=True)

    def extend(self, other: _Rows) -> None:
        self.blocks += other.blocks
        self.count += other.count

    def truncate(self, blocks: int, count: int) -> None:
        """Back to the state when it held ``blocks`` blocks and ``count`` rows."""
        del self.blocks[blocks:]
        self.count = count

    def first(self, count: int) -> _Rows:
        """A copy holding only the first ``count`` rows."""
        head = _Rows()
        for style, rows in self.blocks:
            if head.count >= count:
                break
            kept = rows[: count - head.count]
            head.blocks.append((style, kept))
            head.count += len(kept)
        return head


class _TicketWriter:
    """Emits rows through python-escpos, sending styles on change."""

    def __init__(self, codepage: str) -> None:
        # One shared encoder: python-escpos would otherwise rebuild its code page tables for
        # every ticket, which was a third of the daemon's CPU in a burst.
        self.printer = Dummy(magic_encode_args={"encoder": _ENCODER})
        self.printer.hw("INIT")
        self.printer.charcode(codepage)
        self._style = _PLAIN

    def write(self, rows: _Rows) -> None:
        for style, lines in rows.blocks:
            if style != self._style:
                big, tall, bold, invert, align = style
                self.printer.set(
                    align=align,
                    bold=bold,
                    invert=invert,
                    normal_textsize=not (big or tall),
                    double_width=big,
                    double_height=big or tall,
                )
                self._style = style
            if lines:
                # One write per block: the bytes are those of a textln per row.
                self.printer.text("".join(f"{line}\n" for line in lines))


def _banner_rows(banners: Iterable[Banner], width: int) -> _Rows:
    rows = _Rows()
    big = width // 2
    for banner in banners:
        title = (row.center(big) for row in wrap(banner.title, big))
        rows.add(title, big=True, bold=True, invert=True)
        detail = (row.center(width) for row in _wrap_phrases(banner.detail, width))
        rows.add(detail, bold=True, invert=True)
        rows.add([""])
    return rows


def _item_rows(line: TicketLine, layout: PrintLayout, codepage: str) -> _Rows:
    """One item, at most MAX_ITEM_LINES rows; its texts are cut before they are sanitized."""
    rows = _Rows()
    width = layout.chars_per_line
    prefix = ("VOID " if line.is_void else "") + f"{_number(line.quantity)}x "
    text = prefix + clip_text(line.name, MAX_NAME_CHARS, codepage)
    if layout.large_item_font:
        rows.add(wrap(text, width // 2, len(prefix)), big=True, bold=True)
    else:
        rows.add(wrap(text, width, len(prefix)), bold=True)
    # Laid out only until the item is known to be too long: it is cut to MAX_ITEM_LINES anyway.
    modifiers: list[str] = []
    for modifier in line.modifiers[:MAX_MODIFIERS]:
        if rows.count + len(modifiers) > MAX_ITEM_LINES:
            break
        clipped = clip_text(modifier, MAX_MODIFIER_CHARS, codepage)
        if clipped:
            modifiers += wrap("  + " + clipped, width, indent=4)
    rows.add(modifiers)
    if len(line.modifiers) > MAX_MODIFIERS:
        rows.warning(modifiers_left_out_warning(len(line.modifiers) - MAX_MODIFIERS), width)
    if rows.count <= MAX_ITEM_LINES:
        notes, cut = clip_paragraphs(line.notes, MAX_NOTE_CHARS, codepage)
        if notes:
            rows.add(
                (row for n in notes for row in wrap("  NOTE: " + n, width, indent=8)), bold=True
            )
        if cut:
            rows.warning(note_cut_warning(cut), width)
    if rows.count > MAX_ITEM_LINES:
        end = _Rows()
        end.warning(ITEM_CUT_WARNING, width)
        rows = rows.first(MAX_ITEM_LINES - end.count)
        rows.extend(end)
    return rows


def _text_cost(line: TicketLine) -> int:
    """The characters :func:`_item_rows` may sanitize for ``line``: known before it runs."""
    return (
        min(len(line.name), MAX_NAME_CHARS)
        + sum(min(len(m), MAX_MODIFIER_CHARS) for m in line.modifiers[:MAX_MODIFIERS])
        + min(len(line.notes), MAX_NOTE_CHARS)
    )


def _station_rows(station: str, width: int, codepage: str) -> _Rows:
    """The header of a checker ticket's group of items."""
    rows = _Rows()
    name = clip_text(station, MAX_FIELD_CHARS, codepage).upper() or "NO STATION"
    rows.add((f" {row} ".center(width, "=") for row in wrap(name, width - 4)), bold=True)
    return rows


def _in_print_order(ticket: TicketDocument) -> Iterable[tuple[str | None, TicketLine]]:
    """The first MAX_ITEMS items as printed, each with the station whose group it opens.

    Checker tickets group items by station, in order of first appearance.
    """
    lines = ticket.lines[:MAX_ITEMS]
    if _key(ticket.ticket_type) != "checker":
        return ((None, line) for line in lines)
    groups: dict[str, list[TicketLine]] = {}
    for line in lines:
        groups.setdefault(_key(line.station), []).append(line)
    return (
        (station if i == 0 else None, line)
        for station, group in groups.items()
        for i, line in enumerate(group)
    )


def _body(
    ticket: TicketDocument, layout: PrintLayout, codepage: str, room: int
) -> tuple[_Rows, int]:
    """The items that fit in ``room`` rows, MAX_ITEMS and MAX_TICKET_CHARS, and how many
    were left out.

    Items print whole or not at all, in order; once one is left out, so is every later one.
    An item over MAX_TICKET_CHARS is left out before it is laid out; one over ``room`` after.
    """
    width = layout.chars_per_line
    body = _Rows()
    ends: list[tuple[int, int]] = [(0, 0)]  # (blocks, rows) after each item printed
    chars = 0
    for station, line in _in_print_order(ticket):
        chars += _text_cost(line) + (len(station) if station is not None else 0)
        if chars > MAX_TICKET_CHARS:
            break
        item = _item_rows(line, layout, codepage)
        if station is not None:
            opened = _station_rows(station, width, codepage)
            opened.extend(item)
            item = opened
        if body.count + item.count > room:
            break
        body.extend(item)
        ends.append((len(body.blocks), body.count))
    total = len(ticket.lines)
    if len(ends) - 1 == total:
        return body, 0
    # Something is left out: keep as many items as fit with the rows that say so.
    for shown in range(len(ends) - 1, -1, -1):
        left_out = total - shown
        warning = _Rows()
        warning.warning(items_left_out_warning(left_out), width)
        banner = _banner_rows([items_left_out_banner(left_out)], width)
        if ends[shown][1] + warning.count + banner.count <= room:
            body.truncate(*ends[shown])
            body.extend(warning)
            return body, left_out
    raise AssertionError("MAX_TICKET_LINES leaves no room to say items are missing")


def render_ticket(ticket: TicketDocument, layout: PrintLayout) -> bytes:
    """Render ``ticket`` to ESC/POS bytes: ``layout.copies`` identical copies, each cut.

    Whatever the ticket holds (see the size limits), a copy has at most MAX_TICKET_LINES rows,
    and rendering sanitizes and wraps at most MAX_TICKET_CHARS characters of items plus
    MAX_FIELD_CHARS for each of the seven header texts: a few milliseconds at most.
    """
    codepage = resolve_codepage(layout.codepage)
    width = layout.chars_per_line
    big = width // 2

    top = _Rows()
    if layout.header_line:
        header = clip_text(layout.header_line, MAX_FIELD_CHARS, codepage)
        if header:
            top.add(wrap(header, width), bold=True, align="center")
    banners = banners_for(ticket, codepage)

    head = _Rows()
    station = clip_text(ticket.station, MAX_FIELD_CHARS, codepage).upper() or REPLACEMENT
    head.add(wrap(station, big), big=True, bold=True, align="center")
    bill_number = clip_text(ticket.bill_number, MAX_FIELD_CHARS, codepage)
    queue_number = ticket.queue_number
    order_number = f"#{_number(queue_number)}" if queue_number is not None else bill_number
    head.add(wrap(order_number, big), big=True, bold=True, align="center")
    head.add(["-" * width])

    bill_type = _bill_type_label(ticket.bill_type, codepage)
    if ticket.table_number:
        table = clip_text(ticket.table_number, MAX_FIELD_CHARS, codepage)
        head.add(wrap(f"TABLE {table}", big, indent=6), big=True, bold=True)
    if bill_type != _BILL_TYPE_LABELS["dine_in"]:
        # Takeaway and delivery are packed, not plated: as prominent as a table number.
        head.add(wrap(bill_type.upper(), big), big=True, bold=True)
    if ticket.customer_name:
        customer = clip_text(ticket.customer_name, MAX_FIELD_CHARS, codepage)
        if customer:
            head.add(wrap(customer, width), tall=True, bold=True)
    sent = ticket.sent_at.astimezone(layout.timezone).strftime("%H:%M")
    head.add(_two_columns(bill_type, f"Sent {sent}", width))
    if ticket.queue_number is not None:
        head.add(wrap(f"Bill {bill_number}", width, indent=5))
    head.add(["-" * width])

    foot = _Rows()
    foot.add(["-" * width])
    # Every item the ticket holds, printed or not: the count to check the paper against.
    item_count = sum(line.quantity for line in ticket.lines)
    items = f"{_number(item_count)} {'item' if item_count == 1 else 'items'}"
    foot.add(_two_columns(f"Ticket #{_number(ticket.ticket_id)}", items, width))
    if ticket.is_reprint and ticket.original_ticket_id is not None:
        foot.add(wrap(f"Reprint of ticket #{_number(ticket.original_ticket_id)}", width))
    if ticket.is_retry:
        foot.add(wrap(f"Retry, attempt {_number(ticket.attempt)}", width))

    fixed = top.count + _banner_rows(banners, width).count + head.count + foot.count
    body, left_out = _body(ticket, layout, codepage, MAX_TICKET_LINES - fixed)
    if left_out:
        banners.append(items_left_out_banner(left_out))

    w = _TicketWriter(codepage)
    for part in (top, _banner_rows(banners, width), head, body, foot):
        w.write(part)
    if layout.buzzer:
        w.printer.buzzer(times=2, duration=4)
    w.printer.cut(mode="FULL" if layout.cut == "full" else "PART")
    one_copy: bytes = w.printer.output
    return one_copy * layout.copies
