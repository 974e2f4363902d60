"""The systemd integration: the unit file is valid and hardened, and sd_notify really talks."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kprintd.harness import daemon_process
from kprintd.sdnotify import SystemdNotifier, watchdog_interval_s

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "kprintd.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def unit_with_real_binary(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's kprintd, which verify insists exists."""
    kprintd = Path(sys.executable).parent / "kprintd"
    unit = tmp_path / "kprintd.service"
    unit.write_text(UNIT.read_text().replace("/opt/kprintd/bin/kprintd", str(kprintd)))
    return unit


@needs_systemd_analyze
def test_unit_verifies_cleanly(unit_with_real_binary: Path) -> None:
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit_with_real_binary)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@needs_systemd_analyze
def test_unit_exposure_is_two_or_lower() -> None:
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(UNIT)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for kprintd\.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_is_a_notify_service_with_watchdog_and_dedicated_user() -> None:
    settings = dict(
        line.split("=", 1) for line in UNIT.read_text().splitlines() if re.match(r"^\w+=", line)
    )
    assert settings["Type"] == "notify"
    assert settings["Restart"] == "on-failure"
    assert settings["EnvironmentFile"] == "/etc/kprintd/kprintd.env"
    assert settings["User"] == "kprintd"
    assert int(settings["WatchdogSec"].rstrip("s")) > 0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(15)
    yield sock
    sock.close()


def receive_until(sock: socket.socket, key: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    while True:
        data = sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.splitlines())
        messages.append(fields)
        if key in fields:
            return messages


def test_notifier_sends_datagrams_to_a_real_socket(notify_socket: socket.socket) -> None:
    notifier = SystemdNotifier(notify_socket.getsockname())
    assert notifier.ready("listening; 0 ticket(s) waiting")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=listening; 0 ticket(s) waiting"
    assert notifier.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"kprintd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert SystemdNotifier("@" + name).status("hello")
        assert sock.recv(100) == b"STATUS=hello"


def test_notifier_without_systemd_is_silent() -> None:
    notifier = SystemdNotifier(None)
    assert not notifier.enabled
    assert notifier.ready("x") is False


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval_s() is None, "the watchdog is meant for another process"
    monkeypatch.delenv("WATCHDOG_USEC")
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_interval_s() is None


@pytest.mark.slow
def test_daemon_reports_ready_status_watchdog_and_stopping(
    database_url: str, notify_socket: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.getsockname())
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    with daemon_process(database_url, tmp_path / "daemon.log") as process:
        ready = receive_until(notify_socket, "READY")[-1]
        assert ready["READY"] == "1"
        assert "listening" in ready["STATUS"]
        assert receive_until(notify_socket, "WATCHDOG")[-1]["WATCHDOG"] == "1"
        process.send_signal(signal.SIGTERM)
        stopping = receive_until(notify_socket, "STOPPING")[-1]
        assert stopping["STOPPING"] == "1"
        assert process.wait(15) == 0
