"""A database kprintd cannot use: one line and exit 2 from every command, never a traceback, and
`kprintd run` stops at once on what waiting cannot cure, while it waits out what it can."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kprintd import daemon
from kprintd.harness import (
    PostgresServer,
    daemon_env,
    daemon_process,
    listener_connected,
    query,
    wait_until,
)
from kprintd.harness.pgembed import EmbeddedPostgres, EmbeddedPostgresError, find_server_bindir

COMMANDS = [
    pytest.param(["migrate"], id="migrate"),
    pytest.param(["migrate", "--status"], id="migrate-status"),
    pytest.param(["status"], id="status"),
    pytest.param(["alerts", "--timeout", "1"], id="alerts"),
    pytest.param(["run"], id="run"),
]


def kprintd(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", *args],
        env=daemon_env(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a command that cannot use its database must print, after checking it did."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kprintd: "), result.stderr
    return lines[0]


def with_params(url: str, **params: str) -> str:
    merged = psycopg.conninfo.conninfo_to_dict(url) | params
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in merged.items()})


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def role(postgres_server: PostgresServer) -> Iterator[str]:
    """A new role's name, dropped after the test; the test says what it may do."""
    name = f"kprintd_role_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def create_role(postgres_server: PostgresServer, name: str, options: str) -> None:
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(name)))


@pytest.mark.parametrize("args", [c for c in COMMANDS if c.id != "run"])
def test_an_unreachable_database_is_one_line_and_exit_2(args: list[str]) -> None:
    url = f"postgresql://kprintd@127.0.0.1:{closed_port()}/pos"
    line = one_error_line(kprintd(url, *args))
    assert "Connection refused" in line


@pytest.mark.slow
def test_run_waits_out_an_unreachable_database_until_stopped(tmp_path: Path) -> None:
    url = f"postgresql://kprintd@127.0.0.1:{closed_port()}/pos"
    log = tmp_path / "daemon.log"
    with daemon_process(url, log) as process:
        wait_until(lambda: "database unreachable" in log.read_text(), what="a retry")
        assert process.poll() is None, "a refused connection is retried, not fatal"
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


@pytest.mark.parametrize("args", COMMANDS)
def test_a_role_that_cannot_log_in_is_one_line_and_exit_2(
    args: list[str], database_url: str, postgres_server: PostgresServer, role: str
) -> None:
    create_role(postgres_server, role, "NOLOGIN")
    line = one_error_line(kprintd(with_params(database_url, user=role), *args))
    # A server asking local clients for passwords refuses the role before it looks at NOLOGIN.
    assert "not permitted to log in" in line or "password" in line


@pytest.mark.parametrize("args", [["run"], ["migrate"]], ids=["run", "migrate"])
def test_a_missing_database_is_one_line_and_exit_2(args: list[str], database_url: str) -> None:
    missing = f"kprintd_missing_{uuid.uuid4().hex[:12]}"
    line = one_error_line(kprintd(with_params(database_url, dbname=missing), *args))
    assert f'database "{missing}" does not exist' in line


@pytest.mark.parametrize("args", COMMANDS)
def test_a_role_without_privileges_is_one_line_and_exit_2(
    args: list[str], database_url: str, postgres_server: PostgresServer, role: str
) -> None:
    create_role(postgres_server, role, "LOGIN")
    line = one_error_line(kprintd(with_params(database_url, user=role), *args))
    assert "permission denied" in line


def test_run_refuses_a_database_without_the_schema(empty_database_url: str) -> None:
    line = one_error_line(kprintd(empty_database_url, "run"))
    assert "no kprintd schema" in line and "kprintd migrate" in line


def test_run_refuses_a_schema_older_than_the_code(database_url: str) -> None:
    newest = query(
        database_url,
        "DELETE FROM kprintd_schema_migrations"
        " WHERE version = (SELECT max(version) FROM kprintd_schema_migrations)"
        " RETURNING filename",
    )[0]["filename"]
    line = one_error_line(kprintd(database_url, "run"))
    assert "older than this kprintd" in line and newest in line and "kprintd migrate" in line


def test_run_refuses_a_schema_newer_than_the_code(database_url: str) -> None:
    query(
        database_url,
        "INSERT INTO kprintd_schema_migrations (version, filename, checksum)"
        " VALUES ('9999', '9999_from_the_future.sql', repeat('0', 64))",
    )
    line = one_error_line(kprintd(database_url, "run"))
    assert "newer than this kprintd" in line and "9999" in line and "upgrade kprintd" in line


def test_run_checks_the_schema_again_after_a_reconnect(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    with daemon_process(database_url, log) as process:
        wait_until(lambda: listener_connected(database_url), what="daemon listening")
        query(
            database_url,
            "DELETE FROM kprintd_schema_migrations"
            " WHERE version = (SELECT max(version) FROM kprintd_schema_migrations)",
        )
        query(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'kprintd-listener' AND datname = current_database()",
        )
        assert process.wait(30) == 2
    output = log.read_text()
    assert "Traceback" not in output
    assert "kprintd: cannot run: the database schema is older than this kprintd" in output


@pytest.fixture(scope="module")
def password_server() -> Iterator[EmbeddedPostgres]:
    """A throwaway cluster of its own that asks roles other than its superuser for a password:
    the shared one trusts every local connection."""
    try:
        find_server_bindir()
    except EmbeddedPostgresError as exc:
        pytest.skip(str(exc))
    server = EmbeddedPostgres()
    try:
        server.initdb()
        (server.data_dir / "pg_hba.conf").write_text(
            f"local all {server.user} trust\nlocal all all scram-sha-256\n"
        )
        server.start()
        with psycopg.connect(server.conninfo(), autocommit=True) as admin:
            admin.execute("CREATE ROLE cook LOGIN PASSWORD 'right'")
        yield server
    finally:
        server.destroy()


@pytest.mark.slow
@pytest.mark.parametrize("args", COMMANDS)
def test_a_wrong_password_is_one_line_and_exit_2(
    args: list[str], password_server: EmbeddedPostgres
) -> None:
    right = with_params(password_server.conninfo(), user="cook", password="right")
    psycopg.connect(right).close()  # the role can log in: only the password is wrong below
    line = one_error_line(kprintd(with_params(right, password="wrong"), *args))
    assert 'password authentication failed for user "cook"' in line


@pytest.mark.parametrize(
    ("message", "incurable"),
    [
        # Refusals at log-in this suite cannot provoke (its server trusts local connections).
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.5", user "kprintd", database "pos"', True),
        ('FATAL:  permission denied for database "pos" DETAIL: User does not have CONNECT', True),
        ('FATAL:  Ident authentication failed for user "kprintd"', True),
        ("fe_sendauth: no password supplied", True),
        # What a restart, a crowd or the network says: waiting cures it.
        ("FATAL:  the database system is starting up", False),
        ("FATAL:  the database system is shutting down", False),
        ("FATAL:  sorry, too many clients already", False),
        (
            'could not translate host name "db" to address: Temporary failure in name resolution',
            False,
        ),
        ("server closed the connection unexpectedly", False),
    ],
)
def test_which_log_in_failures_waiting_cannot_cure(message: str, incurable: bool) -> None:
    error = psycopg.OperationalError(f"connection failed: connection to server failed: {message}")
    assert error.sqlstate is None, "psycopg keeps no SQLSTATE for a failed log-in"
    assert daemon.incurable(error) is incurable
