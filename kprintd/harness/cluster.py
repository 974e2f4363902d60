"""PostgreSQL for the harness: a server, kprintd's schema migrated once, fresh databases from it.

Owns where the databases live (:class:`PostgresServer`: a throwaway cluster from the local server
binaries, see kprintd.harness.pgembed, or any server you give), migrating a template database once
and copying it (`CREATE DATABASE ... TEMPLATE`, milliseconds) for every test, scenario or demo,
and the logins a store gives its daemon, POS and staff: one per duty of
sql/schema/60_roles_and_grants.sql.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from kprintd import migrate
from kprintd.harness.pgembed import EmbeddedPostgres, copy_database

# The advisory lock (on the server's maintenance database) held while a template is prepared.
TEMPLATE_LOCK = 0x6B70_7274

# One login per duty (a kprintd_* group role of sql/schema/60_roles_and_grants.sql), created in
# every cluster the harness prepares, so that a daemon, a POS or an auditor can run as it does in
# a store.
LOGINS = {
    "kprintd_daemon": "kprintd_test_daemon",
    "kprintd_pos": "kprintd_test_pos",
    "kprintd_manager": "kprintd_test_manager",
    "kprintd_auditor": "kprintd_test_auditor",
}
LOGIN_PASSWORD = "kprintd-test"


def as_login(database_url: str, duty: str) -> str:
    """The same database, connected as the harness's login of a duty (a kprintd_* group role)."""
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    params.update(user=LOGINS[duty], password=LOGIN_PASSWORD)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


@dataclass
class PostgresServer:
    """Where the databases live; `embedded` is set when the server can be restarted or crashed."""

    admin_conninfo: str
    embedded: EmbeddedPostgres | None = None
    template: str | None = None  # the migrated database new_database() copies

    def conninfo(self, dbname: str) -> str:
        params = psycopg.conninfo.conninfo_to_dict(self.admin_conninfo)
        params["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    def create_database(self, name: str) -> str:
        """An empty database (nothing migrated); returns its conninfo."""
        with psycopg.connect(self.admin_conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.conninfo(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def migrate(self, name: str) -> list[migrate.Migration]:
        """Every migration applied to database `name`, and the duties' logins; what was applied."""
        applied = migrate.migrate(self.conninfo(name))
        self.create_logins()
        return applied

    def prepare_template(self, name: str) -> str:
        """A freshly migrated database `name` (dropped first if an earlier run left it), which
        new_database() copies from now on; returns its name.

        One process at a time per server: the roles and logins are the cluster's, so two test
        processes sharing a server (pytest -n with KPRINTD_TEST_DATABASE_URL) would race to
        create them."""
        with psycopg.connect(self.admin_conninfo, autocommit=True) as lock:
            lock.execute("SELECT pg_advisory_lock(%s)", (TEMPLATE_LOCK,))
            self.drop_database(name)
            self.create_database(name)
            self.migrate(name)
        self.template = name
        return name

    def new_database(self, name: str) -> str:
        """A copy of the migrated template (prepare_template) named `name`; returns its conninfo."""
        assert self.template is not None, "prepare_template() first"
        copy_database(self.admin_conninfo, name, self.template)
        return self.conninfo(name)

    def create_logins(self) -> None:
        """One login per duty (LOGINS), as a store gives its daemon, POS and staff."""
        with psycopg.connect(self.admin_conninfo, autocommit=True) as admin:
            for duty, login in LOGINS.items():
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
                    continue
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                        sql.Identifier(login), sql.Literal(LOGIN_PASSWORD), sql.Identifier(duty)
                    )
                )

    def postmaster_pid(self) -> int:
        """The embedded server's postmaster process."""
        assert self.embedded is not None, "not an embedded server"
        pid_file = self.embedded.data_dir / "postmaster.pid"
        return int(pid_file.read_text().split("\n", 1)[0])


@contextlib.contextmanager
def embedded_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A throwaway cluster from the local server binaries, removed afterwards whatever happens.

    Not durable by default (fsync off: crash safety buys a throwaway cluster nothing); the
    benchmark asks for `durable=True`, as a store's server runs.
    """
    server = EmbeddedPostgres(durable=durable)
    try:
        server.start()
        yield PostgresServer(server.conninfo(), embedded=server)
    finally:
        server.destroy()


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def any_server() -> Iterator[PostgresServer]:
    """The test suite's server, the first that applies: KPRINTD_TEST_DATABASE_URL (a server you
    run); testcontainers' PostgreSQL when a Docker engine answers; otherwise embedded_server()."""
    url = os.environ.get("KPRINTD_TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        container: Any
        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
        return
    with embedded_server() as server:
        yield server
