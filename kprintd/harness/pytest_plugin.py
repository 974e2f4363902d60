"""The harness as a pytest plugin: a real PostgreSQL server and a fresh, migrated database per test.

Load it with `pytest_plugins = ["kprintd.harness.pytest_plugin"]` in a conftest.py (tests/ does).
Server source, first that applies: KPRINTD_TEST_DATABASE_URL (a server you run); testcontainers'
PostgreSQL when a Docker engine answers; otherwise a throwaway cluster from the local server
binaries (kprintd.harness.pgembed); see kprintd.harness.cluster.any_server. The schema is migrated
once into a template database; each test gets `CREATE DATABASE ... TEMPLATE`, which takes
milliseconds.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from kprintd.harness.cluster import PostgresServer, any_server
from kprintd.harness.pos import Restaurant

TEMPLATE_DB = f"kprintd_test_template_{os.getpid()}"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with any_server() as server:
        yield server


@pytest.fixture(scope="session")
def template_database(postgres_server: PostgresServer) -> str:
    """The migrated database every test's database copies; the duties' logins exist."""
    return postgres_server.prepare_template(TEMPLATE_DB)


@pytest.fixture
def database_url(postgres_server: PostgresServer, template_database: str) -> Iterator[str]:
    """A fresh database with every migration applied, dropped after the test."""
    name = f"kprintd_test_{os.getpid()}_{next(_database_numbers)}"
    url = postgres_server.new_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = f"kprintd_empty_{os.getpid()}_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


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
