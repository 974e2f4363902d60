"""Schema migrations: applies the numbered plain-SQL files of sql/ in order, exactly once each.

Owns the bookkeeping table kprintd_schema_migrations (version, checksum), the advisory lock that
keeps two concurrent `kprintd migrate` runs from applying a file twice, and the refusal to go on
when an applied file was edited. The SQL files themselves stay plain: a DBA can read them and
apply them with psql.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every kprintd migrate process.
MIGRATE_LOCK_KEY = 0x6B70726E74_64  # "kprnt" "d"

BOOKKEEPING_DDL = """
CREATE TABLE IF NOT EXISTS kprintd_schema_migrations (
    version     VARCHAR(4) PRIMARY KEY,
    filename    TEXT NOT NULL,
    checksum    CHAR(64) NOT NULL,
    applied_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    applied_by  TEXT NOT NULL DEFAULT session_user
)
"""


class MigrationError(Exception):
    """The database and the migration files disagree; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name

    def sql_text(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationState:
    applied: list[tuple[Migration, str]]  # (migration, applied_at as text)
    pending: list[Migration]


def default_migrations_dir() -> Path:
    """sql/ of a source checkout, else the copy installed under <prefix>/share/kprintd/sql."""
    checkout = Path(__file__).resolve().parent.parent / "sql"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "kprintd" / "sql"


def discover(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        migrations.append(Migration(match["version"], path, checksum))
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationError(f"two migration files share version {', '.join(duplicates)}")
    return migrations


def _plan(
    conn: psycopg.Connection[tuple[object, ...]], migrations: list[Migration]
) -> MigrationState:
    rows = conn.execute(
        "SELECT version, filename, checksum, applied_at::text FROM kprintd_schema_migrations"
        " ORDER BY version"
    ).fetchall()
    on_disk = {m.version: m for m in migrations}
    applied: list[tuple[Migration, str]] = []
    for version, filename, checksum, applied_at in rows:
        migration = on_disk.get(str(version))
        if migration is None:
            raise MigrationError(
                f"the database has migration {version} ({filename}) that these files do not: "
                "this kprintd is older than the schema; upgrade kprintd"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.filename} was edited after it was applied (checksum "
                f"{str(checksum)[:12]} in the database, {migration.checksum[:12]} on disk); "
                "put the change in a new migration file instead"
            )
        applied.append((migration, str(applied_at)))
    applied_versions = {m.version for m, _ in applied}
    pending = [m for m in migrations if m.version not in applied_versions]
    if applied and pending and pending[0].version < applied[-1][0].version:
        raise MigrationError(
            f"{pending[0].filename} is older than the newest applied migration "
            f"{applied[-1][0].filename}; renumber it after the applied ones"
        )
    return MigrationState(applied, pending)


def _ensure_bookkeeping(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    with conn.transaction():
        conn.execute(BOOKKEEPING_DDL)


def status(conninfo: str, directory: Path | None = None) -> MigrationState:
    migrations = discover(directory or default_migrations_dir())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT pg_advisory_lock({})").format(MIGRATE_LOCK_KEY))
        _ensure_bookkeeping(conn)
        return _plan(conn, migrations)


def plan(conninfo: str, directory: Path | None = None) -> list[tuple[Migration, list[str]]]:
    """What `migrate` would do, found by doing it in one transaction that is rolled back.

    Returns each pending file with what it said it does (its NOTICEs: tables adopted, columns
    added, defaults set). Nothing is changed, not even the bookkeeping table.
    """
    migrations = discover(directory or default_migrations_dir())
    steps: list[tuple[Migration, list[str]]] = []
    said: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT pg_advisory_lock({})").format(MIGRATE_LOCK_KEY))
        conn.add_notice_handler(lambda notice: said.append(notice.message_primary or ""))
        with conn.transaction(force_rollback=True):
            conn.execute(BOOKKEEPING_DDL)
            said.clear()
            for migration in _plan(conn, migrations).pending:
                try:
                    conn.execute(migration.sql_text().encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{migration.filename} would fail: {_one_line(exc)}"
                    ) from exc
                steps.append((migration, list(said)))
                said.clear()
    return steps


def _one_line(exc: psycopg.Error) -> str:
    """The server's message and hint on one line (a DBA reads it in a terminal or a log)."""
    diag = exc.diag
    message = diag.message_primary or str(exc)
    text = f"{message} (hint: {diag.message_hint})" if diag.message_hint else message
    return " ".join(text.split())


def migrate(conninfo: str, directory: Path | None = None) -> list[Migration]:
    """Apply every pending file, all in one transaction; returns what was applied.

    One transaction: a file that fails (a POS column kprintd cannot use, say) leaves the database
    exactly as it was, not half installed.
    """
    migrations = discover(directory or default_migrations_dir())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # Session-level lock: a second `kprintd migrate` waits here, then finds nothing pending.
        conn.execute(sql.SQL("SELECT pg_advisory_lock({})").format(MIGRATE_LOCK_KEY))
        _ensure_bookkeeping(conn)
        pending = _plan(conn, migrations).pending
        with conn.transaction():
            for migration in pending:
                try:
                    with conn.transaction():
                        conn.execute(migration.sql_text().encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{migration.filename} failed and was rolled back, with every file "
                        f"pending before it: {_one_line(exc)}"
                    ) from exc
                conn.execute(
                    "INSERT INTO kprintd_schema_migrations (version, filename, checksum)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.filename, migration.checksum),
                )
    return pending
