"""Ticket retention: kitchen_purge() removes old final tickets with their items and log rows, in one
transaction, and keeps a permanent record of every purge in kitchen_purgelog; the ticket log still
refuses every other DELETE, naming kitchen_purge; the daemon runs it daily when
KPRINTD_TICKET_RETENTION_DAYS is set (sql/schema/44_admin.sql, kprintd/retention.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row
from structlog.testing import capture_logs

from kprintd import retention
from kprintd.config import ConfigError, Settings, load_settings
from kprintd.daemon import Daemon
from kprintd.db import Database, create_pool
from kprintd.harness import (
    add_item,
    make_bill,
    make_brand,
    make_product,
    query,
    running_daemon,
    send_to_kitchen,
    wait_until,
)
from kprintd.retention import ACTOR, PURGE_INTERVAL_S, TicketRetention
from kprintd.services import Schedule

Conn = psycopg.Connection[dict[str, Any]]

PURGE_NAMED = "kitchen_purge(older_than interval, actor text)"
SHA256_OF_NOTHING = hashlib.sha256(b"").hexdigest()
PURGED = "SELECT 1 FROM kitchen_purgelog"


@pytest.fixture
def brand(conn: Conn) -> UUID:
    return make_brand(conn)


@pytest.fixture
def role(conn: Conn) -> Iterator[str]:
    """A role without special rights (no superuser, owns nothing); dropped after the test."""
    name = f"kprintd_retention_{os.getpid()}_{id(conn)}"
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def make_ticket(
    conn: Conn, brand: UUID, *, status: str = "printed", age: str = "40 days", items: int = 2
) -> int:
    """A sent ticket with `items` lines, moved to `status` and dated `age` ago."""
    bill = make_bill(conn, brand)
    product = make_product(conn, brand, "Soto Ayam")
    for _ in range(items):
        add_item(conn, bill, product)
    [ticket] = send_to_kitchen(conn, bill)
    if status != "new":
        conn.execute(
            "UPDATE kitchen_kitchenticket SET status = %s WHERE id = %s", (status, ticket["id"])
        )
    age_of(conn, ticket["id"], age)
    return int(ticket["id"])


def age_of(conn: Conn, ticket_id: int, age: str) -> None:
    conn.execute(
        "UPDATE kitchen_kitchenticket SET created_at = now() - %s::interval WHERE id = %s",
        (age, ticket_id),
    )


def purge(conn: Conn, older_than: str = "30 days", actor: str = "pos:nightly") -> dict[str, Any]:
    row = conn.execute(
        "SELECT * FROM kitchen_purge(%s::interval, %s)", (older_than, actor)
    ).fetchone()
    assert row is not None
    return row


def counts(conn: Conn, ticket_id: int) -> tuple[int, int, int]:
    """(ticket rows, item rows, log rows) of a ticket."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM kitchen_kitchenticket WHERE id = %(t)s) AS tickets,"
        " (SELECT count(*) FROM kitchen_kitchenticketitem"
        "   WHERE kitchen_ticket_id = %(t)s) AS items,"
        " (SELECT count(*) FROM kitchen_kitchenticketlog WHERE ticket_id = %(t)s) AS log_rows",
        {"t": ticket_id},
    ).fetchone()
    assert row is not None
    return row["tickets"], row["items"], row["log_rows"]


def purgelog(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM kitchen_purgelog ORDER BY id").fetchall()


def scalar(conn: Conn, statement: str) -> Any:
    row = conn.execute(statement).fetchone()
    assert row is not None
    return next(iter(row.values()))


def reprint(conn: Conn, ticket_id: int) -> int:
    row = conn.execute("SELECT kitchen_reprint(%s, 'admin:sari') AS id", (ticket_id,)).fetchone()
    assert row is not None
    return int(row["id"])


# What a purge removes and keeps ------------------------------------------------------------------


def test_a_purge_removes_old_final_tickets_with_their_items_and_log_rows_and_nothing_younger(
    conn: Conn, brand: UUID
) -> None:
    printed = make_ticket(conn, brand, status="printed", items=3)
    failed = make_ticket(conn, brand, status="failed", items=1)
    younger = make_ticket(conn, brand, status="printed", age="29 days")
    today = make_ticket(conn, brand, status="printed", age="0 days")
    removed = [counts(conn, printed), counts(conn, failed)]
    kept = {ticket: counts(conn, ticket) for ticket in (younger, today)}

    record = purge(conn)

    assert counts(conn, printed) == (0, 0, 0)
    assert counts(conn, failed) == (0, 0, 0)
    assert {ticket: counts(conn, ticket) for ticket in kept} == kept
    assert record["tickets_deleted"] == 2
    assert record["items_deleted"] == sum(items for _, items, _ in removed) == 4
    assert record["log_rows_deleted"] == sum(log_rows for _, _, log_rows in removed)
    assert record["log_rows_deleted"] >= 4  # 'created' and the status change, each
    assert (record["tickets_kept_not_final"], record["tickets_kept_referenced"]) == (0, 0)


def test_old_tickets_that_are_not_final_are_kept_and_counted(conn: Conn, brand: UUID) -> None:
    waiting = make_ticket(conn, brand, status="new")
    printing = make_ticket(conn, brand, status="printing")
    done = make_ticket(conn, brand, status="printed")
    make_ticket(conn, brand, status="new", age="1 day")  # young: neither removed nor counted

    record = purge(conn)

    assert counts(conn, waiting)[0] == counts(conn, printing)[0] == 1
    assert counts(conn, done) == (0, 0, 0)
    assert record["tickets_deleted"] == 1
    assert record["tickets_kept_not_final"] == 2
    assert record["tickets_kept_referenced"] == 0


def test_an_old_original_that_a_young_reprint_references_is_kept(conn: Conn, brand: UUID) -> None:
    original = make_ticket(conn, brand)
    young_reprint = reprint(conn, original)
    # An old original reprinted long ago goes, reprint and all.
    gone_original = make_ticket(conn, brand)
    gone_reprint = reprint(conn, gone_original)
    conn.execute(
        "UPDATE kitchen_kitchenticket SET status = 'printed' WHERE id = %s", (gone_reprint,)
    )
    age_of(conn, gone_reprint, "35 days")

    record = purge(conn)

    assert counts(conn, original)[0] == 1
    assert counts(conn, original)[1] > 0 and counts(conn, original)[2] > 0
    assert counts(conn, young_reprint)[0] == 1
    assert counts(conn, gone_original) == counts(conn, gone_reprint) == (0, 0, 0)
    assert record["tickets_deleted"] == 2
    assert record["tickets_kept_referenced"] == 1


def test_a_chain_of_references_keeps_every_ticket_on_it(conn: Conn, brand: UUID) -> None:
    # kitchen_reprint always points at the root original; a POS writing its own rows may not.
    root = make_ticket(conn, brand)
    middle = reprint(conn, root)
    conn.execute("UPDATE kitchen_kitchenticket SET status = 'printed' WHERE id = %s", (middle,))
    age_of(conn, middle, "35 days")
    conn.execute(
        "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status, ticket_type,"
        " is_reprint, original_ticket_id)"
        " SELECT bill_id, printer_target, 'printed', ticket_type, true, id"
        " FROM kitchen_kitchenticket WHERE id = %s",
        (middle,),
    )

    record = purge(conn)

    assert counts(conn, root)[0] == counts(conn, middle)[0] == 1
    assert record["tickets_deleted"] == 0
    assert record["tickets_kept_referenced"] == 2


def test_a_purge_that_finds_nothing_is_recorded_too(conn: Conn) -> None:
    record = purge(conn, "7 days", "admin:sari")
    assert [r["id"] for r in purgelog(conn)] == [record["id"]]
    removed = ("tickets_deleted", "items_deleted", "log_rows_deleted")
    assert [record[column] for column in removed] == [0, 0, 0]
    assert record["digest"] == SHA256_OF_NOTHING


# Refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("older_than", ["6 days", "6 days 23:59:59", "-30 days", None])
def test_an_interval_under_the_floor_of_seven_days_is_refused(
    conn: Conn, brand: UUID, older_than: str | None
) -> None:
    ticket = make_ticket(conn, brand, age="10 days")
    with pytest.raises(errors.InvalidParameterValue, match="at least 7 days") as raised:
        conn.execute("SELECT kitchen_purge(%s::interval, 'pos:nightly')", (older_than,))
    assert raised.value.diag.message_hint is not None
    assert "never purged" in raised.value.diag.message_hint
    assert counts(conn, ticket)[0] == 1
    assert purgelog(conn) == []


@pytest.mark.parametrize("actor", ["", "   ", None, "x" * 101])
def test_a_blank_or_missing_actor_is_refused(conn: Conn, brand: UUID, actor: str | None) -> None:
    ticket = make_ticket(conn, brand)
    with pytest.raises(errors.InvalidParameterValue, match="actor must be") as raised:
        conn.execute("SELECT kitchen_purge('30 days', %s::text)", (actor,))
    assert raised.value.diag.message_hint is not None
    assert counts(conn, ticket)[0] == 1
    assert purgelog(conn) == []


def test_seven_days_is_the_floor_itself(conn: Conn, brand: UUID) -> None:
    ticket = make_ticket(conn, brand, age="8 days")
    assert purge(conn, "7 days")["tickets_deleted"] == 1
    assert counts(conn, ticket) == (0, 0, 0)


# The purge record --------------------------------------------------------------------------------


def test_the_record_says_who_when_cutoff_and_what(conn: Conn, brand: UUID) -> None:
    make_ticket(conn, brand)
    with conn.transaction():
        now = conn.execute("SELECT now() AS t").fetchone()
        record = purge(conn, "30 days", "  admin:sari  ")
    assert now is not None
    [stored] = purgelog(conn)
    assert stored == record
    assert record["actor"] == "admin:sari"
    assert record["purged_at"] == now["t"]
    assert record["older_than"].days == 30
    assert record["cutoff"] == record["purged_at"] - record["older_than"]
    assert record["db_user"] == scalar(conn, "SELECT session_user")
    assert len(record["digest"]) == 64 and record["digest"] != SHA256_OF_NOTHING


def removed_lines(conn: Conn, ticket_ids: list[int]) -> list[str]:
    """The digest's lines, as a DBA would rebuild them from a copy taken before the purge."""
    conn.execute("SET TimeZone = 'UTC'")
    lines: list[str] = []
    for table, column in (
        ("kitchen_kitchenticket", "id"),
        ("kitchen_kitchenticketitem", "kitchen_ticket_id"),
        ("kitchen_kitchenticketlog", "ticket_id"),
    ):
        rows = conn.execute(
            sql.SQL(
                "SELECT {table_name} || ' ' || row_to_json(r)::text AS line FROM {table} r"
                " WHERE r.{column} = ANY(%s) ORDER BY r.id"
            ).format(
                table_name=sql.Literal(table),
                table=sql.Identifier(table),
                column=sql.Identifier(column),
            ),
            (ticket_ids,),
        ).fetchall()
        lines += [row["line"] for row in rows]
    conn.execute("RESET TimeZone")
    return lines


def sha256_chain(lines: list[str]) -> str:
    state = hashlib.sha256(b"").digest()
    for line in lines:
        state = hashlib.sha256(state + line.encode()).digest()
    return state.hex()


def test_the_digest_is_the_documented_chain_over_the_removed_rows(conn: Conn, brand: UUID) -> None:
    tickets = [make_ticket(conn, brand), make_ticket(conn, brand, status="failed")]
    expected = sha256_chain(removed_lines(conn, tickets))
    assert purge(conn)["digest"] == expected


def test_the_digest_is_deterministic_and_changes_with_the_content(conn: Conn, brand: UUID) -> None:
    ticket = make_ticket(conn, brand)

    def digest_then_undo(time_zone: str) -> str:
        conn.execute("BEGIN")
        try:
            conn.execute(sql.SQL("SET LOCAL TimeZone = {}").format(sql.Literal(time_zone)))
            return str(purge(conn)["digest"])
        finally:
            conn.execute("ROLLBACK")

    first = digest_then_undo("UTC")
    # Another moment, another session time zone: the same rows give the same digest.
    assert digest_then_undo("Asia/Jakarta") == first
    conn.execute(
        "UPDATE kitchen_kitchenticket SET error_message = 'jammed' WHERE id = %s", (ticket,)
    )
    assert digest_then_undo("UTC") != first


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE kitchen_purgelog SET actor = 'someone else'",
        "UPDATE kitchen_purgelog SET actor = 'nobody' WHERE false",
        "DELETE FROM kitchen_purgelog",
        "DELETE FROM kitchen_purgelog WHERE false",
        "TRUNCATE kitchen_purgelog",
    ],
)
@pytest.mark.parametrize("replica", [False, True], ids=["origin", "replica"])
def test_the_purge_record_is_append_only(conn: Conn, statement: str, replica: bool) -> None:
    purge(conn)
    before = purgelog(conn)
    if replica:  # skips ordinary triggers
        conn.execute("SET session_replication_role = replica")
    with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
        conn.execute(statement)
    assert purgelog(conn) == before


# The ticket log: DELETE only through kitchen_purge -----------------------------------------------


def assert_refused_naming_purge(conn: Conn, statement: str, params: Any = None) -> None:
    with pytest.raises(errors.InsufficientPrivilege) as raised, conn.transaction():
        conn.execute(statement, params)
    said = f"{raised.value.diag.message_primary} {raised.value.diag.message_hint}"
    assert "append-only" in said
    assert PURGE_NAMED in said


def test_a_direct_delete_from_the_log_is_refused_naming_kitchen_purge(
    conn: Conn, brand: UUID
) -> None:
    ticket = make_ticket(conn, brand)
    before = counts(conn, ticket)
    assert_refused_naming_purge(
        conn, "DELETE FROM kitchen_kitchenticketlog WHERE ticket_id = %s", (ticket,)
    )
    assert_refused_naming_purge(conn, "DELETE FROM kitchen_kitchenticketlog WHERE false")
    # What an ORM does for a ticket with its dependent rows: the log's DELETE comes first.
    with pytest.raises(errors.InsufficientPrivilege, match="kitchen_purge"), conn.transaction():
        conn.execute(
            "DELETE FROM kitchen_kitchenticketitem WHERE kitchen_ticket_id = %s", (ticket,)
        )
        conn.execute("DELETE FROM kitchen_kitchenticketlog WHERE ticket_id = %s", (ticket,))
        conn.execute("DELETE FROM kitchen_kitchenticket WHERE id = %s", (ticket,))
    assert counts(conn, ticket) == before


def test_the_flag_does_not_outlive_kitchen_purge_in_its_transaction(
    conn: Conn, brand: UUID
) -> None:
    ticket = make_ticket(conn, brand, age="1 day")
    with conn.transaction():
        # As the role that owns kitchen_purge: only the flag tells its DELETEs from the purge's.
        conn.execute("SET LOCAL ROLE kprintd_owner")
        assert scalar(
            conn,
            "SELECT pg_get_userbyid(proowner) = current_user FROM pg_proc"
            " WHERE oid = 'kitchen_purge(interval, text)'::regprocedure",
        )
        purge(conn)
        assert_refused_naming_purge(
            conn, "DELETE FROM kitchen_kitchenticketlog WHERE ticket_id = %s", (ticket,)
        )
    assert counts(conn, ticket)[2] > 0


@pytest.mark.parametrize("scope", ["transaction", "session"])
def test_a_role_that_sets_the_purge_flag_itself_is_still_refused(
    conn: Conn, brand: UUID, role: str, scope: str
) -> None:
    ticket = make_ticket(conn, brand)
    before = counts(conn, ticket)
    conn.execute(
        sql.SQL(
            "GRANT SELECT, DELETE ON kitchen_kitchenticketlog, kitchen_kitchenticketitem,"
            " kitchen_kitchenticket TO {}"
        ).format(sql.Identifier(role))
    )
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    flag = (
        "SELECT set_config('kprintd.purge', 'running', true)"
        if scope == "transaction"
        else "SET kprintd.purge = 'running'"
    )
    for statement in (
        "DELETE FROM kitchen_kitchenticketlog WHERE ticket_id = %s",
        "DELETE FROM kitchen_kitchenticketlog WHERE false AND ticket_id = %s",
    ):
        with pytest.raises(errors.InsufficientPrivilege) as raised, conn.transaction():
            conn.execute(flag)
            conn.execute(statement, (ticket,))
        said = f"{raised.value.diag.message_primary} {raised.value.diag.message_hint}"
        assert PURGE_NAMED in said
    conn.execute("RESET ROLE")
    assert counts(conn, ticket) == before


def test_update_and_truncate_of_the_log_stay_refused(conn: Conn, brand: UUID) -> None:
    ticket = make_ticket(conn, brand)
    for statement in (
        "UPDATE kitchen_kitchenticketlog SET actor = 'someone else'",
        "TRUNCATE kitchen_kitchenticketlog",
    ):
        with pytest.raises(errors.InsufficientPrivilege, match="append-only"), conn.transaction():
            conn.execute("SELECT set_config('kprintd.purge', 'running', true)")
            conn.execute(statement)
    assert counts(conn, ticket)[2] > 0


# Who may purge, and what a caller cannot change ------------------------------------------------


def test_kitchen_purge_runs_only_for_roles_granted_it(conn: Conn, brand: UUID, role: str) -> None:
    ticket = make_ticket(conn, brand)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    with pytest.raises(errors.InsufficientPrivilege, match="kitchen_purge"):
        purge(conn)
    conn.execute("RESET ROLE")
    conn.execute(
        sql.SQL("GRANT EXECUTE ON FUNCTION kitchen_purge(interval, text) TO {}").format(
            sql.Identifier(role)
        )
    )
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    # The role has no privilege on any kitchen table: the function's owner does the work.
    record = purge(conn, actor="pos:nightly")
    conn.execute("RESET ROLE")
    assert record["tickets_deleted"] == 1
    assert counts(conn, ticket) == (0, 0, 0)


def test_a_callers_temporary_table_cannot_stand_in_for_the_tickets(conn: Conn, brand: UUID) -> None:
    ticket = make_ticket(conn, brand)
    conn.execute(
        "CREATE TEMPORARY TABLE kitchen_kitchenticket"
        " (id bigint, status text, created_at timestamptz, original_ticket_id bigint)"
    )
    record = purge(conn)
    assert record["tickets_deleted"] == 1
    conn.execute("DROP TABLE pg_temp.kitchen_kitchenticket")
    assert counts(conn, ticket) == (0, 0, 0)


def test_a_concurrent_purge_waits_for_the_first_then_finds_nothing(
    conn: Conn, brand: UUID, database_url: str
) -> None:
    ticket = make_ticket(conn, brand)
    second: dict[str, Any] = {}

    def purge_again() -> None:
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other:
            second["record"] = purge(other, actor="pos:terminal-2")

    with psycopg.connect(database_url, row_factory=dict_row) as first:
        first_record = purge(first, actor="pos:terminal-1")  # not committed yet
        thread = threading.Thread(target=purge_again)
        thread.start()
        wait_until(
            lambda: query(
                database_url,
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
            ),
            what="the second purge waiting on the first",
        )
        assert "record" not in second
        first.commit()
    thread.join(10)
    assert not thread.is_alive()

    assert first_record["tickets_deleted"] == 1
    assert second["record"]["tickets_deleted"] == 0
    assert second["record"]["digest"] == SHA256_OF_NOTHING
    assert [r["actor"] for r in purgelog(conn)] == ["pos:terminal-1", "pos:terminal-2"]
    assert counts(conn, ticket) == (0, 0, 0)


# The daemon's retention task ---------------------------------------------------------------------


def run_service(
    database_url: str,
    retention_days: int,
    until: Callable[[], object],
    *,
    interval_s: float = 3600.0,
    timeout: float = 15.0,
) -> float:
    """Runs a TicketRetention service (first purge at once) until `until()` (called in a worker
    thread) is true, then stops it. Returns how long stopping took."""

    async def scenario() -> float:
        settings = Settings(database_url=database_url)
        pool = create_pool(settings, max_size=2)
        await pool.open(wait=True)
        try:
            service = TicketRetention(
                Schedule(interval_s, 0.0), Database(pool, settings), retention_days
            )
            service.start()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not await asyncio.to_thread(until):
                assert loop.time() < deadline, "timed out waiting for the retention service"
                await asyncio.sleep(0.02)
            stopped_at = loop.time()
            await asyncio.wait_for(service.stop(), 5.0)
            return loop.time() - stopped_at
        finally:
            await pool.close()

    return asyncio.run(scenario())


def test_the_retention_task_purges_once_at_start_when_set(
    conn: Conn, brand: UUID, database_url: str
) -> None:
    old = make_ticket(conn, brand, age="31 days")
    young = make_ticket(conn, brand, age="29 days")

    with capture_logs() as logs:
        took = run_service(database_url, 30, lambda: query(database_url, PURGED))

    assert took < 1.0
    [record] = purgelog(conn)
    assert record["actor"] == ACTOR
    assert record["older_than"].days == 30
    assert counts(conn, old) == (0, 0, 0)
    assert counts(conn, young)[0] == 1
    [line] = [e for e in logs if e["event"] == "purged old tickets"]
    assert line["tickets"] == 1 and line["items"] == 2
    assert line["log_rows"] == record["log_rows_deleted"]
    assert line["digest"] == record["digest"]


def test_the_retention_task_does_nothing_when_unset(database_url: str) -> None:
    def purges(**settings: Any) -> list[TicketRetention]:
        daemon = Daemon(Settings(database_url=database_url, **settings))
        return [s for s in daemon.services.services if isinstance(s, TicketRetention)]

    assert purges() == []
    [purge] = purges(ticket_retention_days=30)
    assert purge.days == 30


def test_the_retention_task_survives_a_failed_purge_and_tries_again(
    conn: Conn, brand: UUID, database_url: str
) -> None:
    old = make_ticket(conn, brand)
    conn.execute("ALTER FUNCTION kitchen_purge(interval, text) RENAME TO kitchen_purge_elsewhere")

    mended: list[bool] = []

    def failed_then_mended() -> bool:
        """After the first failure is logged, put kitchen_purge back; true once it purged."""
        failed = any(e["event"].startswith("ticket purge failed") for e in logs)
        if failed and not mended:
            query(
                database_url,
                "ALTER FUNCTION kitchen_purge_elsewhere(interval, text) RENAME TO kitchen_purge",
            )
            mended.append(True)
        return bool(query(database_url, PURGED))

    with capture_logs() as logs:
        took = run_service(database_url, 30, failed_then_mended, interval_s=0.05)

    assert took < 1.0
    failures = [e for e in logs if e["event"].startswith("ticket purge failed")]
    assert failures and "kitchen_purge" in failures[0]["error"]
    assert len(purgelog(conn)) == 1
    assert counts(conn, old) == (0, 0, 0)


def test_a_daemon_with_retention_set_purges_soon_after_start(
    conn: Conn, brand: UUID, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = make_ticket(conn, brand, age="8 days")
    monkeypatch.setattr(retention, "SCHEDULE", Schedule(PURGE_INTERVAL_S, 0.0))
    with running_daemon(database_url, ticket_retention_days=7):
        wait_until(lambda: query(database_url, PURGED), what="the daemon's purge")
    [record] = purgelog(conn)
    assert record["actor"] == ACTOR
    assert counts(conn, old) == (0, 0, 0)


# The setting --------------------------------------------------------------------------------------


def test_ticket_retention_is_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KPRINTD_TICKET_RETENTION_DAYS", raising=False)
    monkeypatch.setenv("KPRINTD_DATABASE_URL", "postgresql://kprintd@localhost/pos")
    monkeypatch.delenv("KPRINTD_ENV_FILE", raising=False)
    assert load_settings().ticket_retention_days is None
    monkeypatch.setenv("KPRINTD_TICKET_RETENTION_DAYS", "30")
    assert load_settings().ticket_retention_days == 30


@pytest.mark.parametrize("days", ["3", "6", "0", "3651", "thirty"])
def test_a_retention_under_the_floor_or_absurd_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, days: str
) -> None:
    monkeypatch.setenv("KPRINTD_DATABASE_URL", "postgresql://kprintd@localhost/pos")
    monkeypatch.delenv("KPRINTD_ENV_FILE", raising=False)
    monkeypatch.setenv("KPRINTD_TICKET_RETENTION_DAYS", days)
    with pytest.raises(ConfigError, match=r"^KPRINTD_TICKET_RETENTION_DAYS "):
        load_settings()
