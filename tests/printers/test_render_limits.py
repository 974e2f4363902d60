"""Ticket size limits (issue #14): whatever a POS sends, a ticket takes bounded work and paper,
and every cut shows on the paper.

No test here times anything: the work is bounded by counting what rendering sanitizes (all text
goes through sanitize_text before it is wrapped), and the paper by counting printed rows.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprintd import render
from kprintd.emulator.escpos_decode import DecodedJob, decode_jobs
from kprintd.render import (
    CUT_MARK,
    ITEM_CUT_WARNING,
    MAX_FIELD_CHARS,
    MAX_ITEM_LINES,
    MAX_ITEMS,
    MAX_MODIFIER_CHARS,
    MAX_MODIFIERS,
    MAX_NAME_CHARS,
    MAX_NOTE_CHARS,
    MAX_TICKET_CHARS,
    MAX_TICKET_LINES,
    PrintLayout,
    TicketDocument,
    TicketLine,
    items_left_out_banner,
    items_left_out_warning,
    modifiers_left_out_warning,
    note_cut_warning,
    render_ticket,
    sanitize_text,
)
from tests.printers.ticket_samples import JAKARTA, NASI_GORENG, ORDER, SATE, SENT_AT

MEGABYTE = 1_000_000
SEE_POS = "SEE POS"
# Header texts sanitized once per ticket, each cut to MAX_FIELD_CHARS first: the template's
# header line, station, bill number, table, customer, bill type and ticket type.
HEADER_TEXTS = 7


def layout(width: int = 32, **overrides: object) -> PrintLayout:
    fields: dict[str, object] = {
        "chars_per_line": width,
        "timezone": JAKARTA,
        "header_line": "Warung Bu Sri - Kemang",
        **overrides,
    }
    return PrintLayout(**fields)  # type: ignore[arg-type]


def decode_one(data: bytes) -> DecodedJob:
    jobs, rest = decode_jobs(data)
    assert rest is None, "bytes after the last cut"
    assert len(jobs) == 1
    return jobs[0]


def printed_rows(job: DecodedJob) -> int:
    """Rows of print: one line feed each (the paper fed before the cut is ESC d, not a row)."""
    return sum(1 for command in job.commands if command.name == "LF")


def flat(job: DecodedJob) -> str:
    """The paper's words in order, rows joined: a warning wrapped over rows reads whole."""
    return " ".join(job.text.split())


def big_inverted(job: DecodedJob) -> list[str]:
    return [
        line.text.strip()
        for line in job.lines
        if line.glyphs and line.glyphs[0].style.inverted and line.glyphs[0].style.width == 2
    ]


def ticket_with(*lines: TicketLine, **fields: object) -> TicketDocument:
    return replace(ORDER, lines=lines, **fields)  # type: ignore[arg-type]


@contextmanager
def sanitized_chars() -> Iterator[list[int]]:
    """Counts the characters rendering hands to sanitize_text (the first thing done to any
    text, before wrapping): the measure of its work that does not depend on the machine."""
    seen = [0]
    original = render.sanitize_text

    def counting(text: str, codepage: str = "CP437") -> str:
        seen[0] += len(text)
        return original(text, codepage)

    with mock.patch.object(render, "sanitize_text", counting):
        yield seen


# --------------------------------------------------------------------------- issue #14 cases


NOTE = ("Alergi kacang! Jangan pakai minyak kacang. " * 25_000)[:MEGABYTE]


@pytest.mark.parametrize("width", (32, 48))
def test_a_1mb_note_prints_its_first_500_characters_and_says_how_much_is_cut(width: int) -> None:
    note = NOTE
    ticket = ticket_with(TicketLine(1, "Nasi Goreng", (), note))
    with sanitized_chars() as work:
        job = decode_one(render_ticket(ticket, layout(width)))
    assert work[0] <= MAX_NOTE_CHARS + 11 + HEADER_TEXTS * MAX_FIELD_CHARS
    assert printed_rows(job) <= 20 + MAX_ITEM_LINES
    text = flat(job)
    assert note_cut_warning(MEGABYTE - MAX_NOTE_CHARS) in text
    assert "NOTE CUT - 999500 MORE CHARACTERS: SEE POS" in text  # the wording, once spelled out
    printed_note = text[text.index("NOTE: ") + 6 : text.index(" NOTE CUT")]
    assert printed_note == " ".join(note[:MAX_NOTE_CHARS].split()) + " " + CUT_MARK
    assert "INCOMPLETE" not in text, "the item itself is on the paper"


def test_a_1mb_note_on_the_narrowest_paper_fills_the_item_rows_and_says_so() -> None:
    # 500 characters at 8 columns a row take more than MAX_ITEM_LINES rows.
    job = decode_one(render_ticket(ticket_with(TicketLine(1, "Nasi", (), NOTE), SATE), layout(16)))
    rows = [line.text for line in job.lines]
    start = rows.index("1x Nasi")
    assert rows[start + MAX_ITEM_LINES].startswith("1x Sate")
    assert ITEM_CUT_WARNING in flat(job)


@pytest.mark.parametrize(("width", "large_font"), [(32, True), (42, True), (48, False)])
def test_a_5000_item_ticket_prints_its_first_items_and_says_how_many_are_missing(
    width: int, large_font: bool
) -> None:
    lines = tuple(
        TicketLine(1, f"Menu {i:04d}", ("Extra pedas",) * (i % 3), "Tanpa MSG" * (i % 2))
        for i in range(5000)
    )
    with sanitized_chars() as work:
        data = render_ticket(ticket_with(*lines), layout(width, large_item_font=large_font))
    job = decode_one(data)
    assert work[0] <= MAX_TICKET_CHARS + HEADER_TEXTS * MAX_FIELD_CHARS
    assert printed_rows(job) <= MAX_TICKET_LINES
    text = flat(job)
    shown = [i for i in range(5000) if f"Menu {i:04d}" in text]
    assert shown == list(range(len(shown))), "the first items, in order"
    assert 0 < len(shown) <= MAX_ITEMS
    left_out = 5000 - len(shown)
    # Before anything else, where the cook starts reading ...
    assert big_inverted(job)[0] == "INCOMPLETE"
    assert job.lines[1].text.strip() == "INCOMPLETE"
    assert items_left_out_banner(left_out).detail in text
    # ... and again where the items stop, right before the footer.
    assert f"Menu {len(shown) - 1:04d}" in text.split(items_left_out_warning(left_out))[0]
    assert text.endswith(
        items_left_out_warning(left_out) + f" {'-' * width} Ticket #1042 5000 items"
    )


@pytest.mark.parametrize("width", (32, 42, 48))
@pytest.mark.parametrize("large_font", (True, False))
def test_the_banquet_of_issue_14_still_prints_whole(width: int, large_font: bool) -> None:
    banquet = ticket_with(*((NASI_GORENG, SATE)[i % 2] for i in range(120)))
    job = decode_one(render_ticket(banquet, layout(width, large_item_font=large_font)))
    items = [line.text for line in job.lines if line.text.startswith(("2x Nasi", "1x Sate"))]
    assert len(items) == 120
    assert SEE_POS not in job.text
    assert printed_rows(job) <= MAX_TICKET_LINES


# --------------------------------------------------------------------------- each limit


def test_long_names_modifiers_and_header_texts_end_in_the_cut_mark() -> None:
    long = "Nasi Goreng Spesial " * 100
    ticket = ticket_with(
        TicketLine(2, long, ("Extra pedas " * 20,)),
        station="kitchen " * 50,
        bill_number="B-2024 " * 100,
        table_number="12 " * 100,
        customer_name="Budi " * 100,
        bill_type="catering_" * 50,
        ticket_type="banquet " * 50,
        queue_number=None,
    )
    job = decode_one(render_ticket(ticket, layout(48, header_line="Warung " * 100)))
    text = flat(job)
    name = " ".join(long[:MAX_NAME_CHARS].split())
    assert f"2x {name} {CUT_MARK}" in text
    modifier = " ".join(("Extra pedas " * 20)[:MAX_MODIFIER_CHARS].split())
    assert f"+ {modifier} {CUT_MARK}" in text
    for label, header in [
        ("", "Warung " * 100),
        ("", ("kitchen " * 50).upper()),
        ("", "B-2024 " * 100),
        ("TABLE ", "12 " * 100),
        ("", "Budi " * 100),
        ("", ("catering " * 50).upper()),
        ("", ("banquet " * 50).upper()),
    ]:
        shown = label + " ".join(header[:MAX_FIELD_CHARS].split())
        assert f"{shown} {CUT_MARK}" in text, header[:20]
    assert printed_rows(job) < 60


@pytest.mark.parametrize(
    ("count", "warning"), [(21, "1 MORE MODIFIER NOT"), (25, "5 MORE MODIFIERS NOT")]
)
def test_modifiers_past_the_limit_are_counted(count: int, warning: str) -> None:
    modifiers = tuple(f"Topping {i}" for i in range(count))
    job = decode_one(render_ticket(ticket_with(TicketLine(1, "Es Campur", modifiers)), layout()))
    rows = [line.text for line in job.lines]
    printed = [row for row in rows if row.startswith("  + ")]
    assert printed == [f"  + Topping {i}" for i in range(MAX_MODIFIERS)]
    assert modifiers_left_out_warning(count - MAX_MODIFIERS) in flat(job)
    assert flat(job).count(warning) == 1


@pytest.mark.parametrize("width", (16, 32))
def test_an_item_longer_than_max_item_lines_is_cut_and_the_next_item_still_prints(
    width: int,
) -> None:
    flood = TicketLine(1, "Nasi", (), "pedas\n" * 80)  # 80 paragraphs within 500 characters
    job = decode_one(render_ticket(ticket_with(flood, SATE), layout(width)))
    rows = [line.text for line in job.lines]
    start = next(i for i, row in enumerate(rows) if row.startswith("1x Nasi"))
    end = next(i for i, row in enumerate(rows) if row.startswith("1x Sate"))
    assert end - start == MAX_ITEM_LINES
    assert ITEM_CUT_WARNING in flat(job)
    assert "INCOMPLETE" not in flat(job)


def test_a_little_trailing_whitespace_past_a_limit_is_not_a_cut() -> None:
    line = TicketLine(1, "Nasi" + " " * 200, ("Pedas" + "\t" * 100,), "x " * 250 + "\n \n")
    ticket = ticket_with(line, customer_name="Budi" + " " * 200)
    job = decode_one(render_ticket(ticket, layout()))
    assert CUT_MARK not in job.text
    assert SEE_POS not in job.text


def test_text_that_grows_when_sanitized_is_cut_too() -> None:
    # The euro sign becomes "EUR" in CP437: within the limits as sent, over them printed.
    line = TicketLine(1, "€ " * (MAX_NAME_CHARS // 2), (), "€" * MAX_NOTE_CHARS)
    text = flat(decode_one(render_ticket(ticket_with(line), layout(48))))
    assert "1x " + ("EUR " * MAX_NAME_CHARS)[:MAX_NAME_CHARS].rstrip() + " " + CUT_MARK in text
    assert note_cut_warning(2 * MAX_NOTE_CHARS) in text


def test_numbers_no_database_holds_are_cut_like_text() -> None:
    ticket = ticket_with(
        TicketLine(10**30, "Kopi"),
        TicketLine(-99999999999999999999, "Teh"),
        ticket_id=10**4000,
        queue_number=12345678901234567890,
        is_retry=True,
        attempt=-(10**25),
    )
    job = decode_one(render_ticket(ticket, layout(48)))
    text = flat(job)
    assert f"?{CUT_MARK}x Kopi" in text
    assert f"-9999999999999999999{CUT_MARK}x Teh" in text
    assert f"Ticket #?{CUT_MARK}" in text
    assert "#12345678901234567890 " in text  # a bigint prints whole
    assert f"ATTEMPT ?{CUT_MARK} - MAY BE A DUPLICATE" in text
    assert printed_rows(job) < 60


def test_checker_tickets_group_the_printed_items_and_cut_long_stations() -> None:
    lines = [TicketLine(1, f"Menu {i:04d}", station=("bar", "kitchen")[i % 2]) for i in range(400)]
    lines.append(TicketLine(1, "Sop", station="grill " * 100))
    ticket = ticket_with(*lines, ticket_type="checker", station="checker")
    text = flat(decode_one(render_ticket(ticket, layout())))
    assert text.index("= BAR =") < text.index("= KITCHEN =")
    assert "GRILL" not in text, "only the first MAX_ITEMS items are grouped"
    assert items_left_out_warning(401 - MAX_ITEMS) in text
    long_station = ticket_with(TicketLine(1, "Sop", station="grill " * 100), ticket_type="checker")
    text = flat(decode_one(render_ticket(long_station, layout(80))))
    assert f"= {'GRILL ' * 10}{CUT_MARK} =" in text


# --------------------------------------------------------------------------- any ticket at all

# No "@" (nor what NFKC makes "@" of): item tags are "@<index>@".
_ALPHABET = st.characters(exclude_categories=["Cs"], exclude_characters="@\uff20\ufe6b")
_piece = st.text(_ALPHABET, min_size=1, max_size=12)


def _long(limit: int) -> st.SearchStrategy[str]:
    """Texts around ``limit`` characters and far past it (up to 60,000: the 1 MB note has its
    own test)."""
    return st.one_of(
        st.text(_ALPHABET, max_size=limit + 5),
        st.builds(lambda piece, times: piece * times, _piece, st.integers(1, 3 * limit)),
        st.builds(lambda piece, times: piece * times, _piece, st.integers(1, 5_000)),
    )


_names = _long(MAX_NAME_CHARS)
_modifier_lists = st.one_of(
    st.lists(_long(MAX_MODIFIER_CHARS), max_size=4),
    st.builds(
        lambda modifiers, times: modifiers * times,
        st.lists(_long(MAX_MODIFIER_CHARS), max_size=3),
        st.integers(1, 40),
    ),
)
_lines = st.builds(
    TicketLine,
    quantity=st.integers(-5, 10**6) | st.integers(),
    name=_names,
    modifiers=_modifier_lists.map(tuple),
    notes=_long(MAX_NOTE_CHARS),
    station=st.sampled_from(["kitchen", "bar", "", " Dessert "]) | _long(MAX_FIELD_CHARS),
    is_void=st.booleans(),
)


@st.composite
def _big_tickets(draw: st.DrawFn) -> tuple[TicketDocument, PrintLayout]:
    distinct = draw(st.lists(_lines, max_size=4))
    times = draw(st.sampled_from([1, 1, 2, 50, 300, 3000]))
    lines = tuple(distinct * times)
    # Each item's name starts with its own tag: which items are on the paper can be read off.
    tagged = tuple(replace(line, name=f"@{i}@ {line.name}") for i, line in enumerate(lines))
    header = _long(MAX_FIELD_CHARS)
    ticket = TicketDocument(
        ticket_id=draw(st.integers(1, 10**12) | st.integers()),
        station=draw(header),
        ticket_type=draw(st.sampled_from(["order", "addition", "void", "checker"]) | header),
        bill_number=draw(header),
        sent_at=SENT_AT,
        lines=tagged,
        bill_type=draw(st.sampled_from(["dine_in", "takeaway"]) | header),
        table_number=draw(st.none() | header),
        queue_number=draw(st.none() | st.integers(0, 10**9) | st.integers()),
        customer_name=draw(st.none() | header),
        is_reprint=draw(st.booleans()),
        original_ticket_id=draw(st.none() | st.integers()),
        is_retry=draw(st.booleans()),
        attempt=draw(st.integers(1, 99) | st.integers()),
    )
    print_layout = PrintLayout(
        chars_per_line=draw(st.sampled_from([16, 24, 32, 42, 48, 80])),
        large_item_font=draw(st.booleans()),
        header_line=draw(st.none() | header),
        codepage=draw(st.sampled_from(["CP437", "CP858", "CP1252", "CP932"])),
        timezone=JAKARTA,
    )
    return ticket, print_layout


@functools.lru_cache(maxsize=256)
def _is_cut(text: str, limit: int, codepage: str, paragraphs: bool = False) -> bool:
    """More than ``limit`` characters to print: the paper must show that some are missing."""
    parts = text.splitlines() if paragraphs else [text]
    return sum(len(sanitize_text(part, codepage)) for part in parts) > limit


_ITEMS_LEFT_OUT = re.compile(r"\d+ (MORE )?ITEMS? NOT PRINTED")


@pytest.mark.slow
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_big_tickets())
def test_any_ticket_is_bounded_and_every_cut_is_marked(
    case: tuple[TicketDocument, PrintLayout],
) -> None:
    ticket, print_layout = case
    codepage = print_layout.codepage
    with sanitized_chars() as work:
        data = render_ticket(ticket, print_layout)
    job = decode_one(data)

    # Bounded by the limits, not the input: work, rows, columns.
    assert work[0] <= MAX_TICKET_CHARS + HEADER_TEXTS * MAX_FIELD_CHARS
    assert printed_rows(job) <= MAX_TICKET_LINES
    assert all(line.columns <= print_layout.chars_per_line for line in job.lines)

    # Items left out: counted at the top and where the items stop; never said otherwise.
    text = flat(job)
    squeezed = _squeeze(job.text)  # a tag hard-broken over two rows reads whole
    total = len(ticket.lines)
    shown = [i for i in range(total) if f"@{i}@" in squeezed]
    left_out = total - len(shown)
    if ticket.lines:
        assert shown, "at least one item always fits"
    if left_out:
        assert "INCOMPLETE" in "".join(big_inverted(job))
        assert items_left_out_banner(left_out).detail in text
        assert items_left_out_warning(left_out) in text
        if render._key(ticket.ticket_type) != "checker":
            assert shown == list(range(len(shown))), "the first items, in order"
    else:
        assert not _ITEMS_LEFT_OUT.search(text)
        if "INCOMPLETE" not in ticket.ticket_type.upper():  # hypothesis tries our own words
            assert "INCOMPLETE" not in "".join(big_inverted(job))

    # Each item on the paper shows what it lost (or that its rows ran out).
    positions = sorted((squeezed.index(f"@{i}@"), i) for i in shown)
    for n, (start, i) in enumerate(positions):
        end = positions[n + 1][0] if n + 1 < len(positions) else len(squeezed)
        segment = squeezed[start:end]
        line = ticket.lines[i]
        if _squeeze(ITEM_CUT_WARNING) in segment:
            continue
        if len(line.modifiers) > MAX_MODIFIERS:
            warning = modifiers_left_out_warning(len(line.modifiers) - MAX_MODIFIERS)
            assert _squeeze(warning) in segment
        if _is_cut(line.notes, MAX_NOTE_CHARS, codepage, paragraphs=True):
            assert "NOTECUT-" in segment
        tag, name = line.name.split(" ", 1)
        if _is_cut(name, MAX_NAME_CHARS - len(tag) - 1, codepage):
            assert CUT_MARK in segment
        if any(_is_cut(m, MAX_MODIFIER_CHARS, codepage) for m in line.modifiers[:MAX_MODIFIERS]):
            assert CUT_MARK in segment


def _squeeze(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.builds(
            TicketLine,
            quantity=st.integers(1, 99),
            name=st.text(_ALPHABET, max_size=40),
            modifiers=st.lists(st.text(_ALPHABET, max_size=30), max_size=4).map(tuple),
            notes=st.text(_ALPHABET, max_size=80),
        ),
        max_size=20,
    ),
    width=st.sampled_from([32, 42, 48]),
)
def test_a_ticket_within_the_limits_carries_no_warning(lines: list[TicketLine], width: int) -> None:
    job = decode_one(render_ticket(ticket_with(*lines), layout(width)))
    assert SEE_POS not in job.text
    assert "INCOMPLETE" not in big_inverted(job)


# --------------------------------------------------------------------------- sanitizing fast


def _full_rule(char: str, codepage: str) -> str:
    """sanitize_text's rule for one character, every step tried (no shortcut for characters
    without a decomposition, nor for Hangul syllables)."""
    category = unicodedata.category(char)
    if char in "\t\n\r\v\f\x85" or category in ("Zs", "Zl", "Zp"):
        return " "
    if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return ""
    printable = render._printable_chars(codepage)
    if char in printable:
        return char
    if category.startswith("M"):
        return ""
    return render._equivalent(char, printable)


_CODEPAGES = ("CP437", "CP858", "CP852", "CP1252", "CP1258", "CP932", "CP866", "ISO_8859-7")


@settings(max_examples=2000, deadline=None)
@given(char=st.characters(exclude_categories=["Cs"]), codepage=st.sampled_from(_CODEPAGES))
def test_the_sanitizing_table_follows_the_full_rule(char: str, codepage: str) -> None:
    # Checked once by hand for every code point and every code page python-escpos can print.
    table = render._SanitizeTable(codepage)
    assert table[ord(char)] == _full_rule(char, codepage)


@pytest.mark.parametrize(
    "char",
    [
        "가",
        "힣",
        "é",
        "ﬁ",
        "①",
        "\U0001d400",
        "€",
        "\u2019",
        "炒",
        "\U0001f336",
        "\u0301",
        "\u200d",
    ],
)
def test_the_sanitizing_table_follows_the_full_rule_for_each_kind_of_character(char: str) -> None:
    for codepage in _CODEPAGES:
        assert render._SanitizeTable(codepage)[ord(char)] == _full_rule(char, codepage)


def test_the_sanitizing_table_stays_bounded() -> None:
    table = render._SanitizeTable("CP437")
    text = "".join(map(chr, range(0x4E00, 0xA000)))  # CJK: more than the table holds
    assert len(text) > render._SANITIZE_TABLE_SIZE
    assert text.translate(table) == "?" * len(text)
    assert len(table) <= render._SANITIZE_TABLE_SIZE
