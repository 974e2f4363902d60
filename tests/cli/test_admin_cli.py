"""The admin commands (`kprintd tickets`, `reprint`, `reset`, `mark-printed`, `mark-failed`), run
as the person at the store server runs them: a child process, configured by KPRINTD_* variables,
against a real database. Outcomes are checked in the database, not only in what is printed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kprintd.harness import (
    PostgresServer,
    Restaurant,
    as_login,
    daemon_env,
    log_actions,
    query,
    ticket,
)

# Nothing listens on port 1 of loopback: the connection is refused at once.
UNREACHABLE = "postgresql://kprintd@127.0.0.1:1/pos?connect_timeout=2"
ACTOR = "manager:sari"


def kprintd(url: str, *args: str, **settings: Any) -> subprocess.CompletedProcess[str]:
    """`kprintd ARGS` as a child process, configured by KPRINTD_* variables (`settings`)."""
    return subprocess.run(
        [sys.executable, "-m", "kprintd.cli", *args],
        env=daemon_env(url, **settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one stderr line of a command that did nothing, after checking it is one line."""
    assert result.returncode == code, result
    assert result.stdout == "", "nothing on stdout when nothing was done"
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kprintd: "), result.stderr
    return lines[0]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result
    return result.stdout


def bill_of(url: str, ticket_id: int) -> dict[str, Any]:
    return query(
        url,
        "SELECT b.id, b.bill_number FROM pos_bill b"
        " JOIN kitchen_kitchenticket t ON t.bill_id = b.id WHERE t.id = %s",
        (ticket_id,),
    )[0]


def item_ids(url: str, ticket_id: int) -> list[int]:
    rows = query(
        url,
        "SELECT bill_item_id FROM kitchen_kitchenticketitem WHERE kitchen_ticket_id = %s"
        " ORDER BY bill_item_id",
        (ticket_id,),
    )
    return [r["bill_item_id"] for r in rows]


def send(restaurant: Restaurant, *stations: str) -> list[int]:
    """One bill with an item per station; its ticket ids in the order of `stations`."""
    ids = restaurant.send(*stations)
    station_of = {ticket(restaurant.url, i)["printer_target"]: i for i in ids}
    return [station_of[s] for s in stations]


def printed(url: str, ticket_id: int) -> None:
    query(url, "SELECT kitchen_mark_printed(%s, 'printer_service')", (ticket_id,))


def failed(url: str, ticket_id: int, reason: str = "printer on fire") -> None:
    query(url, "SELECT kitchen_mark_failed(%s, 'printer_service', %s)", (ticket_id, reason))


# --- kprintd tickets ------------------------------------------------------------------------------


def test_help_lists_the_admin_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kprintd.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("tickets", "reprint", "reset", "mark-printed", "mark-failed"):
        assert command in result.stdout


@pytest.mark.slow
def test_tickets_lists_the_last_tickets_as_text_and_json(
    database_url: str, restaurant: Restaurant
) -> None:
    kitchen, bar = send(restaurant, "kitchen", "bar")
    (dessert,) = restaurant.send("dessert")
    printed(database_url, kitchen)
    failed(database_url, bar, "paper jam")
    number = bill_of(database_url, kitchen)["bill_number"]

    text = ok(kprintd(database_url, "tickets"))
    lines = text.splitlines()
    assert lines[0] == "Tickets, oldest first (3)"
    assert lines[1].split() == [
        "ID", "BILL", "STATION", "TYPE", "STATUS", "TRIES", "CREATED", "PRINTED", "ERROR",
    ]  # fmt: skip
    rows = {int(line.split()[0]): line.split() for line in lines[2:]}
    assert list(rows) == [*sorted([kitchen, bar]), dessert], "oldest first, newest last"
    assert rows[kitchen][1:5] == [number, "kitchen", "order", "printed"]
    assert rows[bar][1:5] == [number, "bar", "order", "failed"]
    assert " ".join(rows[bar][-4:]) == "- manual: paper jam", "not printed, the error"
    assert rows[dessert][4] == "new" and rows[dessert][-2:] == ["-", "-"], "not printed, no error"

    report = json.loads(ok(kprintd(database_url, "tickets", "--json")))
    assert (report["listing"], report["limit"]) == ("recent", 20)
    assert [t["ticket_id"] for t in report["tickets"]] == list(rows)
    (first,) = [t for t in report["tickets"] if t["ticket_id"] == kitchen]
    assert (first["bill_number"], first["station"], first["status"]) == (
        number,
        "kitchen",
        "printed",
    )
    assert first["printed_at"] is not None and first["created_at"].startswith("20")
    assert [i["bill_item_id"] for i in first["items"]] == item_ids(database_url, kitchen)
    assert [t["error_message"] for t in report["tickets"]].count("paper jam") == 1

    limited = ok(kprintd(database_url, "tickets", "--limit", "2")).splitlines()
    assert [int(line.split()[0]) for line in limited[2:4]] == [max(kitchen, bar), dessert]
    assert limited[-1] == "(the last 2; --limit N shows more)"


@pytest.mark.slow
def test_tickets_failed_and_stuck(database_url: str, restaurant: Restaurant) -> None:
    waiting, broken = send(restaurant, "kitchen", "bar")
    failed(database_url, broken, "cutter jammed")
    # Due two minutes ago and no daemon running: overdue.
    query(
        database_url,
        "UPDATE kitchen_kitchenticket SET next_attempt_at = now() - interval '2 minutes'"
        " WHERE id = %s",
        (waiting,),
    )

    text = ok(kprintd(database_url, "tickets", "--failed"))
    assert text.startswith("Failed tickets, oldest first (1)\n")
    (row,) = [line for line in text.splitlines() if line.split()[:1] == [str(broken)]]
    assert "bar" in row and "printer_service" in row and "manual: cutter jammed" in row
    assert "kprintd reset ID --actor WHO" in text, "says what to do about it"
    report = json.loads(ok(kprintd(database_url, "tickets", "--failed", "--json")))
    assert report["listing"] == "failed"
    assert [
        (t["ticket_id"], t["error_message"], t["failed_by_action"]) for t in report["tickets"]
    ] == [(broken, "cutter jammed", "marked_failed")]

    text = ok(kprintd(database_url, "tickets", "--stuck"))
    assert text.startswith("Stuck tickets, oldest first (1)\n")
    (row,) = [line for line in text.splitlines() if line.split()[:1] == [str(waiting)]]
    assert "kitchen" in row and "overdue" in row and "2 min" in row
    report = json.loads(ok(kprintd(database_url, "tickets", "--stuck", "--json")))
    (stuck,) = report["tickets"]
    assert (stuck["ticket_id"], stuck["reason"]) == (waiting, "overdue")
    assert 110 < stuck["stuck_for"] < 300, "an interval is given in seconds"

    query(database_url, "SELECT kitchen_reset_ticket(%s, 'x')", (broken,))
    assert ok(kprintd(database_url, "tickets", "--failed")) == "No failed tickets.\n"


@pytest.mark.slow
def test_tickets_of_one_bill_by_number_and_by_id(database_url: str, restaurant: Restaurant) -> None:
    kitchen, bar = send(restaurant, "kitchen", "bar")
    restaurant.send("kitchen")  # another bill: not listed
    printed(database_url, kitchen)
    bill = bill_of(database_url, kitchen)
    (item,) = item_ids(database_url, kitchen)

    text = ok(kprintd(database_url, "tickets", "--bill", bill["bill_number"]))
    lines = text.splitlines()
    assert lines[0] == (
        f"Bill {bill['bill_number']} (id {bill['id']}): 2 ticket(s), 1 printed, 1 waiting;"
        " kitchen status PENDING"
    )
    listed = [int(line.split()[0]) for line in lines if line.split()[0].isdigit()]
    assert listed == sorted([kitchen, bar])
    assert f"      item {item}: 1 x Kitchen Special" in lines, "the item ids a reprint takes"
    assert ok(kprintd(database_url, "tickets", "--bill", str(bill["id"]))) == text, "by id"

    report = json.loads(ok(kprintd(database_url, "tickets", "--bill", str(bill["id"]), "--json")))
    (found,) = report["bills"]
    assert (found["bill_id"], found["kitchen_status"], found["ticket_count"]) == (
        bill["id"],
        "pending",
        2,
    )
    assert [t["ticket_id"] for t in found["tickets"]] == sorted([kitchen, bar])

    line = one_error_line(kprintd(database_url, "tickets", "--bill", "NO-SUCH-BILL"), 1)
    assert line == "kprintd: tickets: no bill numbered 'NO-SUCH-BILL' has tickets"
    line = one_error_line(kprintd(database_url, "tickets", "--bill", "999999999"), 1)
    assert "or with that id" in line


@pytest.mark.slow
def test_control_characters_from_the_database_are_escaped_in_text(
    database_url: str, restaurant: Restaurant
) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    hostile = "B-7\x1b[2J\x1b]0;pwned\x07\nX"
    query(
        database_url,
        "UPDATE pos_bill SET bill_number = %s WHERE id = %s",
        (hostile, bill_of(database_url, ticket_id)["id"]),
    )
    failed(database_url, ticket_id, "bad\x1b[31m red")
    escaped = "B-7\\x1b[2J\\x1b]0;pwned\\x07\\x0aX"
    for args in (["tickets"], ["tickets", "--failed"], ["tickets", "--bill", hostile]):
        text = ok(kprintd(database_url, *args))
        assert escaped in text, args
        assert "\x1b" not in text and "\x07" not in text, args
    assert "bad\\x1b[31m red" in ok(kprintd(database_url, "tickets"))
    report = json.loads(ok(kprintd(database_url, "tickets", "--json")))
    assert report["tickets"][0]["bill_number"] == hostile, "JSON keeps the value as it is"
    line = one_error_line(kprintd(database_url, "tickets", "--bill", "\x1b[2J"), 1)
    assert "\x1b" not in line and "\\x1b[2J" in line


@pytest.mark.slow
def test_listings_keep_to_the_configured_scope(database_url: str, restaurant: Restaurant) -> None:
    other = Restaurant(database_url)
    (ours,) = restaurant.send("kitchen")
    (theirs,) = other.send("kitchen")
    failed(database_url, ours)
    failed(database_url, theirs)
    scope = {"brand_ids": str(restaurant.brand_id)}

    everything = json.loads(ok(kprintd(database_url, "tickets", "--json")))
    assert [t["ticket_id"] for t in everything["tickets"]] == [ours, theirs], "no scope: all"
    for args in (["tickets", "--json"], ["tickets", "--failed", "--json"]):
        listed = json.loads(ok(kprintd(database_url, *args, **scope)))
        assert [t["ticket_id"] for t in listed["tickets"]] == [ours], args
    number = bill_of(database_url, theirs)["bill_number"]
    one_error_line(kprintd(database_url, "tickets", "--bill", number, **scope), 1)
    # The actions are the database's: a ticket id is one ticket, whatever the scope.
    ok(kprintd(database_url, "reset", str(theirs), "--actor", ACTOR, **scope))


# --- the actions ----------------------------------------------------------------------------------


def test_reprint_of_every_item_and_of_some(database_url: str, restaurant: Restaurant) -> None:
    (original,) = restaurant.send("kitchen", "kitchen")  # one ticket, two items
    printed(database_url, original)
    items = item_ids(database_url, original)
    assert len(items) == 2

    out = ok(kprintd(database_url, "reprint", str(original), "--actor", ACTOR))
    (new_id,) = [
        r["id"]
        for r in query(
            database_url,
            "SELECT id FROM kitchen_kitchenticket WHERE original_ticket_id = %s",
            (original,),
        )
    ]
    assert out == (
        f"ticket {original} reprinted as ticket {new_id} (all items) by {ACTOR};"
        " it prints with a REPRINT banner\n"
    )
    reprint = ticket(database_url, new_id)
    assert (reprint["is_reprint"], reprint["status"]) == (True, "new")
    assert item_ids(database_url, new_id) == items
    (created,) = query(
        database_url,
        "SELECT actor, metadata FROM kitchen_kitchenticketlog WHERE ticket_id = %s"
        " AND action = 'created'",
        (new_id,),
    )
    assert (created["actor"], created["metadata"]["reprint_of"]) == (ACTOR, original)

    result = kprintd(
        database_url, "reprint", str(original), "--items", str(items[1]), "--actor", ACTOR, "--json"
    )
    outcome = json.loads(ok(result))
    assert outcome["action"] == "reprint" and outcome["ticket_id"] == original
    assert (outcome["item_ids"], outcome["actor"]) == ([items[1]], ACTOR)
    assert item_ids(database_url, outcome["new_ticket_id"]) == [items[1]], "only that item"


@pytest.mark.slow
def test_reset_of_a_failed_ticket(database_url: str, restaurant: Restaurant) -> None:
    first, second = send(restaurant, "kitchen", "bar")
    failed(database_url, first)
    failed(database_url, second)

    out = ok(kprintd(database_url, "reset", str(first), "--actor", ACTOR))
    assert out == f"ticket {first} reset by {ACTOR}: back in the queue, due now\n"
    after = ticket(database_url, first)
    assert (after["status"], after["print_attempts"], after["error_message"]) == ("new", 0, None)
    assert log_actions(database_url, first)[-1] == "manual_reset"
    assert query(
        database_url,
        "SELECT actor FROM kitchen_kitchenticketlog WHERE ticket_id = %s ORDER BY id DESC LIMIT 1",
        (first,),
    ) == [{"actor": ACTOR}]

    outcome = json.loads(
        ok(kprintd(database_url, "reset", str(second), "--actor", ACTOR, "--json"))
    )
    assert (outcome["action"], outcome["ticket_id"], outcome["actor"]) == ("reset", second, ACTOR)
    assert outcome["ticket"]["status"] == "new" and outcome["ticket"]["station"] == "bar"


def test_reset_of_a_stuck_print_says_it_prints_with_retry(
    database_url: str, restaurant: Restaurant
) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    query(
        database_url,
        "UPDATE kitchen_kitchenticket SET status = 'printing', print_attempts = 1,"
        " claimed_by = 'gone', lease_expires_at = now() - interval '1 minute' WHERE id = %s",
        (ticket_id,),
    )
    out = ok(kprintd(database_url, "reset", str(ticket_id), "--actor", ACTOR))
    assert "with a RETRY banner" in out
    assert ticket(database_url, ticket_id)["may_have_printed"] is True


@pytest.mark.slow
def test_mark_printed_and_mark_failed(database_url: str, restaurant: Restaurant) -> None:
    first, second, third = send(restaurant, "kitchen", "bar", "dessert")

    out = ok(kprintd(database_url, "mark-printed", str(first), "--actor", ACTOR))
    assert out == f"ticket {first} marked printed by {ACTOR}; it will not print\n"
    assert ticket(database_url, first)["status"] == "printed"
    assert log_actions(database_url, first)[-1] == "marked_printed"

    result = kprintd(
        database_url, "mark-failed", str(second), "--actor", ACTOR, "--reason", "order re-entered"
    )
    assert ok(result) == f"ticket {second} marked failed by {ACTOR}: order re-entered\n"
    after = ticket(database_url, second)
    assert (after["status"], after["error_code"], after["error_message"]) == (
        "failed",
        "manual",
        "order re-entered",
    )
    assert log_actions(database_url, second)[-1] == "marked_failed"

    outcome = json.loads(
        ok(kprintd(database_url, "mark-printed", str(third), "--actor", ACTOR, "--json"))
    )
    assert (outcome["action"], outcome["ticket"]["status"]) == ("mark-printed", "printed")
    assert outcome["ticket"]["printed_at"] is not None


def test_mark_failed_as_json(database_url: str, restaurant: Restaurant) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    outcome = json.loads(
        ok(
            kprintd(
                database_url, "mark-failed", str(ticket_id), "--actor", ACTOR,
                "--reason", "printer replaced", "--json",
            )
        )
    )  # fmt: skip
    assert (outcome["action"], outcome["reason"]) == ("mark-failed", "printer replaced")
    assert (outcome["ticket"]["status"], outcome["ticket"]["error_code"]) == ("failed", "manual")


@pytest.mark.parametrize(
    ("state", "args", "says"),
    [
        ("printed", ["reset"], "was printed; resetting it would print it again unmarked."
         " To print it again, use kprintd reprint: the copy is marked as a reprint."),
        ("new", ["reset"], "is already waiting to print"),
        ("printed", ["mark-printed"], "is already printed"),
        ("printed", ["mark-failed", "--reason", "x"], "was printed and cannot fail any more"),
        ("failed", ["mark-failed", "--reason", "x"], "has already failed"),
        ("new", ["reprint"], "is new, not printed yet. It is still going to print."
         " A ticket stuck in printing can be put back with kprintd reset."),
        ("printed", ["reprint", "--items", "999999"], "items {999999} are not on ticket"
         " {id}. Item ids are pos_billitem ids (as kprintd tickets --bill lists them)"),
    ],
    ids=["reset-printed", "reset-new", "mark-printed-twice", "fail-printed", "fail-failed",
         "reprint-new", "reprint-foreign-items"],
)  # fmt: skip
def test_refused_actions_are_one_line_exit_1_and_change_nothing(
    database_url: str, restaurant: Restaurant, state: str, args: list[str], says: str
) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    if state == "printed":
        printed(database_url, ticket_id)
    elif state == "failed":
        failed(database_url, ticket_id)
    before = (ticket(database_url, ticket_id), log_actions(database_url, ticket_id))
    tickets_before = query(database_url, "SELECT count(*) AS n FROM kitchen_kitchenticket")

    command, *options = args
    line = one_error_line(
        kprintd(database_url, command, str(ticket_id), *options, "--actor", ACTOR), 1
    )
    assert line.startswith(f"kprintd: {command}: ")
    assert f"ticket {ticket_id} " in line or f"ticket {ticket_id}" in line.rstrip(".")
    assert says.replace("{id}", str(ticket_id)) in line
    assert "kitchen_" not in line, "says commands, not SQL names"
    after = (ticket(database_url, ticket_id), log_actions(database_url, ticket_id))
    assert after == before
    assert query(database_url, "SELECT count(*) AS n FROM kitchen_kitchenticket") == tickets_before


@pytest.mark.slow
def test_unknown_ticket_is_exit_1(database_url: str) -> None:
    for args in (
        ["reset", "424242"],
        ["mark-printed", "424242"],
        ["mark-failed", "424242", "--reason", "x"],
        ["reprint", "424242"],
    ):
        line = one_error_line(kprintd(database_url, *args, "--actor", ACTOR), 1)
        assert line == f"kprintd: {args[0]}: ticket 424242 does not exist", line


def test_errors_stay_on_stderr_with_json(database_url: str, restaurant: Restaurant) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    printed(database_url, ticket_id)
    line = one_error_line(
        kprintd(database_url, "mark-printed", str(ticket_id), "--actor", ACTOR, "--json"), 1
    )
    assert line == f"kprintd: mark-printed: ticket {ticket_id} is already printed"


@pytest.mark.slow
def test_a_ticket_locked_elsewhere_is_exit_1_not_a_hang(
    database_url: str, restaurant: Restaurant
) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    failed(database_url, ticket_id)
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM kitchen_kitchenticket WHERE id = %s FOR UPDATE", (ticket_id,))
        line = one_error_line(kprintd(database_url, "reset", str(ticket_id), "--actor", ACTOR), 1)
        holder.rollback()
    assert "locked by another transaction" in line and "try again" in line
    assert ticket(database_url, ticket_id)["status"] == "failed"


def test_an_actor_the_database_refuses_is_exit_1(database_url: str, restaurant: Restaurant) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    line = one_error_line(kprintd(database_url, "reset", str(ticket_id), "--actor", "a" * 101), 1)
    assert "actor must be 1 to 100 characters" in line
    assert "Say who does it" in line, "with the database's hint"


@pytest.mark.parametrize(
    "args",
    [
        ["reset", "{id}"],
        ["reset", "{id}", "--actor", "   "],
        ["reset", "{id}", "--actor", ""],
        ["mark-printed", "{id}"],
        ["mark-failed", "{id}", "--reason", "x"],
        ["mark-failed", "{id}", "--actor", ACTOR],
        ["mark-failed", "{id}", "--actor", ACTOR, "--reason", " "],
        ["reprint", "{id}"],
        ["reprint", "{id}", "--actor", ACTOR, "--items"],
        ["reprint", "{id}", "--actor", ACTOR, "--items", "x"],
        ["reset", "seven", "--actor", ACTOR],
        ["reset", "0", "--actor", ACTOR],
        ["reset", str(2**63), "--actor", ACTOR],
        ["tickets", "--failed", "--stuck"],
        ["tickets", "--limit", "0"],
    ],
    ids=[
        "no-actor", "blank-actor", "empty-actor", "mark-printed-no-actor", "mark-failed-no-actor",
        "no-reason", "blank-reason", "reprint-no-actor", "items-without-ids", "item-not-a-number",
        "id-not-a-number", "id-zero", "id-beyond-bigint", "two-listings", "limit-zero",
    ],
)  # fmt: skip
def test_usage_errors_exit_2_and_change_nothing(
    database_url: str, restaurant: Restaurant, args: list[str]
) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    failed(database_url, ticket_id)
    before = log_actions(database_url, ticket_id)
    result = kprintd(database_url, *(a.replace("{id}", str(ticket_id)) for a in args))
    assert result.returncode == 2, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert "usage: kprintd" in result.stderr
    if args[0] != "tickets" and "--actor" not in args:
        assert "the following arguments are required: --actor" in result.stderr
    assert log_actions(database_url, ticket_id) == before


# --- the database cannot be used ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["tickets"], ["tickets", "--failed"], ["reset", "1", "--actor", ACTOR]],
    ids=["tickets", "failed", "reset"],
)
def test_an_unreachable_database_is_one_line_and_exit_2(args: list[str]) -> None:
    line = one_error_line(kprintd(UNREACHABLE, *args), 2)
    assert line.startswith(f"kprintd: {args[0]}: cannot connect to the database: ")
    assert "Connection refused" in line or "connection" in line.lower()


def test_a_database_without_the_schema_is_exit_2(empty_database_url: str) -> None:
    for args in (["tickets"], ["tickets", "--failed"], ["reset", "1", "--actor", ACTOR]):
        line = one_error_line(kprintd(empty_database_url, *args), 2)
        assert line.endswith("Is the schema up to date? (kprintd migrate --status)"), line
        assert "does not exist" in line and "type casts" not in line


@pytest.fixture
def login(postgres_server: PostgresServer, database_url: str) -> Iterator[str]:
    """A new login role's name, dropped after the test with what it was granted in the test's
    database; the test says what it may do."""
    name = f"kprintd_admin_test_{uuid.uuid4().hex[:12]}"
    yield name
    role = sql.Identifier(name)
    if query(database_url, "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)):
        run_sql(database_url, sql.SQL("DROP OWNED BY {}").format(role))
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(role))


def run_sql(url: str, statement: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def as_user(url: str, user: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(url) | {"user": user}
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def test_a_login_without_rights_gets_permission_denied_exit_2(
    database_url: str, restaurant: Restaurant, postgres_server: PostgresServer, login: str
) -> None:
    (ticket_id,) = restaurant.send("kitchen")
    failed(database_url, ticket_id)
    with psycopg.connect(postgres_server.admin_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(login)))
    url = as_user(database_url, login)
    for args in (["reset", str(ticket_id), "--actor", ACTOR], ["tickets"], ["tickets", "--stuck"]):
        line = one_error_line(kprintd(url, *args), 2)
        assert "permission denied" in line, line
        assert "member of the manager role" in line
    assert ticket(database_url, ticket_id)["status"] == "failed"


@pytest.mark.slow
def test_a_manager_login_lists_and_acts(database_url: str, restaurant: Restaurant) -> None:
    # The test run's kprintd_manager login (sql/schema/60_roles_and_grants.sql): EXECUTE is all
    # it has.
    url = as_login(database_url, "kprintd_manager")
    first, second = send(restaurant, "kitchen", "bar")
    failed(database_url, first)
    printed(database_url, second)

    assert str(first) in ok(kprintd(url, "tickets", "--failed"))
    assert ok(kprintd(url, "tickets", "--stuck")) == "No stuck tickets.\n"
    assert str(second) in ok(kprintd(url, "tickets"))
    number = bill_of(database_url, first)["bill_number"]
    assert "item " in ok(kprintd(url, "tickets", "--bill", number))
    ok(kprintd(url, "reset", str(first), "--actor", ACTOR))
    ok(kprintd(url, "mark-printed", str(first), "--actor", ACTOR))
    ok(kprintd(url, "reprint", str(second), "--actor", ACTOR))
    assert ticket(database_url, first)["status"] == "printed"
    assert log_actions(database_url, first)[-2:] == ["manual_reset", "marked_printed"]
