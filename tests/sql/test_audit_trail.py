"""The audit trail the database keeps by itself, and the status housekeeping the daemon relies on.

Every ticket INSERT and every status change writes one kitchen_kitchenticketlog row from a trigger,
described by the writer's kprintd.* settings or, for a hand-typed UPDATE, by what the database
knows.
The log cannot be edited, deleted or truncated by anyone, superusers and the table owner included.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from kprintd.harness import add_item, make_bill, make_brand, make_product, send_to_kitchen

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def ticket(conn: Conn) -> dict[str, Any]:
    """One sent kitchen ticket with two items, status 'new'."""
    brand = make_brand(conn)
    bill = make_bill(conn, brand)
    add_item(conn, bill, make_product(conn, brand, "Nasi Goreng"), 2)
    add_item(conn, bill, make_product(conn, brand, "Ayam Bakar"), 1)
    [created] = send_to_kitchen(conn, bill, actor="pos:terminal-1")
    return created


def log_of(conn: Conn, ticket_id: int) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT * FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id", (ticket_id,)
    ).fetchall()


def row_of(conn: Conn, ticket_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM kitchen_kitchenticket WHERE id = %s", (ticket_id,)).fetchone()
    assert row is not None
    return row


def set_status(conn: Conn, ticket_id: int, status: str, **columns: Any) -> None:
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder()) for k in columns
    )
    query = sql.SQL("UPDATE kitchen_kitchenticket SET status = %s{} WHERE id = %s").format(
        sql.SQL(", ") + assignments if columns else sql.SQL("")
    )
    conn.execute(query, [status, *columns.values(), ticket_id])


def session_user(conn: Conn) -> str:
    row = conn.execute("SELECT session_user AS u").fetchone()
    assert row is not None
    return str(row["u"])


# Creation ----------------------------------------------------------------------------------------


def test_a_created_ticket_has_one_created_row_describing_it(conn: Conn, ticket: dict[str, Any]):
    [created] = log_of(conn, ticket["id"])
    assert created["action"] == "created"
    assert created["actor"] == "pos:terminal-1"
    assert (created["old_status"], created["new_status"]) == (None, "new")
    assert created["metadata"] == {
        "items_count": 2,
        "bill_id": ticket["bill_id"],
        "station": "kitchen",
        "ticket_type": "order",
    }


def test_a_hand_inserted_ticket_is_logged_with_the_session_user(conn: Conn):
    brand = make_brand(conn)
    bill = make_bill(conn, brand)
    item = add_item(conn, bill, make_product(conn, brand))
    row = conn.execute(
        "WITH t AS (INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
        " VALUES (%s, 'kitchen', 'new') RETURNING id)"
        " INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id)"
        " SELECT id, %s FROM t RETURNING kitchen_ticket_id",
        (bill, item),
    ).fetchone()
    assert row is not None
    [created] = log_of(conn, row["kitchen_ticket_id"])
    assert (created["action"], created["actor"]) == ("created", session_user(conn))
    assert created["metadata"]["items_count"] == 1


# Status changes ----------------------------------------------------------------------------------


def test_described_changes_are_logged_as_described(
    database_url: str, conn: Conn, ticket: dict[str, Any]
):
    with psycopg.connect(database_url, row_factory=dict_row) as daemon:
        daemon.execute(
            "SELECT kitchen_describe_change('print_start', 'printer_service', NULL, NULL, %s)",
            [Jsonb({"daemon": "d1"})],
        )
        set_status(daemon, ticket["id"], "printing", printer_ip="192.168.1.100", claimed_by="d1")
        daemon.execute(
            "SELECT kitchen_describe_change('print_success', 'printer_service', 1234, NULL, %s)",
            [Jsonb({"attempt": 1})],
        )
        set_status(daemon, ticket["id"], "printed")
        daemon.commit()

    _, start, success = log_of(conn, ticket["id"])
    assert (start["old_status"], start["new_status"]) == ("new", "printing")
    assert (start["action"], start["actor"]) == ("print_start", "printer_service")
    assert str(start["printer_ip"]) == "192.168.1.100"
    assert start["metadata"] == {"daemon": "d1", "print_attempts": 0}
    assert (success["old_status"], success["new_status"]) == ("printing", "printed")
    assert (success["action"], success["actor"]) == ("print_success", "printer_service")
    assert success["duration_ms"] == 1234
    assert success["metadata"] == {"attempt": 1, "print_attempts": 0, "previous_claimed_by": "d1"}
    assert start["timestamp"] <= success["timestamp"]


def test_a_description_lasts_for_the_transaction_and_no_longer(
    database_url: str, conn: Conn, ticket: dict[str, Any]
):
    with psycopg.connect(database_url, row_factory=dict_row) as writer:
        writer.execute("SELECT kitchen_describe_change('retry', 'printer_service')")
        set_status(writer, ticket["id"], "printing")
        set_status(writer, ticket["id"], "new")
        writer.commit()
        set_status(writer, ticket["id"], "printing")  # a new transaction: undescribed
        writer.commit()

    actions = [(r["action"], r["actor"]) for r in log_of(conn, ticket["id"])[1:]]
    assert actions == [
        ("retry", "printer_service"),
        ("retry", "printer_service"),
        ("manual_update", session_user(conn)),
    ]


def test_a_description_can_be_cleared(database_url: str, conn: Conn, ticket: dict[str, Any]):
    with psycopg.connect(database_url) as writer:
        writer.execute("SELECT kitchen_describe_change('print_start', 'printer_service', 5, 'x')")
        writer.execute("SELECT kitchen_describe_change(NULL, NULL)")
        set_status(writer, ticket["id"], "printing")  # type: ignore[arg-type]
        writer.execute("SELECT kitchen_describe_change('print_failed', 'printer_service')")
        writer.execute("SELECT set_config('kprintd.action', '', true)")  # empty means unset
        set_status(writer, ticket["id"], "failed")  # type: ignore[arg-type]
        writer.commit()
    cleared, emptied = log_of(conn, ticket["id"])[1:]
    assert (cleared["action"], cleared["actor"]) == ("manual_update", session_user(conn))
    assert (cleared["duration_ms"], cleared["error_code"]) == (None, None)
    assert (emptied["action"], emptied["actor"]) == ("manual_update", "printer_service")


def test_an_undescribed_change_is_a_manual_update_by_the_session_user(
    conn: Conn, ticket: dict[str, Any]
):
    set_status(conn, ticket["id"], "failed", error_message="paper jam", error_code="jam")
    [_, change] = log_of(conn, ticket["id"])
    assert (change["old_status"], change["new_status"]) == ("new", "failed")
    assert (change["action"], change["actor"]) == ("manual_update", session_user(conn))
    assert (change["error_code"], change["error_message"]) == ("jam", "paper jam")
    assert "application_name" in change["metadata"]


def test_only_status_changes_are_logged(conn: Conn, ticket: dict[str, Any]):
    conn.execute(
        "UPDATE kitchen_kitchenticket SET printer_ip = '10.0.0.1', status = status WHERE id = %s",
        (ticket["id"],),
    )
    conn.execute("UPDATE kitchen_kitchenticket SET max_retries = 5 WHERE id = %s", (ticket["id"],))
    assert [r["action"] for r in log_of(conn, ticket["id"])] == ["created"]


def test_error_details_come_from_the_setting_or_the_ticket(
    database_url: str, conn: Conn, ticket: dict[str, Any]
):
    set_status(conn, ticket["id"], "printing")
    with psycopg.connect(database_url) as daemon:
        daemon.execute(
            "SELECT kitchen_describe_change('print_failed', 'printer_service', 30000, 'timeout')"
        )
        set_status(daemon, ticket["id"], "failed", error_message="no answer in 30 s")  # type: ignore[arg-type]
        daemon.commit()
    set_status(conn, ticket["id"], "new")  # a retry keeps the error text, unchanged: not repeated
    failed, retried = log_of(conn, ticket["id"])[2:]
    assert (failed["error_code"], failed["error_message"]) == ("timeout", "no answer in 30 s")
    assert failed["duration_ms"] == 30000
    assert (retried["error_code"], retried["error_message"]) == (None, None)


def test_malformed_settings_are_refused_clearly(
    database_url: str, conn: Conn, ticket: dict[str, Any]
):
    with psycopg.connect(database_url) as writer:
        writer.execute("SELECT set_config('kprintd.duration_ms', 'fast', true)")
        with pytest.raises(errors.InvalidParameterValue, match=r"kprintd\.duration_ms"):
            set_status(writer, ticket["id"], "printing")  # type: ignore[arg-type]
        writer.rollback()
        writer.execute("SELECT set_config('kprintd.metadata', '[1, 2]', true)")
        with pytest.raises(errors.InvalidParameterValue, match=r"kprintd\.metadata"):
            set_status(writer, ticket["id"], "printing")  # type: ignore[arg-type]
        writer.rollback()
    assert row_of(conn, ticket["id"])["status"] == "new"
    assert len(log_of(conn, ticket["id"])) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "daemon"), "action must be"),
        (("x" * 51, "daemon"), "action must be"),
        (("print_start", "  "), "actor must be"),
        (("print_start", "daemon", -1), "duration_ms must not be negative"),
        (("print_start", "daemon", None, ""), "error_code must be"),
        (("print_start", "daemon", None, None, Jsonb([1])), "metadata must be a JSON object"),
    ],
)
def test_describe_change_checks_its_arguments(conn: Conn, args: tuple[Any, ...], message: str):
    placeholders = ", ".join(["%s"] * len(args))
    with pytest.raises(errors.InvalidParameterValue, match=message):
        conn.execute(f"SELECT kitchen_describe_change({placeholders})", args)


def test_the_spec_troubleshooting_update_is_audited_and_marks_a_retry(
    database_url: str, conn: Conn, ticket: dict[str, Any]
):
    with psycopg.connect(database_url) as daemon:
        daemon.execute("SELECT kitchen_describe_change('print_start', 'printer_service')")
        set_status(
            daemon,  # type: ignore[arg-type]
            ticket["id"],
            "printing",
            printer_ip="192.168.1.100",
            claimed_by="daemon-1",
        )
        daemon.execute(
            "UPDATE kitchen_kitchenticket SET lease_expires_at = now() + interval '1 minute',"
            " created_at = now() - interval '10 minutes' WHERE id = %s",
            (ticket["id"],),
        )
        daemon.commit()

    updated = conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'new', printer_ip = NULL"
        " WHERE status = 'printing' AND created_at < NOW() - INTERVAL '5 minutes'"
        " RETURNING id, next_attempt_at = now() AS due_now"
    ).fetchall()

    assert updated == [{"id": ticket["id"], "due_now": True}]
    row = row_of(conn, ticket["id"])
    assert row["status"] == "new"
    assert (row["claimed_by"], row["lease_expires_at"], row["printer_ip"]) == (None, None, None)
    assert row["may_have_printed"] is True
    reset = log_of(conn, ticket["id"])[-1]
    assert (reset["old_status"], reset["new_status"]) == ("printing", "new")
    assert (reset["action"], reset["actor"]) == ("manual_update", session_user(conn))
    assert reset["metadata"]["may_have_printed"] is True
    assert reset["metadata"]["previous_claimed_by"] == "daemon-1"


def test_every_status_change_has_its_row_with_old_and_new_status(
    conn: Conn, ticket: dict[str, Any]
):
    path = ["printing", "failed", "new", "printing", "new", "printing", "printed", "new"]
    for status in path:
        set_status(conn, ticket["id"], status)
    set_status(conn, ticket["id"], "new")  # no change, no row
    rows = log_of(conn, ticket["id"])
    assert [(r["old_status"], r["new_status"]) for r in rows] == list(
        zip([None, "new", *path[:-1]], ["new", *path], strict=True)
    )


# Housekeeping on status changes ------------------------------------------------------------------


def test_back_to_new_clears_the_claim_and_is_due_now_unless_scheduled(
    conn: Conn, ticket: dict[str, Any]
):
    claim = {"claimed_by": "d1"}
    set_status(conn, ticket["id"], "printing", **claim)
    set_status(conn, ticket["id"], "failed")
    assert row_of(conn, ticket["id"])["claimed_by"] is None

    with conn.transaction():
        set_status(conn, ticket["id"], "new")
        due = conn.execute(
            "SELECT next_attempt_at = now() AS due_now, may_have_printed"
            " FROM kitchen_kitchenticket WHERE id = %s",
            (ticket["id"],),
        ).fetchone()
    assert due == {
        "due_now": True,
        "may_have_printed": False,
    }  # failed -> new: no banner  # failed -> new: the failure said what happened

    later = conn.execute("SELECT now() + interval '1 minute' AS t").fetchone()
    assert later is not None
    set_status(conn, ticket["id"], "printing", **claim)
    with conn.transaction():
        conn.execute("SELECT kitchen_describe_change('claim_released', 'printer_service')")
        set_status(conn, ticket["id"], "new", next_attempt_at=later["t"])
    row = row_of(conn, ticket["id"])
    assert (row["claimed_by"], row["lease_expires_at"]) == (None, None)
    assert row["next_attempt_at"] == later["t"]
    # A described printing -> new (a claim given back unsent) is the writer's word: no banner.
    assert row["may_have_printed"] is False


def test_printed_gets_its_time_and_may_have_printed_never_reverts(
    conn: Conn, ticket: dict[str, Any]
):
    set_status(conn, ticket["id"], "printing", claimed_by="d1", may_have_printed=True)
    set_status(conn, ticket["id"], "printed", may_have_printed=False)
    row = row_of(conn, ticket["id"])
    assert row["printed_at"] is not None
    assert row["claimed_by"] is None
    assert row["may_have_printed"] is True


# Append-only -------------------------------------------------------------------------------------


def assert_log_is_untouchable(conn: Conn, ticket_id: int, *, foreign_keys: bool = True) -> None:
    before = log_of(conn, ticket_id)
    statements = [
        "UPDATE kitchen_kitchenticketlog SET actor = 'someone else'",
        "UPDATE kitchen_kitchenticketlog SET actor = 'nobody' WHERE false",
        "DELETE FROM kitchen_kitchenticketlog",
        "DELETE FROM kitchen_kitchenticketlog WHERE id = -1",
        "TRUNCATE kitchen_kitchenticketlog",
        "TRUNCATE kitchen_kitchenticket, kitchen_kitchenticketitem, kitchen_kitchenticketlog",
        "TRUNCATE kitchen_kitchenticket CASCADE",
    ]
    for statement in statements:
        with conn.transaction(), pytest.raises(errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)
    if foreign_keys:  # the log's reference to its ticket: a logged ticket cannot be deleted
        with conn.transaction(), pytest.raises(errors.ForeignKeyViolation, match="ticketlog"):
            conn.execute(
                "DELETE FROM kitchen_kitchenticketitem WHERE kitchen_ticket_id = %s", (ticket_id,)
            )
            conn.execute("DELETE FROM kitchen_kitchenticket WHERE id = %s", (ticket_id,))
    assert log_of(conn, ticket_id) == before


def test_the_log_cannot_be_changed_even_by_a_superuser(conn: Conn, ticket: dict[str, Any]):
    role = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert role == {"rolsuper": True}
    assert_log_is_untouchable(conn, ticket["id"])


def test_the_log_cannot_be_changed_with_replication_role_replica(
    conn: Conn, ticket: dict[str, Any]
):
    conn.execute("SET session_replication_role = replica")  # skips ordinary triggers and FKs
    assert_log_is_untouchable(conn, ticket["id"], foreign_keys=False)


def test_the_log_cannot_be_changed_by_its_owner(conn: Conn, ticket: dict[str, Any]):
    owner = sql.Identifier(f"kprintd_log_owner_{ticket['id']}_{id(conn)}")
    conn.execute(sql.SQL("CREATE ROLE {}").format(owner))
    try:
        conn.execute(
            sql.SQL(
                "ALTER TABLE kitchen_kitchenticketlog OWNER TO {0};"
                " ALTER TABLE kitchen_kitchenticket OWNER TO {0};"
                " ALTER TABLE kitchen_kitchenticketitem OWNER TO {0}"
            ).format(owner)
        )
        conn.execute(sql.SQL("SET ROLE {}").format(owner))
        assert_log_is_untouchable(conn, ticket["id"])
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(owner))
        conn.execute(sql.SQL("DROP ROLE {}").format(owner))


def test_roles_without_insert_on_the_log_are_still_audited(conn: Conn, ticket: dict[str, Any]):
    app = f"kprintd_app_{ticket['id']}_{id(conn)}"
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(app)))
    try:
        conn.execute(
            sql.SQL(
                "GRANT SELECT, UPDATE ON kitchen_kitchenticket TO {0};"
                " GRANT SELECT ON kitchen_kitchenticketlog TO {0}"
            ).format(sql.Identifier(app))
        )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(app)))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO kitchen_kitchenticketlog (ticket_id, new_status, action, actor)"
                " VALUES (%s, 'printed', 'print_success', 'forger')",
                (ticket["id"],),
            )
        set_status(conn, ticket["id"], "printing")
        conn.execute("RESET ROLE")
        assert [r["new_status"] for r in log_of(conn, ticket["id"])] == ["new", "printing"]
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(app)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(app)))
