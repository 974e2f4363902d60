"""ESC/POS byte-stream decoding and paper rendering (plain text and PNG).

This module owns the printer's side of ESC/POS for the emulator and the tests:

* :class:`StreamDecoder` splits an arbitrary chunked byte stream into text runs
  and commands (commands split across TCP segments are reassembled);
* :class:`JobAssembler` applies those events to a paper model (styles, code page,
  alignment) and yields one :class:`DecodedJob` per cut;
* :func:`render_text` and :func:`render_png` show a job as the paper would.

Text convention (see docs/emulator.md): every paper line is framed by ``|`` at
the paper edges, so widths are visible; a character printed double width is
followed by a space (it takes two columns); spaces printed inverted (white on
black) are shown as ``#``; the styles used on a line are listed after the frame
(``big`` = double width and height, ``wide``, ``tall``, ``bold``, ``inverted``,
``underline``); a line wider than the paper is flagged ``OVERFLOW +n``;
non-printing actions such as the buzzer are shown outside the frame as
``>> ...``; the paper ends with the cut (``+~~ partial cut ~~+``). Blank paper
fed just before the cut is not shown.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from escpos.codepages import CodePages
from escpos.printer import Dummy
from PIL import Image, ImageDraw, ImageFont

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
LF, CR, HT, FF, BEL, CAN = 0x0A, 0x0D, 0x09, 0x0C, 0x07, 0x18

TAB_STOP = 8
"""Columns between default tab stops (ESC D not applied: rarely used by POS software)."""


# --------------------------------------------------------------------------- stream decoding


@dataclass(frozen=True)
class Command:
    """One ESC/POS command: ``name`` like ``"ESC !"``, ``"GS V"``, ``"LF"``; ``raw`` bytes."""

    name: str
    raw: bytes

    @property
    def params(self) -> bytes:
        """The bytes after the command's name bytes."""
        return self.raw[_name_length(self.raw) :]


@dataclass(frozen=True)
class Text:
    """A run of printable bytes in the current code page."""

    raw: bytes


Event = Command | Text

# ``None`` from a length function means "need more bytes".
_LengthFn = Callable[[bytes, int], int | None]


def _fixed(params: int) -> _LengthFn:
    def length(buf: bytes, start: int) -> int | None:
        return 2 + params

    return length


def _u16(buf: bytes, at: int) -> int:
    return buf[at] + buf[at + 1] * 256


def _need(buf: bytes, start: int, count: int) -> bool:
    return len(buf) - start >= count


def _len_prefixed(header: int) -> _LengthFn:
    """``<prefix> x pL pH data[pL + pH*256]`` as in ESC ( A, GS ( k, FS ( L."""

    def length(buf: bytes, start: int) -> int | None:
        if not _need(buf, start, header + 2):
            return None
        return header + 2 + _u16(buf, start + header)

    return length


def _until_nul(limit: int) -> _LengthFn:
    def length(buf: bytes, start: int) -> int | None:
        end = buf.find(b"\x00", start + 2, start + 2 + limit)
        if end >= 0:
            return end - start + 1
        return None if len(buf) - start < 2 + limit else 2 + limit

    return length


def _esc_bit_image(buf: bytes, start: int) -> int | None:
    # ESC * m nL nH d1..dk: k = n columns, 3 bytes per column for 24-dot modes.
    if not _need(buf, start, 5):
        return None
    columns = _u16(buf, start + 3)
    return 5 + columns * (3 if buf[start + 2] in (32, 33) else 1)


def _esc_user_chars(buf: bytes, start: int) -> int | None:
    # ESC & y c1 c2 [x d1..d(y*x)] for each character c1..c2.
    if not _need(buf, start, 5):
        return None
    y, c1, c2 = buf[start + 2], buf[start + 3], buf[start + 4]
    pos = start + 5
    for _ in range(max(0, c2 - c1 + 1)):
        if pos >= len(buf):
            return None
        pos += 1 + y * buf[pos]
    return pos - start


def _gs_cut(buf: bytes, start: int) -> int | None:
    if not _need(buf, start, 3):
        return None
    return 3 if buf[start + 2] in (0, 1, 48, 49) else 4


def _gs_raster(buf: bytes, start: int) -> int | None:
    # GS v 0 m xL xH yL yH d..: xL/xH bytes per row, yL/yH rows.
    if not _need(buf, start, 8):
        return None
    return 8 + _u16(buf, start + 4) * _u16(buf, start + 6)


def _gs_long_prefixed(buf: bytes, start: int) -> int | None:
    # GS 8 x p1 p2 p3 p4 data: 32-bit length.
    if not _need(buf, start, 7):
        return None
    return 7 + int.from_bytes(buf[start + 3 : start + 7], "little")


def _gs_barcode(buf: bytes, start: int) -> int | None:
    if not _need(buf, start, 3):
        return None
    m = buf[start + 2]
    if m <= 6:
        end = buf.find(b"\x00", start + 3)
        return None if end < 0 else end - start + 1
    if not _need(buf, start, 4):
        return None
    return 4 + buf[start + 3]


def _gs_downloaded_image(buf: bytes, start: int) -> int | None:
    # GS * x y d1..d(x*y*8)
    if not _need(buf, start, 4):
        return None
    return 4 + buf[start + 2] * buf[start + 3] * 8


def _fs_nv_images(buf: bytes, start: int) -> int | None:
    # FS q n [xL xH yL yH d1..dk]1..n with k = (xL + xH*256) * (yL + yH*256) * 8
    if not _need(buf, start, 3):
        return None
    pos = start + 3
    for _ in range(buf[start + 2]):
        if len(buf) < pos + 4:
            return None
        pos += 4 + _u16(buf, pos) * _u16(buf, pos + 2) * 8
    return pos - start


def _dle_eot(buf: bytes, start: int) -> int | None:
    if not _need(buf, start, 3):
        return None
    return 4 if buf[start + 2] in (7, 8) else 3


def _dle_dc4(buf: bytes, start: int) -> int | None:
    if not _need(buf, start, 3):
        return None
    return 3 + {1: 2, 2: 2, 7: 1, 8: 7}.get(buf[start + 2], 2)


_ESC_COMMANDS: dict[int, _LengthFn] = {
    **{ord(c): _fixed(0) for c in "@2LSimv<"},
    **{ord(c): _fixed(1) for c in "!EG-adeJKtMR3 {V=rUT%?uj"},
    **{ord(c): _fixed(2) for c in "B$\\cf"},
    ord("p"): _fixed(3),
    ord("W"): _fixed(8),
    ord("D"): _until_nul(33),
    ord("*"): _esc_bit_image,
    ord("&"): _esc_user_chars,
    ord("("): _len_prefixed(3),
}
_GS_COMMANDS: dict[int, _LengthFn] = {
    ord(":"): _fixed(0),
    **{ord(c): _fixed(1) for c in "!BHhwfabI|r/ET"},
    **{ord(c): _fixed(2) for c in "LWP$\\"},
    ord("^"): _fixed(3),
    ord("V"): _gs_cut,
    ord("v"): _gs_raster,
    ord("("): _len_prefixed(3),
    ord("8"): _gs_long_prefixed,
    ord("k"): _gs_barcode,
    ord("*"): _gs_downloaded_image,
}
_FS_COMMANDS: dict[int, _LengthFn] = {
    **{ord(c): _fixed(0) for c in "&."},
    **{ord(c): _fixed(1) for c in "!-WC"},
    **{ord(c): _fixed(2) for c in "pS"},
    ord("q"): _fs_nv_images,
    ord("("): _len_prefixed(3),
}
_DLE_COMMANDS: dict[int, _LengthFn] = {
    0x04: _dle_eot,
    0x05: _fixed(1),
    0x14: _dle_dc4,
}
_PREFIXES = {ESC: ("ESC", _ESC_COMMANDS), GS: ("GS", _GS_COMMANDS), FS: ("FS", _FS_COMMANDS)}
_SINGLE_BYTE_NAMES = {LF: "LF", CR: "CR", HT: "HT", FF: "FF", BEL: "BEL", CAN: "CAN"}
_DLE_NAMES = {0x04: "DLE EOT", 0x05: "DLE ENQ", 0x14: "DLE DC4"}


def _name_length(raw: bytes) -> int:
    if raw[0] in (ESC, GS, FS, DLE) and len(raw) > 1:
        return 2
    return 1


def _byte_name(value: int) -> str:
    return chr(value) if 0x21 <= value < 0x7F else f"0x{value:02x}"


class StreamDecoder:
    """Incremental ESC/POS tokenizer: feed it any chunks, get whole events back.

    Bytes of a command that has not fully arrived are kept until the next
    :meth:`feed`; unknown commands are consumed as their two name bytes so that
    garbage never stalls the stream.
    """

    def __init__(self) -> None:
        self._pending = b""

    @property
    def pending(self) -> bytes:
        return self._pending

    def feed(self, data: bytes) -> list[Event]:
        buf = self._pending + data
        events: list[Event] = []
        pos = 0
        while pos < len(buf):
            byte = buf[pos]
            if byte >= 0x20:
                end = pos
                while end < len(buf) and buf[end] >= 0x20:
                    end += 1
                events.append(Text(buf[pos:end]))
                pos = end
                continue
            size, name = self._command_at(buf, pos)
            if size is None:
                break
            events.append(Command(name, buf[pos : pos + size]))
            pos += size
        self._pending = buf[pos:]
        return events

    @staticmethod
    def _command_at(buf: bytes, pos: int) -> tuple[int | None, str]:
        byte = buf[pos]
        if byte not in _PREFIXES and byte != DLE:
            return 1, _SINGLE_BYTE_NAMES.get(byte, f"0x{byte:02x}")
        if pos + 1 >= len(buf):
            return None, ""
        second = buf[pos + 1]
        if byte == DLE:
            if second not in _DLE_COMMANDS:
                # A lone DLE is not a command in standard mode; the next byte is data.
                return 1, "DLE"
            name, length_fn = _DLE_NAMES[second], _DLE_COMMANDS[second]
        else:
            prefix, table = _PREFIXES[byte]
            name = f"{prefix} {_byte_name(second)}"
            found = table.get(second)
            if found is None:
                return 2, f"{name} (unknown)"
            length_fn = found
        size = length_fn(buf, pos)
        if size is None or size > len(buf) - pos:
            return None, ""
        return size, name


# --------------------------------------------------------------------------- code pages


@functools.cache
def _codepage_numbers() -> dict[int, str]:
    pages = Dummy().profile.get_code_pages()
    return {int(number): name for name, number in pages.items() if name != "Unknown"}


@functools.cache
def codepage_table(name: str) -> tuple[str, ...]:
    """The 256 characters a code page prints (``?`` where python-escpos has no glyph)."""
    high = ["?"] * 128
    try:
        page = CodePages.get_encoding(name)
    except KeyError:
        page = {}
    if "data" in page:
        high = list("".join(page["data"]))
    elif "python_encode" in page:
        for i in range(128):
            try:
                high[i] = bytes([128 + i]).decode(page["python_encode"])
            except (UnicodeDecodeError, LookupError):
                high[i] = "?"
    return tuple(chr(i) for i in range(128)) + tuple(high)


def codepage_name(number: int) -> str:
    return _codepage_numbers().get(number, "CP437")


# --------------------------------------------------------------------------- paper model


@dataclass(frozen=True)
class Style:
    bold: bool = False
    underline: int = 0
    width: int = 1
    height: int = 1
    inverted: bool = False
    font_b: bool = False


@dataclass(frozen=True)
class Glyph:
    char: str
    style: Style


@dataclass(frozen=True)
class PrintedLine:
    glyphs: tuple[Glyph, ...]
    align: str = "left"

    @property
    def columns(self) -> int:
        return sum(g.style.width for g in self.glyphs)

    @property
    def text(self) -> str:
        return "".join(g.char for g in self.glyphs)

    @property
    def height(self) -> int:
        return max((g.style.height for g in self.glyphs), default=1)


@dataclass(frozen=True)
class Notice:
    """Something the printer did that leaves no ink: buzzer, drawer kick, ..."""

    message: str


@dataclass(frozen=True)
class DecodedJob:
    """Everything between two cuts."""

    items: tuple[PrintedLine | Notice, ...]
    commands: tuple[Command, ...]
    raw: bytes
    cut: str | None  # 'full' | 'partial' | None when the stream ended without a cut

    @property
    def lines(self) -> list[PrintedLine]:
        return [i for i in self.items if isinstance(i, PrintedLine)]

    @property
    def text(self) -> str:
        """The printed characters, one line per paper line, without any marks."""
        return "\n".join(line.text for line in self.lines)


_ALIGNMENTS = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
_CUT_MODES = {0: "full", 48: "full", 65: "full", 97: "full", 103: "full"}


class JobAssembler:
    """Applies decoded events to a paper model; :meth:`apply` returns a job at each cut."""

    def __init__(self) -> None:
        self.style = Style()
        self.align = "left"
        self.codepage = "CP437"
        self._line: list[Glyph] = []
        self._line_align: str | None = None
        self._items: list[PrintedLine | Notice] = []
        self._commands: list[Command] = []
        self._raw: list[bytes] = []

    @property
    def has_content(self) -> bool:
        return bool(self._raw)

    def apply(self, event: Event) -> DecodedJob | None:
        self._raw.append(event.raw)
        if isinstance(event, Text):
            self._print(event.raw)
            return None
        self._commands.append(event)
        return self._command(event)

    def apply_all(self, events: Iterable[Event]) -> list[DecodedJob]:
        return [job for job in (self.apply(e) for e in events) if job is not None]

    def finish(self) -> DecodedJob | None:
        """The uncut remainder, if any bytes arrived since the last cut."""
        if not self.has_content:
            return None
        self._end_line(force=False)
        return self._take(cut=None)

    def _print(self, data: bytes) -> None:
        table = codepage_table(self.codepage)
        if self._line_align is None:
            self._line_align = self.align
        self._line.extend(Glyph(table[b], self.style) for b in data)

    def _end_line(self, force: bool = True) -> None:
        if self._line or force:
            self._items.append(PrintedLine(tuple(self._line), self._line_align or self.align))
        self._line = []
        self._line_align = None

    def _take(self, cut: str | None) -> DecodedJob:
        job = DecodedJob(tuple(self._items), tuple(self._commands), b"".join(self._raw), cut)
        self._items, self._commands, self._raw = [], [], []
        return job

    def _command(self, cmd: Command) -> DecodedJob | None:
        name, p = cmd.name, cmd.params
        if name in ("LF", "FF"):
            self._end_line()
        elif name == "HT":
            if self._line_align is None:
                self._line_align = self.align
            columns = sum(g.style.width for g in self._line)
            spaces = TAB_STOP - columns % TAB_STOP
            self._line.extend(Glyph(" ", self.style) for _ in range(spaces))
        elif name == "ESC d":
            if p[0] == 0:
                self._end_line(force=False)
            for _ in range(p[0]):
                self._end_line()
        elif name == "ESC J":
            self._end_line(force=False)
        elif name == "ESC @":
            self.style, self.align, self.codepage = Style(), "left", "CP437"
            self._line, self._line_align = [], None
        elif name == "ESC !":
            n = p[0]
            self.style = replace(
                self.style,
                font_b=bool(n & 0x01),
                bold=bool(n & 0x08),
                height=2 if n & 0x10 else 1,
                width=2 if n & 0x20 else 1,
                underline=1 if n & 0x80 else 0,
            )
        elif name == "GS !":
            self.style = replace(self.style, width=(p[0] >> 4 & 7) + 1, height=(p[0] & 7) + 1)
        elif name in ("ESC E", "ESC G"):
            self.style = replace(self.style, bold=bool(p[0] & 1))
        elif name == "ESC -":
            self.style = replace(self.style, underline=p[0] & 3)
        elif name == "GS B":
            self.style = replace(self.style, inverted=bool(p[0] & 1))
        elif name == "ESC M":
            self.style = replace(self.style, font_b=bool(p[0] & 1))
        elif name == "ESC a":
            self.align = _ALIGNMENTS.get(p[0], self.align)
        elif name == "ESC t":
            self.codepage = codepage_name(p[0])
        elif name == "ESC B":
            self._items.append(Notice(f"buzzer: {p[0]} beep(s)"))
        elif name == "ESC (" and cmd.raw[2:3] == b"A":
            self._items.append(Notice("buzzer"))
        elif name == "BEL":
            self._items.append(Notice("beep"))
        elif name == "ESC p":
            self._items.append(Notice("cash drawer kick"))
        elif name in ("GS V", "ESC i", "ESC m"):
            self._end_line(force=False)
            if name == "GS V":
                mode = _CUT_MODES.get(p[0], "partial")
            else:
                mode = "full" if name == "ESC i" else "partial"
            return self._take(cut=mode)
        return None


def decode_jobs(data: bytes) -> tuple[list[DecodedJob], DecodedJob | None]:
    """Decode a complete byte string: the cut jobs and the uncut remainder (if any)."""
    decoder = StreamDecoder()
    assembler = JobAssembler()
    jobs = assembler.apply_all(decoder.feed(data))
    remainder_events: list[Event] = []
    if decoder.pending:
        remainder_events.append(Command("incomplete", decoder.pending))
    jobs += assembler.apply_all(remainder_events)
    return jobs, assembler.finish()


# --------------------------------------------------------------------------- text rendering


def _flags(line: PrintedLine) -> list[str]:
    styles = {g.style for g in line.glyphs}
    flags: list[str] = []
    sizes = {(s.width, s.height) for s in styles} - {(1, 1)}
    for w, h in sorted(sizes):
        if (w, h) == (2, 2):
            flags.append("big")
        elif (w, h) == (2, 1):
            flags.append("wide")
        elif (w, h) == (1, 2):
            flags.append("tall")
        else:
            flags.append(f"size {w}x{h}")
    if any(s.bold for s in styles):
        flags.append("bold")
    if any(s.inverted for s in styles):
        flags.append("inverted")
    if any(s.underline for s in styles):
        flags.append("underline")
    return flags


def _line_cells(line: PrintedLine) -> str:
    """Each glyph as ``width`` columns; inverted spaces around inverted text become ``#``."""
    glyphs = line.glyphs
    inked = [i for i, g in enumerate(glyphs) if g.style.inverted and g.char != " "]
    first, last = (inked[0], inked[-1]) if inked else (len(glyphs), -1)
    cells = []
    for i, g in enumerate(glyphs):
        if g.style.inverted and g.char == " " and not first <= i <= last:
            cells.append("#" * g.style.width)
        else:
            cells.append(g.char + " " * (g.style.width - 1))
    return "".join(cells)


def _offset(line: PrintedLine, width: int) -> int:
    spare = max(0, width - line.columns)
    if line.align == "center":
        return spare // 2
    if line.align == "right":
        return spare
    return 0


def render_text(job: DecodedJob, width: int) -> str:
    """The job as framed text, per the convention in this module's docstring."""
    items = list(job.items)
    while items and isinstance(items[-1], PrintedLine) and not items[-1].glyphs:
        items.pop()
    out = ["+" + "-" * width + "+"]
    for item in items:
        if isinstance(item, Notice):
            out.append(f">> {item.message}")
            continue
        body = " " * _offset(item, width) + _line_cells(item)
        row = f"|{body.ljust(width)}|"
        marks = _flags(item)
        if item.columns > width:
            marks.append(f"OVERFLOW +{item.columns - width}")
        if marks:
            row += "  " + " ".join(marks)
        out.append(row)
    label = f" {job.cut} cut " if job.cut else " no cut (incomplete) "
    out.append("+" + label.center(width, "~") + "+")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- PNG rendering

CELL_W, CELL_H = 12, 24  # font A on a 203 dpi head
_MARGIN = 24
_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono{}.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-{}.ttf",
    "/usr/share/fonts/truetype/freefont/FreeMono{}.ttf",
)
_FONT_SUFFIXES = {
    "dejavu": ("", "-Bold"),
    "liberation": ("Regular", "Bold"),
    "freefont": ("", "Bold"),
}

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.cache
def _font(bold: bool) -> FontType:
    for pattern in _FONT_CANDIDATES:
        family = next(k for k in _FONT_SUFFIXES if k in pattern)
        path = Path(pattern.format(_FONT_SUFFIXES[family][1 if bold else 0]))
        if path.exists():
            return ImageFont.truetype(str(path), 20)
    return ImageFont.load_default(20)


@functools.cache
def _glyph_image(char: str, bold: bool, inverted: bool, width: int, height: int) -> Image.Image:
    """One character cell; double sizes scale the dots like a real print head does."""
    ink, paper = (255, 0) if inverted else (0, 255)
    cell = Image.new("L", (CELL_W, CELL_H), paper)
    draw = ImageDraw.Draw(cell)
    # Bold is drawn as a second pass one dot to the right, like emphasized mode.
    draw.text((0, 1), char, fill=ink, font=_font(bold))
    if bold:
        draw.text((1, 1), char, fill=ink, font=_font(bold))
    if width == 1 and height == 1:
        return cell
    return cell.resize((CELL_W * width, CELL_H * height), Image.Resampling.NEAREST)


def render_png(job: DecodedJob, width: int, path: Path | str | None = None) -> Image.Image:
    """Draw the job as a thermal receipt (white paper, black dots); save it if ``path``."""
    lines = [i for i in job.items if isinstance(i, PrintedLine)]
    while lines and not lines[-1].glyphs:
        lines.pop()
    paper_w = width * CELL_W + 2 * _MARGIN
    heights = [line.height * CELL_H for line in lines]
    paper_h = sum(heights) + 2 * _MARGIN
    border = 16
    image = Image.new("L", (paper_w + 2 * border, paper_h + 2 * border + 8), 200)
    draw = ImageDraw.Draw(image)
    draw.rectangle((border, border, border + paper_w - 1, border + paper_h - 1), fill=255)
    y = border + _MARGIN
    for line, line_h in zip(lines, heights, strict=True):
        x = border + _MARGIN + _offset(line, width) * CELL_W
        for g in line.glyphs:
            s = g.style
            glyph = _glyph_image(g.char, s.bold, s.inverted, s.width, s.height)
            # Taller neighbours set the line height; text sits on the common baseline.
            image.paste(glyph, (x, y + line_h - glyph.height))
            if s.underline:
                draw.line(
                    (x, y + line_h - 2, x + glyph.width - 1, y + line_h - 2),
                    fill=0,
                    width=s.underline,
                )
            x += glyph.width
        y += line_h
    # The torn edge: a zigzag where the cutter went through.
    bottom = border + paper_h
    teeth = [(border + i * 8, bottom + (6 if i % 2 else 0)) for i in range(paper_w // 8 + 1)]
    draw.polygon([(border, bottom - 1), *teeth, (border + paper_w - 1, bottom - 1)], fill=255)
    result = image.convert("RGB")
    if path is not None:
        result.save(path, format="PNG")
    return result
