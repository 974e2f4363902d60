"""The `kprintd` command: subcommand dispatch and log output for people and for journald."""

from __future__ import annotations

import json
import subprocess
import sys

from kprintd import __version__


def kprintd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_and_help_list_every_command() -> None:
    assert kprintd("--version").stdout.strip() == f"kprintd {__version__}"
    help_text = kprintd("--help").stdout
    for command in ("migrate", "run", "emulator"):
        assert command in help_text


def test_emulator_options_reach_the_emulator() -> None:
    result = kprintd("emulator", "--help")
    assert result.returncode == 0
    assert "--printer NAME=HOST:PORT" in result.stdout


def test_emulator_refuses_addresses_outside_loopback() -> None:
    result = kprintd("emulator", "--printer", "kitchen=192.0.2.10:9100")
    assert result.returncode != 0
    assert "127.0.0.0/8" in result.stderr or "loopback" in result.stderr


def test_library_logs_are_json_lines_when_not_on_a_terminal() -> None:
    code = (
        "import logging, structlog\n"
        "from kprintd.logs import configure_logging\n"
        "configure_logging('info', 'auto')\n"
        "logging.getLogger('psycopg.pool').warning('pool %s', 'trouble')\n"
        "structlog.get_logger('k').info('ticket printed', ticket_id=7, station='bar')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[0]["event"] == "pool trouble" and lines[0]["level"] == "warning"
    assert lines[1]["ticket_id"] == 7 and lines[1]["station"] == "bar"
