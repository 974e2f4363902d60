"""The printer emulator over real loopback TCP: status answers, jobs, faults, control, CLI."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from escpos.printer import Dummy

from kprintd.emulator import ControlServer, EmulatedPrinter, Fault, FaultMode, check_loopback
from kprintd.emulator.escpos_decode import Command, Event, StreamDecoder, Text, decode_jobs
from kprintd.emulator.escpos_decode import render_text as decode_text
from kprintd.printer_status import (
    ALL_STATUS_REQUESTS,
    PaperState,
    PrinterState,
    StatusRequest,
    build_status_response,
    is_status_byte,
    parse_paper_sensor,
    state_from_responses,
)
from kprintd.render import PrintLayout, render_ticket
from tests.printers.ticket_samples import JAKARTA, ORDER, VOID

WIDTH = 32
TICKET = render_ticket(ORDER, PrintLayout(chars_per_line=WIDTH, timezone=JAKARTA))
EXPECTED_TEXT = decode_text(decode_jobs(TICKET)[0][0], WIDTH)
TIMEOUT = 5.0


@pytest.fixture
def printer() -> Iterator[EmulatedPrinter]:
    with EmulatedPrinter("test", "127.0.0.1", 0, chars_per_line=WIDTH) as p:
        yield p


def connect(p: EmulatedPrinter) -> socket.socket:
    return socket.create_connection(p.address, timeout=TIMEOUT)


def ask(sock: socket.socket, n: int) -> int:
    sock.sendall(StatusRequest(n).command)
    answer = sock.recv(1)
    assert len(answer) == 1
    return answer[0]


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    answer = b""
    while len(answer) < count:
        chunk = sock.recv(count - len(answer))
        assert chunk, "printer closed the connection"
        answer += chunk
    return answer


def sync(sock: socket.socket) -> bytes:
    """Ask for all four statuses. The printer handles bytes in order, so once it answers,
    everything sent before has been processed and tickets() is final."""
    sock.sendall(ALL_STATUS_REQUESTS)
    return recv_exactly(sock, 4)


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --------------------------------------------------------------------------- status

STATES: dict[str, tuple[PrinterState, tuple[int, int, int, int]]] = {
    # expected bytes for DLE EOT 1, 2, 3, 4 from the Epson bit tables, written out by hand
    "ready": (PrinterState(), (0x12, 0x12, 0x12, 0x12)),
    "paper_near_end": (PrinterState(paper=PaperState.NEAR_END), (0x12, 0x12, 0x12, 0x1E)),
    "paper_out": (PrinterState(paper=PaperState.OUT), (0x1A, 0x32, 0x12, 0x7E)),
    "cover_open": (PrinterState(cover_open=True), (0x1A, 0x16, 0x12, 0x12)),
    "offline": (PrinterState(online=False), (0x1A, 0x12, 0x12, 0x12)),
    "cutter_error": (PrinterState(cutter_error=True), (0x3A, 0x52, 0x1A, 0x12)),
}


def test_status_answers_for_every_request_in_every_state(printer: EmulatedPrinter) -> None:
    with connect(printer) as sock:
        for name, (state, expected) in STATES.items():
            printer.set_state(state)
            answers = tuple(ask(sock, n) for n in (1, 2, 3, 4))
            assert answers == expected, name
    assert printer.stats().status_requests == 4 * len(STATES)


def test_setters_change_what_the_printer_reports(printer: EmulatedPrinter) -> None:
    with connect(printer) as sock:
        printer.set_paper(PaperState.NEAR_END)
        assert ask(sock, 4) == 0x1E
        printer.set_paper("out")
        assert ask(sock, 4) == 0x7E
        printer.set_paper(PaperState.OK)
        printer.set_cover_open(True)
        assert ask(sock, 2) == 0x16
        printer.set_cover_open(False)
        printer.set_online(False)
        assert ask(sock, 1) == 0x1A
        printer.set_online(True)
        printer.set_cutter_error(True)
        assert ask(sock, 3) == 0x1A
        printer.set_cutter_error(False)
        assert sync(sock) == b"\x12\x12\x12\x12"


@pytest.mark.parametrize("name", sorted(STATES))
def test_status_bytes_round_trip(name: str) -> None:
    state, expected = STATES[name]
    answers = {r: build_status_response(r, state)[0] for r in StatusRequest}
    assert tuple(answers.values()) == expected
    assert all(is_status_byte(b) for b in answers.values())
    assert state_from_responses(answers) == state


def test_python_escpos_reads_our_paper_status_the_same_way() -> None:
    class Probe(Dummy):  # type: ignore[misc]
        def __init__(self, state: PrinterState) -> None:
            super().__init__()
            self.state = state

        def _read(self) -> bytes:
            return build_status_response(self.output[-1], self.state)

    assert Probe(PrinterState()).paper_status() == 2
    assert Probe(PrinterState(paper=PaperState.NEAR_END)).paper_status() == 1
    assert Probe(PrinterState(paper=PaperState.OUT)).paper_status() == 0
    assert Probe(PrinterState()).is_online()
    assert not Probe(PrinterState(cover_open=True)).is_online()


def test_parsers_reject_bytes_that_are_not_status() -> None:
    assert not is_status_byte(0x00) and not is_status_byte(0xFF) and not is_status_byte(0x13)
    with pytest.raises(ValueError, match="not a DLE EOT status byte"):
        parse_paper_sensor(0x41)
    with pytest.raises(ValueError):
        state_from_responses({1: 0x10})


def test_status_request_split_across_segments(printer: EmulatedPrinter) -> None:
    printer.set_paper(PaperState.OUT)
    with connect(printer) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in (b"\x10", b"\x04", b"\x04"):
            sock.sendall(part)
            time.sleep(0.02)
        assert sock.recv(1) == b"\x7e"


def test_unknown_status_requests_get_no_answer(printer: EmulatedPrinter) -> None:
    with connect(printer) as sock:
        sock.sendall(b"\x10\x04\x07\x01" + b"\x10\x04\x09")
        assert ask(sock, 1) == 0x12
    assert printer.stats().status_requests == 1


# --------------------------------------------------------------------------- jobs


def test_jobs_are_split_at_each_cut_even_when_sent_byte_by_byte(printer: EmulatedPrinter) -> None:
    void = render_ticket(VOID, PrintLayout(chars_per_line=WIDTH, timezone=JAKARTA, cut="full"))
    stream = TICKET + void + TICKET
    with connect(printer) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(stream), 3):
            sock.sendall(stream[i : i + 3])
        sync(sock)
    tickets = printer.tickets()
    assert [t.raw for t in tickets] == [TICKET, void, TICKET]
    assert [t.cut for t in tickets] == ["partial", "full", "partial"]
    assert tickets[0].text == EXPECTED_TEXT
    assert "V O I D" in tickets[1].text
    assert [t.number for t in tickets] == [1, 2, 3]


def test_many_concurrent_connections(printer: EmulatedPrinter) -> None:
    count = 25
    barrier = threading.Barrier(count)

    def send() -> None:
        with connect(printer) as sock:
            barrier.wait(TIMEOUT)
            for i in range(0, len(TICKET), 97):
                sock.sendall(TICKET[i : i + 97])
            sync(sock)

    threads = [threading.Thread(target=send) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    tickets = printer.wait_for_tickets(count, TIMEOUT)
    assert len(tickets) == count
    assert {t.text for t in tickets} == {EXPECTED_TEXT}
    assert len({t.connection for t in tickets}) == count


def test_common_and_unknown_commands_are_tolerated(printer: EmulatedPrinter) -> None:
    stream = (
        b"\x1b@\x1bt\x02\x1bR\x00\x1b!\x08\x1dB\x01\x1ba\x01\x1bE\x00\x1d!\x11"
        b"\x1bB\x03\x02"  # buzzer
        b"\x1b(A\x04\x00\x30\x37\x03\x0a"  # buzzer, model-specific form
        b"\x1d(k\x04\x001A2\x00"  # QR model
        b"\x1dv0\x00\x01\x00\x02\x00\xff\x1b"  # raster image whose data contains ESC
        b"\x1b*\x00\x02\x00\x1d\x1d"  # bit image whose data contains GS
        b"\x1b\x01\x10\x07\x18\x0d"  # unknown ESC, lone DLE, BEL, CAN, CR
        b"Big\n\x1d!\x00\x1dB\x00\x1ba\x00plain \x82t\xe9\n"
        b"\x1dVA\x10"
    )
    with connect(printer) as sock:
        sock.sendall(stream)
        assert sync(sock) == b"\x12\x12\x12\x12"
    (ticket,) = printer.tickets()
    lines = ticket.job.lines
    assert [line.text for line in lines] == ["Big", "plain \u00e9t\u00da"]
    big = lines[0].glyphs[0].style
    assert (big.width, big.height, big.bold, big.inverted) == (2, 2, False, True)
    assert lines[0].align == "center" and lines[1].align == "left"
    assert ">> buzzer: 3 beep(s)" in ticket.text and ">> buzzer" in ticket.text
    assert ticket.cut == "full"


def test_listeners_and_subscribers_are_told_about_each_ticket(printer: EmulatedPrinter) -> None:
    seen: list[int] = []
    printer.add_listener(lambda t: seen.append(t.number))
    inbox = printer.subscribe()
    before = time.monotonic()
    with connect(printer) as sock:
        sock.sendall(TICKET)
        ticket = inbox.get(timeout=TIMEOUT)
    assert before <= ticket.received_at <= time.monotonic()
    assert abs(ticket.received_at_wall - time.time()) < 60
    wait_until(lambda: seen == [1])
    with pytest.raises(queue.Empty):
        inbox.get_nowait()


def test_clear_forgets_tickets_and_wait_times_out(printer: EmulatedPrinter) -> None:
    with connect(printer) as sock:
        sock.sendall(TICKET)
        sync(sock)
    assert len(printer.tickets()) == 1
    printer.clear()
    assert printer.tickets() == []
    with pytest.raises(TimeoutError, match="0 of 1"):
        printer.wait_for_tickets(1, timeout=0.05)


def test_printers_on_several_loopback_addresses() -> None:
    printers = [EmulatedPrinter(f"p{i}", f"127.0.0.{i}", 0) for i in (2, 3, 4)]
    for p in printers:
        p.start()
    try:
        for p in printers:
            with connect(p) as sock:
                sock.sendall(TICKET * int(p.host.rsplit(".", 1)[1]))
                sync(sock)
        assert [len(p.tickets()) for p in printers] == [2, 3, 4]
    finally:
        for p in printers:
            p.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.50", "::1", "printer.local", ""])
def test_only_loopback_addresses_are_accepted(host: str) -> None:
    with pytest.raises(ValueError):
        EmulatedPrinter("x", host)
    with pytest.raises(ValueError):
        check_loopback(host)


def test_png_looks_like_a_receipt(printer: EmulatedPrinter) -> None:
    data = render_ticket(VOID, PrintLayout(chars_per_line=WIDTH, timezone=JAKARTA))
    with connect(printer) as sock:
        sock.sendall(data)
    (ticket,) = printer.wait_for_tickets(1, TIMEOUT)
    image = ticket.png().convert("L")
    assert image.width >= WIDTH * 12
    histogram = image.histogram()
    assert histogram[255] > histogram[0] > 0, "white paper with black dots"
    # The VOID banner is a full-width black bar near the top.
    widest_dark_row = max(
        sum(1 for x in range(image.width) if image.getpixel((x, y)) == 0)
        for y in range(image.height // 4)
    )
    assert widest_dark_row >= WIDTH * 12 * 0.9


# --------------------------------------------------------------------------- faults


def test_refuse_then_recover(printer: EmulatedPrinter) -> None:
    printer.set_fault(FaultMode.REFUSE)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(printer.address, timeout=TIMEOUT)
    printer.set_fault(Fault())
    with connect(printer) as sock:
        assert ask(sock, 1) == 0x12


def test_refuse_from_start_keeps_the_port() -> None:
    with EmulatedPrinter("r", fault=FaultMode.REFUSE) as p:
        assert p.port > 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(p.address, timeout=TIMEOUT)


def test_reset_on_accept(printer: EmulatedPrinter) -> None:
    printer.set_fault("reset")
    try:
        sock = connect(printer)
    except ConnectionResetError:
        pass  # on a busy machine the reset can arrive before connect() returns
    else:
        with sock:
            with contextlib.suppress(OSError):
                sock.sendall(StatusRequest.PRINTER.command)
            assert closed_by_peer(sock)
    assert printer.stats().connections == 0


def test_black_hole_reads_nothing_until_switched_off(printer: EmulatedPrinter) -> None:
    printer.set_fault(FaultMode.BLACK_HOLE)
    with connect(printer) as sock:
        sock.sendall(TICKET + ALL_STATUS_REQUESTS)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(4)
        assert printer.stats().bytes_received == 0
        assert printer.tickets() == []
        printer.set_fault(FaultMode.NONE)
        sock.settimeout(TIMEOUT)
        assert recv_exactly(sock, 4) == b"\x12\x12\x12\x12"
    assert [t.raw for t in printer.tickets()] == [TICKET]


def test_drop_after_n_bytes(printer: EmulatedPrinter) -> None:
    printer.set_fault(Fault.drop_after_bytes(100))
    with connect(printer) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(TICKET)
        assert closed_by_peer(sock)
    wait_until(lambda: len(printer.fragments()) == 1)
    assert printer.stats().bytes_received == 100
    assert printer.tickets() == []
    assert printer.fragments()[0].cut is None


def test_slow_read_until_switched_off(printer: EmulatedPrinter) -> None:
    printer.set_fault(Fault.slow_read(100))
    with connect(printer) as sock:
        sock.sendall(TICKET)
        time.sleep(0.3)
        # At 100 bytes/s the ~1 kB ticket cannot have been read yet, whatever the machine.
        assert 0 < printer.stats().bytes_received < len(TICKET)
        assert printer.tickets() == []
        printer.set_fault(FaultMode.NONE)
        sync(sock)
    assert [t.text for t in printer.tickets()] == [EXPECTED_TEXT]


def test_slow_read_still_delivers_everything_intact(printer: EmulatedPrinter) -> None:
    small = b"\x1b@hello\n\x1dV\x01"
    printer.set_fault(Fault.slow_read(400))
    with connect(printer) as sock:
        sock.sendall(small)
        (ticket,) = printer.wait_for_tickets(1, TIMEOUT)
    assert ticket.raw == small
    assert ticket.job.text == "hello"


@pytest.mark.parametrize(
    ("make_unready", "make_ready", "offline_cause"),
    [
        (lambda p: p.set_paper(PaperState.OUT), lambda p: p.set_paper(PaperState.OK), 0x32),
        (lambda p: p.set_cover_open(True), lambda p: p.set_cover_open(False), 0x16),
        (lambda p: p.set_online(False), lambda p: p.set_online(True), 0x12),
    ],
    ids=["paper_out", "cover_open", "offline"],
)
def test_no_paper_advances_while_unready_then_buffer_prints(
    printer: EmulatedPrinter,
    make_unready: Callable[[EmulatedPrinter], None],
    make_ready: Callable[[EmulatedPrinter], None],
    offline_cause: int,
) -> None:
    make_unready(printer)
    with connect(printer) as sock:
        sock.sendall(TICKET)
        answers = sync(sock)
        assert answers[0] == 0x1A and answers[1] == offline_cause
        assert printer.tickets() == []
        make_ready(printer)
        (ticket,) = printer.wait_for_tickets(1, TIMEOUT)
    assert ticket.text == EXPECTED_TEXT


def test_data_sent_while_out_of_paper_can_be_dropped() -> None:
    with EmulatedPrinter("d", keep_data_while_unready=False, chars_per_line=WIDTH) as p:
        p.set_paper(PaperState.OUT)
        with connect(p) as sock:
            sock.sendall(TICKET)
            assert sync(sock)[3] == 0x7E
            p.set_paper(PaperState.OK)
            sock.sendall(TICKET)
            assert sync(sock)[3] == 0x12
        assert [t.raw for t in p.tickets()] == [TICKET]
        assert p.stats().bytes_discarded >= len(TICKET)


def test_buffered_ticket_prints_after_the_sender_hung_up(printer: EmulatedPrinter) -> None:
    printer.set_paper(PaperState.OUT)
    with connect(printer) as sock:
        sock.sendall(TICKET)
        sync(sock)
    printer.set_paper(PaperState.OK)
    assert len(printer.wait_for_tickets(1, TIMEOUT)) == 1


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("none", Fault()),
        ("refuse", Fault(FaultMode.REFUSE)),
        ("black-hole", Fault(FaultMode.BLACK_HOLE)),
        ("drop_after:10", Fault.drop_after_bytes(10)),
        ("slow_read:2.5", Fault.slow_read(2.5)),
    ],
)
def test_fault_text_form(text: str, fault: Fault) -> None:
    assert Fault.parse(text) == fault
    assert Fault.parse(str(fault)) == fault


@pytest.mark.parametrize(
    "text", ["explode", "slow_read", "slow_read:0", "refuse:3", "drop_after:x"]
)
def test_bad_fault_text_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        Fault.parse(text)


# --------------------------------------------------------------------------- decoder


def _merged(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for e in events:
        if out and isinstance(e, Text) and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].raw + e.raw)
        else:
            out.append(e)
    return out


def test_decoder_gives_the_same_events_for_every_split_point() -> None:
    whole = StreamDecoder().feed(TICKET)
    assert any(isinstance(e, Command) and e.name == "GS V" for e in whole)
    for split in range(1, len(TICKET)):
        decoder = StreamDecoder()
        events = decoder.feed(TICKET[:split]) + decoder.feed(TICKET[split:])
        assert _merged(events) == whole, split
        assert decoder.pending == b""


# --------------------------------------------------------------------------- control and CLI


def test_control_commands(printer: EmulatedPrinter) -> None:
    control = ControlServer([printer], "127.0.0.1", 0)
    control.start()
    try:
        with socket.create_connection(("127.0.0.1", control.port), timeout=TIMEOUT) as sock:
            stream = sock.makefile("rw", encoding="utf-8", newline="\n")

            def run(line: str) -> str:
                stream.write(line + "\n")
                stream.flush()
                return stream.readline().strip()

            assert run("fault test black_hole").startswith("ok test 127.0.0.1:")
            assert printer.fault.mode is FaultMode.BLACK_HOLE
            assert "fault=drop_after:5" in run("fault * drop_after:5")
            assert "paper=out" in run("paper test out")
            assert printer.state.paper is PaperState.OUT
            run("cover test open")
            run("online test off")
            run("cutter all error")
            assert printer.state == PrinterState(
                online=False, cover_open=True, paper=PaperState.OUT, cutter_error=True
            )
            assert run("list").startswith("ok test")
            assert run("fault nobody none").startswith("error: no printer 'nobody'")
            assert run("paper test soggy").startswith("error:")
            assert run("dance test").startswith("error:")
    finally:
        control.stop()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def test_command_line_emulator_writes_tickets_and_stops_on_sigterm(tmp_path: Path) -> None:
    from kprintd.emulator import main

    host = "127.0.0.9"
    port, control_port = _free_port(host), _free_port("127.0.0.1")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kprintd.emulator", "--printer", f"kitchen={host}:{port}/32",
         "--out", str(tmp_path), "--png", "--control", f"127.0.0.1:{control_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=TIMEOUT)
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        with sock:
            sock.sendall(TICKET)
            sync(sock)
        wait_until(lambda: (tmp_path / "kitchen-0001.png").exists())
        assert (tmp_path / "kitchen-0001.txt").read_text(encoding="utf-8") == EXPECTED_TEXT
        assert (tmp_path / "kitchen-0001.bin").read_bytes() == TICKET
        ctl = ["ctl", "--control", f"127.0.0.1:{control_port}"]
        assert main([*ctl, "paper", "kitchen", "out"]) == 0
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
            assert ask(sock, 4) == 0x7E
        assert main([*ctl, "paper", "kitchen", "wet"]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "=== kitchen ticket 1" in out
    assert "K I T C H E N" in out


def test_refuse_also_drops_connections_that_were_already_open() -> None:
    with (
        EmulatedPrinter("k", host="127.0.0.1") as printer,
        socket.create_connection(printer.address, timeout=2) as client,
    ):
        client.sendall(b"\x10\x04\x01")
        assert len(client.recv(1)) == 1
        printer.set_fault(FaultMode.REFUSE)
        client.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(1) == b""
        with pytest.raises(OSError):
            client.sendall(b"\x10\x04\x01")
            client.sendall(b"\x10\x04\x01" * 1000)
            client.recv(1)


def test_black_hole_switched_on_mid_connection_answers_nothing_more() -> None:
    with (
        EmulatedPrinter("k", host="127.0.0.1") as printer,
        socket.create_connection(printer.address, timeout=2) as client,
    ):
        client.sendall(b"\x10\x04\x01")
        assert len(client.recv(1)) == 1
        printer.set_fault(FaultMode.BLACK_HOLE)
        client.sendall(b"\x10\x04\x01")
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            client.recv(1)
        printer.set_fault(FaultMode.NONE)
        client.settimeout(2)
        assert len(client.recv(1)) == 1, "the held request is answered once it recovers"
