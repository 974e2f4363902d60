"""The migration runner: order, idempotence, checksums, concurrency and the CLI around it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from kprintd import migrate

SQL_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"


def recorded(version: str, name: str, sql_text: str) -> str:
    """A migration file as they all end: recording itself."""
    return (
        f"{sql_text}\nINSERT INTO public.kprintd_schema_migrations (version, filename)"
        f" VALUES ('{version}', '{version}_{name}.sql');\n"
    )


def applied_versions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('kprintd_schema_migrations')").fetchone() == (None,):
            return []
        return [
            row[0]
            for row in conn.execute("SELECT version FROM kprintd_schema_migrations ORDER BY 1")
        ]


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    target = tmp_path / "sql"
    shutil.copytree(SQL_DIR, target)
    return target


def test_applies_every_file_in_order_and_records_checksums(empty_database_url: str) -> None:
    applied = migrate.migrate(empty_database_url)
    files = sorted(p.name for p in SQL_DIR.glob("*.sql"))
    assert [m.filename for m in applied] == files
    state = migrate.status(empty_database_url)
    assert state.pending == []
    assert [m.filename for m, _ in state.applied] == files
    with psycopg.connect(empty_database_url) as conn:
        table = conn.execute("SELECT to_regclass('kitchen_kitchenticket')").fetchone()
    assert table is not None and table[0] == "kitchen_kitchenticket"


def test_second_run_is_a_no_op(empty_database_url: str) -> None:
    migrate.migrate(empty_database_url)
    assert migrate.migrate(empty_database_url) == []


def test_edited_applied_file_is_refused_and_nothing_is_applied(
    empty_database_url: str, sql_copy: Path
) -> None:
    migrate.migrate(empty_database_url, sql_copy)
    before = applied_versions(empty_database_url)
    first = sorted(sql_copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    (sql_copy / "9999_later.sql").write_text(
        recorded("9999", "later", "CREATE TABLE later_table (id int);")
    )
    with pytest.raises(migrate.MigrationError, match="was edited after it was applied"):
        migrate.migrate(empty_database_url, sql_copy)
    assert applied_versions(empty_database_url) == before
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('later_table')").fetchone() == (None,)


def test_failed_file_is_rolled_back_and_reported(empty_database_url: str, sql_copy: Path) -> None:
    (sql_copy / "9998_half.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(migrate.MigrationError, match=r"9998_half\.sql failed and was rolled back"):
        migrate.migrate(empty_database_url, sql_copy)
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    # Nothing of that run was applied: a half-installed kprintd is never left behind.
    assert applied_versions(empty_database_url) == []


def test_database_newer_than_files_is_refused(empty_database_url: str, sql_copy: Path) -> None:
    (sql_copy / "9997_newer.sql").write_text(recorded("9997", "newer", "SELECT 1;"))
    migrate.migrate(empty_database_url, sql_copy)
    with pytest.raises(migrate.MigrationError, match="older than the schema"):
        migrate.migrate(empty_database_url)


def test_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "create_things.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match=r"NNNN_name\.sql"):
        migrate.discover(tmp_path)


def test_two_concurrent_runs_apply_each_file_once(empty_database_url: str) -> None:
    results: list[list[migrate.Migration]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            results.append(migrate.migrate(empty_database_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    applied_counts = sorted(len(r) for r in results)
    assert applied_counts == [0, len(list(SQL_DIR.glob("*.sql")))]
    versions = applied_versions(empty_database_url)
    assert len(versions) == len(set(versions))


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("KPRINTD_")}
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", *args],
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_migrate_then_status(empty_database_url: str) -> None:
    env = {"KPRINTD_DATABASE_URL": empty_database_url}
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_baseline.sql" in first.stdout
    second = run_cli("migrate", env=env)
    assert second.returncode == 0
    assert "schema is up to date" in second.stdout
    status = run_cli("migrate", "--status", env=env)
    assert status.returncode == 0
    assert "pending" not in status.stdout
    assert status.stdout.count("applied  ") == len(list(SQL_DIR.glob("*.sql")))


def test_cli_refuses_edited_file_with_nonzero_exit(empty_database_url: str, sql_copy: Path) -> None:
    env = {"KPRINTD_DATABASE_URL": empty_database_url}
    assert run_cli("migrate", "--dir", str(sql_copy), env=env).returncode == 0
    target = sql_copy / "9996_later.sql"
    target.write_text(recorded("9996", "later", "CREATE TABLE later_table (id int);"))
    assert run_cli("migrate", "--dir", str(sql_copy), env=env).returncode == 0
    target.write_text(target.read_text().replace("CREATE", "create", 1))
    result = run_cli("migrate", "--dir", str(sql_copy), env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("kprintd: ")
    assert target.name in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "KPRINTD_DATABASE_URL is not set"),
        ({"KPRINTD_DATABASE_URL": "host='unterminated"}, "KPRINTD_DATABASE_URL not a libpq URL"),
        (
            {"KPRINTD_DATABASE_URL": "postgresql:///x", "KPRINTD_STORE_ID": "store-7"},
            "KPRINTD_STORE_ID",
        ),
        (
            {"KPRINTD_DATABASE_URL": "postgresql:///x", "KPRINTD_PRINTER_CONNECT_TIMEOUT_S": "-1"},
            "KPRINTD_PRINTER_CONNECT_TIMEOUT_S",
        ),
    ],
)
def test_bad_configuration_is_one_clear_line(env: dict[str, str], expected: str) -> None:
    result = run_cli("migrate", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kprintd: configuration error: ")
    assert expected in lines[0]


def test_env_file_is_read(empty_database_url: str, tmp_path: Path) -> None:
    env_file = tmp_path / "kprintd.env"
    env_file.write_text(f"KPRINTD_DATABASE_URL='{empty_database_url}'\n")
    result = run_cli("--env-file", str(env_file), "migrate", env={})
    assert result.returncode == 0, result.stderr
    missing = run_cli("--env-file", str(tmp_path / "absent.env"), "migrate", env={})
    assert missing.returncode == 2
    assert "absent.env does not exist" in missing.stderr


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_a_dba_can_apply_every_file_with_psql(empty_database_url: str) -> None:
    for path in sorted(SQL_DIR.glob("*.sql")):
        result = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-d",
                empty_database_url,
                "-f",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute("SELECT to_regprocedure('kitchen_create_tickets(bigint,bigint[],text)')")
        assert row.fetchone() != (None,)
    # Each file recorded itself: the daemon's check passes, and kprintd migrate finds nothing to do
    # but takes each file's checksum, from then on refusing a file edited after it was applied.
    state = migrate.status(empty_database_url)
    assert state.pending == []
    assert [m.filename for m in state.by_hand] == sorted(p.name for p in SQL_DIR.glob("*.sql"))
    assert migrate.migrate(empty_database_url) == []
    assert migrate.status(empty_database_url).by_hand == []
    with psycopg.connect(empty_database_url) as conn:
        checksums = conn.execute("SELECT checksum FROM kprintd_schema_migrations").fetchall()
    assert checksums and all(row[0] is not None for row in checksums)


def test_a_file_that_does_not_record_itself_is_refused(
    empty_database_url: str, sql_copy: Path
) -> None:
    (sql_copy / "9995_silent.sql").write_text("CREATE TABLE silent_table (id int);")
    with pytest.raises(migrate.MigrationError, match=r"9995_silent\.sql does not record itself"):
        migrate.migrate(empty_database_url, sql_copy)
    assert applied_versions(empty_database_url) == []


def test_a_database_migrated_with_other_files_is_refused(
    empty_database_url: str, sql_copy: Path
) -> None:
    migrate.migrate(empty_database_url, sql_copy)
    with psycopg.connect(empty_database_url) as conn:
        conn.execute(
            "UPDATE kprintd_schema_migrations SET filename = '0001_pos_reference_tables.sql'"
            " WHERE version = '0001'"
        )
    with pytest.raises(migrate.MigrationError, match="migrated with other files"):
        migrate.migrate(empty_database_url, sql_copy)


def test_every_migration_file_records_itself() -> None:
    for path in sorted(SQL_DIR.glob("*.sql")):
        version, _, _ = path.name.partition("_")
        expected = (
            "INSERT INTO public.kprintd_schema_migrations (version, filename)"
            f" VALUES ('{version}', '{path.name}');"
        )
        assert path.read_text().rstrip().endswith(expected), path.name


def test_the_sql_ships_inside_the_package() -> None:
    assert migrate.default_migrations_dir().samefile(SQL_DIR)
    assert sorted(p.name for p in migrate.sql_files("schema").glob("*.sql"))
