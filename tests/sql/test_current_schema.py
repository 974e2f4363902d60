"""sql/schema is the current schema: migrating step by step through sql/migrations gives the same
database as building it from sql/schema, and sql/schema defines each object once, documented."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kprintd import migrate
from kprintd.harness import PostgresServer
from tests.sql.schema_snapshot import differences, snapshot

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "sql" / "schema"
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.sql"))


@pytest.fixture
def schema_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database built from the files of sql/schema, in order, as psql -f would."""
    name = f"kprintd_schema_{os.getpid()}"
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres_server.conninfo(name)
    try:
        with psycopg.connect(url) as conn:
            for path in SCHEMA_FILES:
                conn.execute(path.read_text(encoding="utf-8").encode())
        yield url
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_migrations_and_schema_build_the_same_database(
    empty_database_url: str, schema_database_url: str
) -> None:
    migrate.migrate(empty_database_url)
    migrated, built = snapshot(empty_database_url), snapshot(schema_database_url)
    assert differences(migrated, built) == []
    # The picture is not empty: a broken query would make any two databases look equal.
    assert len(built["functions"]) > 50 and len(built["triggers"]) > 20
    assert built["database_settings"] and built["roles"]


def _statements(text: str) -> str:
    """The file without comments and string literals, where a CREATE could only be quoted."""
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


DEFINITION = re.compile(
    r"^\s*CREATE\s+(?P<replace>OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(?:CONSTRAINT\s+)?"
    r"(?P<kind>FUNCTION|AGGREGATE|VIEW|TRIGGER|TABLE|INDEX|SCHEMA)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>[\w.]+)(?P<rest>[^;]*)",
    re.IGNORECASE | re.MULTILINE,
)


def _definitions() -> list[tuple[str, str, str]]:
    """(file, kind, identity) of every object sql/schema creates, pg_temp helpers aside."""
    found = []
    for path in SCHEMA_FILES:
        for match in DEFINITION.finditer(_statements(path.read_text(encoding="utf-8"))):
            kind, name = match["kind"].upper(), match["name"].lower()
            if name.startswith("pg_temp."):
                continue
            if kind in ("FUNCTION", "AGGREGATE"):
                # Overloads differ in their arguments: the text up to the closing parenthesis.
                arguments, depth = "", 0
                for char in match["rest"]:
                    depth += {"(": 1, ")": -1}.get(char, 0)
                    arguments += char
                    if depth == 0 and arguments.strip():
                        break
                name += " ".join(arguments.split())
            if kind == "TRIGGER":
                table = re.search(r"\bON\s+([\w.]+)", match["rest"], re.IGNORECASE)
                name += f" ON {table[1] if table else '?'}"
            found.append((path.name, kind, name))
            assert match["replace"] is None, f"{path.name}: CREATE OR REPLACE {kind} {name}"
    return found


def test_each_object_is_defined_once() -> None:
    definitions = _definitions()
    assert len(definitions) > 100
    counts = Counter((kind, name) for _, kind, name in definitions)
    assert [f"{kind} {name}" for (kind, name), n in counts.items() if n > 1] == []


def test_each_function_view_and_table_is_commented_in_its_own_file() -> None:
    missing = []
    for file, kind, name in _definitions():
        if kind not in ("FUNCTION", "AGGREGATE", "VIEW", "TABLE", "SCHEMA"):
            continue
        if kind == "TABLE" and not name.startswith(("public.kitchen_", "public.kprintd_")):
            continue  # the POS's own tables, made here only where the POS has none: its to describe
        bare = name.split("(")[0]
        text = (SCHEMA_DIR / file).read_text(encoding="utf-8")
        comment = re.compile(
            rf"^COMMENT ON {kind} {re.escape(bare)}\b", re.IGNORECASE | re.MULTILINE
        )
        if not comment.search(text):
            missing.append(f"{file}: {kind} {name}")
    assert missing == []


def test_each_schema_file_says_what_it_owns() -> None:
    for path in SCHEMA_FILES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("-- ") and len(first) > 20, path.name
        # History belongs in git, not in the schema a DBA reads.
        assert not re.search(r"\b00\d\d\b|sql/00", path.read_text(encoding="utf-8")), path.name
