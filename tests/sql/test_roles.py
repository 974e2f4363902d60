"""The roles of sql/schema/60_roles_and_grants.sql, tried by the roles themselves: each duty can
do its work and nothing more, and the attacks of issue #14 on the audit trail fail.

Every connection here logs in as a test login that is a member of one kprintd_* group role
(tests/conftest.py creates them), never as the superuser the migrations ran as.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from kprintd.harness import (
    LOGINS,
    Restaurant,
    add_item,
    all_settled,
    as_login,
    log_actions,
    make_bill,
    make_product,
    query,
    running_daemon,
    ticket,
    wait_until,
)

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def login(database_url: str) -> Iterator[Any]:
    opened: list[Conn] = []

    def connect(duty: str) -> Conn:
        conn = psycopg.connect(as_login(database_url, duty), autocommit=True, row_factory=dict_row)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def _bill_with_item(database_url: str, brand: Any) -> tuple[int, int]:
    with psycopg.connect(database_url, autocommit=True) as owner:
        product = make_product(owner, brand, "Nasi Goreng", "kitchen")
        bill = make_bill(owner, brand)
        return bill, add_item(owner, bill, product)


def test_the_pos_sends_and_writes_tickets_and_the_daemon_prints_them(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    kitchen = restaurant.printer("kitchen")
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    other_bill, other_item = _bill_with_item(database_url, restaurant.brand_id)
    pos = login("kprintd_pos")
    with running_daemon(database_url):
        (sent,) = pos.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchall()
        # The spec's Example 1, written by the POS's own role.
        with pos.transaction():
            own = pos.execute(
                "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
                " VALUES (%s, 'kitchen', 'new') RETURNING id",
                (other_bill,),
            ).fetchone()
            assert own is not None
            pos.execute(
                "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity)"
                " VALUES (%s, %s, 1)",
                (own["id"], other_item),
            )
            pos.execute(
                "INSERT INTO kitchen_kitchenticketlog (ticket_id, new_status, action, actor)"
                " VALUES (%s, 'new', 'created', 'system')",
                (own["id"],),
            )
        wait_until(lambda: all_settled(database_url), what="both printed")
        assert pos.execute(
            "SELECT all_printed FROM kitchen_bill_status WHERE bill_id = %s", (bill,)
        ).fetchone() == {"all_printed": True}
    assert len(kitchen.tickets()) == 2
    for ticket_id in (sent["id"], own["id"]):
        assert ticket(database_url, ticket_id)["status"] == "printed"
        actions = log_actions(database_url, ticket_id)
        assert actions == ["created", "print_start", "print_success"]
    created = query(
        database_url,
        "SELECT actor, metadata FROM kitchen_kitchenticketlog"
        " WHERE ticket_id = %s AND action = 'created'",
        (sent["id"],),
    )
    # kitchen_create_tickets' actor is the POS's word: logged as who it is, the word kept beside.
    assert created[0]["actor"] == LOGINS["kprintd_pos"]
    assert created[0]["metadata"]["claimed_actor"] == "pos"


def test_the_pos_cannot_change_tickets_or_forge_the_daemons_rows(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    pos = login("kprintd_pos")
    (sent,) = pos.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchall()
    with pytest.raises(errors.InsufficientPrivilege):
        pos.execute(
            "UPDATE kitchen_kitchenticket SET status = 'printed' WHERE id = %s", (sent["id"],)
        )
    for statement in (
        "UPDATE kitchen_kitchenticketlog SET actor = 'x'",
        "DELETE FROM kitchen_kitchenticketlog",
        "TRUNCATE kitchen_kitchenticketlog",
        "ALTER TABLE kitchen_kitchenticketlog DISABLE TRIGGER USER",
        "ALTER TABLE kitchen_kitchenticketlog ALTER COLUMN actor TYPE text",
        "SELECT * FROM kitchen_claim_print_jobs('pos', 30, NULL, NULL, 'kitchen')",
        "SELECT kitchen_reset_ticket(1, 'admin:x')",
        "SELECT kitchen_purge('30 days', 'pos')",
        "SELECT * FROM kitchen_failed_ticket_list(10)",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            pos.execute(statement)


def test_a_writer_with_update_rights_is_logged_as_who_it_is(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    """The finding: a POS allowed to UPDATE tickets described its change as the daemon's."""
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(f"GRANT UPDATE ON kitchen_kitchenticket TO {LOGINS['kprintd_pos']}")
    pos = login("kprintd_pos")
    (sent,) = pos.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchall()
    with pos.transaction():
        pos.execute("SELECT kitchen_describe_change('print_success', 'printer_service', 5)")
        pos.execute(
            "UPDATE kitchen_kitchenticket SET status = 'printed' WHERE id = %s", (sent["id"],)
        )
    (row,) = query(
        database_url,
        "SELECT action, actor, metadata FROM kitchen_kitchenticketlog"
        " WHERE ticket_id = %s AND new_status = 'printed'",
        (sent["id"],),
    )
    assert (row["action"], row["actor"]) == ("manual_update", LOGINS["kprintd_pos"])
    assert row["metadata"]["claimed_action"] == "print_success"
    assert row["metadata"]["claimed_actor"] == "printer_service"


def test_a_manager_acts_through_the_admin_functions_only(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    (sent,) = query(database_url, "SELECT id FROM kitchen_create_tickets(%s)", (bill,))
    query(
        database_url,
        "UPDATE kitchen_kitchenticket SET status = 'failed' WHERE id = %s",
        (sent["id"],),
    )
    manager = login("kprintd_manager")
    manager.execute("SELECT kitchen_reset_ticket(%s, 'admin:sari')", (sent["id"],))
    (row,) = query(
        database_url,
        "SELECT action, actor FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id DESC"
        " LIMIT 1",
        (sent["id"],),
    )
    assert (row["action"], row["actor"]) == ("manual_reset", "admin:sari")
    with pytest.raises(errors.InsufficientPrivilege):
        manager.execute(
            "UPDATE kitchen_kitchenticket SET status = 'new' WHERE id = %s", (sent["id"],)
        )
    assert (
        manager.execute("SELECT count(*) AS n FROM kitchen_failed_tickets").fetchone() is not None
    )


def test_the_auditor_reads_and_writes_nothing(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    query(database_url, "SELECT kitchen_create_tickets(%s)", (bill,))
    auditor = login("kprintd_auditor")
    assert auditor.execute("SELECT count(*) AS n FROM kitchen_kitchenticketlog").fetchone() == {
        "n": 1
    }
    assert auditor.execute("SELECT kitchen_status_report() AS r").fetchone() is not None
    # What `kprintd tickets` and `kprintd alerts` read.
    for listing in (
        "SELECT * FROM kitchen_ticket_list(10)",
        "SELECT * FROM kitchen_failed_ticket_list(10)",
        "SELECT * FROM kitchen_stuck_ticket_list(10)",
        f"SELECT * FROM kitchen_bill_lookup(NULL, {bill})",
    ):
        assert auditor.execute(listing).fetchall() is not None, listing
    assert auditor.execute("SELECT kitchen_last_alert_id() AS id").fetchone() is not None
    for statement in (
        "INSERT INTO kitchen_kitchenticketlog (ticket_id, new_status, action, actor)"
        " SELECT id, 'new', 'created', 'x' FROM kitchen_kitchenticket",
        "UPDATE kitchen_kitchenticket SET status = 'new'",
        "SELECT kitchen_reset_ticket(1, 'admin:x')",
        f"SELECT kitchen_create_tickets({bill})",
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            auditor.execute(statement)


def test_no_login_owns_the_log_and_the_log_writer_ignores_a_callers_temp_tables(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    owners = query(
        database_url,
        "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, r.rolcanlogin"
        " FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
        " WHERE c.relname IN ('kitchen_kitchenticketlog', 'kitchen_alertlog', 'kitchen_purgelog')",
    )
    assert {(r["owner"], r["rolcanlogin"]) for r in owners} == {("kprintd_owner", False)}
    definers = query(
        database_url,
        "SELECT p.proname, p.proconfig, pg_get_userbyid(p.proowner) AS owner FROM pg_proc p"
        " WHERE p.prosecdef AND p.proname LIKE 'kitchen\\_%'",
    )
    assert definers, "the log writers and admin actions run as the owner"
    for function in definers:
        assert function["owner"] == "kprintd_owner"
        path = next(c for c in function["proconfig"] if c.startswith("search_path="))
        assert path.endswith("pg_temp"), f"{function['proname']}: {path}"

    # The attack of the finding: a temporary table named like the log, with a trigger that would
    # run as the SECURITY DEFINER writer's owner. The real log must get the row, and nothing runs.
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    pos = login("kprintd_pos")
    pos.execute(
        "CREATE TEMP TABLE kitchen_kitchenticketlog (LIKE public.kitchen_kitchenticketlog);"
        " CREATE TEMP TABLE kitchen_kitchenticketitem (LIKE public.kitchen_kitchenticketitem)"
    )
    (sent,) = pos.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchall()
    assert pos.execute("SELECT count(*) AS n FROM pg_temp.kitchen_kitchenticketlog").fetchone() == {
        "n": 0
    }
    assert log_actions(database_url, sent["id"]) == ["created"]
    lines = query(
        database_url,
        "SELECT count(*) AS n FROM kitchen_kitchenticketitem WHERE kitchen_ticket_id = %s",
        (sent["id"],),
    )
    assert lines == [{"n": 1}], "kitchen_create_tickets wrote its lines to the real table"


def test_every_function_is_kprintds_own_and_resolves_nothing_through_public(
    database_url: str,
) -> None:
    functions = query(
        database_url,
        "SELECT p.oid::regprocedure::text AS signature, n.nspname,"
        " p.prosqlbody IS NOT NULL AS bound, p.proconfig"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE p.proname LIKE 'kitchen\\_%' AND p.prokind = 'f'",
    )
    assert functions
    for function in functions:
        assert function["nspname"] == "kprintd", function["signature"]
        if not function["bound"]:
            assert "search_path=pg_catalog, pg_temp" in function["proconfig"], function


def test_a_pos_that_owns_public_cannot_slip_its_code_into_kprintds(
    database_url: str, restaurant: Restaurant, login: Any
) -> None:
    """The finding: overloads in a public the POS owns were picked over kprintd's functions."""
    kitchen = restaurant.printer("kitchen")
    bill, _ = _bill_with_item(database_url, restaurant.brand_id)
    with psycopg.connect(database_url, autocommit=True) as owner:
        owner.execute(f"GRANT CREATE ON SCHEMA public TO {LOGINS['kprintd_pos']}")
    pos = login("kprintd_pos")
    # Closer matches for what kprintd's code calls on varchar columns, if it looked in public.
    pos.execute(
        "CREATE FUNCTION public.kitchen_normalize_station(varchar) RETURNS text"
        " LANGUAGE sql AS $$ SELECT 'hijacked' $$;"
        " CREATE FUNCTION public.lower(varchar) RETURNS text"
        " LANGUAGE sql AS $$ SELECT 'hijacked' $$;"
        " CREATE FUNCTION public.btrim(varchar) RETURNS text"
        " LANGUAGE sql AS $$ SELECT 'hijacked' $$;"
        " CREATE FUNCTION public.kitchen_ticket_document(bigint) RETURNS jsonb"
        " LANGUAGE sql AS $$ SELECT '{}'::jsonb $$"
    )
    with running_daemon(database_url):
        (sent,) = pos.execute("SELECT id FROM kitchen_create_tickets(%s)", (bill,)).fetchall()
        wait_until(lambda: all_settled(database_url), what="printed")
    row = ticket(database_url, sent["id"])
    assert (row["printer_target"], row["status"]) == ("kitchen", "printed")
    (paper,) = kitchen.tickets()
    assert f"Ticket #{sent['id']}" in paper.text and "1 item" in paper.text
