"""The kitchen schema as the spec defines it, and the integrity 0002 adds to it.

Every column of the spec exists with the spec's type and default (and NOT NULL where the spec says
so), every REFERENCES of the spec is a foreign key, every index of the spec exists under its name
with the spec's columns, and the CHECK constraints and foreign keys turn bad rows away with an
error that names the constraint.

The cases share one migrated database, seeded once; every test runs in a transaction that is rolled
back, and a statement expected to fail runs in a savepoint of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row

from kprintd.harness.pgembed import copy_database

Row = dict[str, Any]

BRAND = UUID("a7a90000-0000-4000-8000-000000000001")
UNKNOWN_BRAND = UUID("deadbeef-0000-4000-8000-000000000000")
PRODUCT = UUID("a7a90000-0000-4000-8000-0000000000a1")
# Far above what the id sequences hand out to the rows the tests insert.
BILL, BILL_ITEM, PRINTER, TICKET = 7001, 7002, 7003, 7004
MISSING = 999_999

# A valid row of each table; a case overrides some of its values.
VALID: dict[str, Row] = {
    "kitchen_stationprinter": {
        "brand_id": BRAND,
        "station_code": "kitchen",
        "printer_name": "Backup Kitchen Printer",
        "printer_ip": "192.168.1.101",
    },
    "kitchen_kitchenticket": {"bill_id": BILL, "printer_target": "kitchen", "status": "new"},
    "kitchen_kitchenticketitem": {
        "kitchen_ticket_id": TICKET,
        "bill_item_id": BILL_ITEM,
        "quantity": 1,
    },
    "kitchen_kitchenticketlog": {
        "ticket_id": TICKET,
        "new_status": "new",
        "action": "created",
        "actor": "system",
    },
    "kitchen_printerhealthcheck": {"printer_id": PRINTER, "is_online": True},
}


def insert(conn: psycopg.Connection[Row], table: str, **values: Any) -> Row:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    row = conn.execute(query, list(values.values())).fetchone()
    assert row is not None
    return row


def seed(conn: psycopg.Connection[Row]) -> None:
    """One row of everything a new row can refer to: brand, product, bill, item, printer, ticket."""
    insert(conn, "core_brand", id=BRAND, name="Ayam Geprek Juara")
    insert(conn, "core_product", id=PRODUCT, brand_id=BRAND, name="Ayam Geprek Original")
    insert(conn, "pos_bill", id=BILL, brand_id=BRAND, bill_number="AG-0498")
    insert(
        conn,
        "pos_billitem",
        id=BILL_ITEM,
        bill_id=BILL,
        product_id=PRODUCT,
        quantity=2,
        printer_target="kitchen",
    )
    insert(
        conn,
        "kitchen_stationprinter",
        id=PRINTER,
        brand_id=BRAND,
        station_code="kitchen",
        printer_name="Main Kitchen Printer",
        printer_ip="192.168.1.100",
    )
    insert(
        conn,
        "kitchen_kitchenticket",
        id=TICKET,
        bill_id=BILL,
        printer_target="kitchen",
        status="new",
    )


@pytest.fixture(scope="module")
def seeded_database(postgres_server: Any, template_database: str) -> Iterator[str]:
    """A migrated, seeded database for this module (conftest's is per test, too slow for ~70)."""
    name = f"kprintd_constraints_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(drop)
    copy_database(postgres_server.admin_conninfo, name, template_database)
    try:
        with psycopg.connect(postgres_server.conninfo(name), row_factory=dict_row) as conn:
            seed(conn)
            conn.commit()
        yield postgres_server.conninfo(name)
    finally:
        with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
            admin.execute(drop)


@pytest.fixture(scope="module")
def module_conn(seeded_database: str) -> Iterator[psycopg.Connection[Row]]:
    with psycopg.connect(seeded_database, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def kitchen(module_conn: psycopg.Connection[Row]) -> Iterator[psycopg.Connection[Row]]:
    """The seeded database, inside a transaction that is rolled back after the test."""
    with module_conn.transaction(force_rollback=True):
        yield module_conn


@contextmanager
def refused(conn: psycopg.Connection[Row], error: type[Exception]) -> Iterator[Any]:
    """Expect `error` from the block, run in a savepoint so the test's transaction goes on."""
    with pytest.raises(error) as raised, conn.transaction():
        yield raised


# --- CHECK constraints ----------------------------------------------------------------------------

SP, KT, KTI, PHC = (
    "kitchen_stationprinter",
    "kitchen_kitchenticket",
    "kitchen_kitchenticketitem",
    "kitchen_printerhealthcheck",
)

REJECTED = [
    (SP, {"printer_port": 0}, "kitchen_stationprinter_port_range"),
    (SP, {"printer_port": 65536}, "kitchen_stationprinter_port_range"),
    (SP, {"priority": 0}, "kitchen_stationprinter_priority_positive"),
    (SP, {"priority": -1}, "kitchen_stationprinter_priority_positive"),
    (SP, {"paper_width_mm": 39}, "kitchen_stationprinter_paper_width_sane"),
    (SP, {"paper_width_mm": 121}, "kitchen_stationprinter_paper_width_sane"),
    (SP, {"chars_per_line": 15}, "kitchen_stationprinter_chars_per_line_sane"),
    (SP, {"chars_per_line": 97}, "kitchen_stationprinter_chars_per_line_sane"),
    (SP, {"station_code": ""}, "kitchen_stationprinter_station_code_nonblank"),
    (SP, {"station_code": "   "}, "kitchen_stationprinter_station_code_nonblank"),
    (SP, {"printer_name": " "}, "kitchen_stationprinter_printer_name_nonblank"),
    (SP, {"total_prints": -1}, "kitchen_stationprinter_counters_nonnegative"),
    (SP, {"failed_prints": -1}, "kitchen_stationprinter_counters_nonnegative"),
    (KT, {"status": "done"}, "kitchen_kitchenticket_status_valid"),
    (KT, {"status": "NEW"}, "kitchen_kitchenticket_status_valid"),
    (KT, {"status": ""}, "kitchen_kitchenticket_status_valid"),
    (KT, {"ticket_type": "refund"}, "kitchen_kitchenticket_ticket_type_valid"),
    (KT, {"printer_target": " "}, "kitchen_kitchenticket_printer_target_nonblank"),
    (KT, {"print_attempts": -1}, "kitchen_kitchenticket_attempts_nonnegative"),
    (KT, {"max_retries": 0}, "kitchen_kitchenticket_max_retries_positive"),
    (KT, {"is_reprint": True}, "kitchen_kitchenticket_reprint_has_original"),
    (KTI, {"quantity": 0}, "kitchen_kitchenticketitem_quantity_positive"),
    (KTI, {"quantity": -2}, "kitchen_kitchenticketitem_quantity_positive"),
    (PHC, {"paper_status": "empty"}, "kitchen_printerhealthcheck_paper_status_valid"),
    (PHC, {"paper_status": "OK"}, "kitchen_printerhealthcheck_paper_status_valid"),
    (PHC, {"response_time_ms": -1}, "kitchen_printerhealthcheck_response_time_nonnegative"),
]


def case_ids(cases: list[Any]) -> list[str]:
    """'stationprinter:printer_port=0' for each (table, values, ...) case."""
    ids = []
    for table, values, *_ in cases:
        settings = ",".join(f"{column}={value}" for column, value in values.items())
        ids.append(f"{table.removeprefix('kitchen_')}:{settings}")
    return ids


@pytest.mark.parametrize(("table", "values", "constraint"), REJECTED, ids=case_ids(REJECTED))
def test_check_constraint_rejects(
    kitchen: psycopg.Connection[Row], table: str, values: Row, constraint: str
) -> None:
    with refused(kitchen, errors.CheckViolation) as raised:
        insert(kitchen, table, **{**VALID[table], **values})
    assert raised.value.diag.constraint_name == constraint
    assert constraint in str(raised.value)


ACCEPTED = [
    (SP, {"printer_port": 1}),
    (SP, {"printer_port": 65535}),
    (SP, {"priority": 2}),
    (SP, {"paper_width_mm": 40, "chars_per_line": 16}),
    (SP, {"paper_width_mm": 58, "chars_per_line": 32}),
    (SP, {"paper_width_mm": 120, "chars_per_line": 96}),
    (SP, {"is_active": False, "total_prints": 0, "failed_prints": 0}),
    (KT, {"status": "printing", "print_attempts": 1, "printer_ip": ip_address("192.168.1.100")}),
    (KT, {"status": "printed", "printed_at": datetime(2026, 2, 4, 5, 0, 5, tzinfo=UTC)}),
    (KT, {"status": "failed", "print_attempts": 3, "error_message": "Connection timeout"}),
    (KT, {"ticket_type": "addition"}),
    (KT, {"ticket_type": "void"}),
    (KT, {"ticket_type": "checker"}),
    (KT, {"is_reprint": True, "original_ticket_id": TICKET}),
    (KT, {"max_retries": 1}),
    (KTI, {"quantity": 1}),
    *[(PHC, {"paper_status": status}) for status in ("ok", "low", "out", "jam", "unknown")],
    (PHC, {"is_online": False, "response_time_ms": 0}),
]


@pytest.mark.parametrize(("table", "values"), ACCEPTED, ids=case_ids(ACCEPTED))
def test_check_constraint_accepts_the_edges(
    kitchen: psycopg.Connection[Row], table: str, values: Row
) -> None:
    row = insert(kitchen, table, **{**VALID[table], **values})
    assert {column: row[column] for column in values} == values


def test_defaults_pass_the_checks(kitchen: psycopg.Connection[Row]) -> None:
    row = insert(kitchen, SP, **VALID[SP])
    spec_defaults = {
        "printer_port": 9100,
        "priority": 1,
        "paper_width_mm": 80,
        "chars_per_line": 32,
    }
    assert {column: row[column] for column in spec_defaults} == spec_defaults
    # The seed's bill has a kitchen ticket already: another one for the station is an addition.
    assert (
        insert(kitchen, KT, **{**VALID[KT], "printer_target": "dessert"})["ticket_type"] == "order"
    )
    assert insert(kitchen, KT, **VALID[KT])["ticket_type"] == "addition"
    assert insert(kitchen, PHC, **VALID[PHC])["paper_status"] == "unknown"


def test_printed_ticket_without_printed_at_cannot_be_stored(
    kitchen: psycopg.Connection[Row],
) -> None:
    """A printed ticket always has printed_at: the CHECK refuses it, unless a trigger fills it
    (0003's BEFORE INSERT trigger does)."""
    try:
        with kitchen.transaction():
            row = insert(kitchen, KT, **{**VALID[KT], "status": "printed", "printed_at": None})
    except errors.CheckViolation as error:
        assert error.diag.constraint_name == "kitchen_kitchenticket_printed_has_time"
        assert "kitchen_kitchenticket_printed_has_time" in str(error)
    else:
        assert row["printed_at"] is not None


def test_printed_has_time_check_itself(kitchen: psycopg.Connection[Row]) -> None:
    """With user triggers off, the CHECK alone refuses a printed ticket without printed_at."""
    statements = [
        ("INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
         " VALUES (%s, 'kitchen', 'printed')", BILL),
        ("UPDATE kitchen_kitchenticket SET status = 'printed' WHERE id = %s", TICKET),
    ]  # fmt: skip
    kitchen.execute("ALTER TABLE kitchen_kitchenticket DISABLE TRIGGER USER")
    for statement, param in statements:
        with refused(kitchen, errors.CheckViolation) as raised:
            kitchen.execute(statement, [param])
        assert raised.value.diag.constraint_name == "kitchen_kitchenticket_printed_has_time"


# --- Foreign keys ---------------------------------------------------------------------------------

DANGLING = [
    (SP, {"brand_id": UNKNOWN_BRAND}, "kitchen_stationprinter_brand_id_fkey"),
    (KT, {"bill_id": MISSING}, "kitchen_kitchenticket_bill_id_fkey"),
    (KT, {"is_reprint": True, "original_ticket_id": MISSING},
     "kitchen_kitchenticket_original_ticket_id_fkey"),
    (KT, {"printer_id": MISSING}, "kitchen_kitchenticket_printer_id_fkey"),
    (KTI, {"kitchen_ticket_id": MISSING}, "kitchen_kitchenticketitem_kitchen_ticket_id_fkey"),
    (KTI, {"bill_item_id": MISSING}, "kitchen_kitchenticketitem_bill_item_id_fkey"),
    ("kitchen_kitchenticketlog", {"ticket_id": MISSING}, "kitchen_kitchenticketlog_ticket_id_fkey"),
    (PHC, {"printer_id": MISSING}, "kitchen_printerhealthcheck_printer_id_fkey"),
]  # fmt: skip


@pytest.mark.parametrize(("table", "values", "constraint"), DANGLING, ids=case_ids(DANGLING))
def test_foreign_key_rejects_unknown_reference(
    kitchen: psycopg.Connection[Row], table: str, values: Row, constraint: str
) -> None:
    with refused(kitchen, errors.ForeignKeyViolation) as raised:
        insert(kitchen, table, **{**VALID[table], **values})
    assert raised.value.diag.constraint_name == constraint
    assert constraint in str(raised.value)


def test_bill_with_tickets_cannot_be_deleted(kitchen: psycopg.Connection[Row]) -> None:
    bill = insert(kitchen, "pos_bill", brand_id=BRAND, bill_number="AG-0499")["id"]
    insert(kitchen, KT, **{**VALID[KT], "bill_id": bill})
    with refused(kitchen, errors.ForeignKeyViolation) as raised:
        kitchen.execute("DELETE FROM pos_bill WHERE id = %s", [bill])
    assert raised.value.diag.constraint_name == "kitchen_kitchenticket_bill_id_fkey"
    still_there = kitchen.execute("SELECT count(*) AS n FROM pos_bill WHERE id = %s", [bill])
    assert still_there.fetchone() == {"n": 1}


# --- The spec's columns, references and indexes ---------------------------------------------------

SERIAL = "nextval('{table}_id_seq'::regclass)"
TSTZ = "timestamp with time zone"
NOT_NULL, NULL = True, False

# table -> (column, type, default, NOT NULL in the spec), as in the spec's CREATE TABLEs. A column
# the spec leaves nullable may be tightened (0003 makes is_reprint NOT NULL), not the reverse.
SPEC_COLUMNS: dict[str, list[tuple[str, str, str | None, bool]]] = {
    "kitchen_stationprinter": [
        ("id", "bigint", SERIAL, NOT_NULL),
        ("brand_id", "uuid", None, NOT_NULL),
        ("station_code", "character varying(50)", None, NOT_NULL),
        ("printer_name", "character varying(100)", None, NOT_NULL),
        ("printer_ip", "inet", None, NOT_NULL),
        ("printer_port", "integer", "9100", NULL),
        ("priority", "integer", "1", NULL),
        ("is_active", "boolean", "true", NULL),
        ("paper_width_mm", "integer", "80", NULL),
        ("chars_per_line", "integer", "32", NULL),
        ("last_print_at", TSTZ, None, NULL),
        ("last_error_at", TSTZ, None, NULL),
        ("last_error_message", "text", None, NULL),
        ("total_prints", "integer", "0", NULL),
        ("failed_prints", "integer", "0", NULL),
        ("created_at", TSTZ, "now()", NULL),
        ("updated_at", TSTZ, "now()", NULL),
    ],
    "kitchen_kitchenticket": [
        ("id", "bigint", SERIAL, NOT_NULL),
        ("bill_id", "bigint", None, NOT_NULL),
        ("printer_target", "character varying(50)", None, NOT_NULL),
        ("status", "character varying(20)", None, NOT_NULL),
        ("print_attempts", "integer", "0", NULL),
        ("max_retries", "integer", "3", NULL),
        ("printer_ip", "inet", None, NULL),
        ("error_message", "text", None, NULL),
        ("last_error_at", TSTZ, None, NULL),
        ("created_at", TSTZ, "now()", NULL),
        ("printed_at", TSTZ, None, NULL),
        ("is_reprint", "boolean", "false", NULL),
        ("original_ticket_id", "bigint", None, NULL),
    ],
    "kitchen_kitchenticketitem": [
        ("id", "bigint", SERIAL, NOT_NULL),
        ("kitchen_ticket_id", "bigint", None, NOT_NULL),
        ("bill_item_id", "bigint", None, NOT_NULL),
        ("quantity", "integer", None, NOT_NULL),
    ],
    "kitchen_kitchenticketlog": [
        ("id", "bigint", SERIAL, NOT_NULL),
        ("ticket_id", "bigint", None, NOT_NULL),
        ("timestamp", TSTZ, "now()", NULL),
        ("old_status", "character varying(20)", None, NULL),
        ("new_status", "character varying(20)", None, NOT_NULL),
        ("action", "character varying(50)", None, NOT_NULL),
        ("actor", "character varying(100)", None, NOT_NULL),
        ("printer_ip", "inet", None, NULL),
        ("error_code", "character varying(50)", None, NULL),
        ("error_message", "text", None, NULL),
        ("duration_ms", "integer", None, NULL),
        ("metadata", "jsonb", "'{}'::jsonb", NULL),
    ],
    "kitchen_printerhealthcheck": [
        ("id", "bigint", SERIAL, NOT_NULL),
        ("printer_id", "bigint", None, NOT_NULL),
        ("checked_at", TSTZ, "now()", NULL),
        ("is_online", "boolean", None, NOT_NULL),
        ("response_time_ms", "integer", None, NULL),
        ("paper_status", "character varying(20)", "'unknown'::character varying", NULL),
        ("error_code", "character varying(50)", None, NULL),
        ("error_message", "text", None, NULL),
        ("temperature_ok", "boolean", None, NULL),
        ("cutter_ok", "boolean", None, NULL),
    ],
}


@pytest.mark.parametrize("table", list(SPEC_COLUMNS))
def test_spec_columns_have_the_spec_type_default_and_nullability(
    kitchen: psycopg.Connection[Row], table: str
) -> None:
    rows = kitchen.execute(
        """
        SELECT column_name, data_type, character_maximum_length, column_default, is_nullable
        FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = %s
        """,
        [table],
    ).fetchall()
    actual = {
        row["column_name"]: (
            row["data_type"]
            + (f"({row['character_maximum_length']})" if row["character_maximum_length"] else ""),
            row["column_default"],
        )
        for row in rows
    }
    expected = {
        name: (data_type, SERIAL.format(table=table) if default == SERIAL else default)
        for name, data_type, default, _ in SPEC_COLUMNS[table]
    }
    assert {name: actual.get(name) for name in expected} == expected
    nullable = {row["column_name"] for row in rows if row["is_nullable"] == "YES"}
    spec_not_null = {name for name, _, _, not_null in SPEC_COLUMNS[table] if not_null}
    assert spec_not_null & nullable == set()


# (table, column) -> referenced table, for every REFERENCES of the spec.
SPEC_REFERENCES = {
    ("kitchen_stationprinter", "brand_id"): "core_brand",
    ("kitchen_kitchenticket", "bill_id"): "pos_bill",
    ("kitchen_kitchenticket", "original_ticket_id"): "kitchen_kitchenticket",
    ("kitchen_kitchenticketitem", "kitchen_ticket_id"): "kitchen_kitchenticket",
    ("kitchen_kitchenticketitem", "bill_item_id"): "pos_billitem",
    ("kitchen_kitchenticketlog", "ticket_id"): "kitchen_kitchenticket",
    ("kitchen_printerhealthcheck", "printer_id"): "kitchen_stationprinter",
}


def test_spec_references_are_foreign_keys_to_the_id(kitchen: psycopg.Connection[Row]) -> None:
    rows = kitchen.execute(
        """
        SELECT c.conrelid::regclass::text AS table_name, a.attname AS column_name,
               c.confrelid::regclass::text AS referenced, fa.attname AS referenced_column
        FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
        """
    ).fetchall()
    foreign_keys = {
        (r["table_name"], r["column_name"]): (r["referenced"], r["referenced_column"]) for r in rows
    }
    for reference, referenced_table in SPEC_REFERENCES.items():
        assert foreign_keys.get(reference) == (referenced_table, "id"), reference


# name -> (table, indexed columns as PostgreSQL prints them), every CREATE INDEX of the spec.
SPEC_INDEXES = {
    "idx_station_code_active_priority": (
        "kitchen_stationprinter",
        "station_code, is_active, priority",
    ),
    "idx_brand_station": ("kitchen_stationprinter", "brand_id, station_code"),
    "idx_status_created": ("kitchen_kitchenticket", "status, created_at"),
    "idx_bill_target": ("kitchen_kitchenticket", "bill_id, printer_target"),
    "idx_target_status": ("kitchen_kitchenticket", "printer_target, status"),
    "idx_created": ("kitchen_kitchenticket", "created_at"),
    "idx_ticket_item": ("kitchen_kitchenticketitem", "kitchen_ticket_id, bill_item_id"),
    "idx_ticket_timestamp": ("kitchen_kitchenticketlog", 'ticket_id, "timestamp" DESC'),
    "idx_action_timestamp": ("kitchen_kitchenticketlog", 'action, "timestamp" DESC'),
    "idx_timestamp": ("kitchen_kitchenticketlog", '"timestamp" DESC'),
    "idx_printer_checked": ("kitchen_printerhealthcheck", "printer_id, checked_at DESC"),
    "idx_checked": ("kitchen_printerhealthcheck", "checked_at DESC"),
    "idx_online_checked": ("kitchen_printerhealthcheck", "is_online, checked_at DESC"),
}


def test_spec_indexes_exist_with_the_spec_columns(kitchen: psycopg.Connection[Row]) -> None:
    rows = kitchen.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    ).fetchall()
    definitions = {row["indexname"]: row["indexdef"] for row in rows}
    schema = kitchen.execute("SELECT current_schema() AS s").fetchone()
    assert schema is not None
    expected = {
        name: f"CREATE INDEX {name} ON {schema['s']}.{table} USING btree ({columns})"
        for name, (table, columns) in SPEC_INDEXES.items()
    }
    assert {name: definitions.get(name) for name in expected} == expected
