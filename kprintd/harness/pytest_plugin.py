"""The test harness: a real PostgreSQL server and a fresh, migrated database for every test.

Server source, first that applies: KPRINTD_TEST_DATABASE_URL (a server you run); testcontainers'
PostgreSQL when a Docker engine answers; otherwise a throwaway cluster from the local server
binaries (kprintd.pgembed). The schema is migrated once into a template database; each test gets
`CREATE DATABASE ... TEMPLATE`, which takes milliseconds.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from kprintd import migrate
from kprintd.harness.daemon import LOGIN_PASSWORD, LOGINS, Restaurant
from kprintd.harness.pgembed import EmbeddedPostgres, copy_database

TEMPLATE_DB = f"kprintd_test_template_{os.getpid()}"
_database_numbers = itertools.count(1)


@dataclass
class PostgresServer:
    """Where the test databases live; `embedded` is set when the server can be restarted."""

    admin_conninfo: str
    embedded: EmbeddedPostgres | None = None

    def conninfo(self, dbname: str) -> str:
        params = psycopg.conninfo.conninfo_to_dict(self.admin_conninfo)
        params["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("KPRINTD_TEST_DATABASE_URL")
    if url:
        yield PostgresServer(url)
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
        return
    server = EmbeddedPostgres()
    try:
        server.start()
        yield PostgresServer(server.conninfo(), embedded=server)
    finally:
        server.destroy()


def _drop_database(admin: psycopg.Connection[Any], name: str) -> None:
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_database(postgres_server: PostgresServer) -> str:
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        _drop_database(admin, TEMPLATE_DB)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    migrate.migrate(postgres_server.conninfo(TEMPLATE_DB))
    _create_logins(postgres_server)
    return TEMPLATE_DB


def _create_logins(postgres_server: PostgresServer) -> None:
    """One login per duty (sql/0033_roles.sql), as a store gives its daemon, POS and staff."""
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        for duty, login in LOGINS.items():
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
                continue
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login), sql.Literal(LOGIN_PASSWORD), sql.Identifier(duty)
                )
            )


@pytest.fixture
def database_url(postgres_server: PostgresServer, template_database: str) -> Iterator[str]:
    """A fresh database with every migration applied, dropped after the test."""
    name = f"kprintd_test_{os.getpid()}_{next(_database_numbers)}"
    copy_database(postgres_server.admin_conninfo, name, template_database)
    try:
        yield postgres_server.conninfo(name)
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            _drop_database(admin, name)


@pytest.fixture
def empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = f"kprintd_empty_{os.getpid()}_{next(_database_numbers)}"
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.conninfo(name)
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            _drop_database(admin, name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """An autocommit connection to the test's database, rows as dicts."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def restaurant(database_url: str) -> Iterator[Restaurant]:
    """A brand with emulated printers on loopback (stopped after the test); see Restaurant."""
    place = Restaurant(database_url)
    yield place
    place.stop()


@pytest.fixture
def alerts(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection LISTENing on kitchen_alert; read what arrived with received_alerts()."""
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN kitchen_alert")
        yield listener
