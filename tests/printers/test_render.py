"""Ticket rendering: golden tickets read back through the emulator, layout rules, text safety."""

from __future__ import annotations

import os
import socket
import string
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from escpos.magicencode import Encoder
from escpos.printer import Dummy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kprintd.emulator import EmulatedPrinter
from kprintd.emulator.escpos_decode import Command, DecodedJob, decode_jobs
from kprintd.render import (
    _ENCODER,
    _PROFILE_CODEPAGES,
    PrintLayout,
    TicketDocument,
    TicketLine,
    render_ticket,
    resolve_codepage,
    sanitize_text,
    supported_codepages,
    wrap,
)
from tests.printers.ticket_samples import JAKARTA, ORDER, SAMPLES, SENT_AT

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("KPRINTD_UPDATE_GOLDEN") == "1"
WIDTHS = (32, 48)


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


# --------------------------------------------------------------------------- golden tickets


@pytest.fixture(scope="module")
def printers() -> Iterator[dict[int, EmulatedPrinter]]:
    started = {w: EmulatedPrinter(f"golden{w}", chars_per_line=w) for w in WIDTHS}
    for p in started.values():
        p.start()
    yield started
    for p in started.values():
        p.stop()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_golden_ticket(printers: dict[int, EmulatedPrinter], kind: str, width: int) -> None:
    printer = printers[width]
    printer.clear()
    data = render_ticket(SAMPLES[kind], layout(width, buzzer=kind == "void"))
    with socket.create_connection(printer.address, timeout=5) as sock:
        sock.sendall(data)
    (ticket,) = printer.wait_for_tickets(1, timeout=5)
    assert ticket.raw == data
    golden = GOLDEN_DIR / f"{kind}-{width}.txt"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(ticket.text, encoding="utf-8")
    assert ticket.text == golden.read_text(encoding="utf-8"), (
        f"{golden.name} differs; rerun with KPRINTD_UPDATE_GOLDEN=1 if the change is intended"
    )


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("width", (32, 42, 48))
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_no_line_exceeds_the_paper(kind: str, width: int) -> None:
    job = decode_one(render_ticket(SAMPLES[kind], layout(width)))
    assert job.lines
    assert max(line.columns for line in job.lines) <= width


def test_header_shows_station_number_table_type_and_local_time() -> None:
    job = decode_one(render_ticket(ORDER, layout(32)))
    big = [
        line.text.strip() for line in job.lines if line.glyphs and line.glyphs[0].style.width == 2
    ]
    assert big[:3] == ["KITCHEN", "#42", "TABLE 12"]
    text = job.text
    assert "Dine-in" in text
    assert "Sent 12:34" in text  # 05:34 UTC in Jakarta
    assert "Bill B-2024-0042" in text
    assert "Ticket #1042" in text
    assert "3 items" in text


def test_time_follows_the_layout_timezone() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert "Sent 14:34" in decode_one(render_ticket(ORDER, layout(timezone=tokyo))).text


def test_bill_number_is_the_big_number_without_a_queue_number() -> None:
    ticket = TicketDocument(1, "bar", "order", "T-77", SENT_AT, (TicketLine(1, "Kopi"),))
    job = decode_one(render_ticket(ticket, layout()))
    big = [
        line.text.strip() for line in job.lines if line.glyphs and line.glyphs[0].style.width == 2
    ]
    assert big[:2] == ["BAR", "T-77"]


def test_items_are_double_size_unless_disabled() -> None:
    def item_line(job: DecodedJob) -> tuple[int, int, bool]:
        line = next(x for x in job.lines if x.text.startswith("2x Nasi"))
        style = line.glyphs[0].style
        return style.width, style.height, style.bold

    assert item_line(decode_one(render_ticket(ORDER, layout()))) == (2, 2, True)
    plain = decode_one(render_ticket(ORDER, layout(large_item_font=False)))
    assert item_line(plain) == (1, 1, True)


def test_modifiers_and_notes_are_indented_and_wrapped() -> None:
    lines = [line.text for line in decode_one(render_ticket(ORDER, layout(32))).lines]
    assert "  + Extra pedas" in lines
    note = lines.index("  NOTE: Alergi kacang! Jangan")
    assert lines[note + 1] == "        pakai minyak kacang"


def test_long_item_names_wrap_under_the_name_and_long_words_break() -> None:
    ticket = TicketDocument(
        1, "kitchen", "order", "B1", SENT_AT, (TicketLine(12, "Ayam " + "X" * 40),)
    )
    job = decode_one(render_ticket(ticket, layout(32)))
    item = [line.text for line in job.lines if line.glyphs and line.glyphs[0].style.width == 2][2:]
    assert item[0].startswith("12x Ayam X")
    assert all(len(row) <= 16 for row in item)
    assert all(row.startswith("    X") for row in item[1:])
    assert "".join(row.strip() for row in item) == "12x Ayam " + "X" * 40


@pytest.mark.parametrize(
    ("kind", "titles"),
    [
        ("order", []),
        ("addition", ["ADDITION"]),
        ("void", ["VOID"]),
        ("reprint", ["REPRINT"]),
        ("retry", ["RETRY"]),
        ("void-reprint-retry", ["VOID", "REPRINT", "RETRY"]),
    ],
)
def test_banners_are_inverted_double_size_and_full_width(kind: str, titles: list[str]) -> None:
    job = decode_one(render_ticket(SAMPLES[kind], layout(32)))
    banners = [line for line in job.lines if line.glyphs and line.glyphs[0].style.inverted]
    big = [b for b in banners if b.glyphs[0].style.width == 2]
    assert [b.text.strip() for b in big] == titles
    assert all(b.columns == 32 for b in banners)
    if banners:
        assert job.lines.index(banners[0]) <= 1, "banners come first, right under the header"


def test_banner_details_name_the_original_ticket_and_the_attempt() -> None:
    text = decode_one(render_ticket(SAMPLES["void-reprint-retry"], layout(48))).text
    assert "CANCEL THESE ITEMS" in text
    assert "COPY OF TICKET #1044" in text
    assert "ATTEMPT 3 - MAY BE A DUPLICATE" in text


def test_checker_groups_items_by_station_in_order_of_appearance() -> None:
    lines = [x.text for x in decode_one(render_ticket(SAMPLES["checker"], layout(32))).lines]
    headers = [i for i, t in enumerate(lines) if t.startswith("==") and t.endswith("==")]
    assert [lines[i].strip("= ") for i in headers] == ["KITCHEN", "BAR", "DESSERT"]
    kitchen = lines[headers[0] : headers[1]]
    assert any(t.startswith("2x Nasi") for t in kitchen)
    assert any(t.startswith("1x Sate") for t in kitchen)


@pytest.mark.parametrize("width", (32, 48))
def test_voided_items_are_marked_on_their_own_line(width: int) -> None:
    voided = TicketLine(
        1, "Sate Ayam (10 tusuk)", ("Bumbu kacang",), station="kitchen", is_void=True
    )
    checker = SAMPLES["checker"]
    ticket = TicketDocument(
        checker.ticket_id, "checker", "checker", "B1", SENT_AT, (*checker.lines, voided)
    )
    job = decode_one(render_ticket(ticket, layout(width)))
    items = [line.text for line in job.lines if line.glyphs and line.glyphs[0].style.width == 2]
    assert [row for row in items if row.startswith("VOID")] == [
        "VOID 1x Sate" if width == 32 else "VOID 1x Sate Ayam (10"
    ]
    assert not any(row.startswith("VOID") for row in items if "Nasi" in row)
    assert max(line.columns for line in job.lines) <= width


@pytest.mark.parametrize(("cut", "expected"), [("full", "full"), ("partial", "partial")])
def test_copies_repeat_the_ticket_each_with_its_cut(cut: str, expected: str) -> None:
    data = render_ticket(ORDER, layout(cut=cut, copies=3))
    jobs, rest = decode_jobs(data)
    assert rest is None
    assert [job.cut for job in jobs] == [expected] * 3
    assert len({job.raw for job in jobs}) == 1


def test_buzzer_only_when_the_layout_asks() -> None:
    def buzzers(job: DecodedJob) -> list[str]:
        return [c.name for c in job.commands if c.name in ("ESC B", "ESC (", "BEL")]

    assert buzzers(decode_one(render_ticket(ORDER, layout(buzzer=True)))) == ["ESC B"]
    assert buzzers(decode_one(render_ticket(ORDER, layout(buzzer=False)))) == []


def test_layout_rejects_settings_that_cannot_print_tidily() -> None:
    with pytest.raises(ValueError, match="chars_per_line"):
        PrintLayout(chars_per_line=8)
    with pytest.raises(ValueError, match="copies"):
        PrintLayout(copies=0)
    with pytest.raises(ValueError, match="cut"):
        PrintLayout(cut="half")
    with pytest.raises(ValueError, match="codepage"):
        PrintLayout(codepage="UTF-8")


# --------------------------------------------------------------------------- text safety


@pytest.mark.parametrize(
    ("alias", "name"),
    [("CP437", "CP437"), ("cp858", "CP858"), ("PC850", "CP850"), ("1252", "CP1252"),
     ("iso-8859-15", "ISO_8859-15"), ("windows-1250", "CP1250")],
)  # fmt: skip
def test_codepage_names_are_resolved(alias: str, name: str) -> None:
    assert resolve_codepage(alias) == name


@pytest.mark.parametrize(
    ("text", "codepage", "expected"),
    [
        ("Crème brûlée", "CP437", "Crème brûlée"),
        ("Cre\u0300me bru\u0302le\u0301e", "CP437", "Crème brûlée"),  # NFC composes
        ("Kopi Đặc biệt", "CP437", "Kopi ?ac biet"),
        ("Kopi Đặc biệt", "CP1258", "Kopi Đac biet"),
        ("Ayam 🌶️ pedas", "CP437", "Ayam ? pedas"),
        ("炒饭 fried rice", "CP437", "?? fried rice"),
        ("\uff46\uff55\uff4c\uff4c \ufb01sh\u2026", "CP437", "full fish..."),
        ("\u201cQuoted\u201d \u2013 10\u20ac", "CP437", '"Quoted" - 10EUR'),
        ("10€", "CP858", "10€"),
        ("ě", "CP852", "ě"),
        ("ě", "CP437", "e"),
        ("Soup\x1b@\x1dV\x00\x10\x04\x01\x7f\x9b done", "CP437", "Soup@V done"),
        ("multi\n\tline\u2028text\u200b!", "CP437", "multi line text!"),
    ],
)
def test_sanitize_text(text: str, codepage: str, expected: str) -> None:
    assert sanitize_text(text, codepage) == expected


def test_printer_commands_in_pos_text_are_inert() -> None:
    evil = "\x1b@\x1dV\x01\x10\x04\x01\x1bp\x00\x19\xfa\x1b!\x30"
    clean = TicketDocument(1, "kitchen", "order", "B1", SENT_AT, (TicketLine(1, "Soup"),))
    dirty = TicketDocument(
        1,
        "kitchen" + evil,
        "order",
        "B1" + evil,
        SENT_AT,
        (TicketLine(1, "Soup" + evil, (evil,), evil),),
        table_number=evil,
        customer_name=evil,
    )
    names = [c.name for c in decode_one(render_ticket(dirty, layout(header_line=evil))).commands]
    assert "DLE EOT" not in names and "ESC p" not in names
    assert names.count("ESC @") == 1 and names.count("GS V") == 1
    clean_names = [c.name for c in decode_one(render_ticket(clean, layout())).commands]
    assert set(names) == set(clean_names)


def test_wrap_never_exceeds_the_width() -> None:
    for width in (1, 2, 5, 16):
        for indent in (0, 3, 40):
            rows = wrap("a " + "b" * 50 + " cc-dd-ee ffff", width, indent)
            assert all(len(row) <= width for row in rows)
            assert "".join(rows).replace(" ", "") == ("a" + "b" * 50 + "cc-dd-eeffff")


@settings(max_examples=500, deadline=None)
@given(
    text=st.text(st.sampled_from([" ", "a", "b", "-", "\t", "\n", "é"]), max_size=40),
    width=st.integers(1, 48),
    indent=st.integers(0, 30),
)
def test_wrap_is_textwrap_with_a_shortcut(text: str, width: int, indent: int) -> None:
    reference = textwrap.wrap(
        text,
        width=width,
        subsequent_indent=" " * min(indent, width // 2),
        break_long_words=True,
        break_on_hyphens=True,
    )
    assert wrap(text, width, indent) == (reference or [""])


# --------------------------------------------------------------------------- property test

_CODEPAGE_NUMBERS: dict[str, str] = Dummy().profile.get_code_pages()
_ALLOWED_COMMANDS = {"ESC @", "ESC t", "ESC !", "ESC E", "ESC a", "GS B", "LF", "ESC d", "GS V"}
_nasty = st.sampled_from(
    ["\x1b", "\x1d", "\x10", "\x1c", "\x00", "\x04", "\x7f", "\x85", "\x9b", "\u200d",
     "\u202e", "\ufe0f", "\u0301", "\U0001f336", "\U0001f468\u200d\U0001f373", "炒饭",
     "ｶﾀｶﾅ", "é", "ß", "\t", "\n", "\r\n", "V", "@", " ", "Nasi"]
)  # fmt: skip
_long_word = st.text(alphabet=string.ascii_letters + "éü炒", min_size=40, max_size=120)
_text = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=60),
    st.lists(_nasty, max_size=25).map("".join),
    _long_word,
)


@st.composite
def _tickets(draw: st.DrawFn) -> tuple[TicketDocument, PrintLayout]:
    lines = tuple(
        TicketLine(
            draw(st.integers(-5, 10**6)),
            draw(_text),
            tuple(draw(st.lists(_text, max_size=3))),
            draw(_text),
            draw(_text),
            draw(st.booleans()),
        )
        for _ in range(draw(st.integers(0, 4)))
    )
    ticket = TicketDocument(
        ticket_id=draw(st.integers(1, 10**12)),
        station=draw(_text),
        ticket_type=draw(st.sampled_from(["order", "addition", "void", "checker"]) | _text),
        bill_number=draw(_text),
        sent_at=datetime(2024, 1, 1, tzinfo=JAKARTA)
        + timedelta(minutes=draw(st.integers(0, 10**6))),
        lines=lines,
        bill_type=draw(st.sampled_from(["dine_in", "takeaway", "delivery"]) | _text),
        table_number=draw(st.none() | _text),
        queue_number=draw(st.none() | st.integers(0, 10**9)),
        customer_name=draw(st.none() | _text),
        is_reprint=draw(st.booleans()),
        original_ticket_id=draw(st.none() | st.integers(1, 10**9)),
        is_retry=draw(st.booleans()),
        attempt=draw(st.integers(1, 99)),
    )
    print_layout = PrintLayout(
        chars_per_line=draw(st.sampled_from([16, 32, 42, 48])),
        copies=draw(st.integers(1, 2)),
        buzzer=draw(st.booleans()),
        large_item_font=draw(st.booleans()),
        header_line=draw(st.none() | _text),
        codepage=draw(st.sampled_from(["CP437", "CP858", "CP1252", "CP852", "CP932"])),
        cut=draw(st.sampled_from(["full", "partial"])),
    )
    return ticket, print_layout


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tickets())
def test_arbitrary_pos_text_never_breaks_the_ticket(
    case: tuple[TicketDocument, PrintLayout],
) -> None:
    ticket, print_layout = case
    data = render_ticket(ticket, print_layout)
    jobs, rest = decode_jobs(data)
    assert rest is None
    assert len(jobs) == print_layout.copies
    codepage = bytes([int(_CODEPAGE_NUMBERS[resolve_codepage(print_layout.codepage)])])
    for job in jobs:
        commands: list[Command] = list(job.commands)
        names = [c.name for c in commands]
        allowed = _ALLOWED_COMMANDS | ({"ESC B"} if print_layout.buzzer else set())
        assert set(names) <= allowed, set(names) - allowed
        assert names[:2] == ["ESC @", "ESC t"]
        assert names.count("ESC @") == 1 and names.count("ESC t") == 1
        assert names[-1] == "GS V" and names.count("GS V") == 1
        assert names.count("ESC B") == int(print_layout.buzzer)
        assert commands[1].params == codepage
        for line in job.lines:
            assert line.columns <= print_layout.chars_per_line, line.text
            assert all(g.char.isprintable() for g in line.glyphs), line.text


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(codec="utf-8"), max_size=60),
    codepage=st.sampled_from(supported_codepages()),
)
def test_the_line_encoder_gives_python_escpos_own_bytes(text: str, codepage: str) -> None:
    # TableEncoder only changes how fast python-escpos's tables are applied, never the bytes.
    library = Encoder(_PROFILE_CODEPAGES)
    assert _ENCODER.encode(text, codepage) == library.encode(text, codepage)
    assert _ENCODER.encode(text, codepage, "*") == library.encode(text, codepage, "*")
