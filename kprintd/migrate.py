"""Schema migrations: applies the numbered plain-SQL files of sql/migrations in order, once each.

Owns the advisory lock that keeps two concurrent `kprintd migrate` runs from applying a file twice,
the checksums in kprintd_schema_migrations, and the refusal to go on when an applied file was
edited. The SQL files themselves stay plain: a DBA can read them and apply them with psql. Each
file records its own version in kprintd_schema_migrations (sql/schema/20_tables.sql), so a
database migrated with psql is one `kprintd run` accepts; kprintd migrate adds the file's checksum.
The files ship inside the package (kprintd.sql, mapped from the checkout's sql/ in pyproject.toml).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every kprintd migrate process.
MIGRATE_LOCK_KEY = 0x6B70726E74_64  # "kprnt" "d"

BOOKKEEPING_TABLE = "public.kprintd_schema_migrations"


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
    by_hand: list[Migration]  # applied without kprintd migrate: no checksum recorded yet


def sql_files(subdirectory: str) -> Path:
    """A directory of the SQL shipped with kprintd: "migrations" or "schema"."""
    directory = resources.files("kprintd.sql").joinpath(subdirectory)
    if not isinstance(directory, Path):
        raise MigrationError(f"kprintd's SQL files are not in a directory ({directory})")
    return directory


def default_migrations_dir() -> Path:
    return sql_files("migrations")


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
    rows: list[tuple[object, ...]] = []
    if conn.execute("SELECT to_regclass(%s)", (BOOKKEEPING_TABLE,)).fetchone() != (None,):
        rows = conn.execute(
            "SELECT version, filename, checksum, applied_at::text FROM kprintd_schema_migrations"
            " ORDER BY version"
        ).fetchall()
    on_disk = {m.version: m for m in migrations}
    applied: list[tuple[Migration, str]] = []
    by_hand: list[Migration] = []
    for version, filename, checksum, applied_at in rows:
        migration = on_disk.get(str(version))
        if migration is None:
            raise MigrationError(
                f"the database has migration {version} ({filename}) that these files do not: "
                "this kprintd is older than the schema; upgrade kprintd"
            )
        if migration.filename != filename:
            raise MigrationError(
                f"the database has migration {version} as {filename}, these files have "
                f"{migration.filename}: the database was migrated with other files; "
                "migrate a new database"
            )
        if checksum is None:
            by_hand.append(migration)
        elif migration.checksum != checksum:
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
    return MigrationState(applied, pending, by_hand)


def status(conninfo: str, directory: Path | None = None) -> MigrationState:
    migrations = discover(directory or default_migrations_dir())
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT pg_advisory_lock({})").format(MIGRATE_LOCK_KEY))
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
        state = _plan(conn, migrations)
        pending = state.pending
        with conn.transaction():
            # A file applied by hand is taken as it is on disk now; from here on it is checked.
            for migration in state.by_hand:
                _record_checksum(conn, migration)
            for migration in pending:
                try:
                    with conn.transaction():
                        conn.execute(migration.sql_text().encode())
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"{migration.filename} failed and was rolled back, with every file "
                        f"pending before it: {_one_line(exc)}"
                    ) from exc
                _record_checksum(conn, migration)
    return pending


def _record_checksum(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    """Adds the file's checksum to the row the file wrote about itself."""
    recorded = None
    if conn.execute("SELECT to_regclass(%s)", (BOOKKEEPING_TABLE,)).fetchone() != (None,):
        recorded = conn.execute(
            "UPDATE kprintd_schema_migrations SET checksum = %s"
            " WHERE version = %s AND filename = %s RETURNING version",
            (migration.checksum, migration.version, migration.filename),
        ).fetchone()
    if recorded is None:
        raise MigrationError(
            f"{migration.filename} does not record itself: end it with INSERT INTO "
            f"public.kprintd_schema_migrations (version, filename) VALUES "
            f"('{migration.version}', '{migration.filename}'); nothing was applied"
        )
