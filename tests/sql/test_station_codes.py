"""Station codes are visible text: a code with a control character (ESC [2J clears a screen) or an
invisible one ('bar' + a zero-width space looks like 'bar' and is another station) is refused
wherever a station code enters (printers, templates, tickets, and so kitchen_create_tickets()),
with SQLSTATE 22023 and a message naming what was refused, the code escaped, and the rule.
Rows written before codes were judged keep working; text shown on a terminal is escaped."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from typing import Any

import psycopg
import pytest
from psycopg import errors

from kprintd.harness import (
    add_item,
    daemon_env,
    make_bill,
    make_brand,
    make_printer,
    make_product,
    send_to_kitchen,
    void_item,
)
from kprintd.monitor import printable

Conn = psycopg.Connection[dict[str, Any]]

RULE = "a station code must be visible text"

REFUSED = {
    "ESC [2J": "kitchen\x1b[2J",
    "bell": "bar\x07",
    "tab": "cold\tkitchen",
    "newline": "bar\n",
    "DEL": "bar\x7f",
    "C1 CSI": "bar\x9b2J",
    "zero-width space": "bar\u200b",
    "zero-width joiner": "ba\u200dr",
    "word joiner": "\u2060bar",
    "byte order mark": "\ufeffbar",
    "right-to-left override": "bar\u202e",
    "soft hyphen": "des\u00adsert",
    "no-break space": "cold\u00a0kitchen",
    "ideographic space": "bar\u3000",
    "line separator": "bar\u2028",
    "Hangul filler": "bar\u3164",
    "tag character": "bar\U000e0041",
    "only invisible": "\u200b",
}
ACCEPTED = ["kitchen", "cold kitchen", "bar-2", "dessert_é", "炒锅", "grill ☕", "Ünter"]


def refused(conn: Conn, statement: str, params: Any = None) -> str:
    """The message of the 22023 the statement is refused with."""
    with pytest.raises(errors.InvalidParameterValue) as caught:
        conn.execute(statement, params)
    message = caught.value.diag.message_primary or ""
    assert RULE in message
    assert printable(message) == message, "the message itself is safe on a terminal"
    return message


def count(conn: Conn, table: str) -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
    assert row is not None
    return int(row["n"])


def legacy(conn: Conn, table: str, trigger: str, statement: str, params: Any) -> Any:
    """A row written when nothing judged station codes."""
    conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    try:
        return conn.execute(statement, params).fetchone()
    finally:
        conn.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")


# --- The rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(REFUSED.values()), ids=list(REFUSED))
def test_control_and_invisible_characters_are_not_visible_text(conn: Conn, code: str) -> None:
    row = conn.execute(
        "SELECT kitchen_valid_station(%s) AS valid, kitchen_printable(%s) AS shown", (code, code)
    ).fetchone()
    assert row is not None
    assert row["valid"] is False
    assert row["shown"] == printable(code), "SQL and `kprintd status` escape alike"
    assert row["shown"].isprintable() and "\\" in row["shown"]


@pytest.mark.parametrize("code", ACCEPTED)
def test_visible_text_is_a_station_code(conn: Conn, code: str) -> None:
    row = conn.execute(
        "SELECT kitchen_valid_station(%s) AS valid, kitchen_printable(%s) AS shown", (code, code)
    ).fetchone()
    assert row == {"valid": True, "shown": code}
    assert printable(code) == code


def test_the_rule_covers_every_format_character_and_odd_space(conn: Conn) -> None:
    odd = [
        chr(c)
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF
        and (
            unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp")
            or (unicodedata.category(chr(c)) == "Zs" and c != 0x20)
        )
        and c != 0
    ]
    row = conn.execute(
        "SELECT array_agg(c) FILTER (WHERE kitchen_valid_station(c)) AS passed"
        " FROM unnest(%s::text[]) AS c",
        (odd,),
    ).fetchone()
    assert row == {"passed": None}


# --- Where station codes enter --------------------------------------------------------------------


@pytest.mark.parametrize("code", ["Kitchen\x1b[2J", "bar\u200b", "\u200b"])
def test_a_printer_with_such_a_station_code_is_refused(conn: Conn, code: str) -> None:
    brand = make_brand(conn)
    message = refused(
        conn,
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip)"
        " VALUES (%s, %s, 'Main', '192.168.1.100')",
        (brand, code),
    )
    assert message.startswith(f"printer 'Main': station code '{printable(code.lower())}' refused")
    assert count(conn, "kitchen_stationprinter") == 0
    printer = make_printer(conn, brand, "bar", name="Bar")
    message = refused(
        conn, "UPDATE kitchen_stationprinter SET station_code = %s WHERE id = %s", (code, printer)
    )
    assert message.startswith("printer 'Bar': station code")


def test_a_print_template_with_such_a_station_code_is_refused(conn: Conn) -> None:
    brand = make_brand(conn)
    message = refused(
        conn,
        "INSERT INTO kitchen_printtemplate (brand_id, station_code) VALUES (%s, %s)",
        (brand, "bar\u200b"),
    )
    assert "station code 'bar\\u200b' refused" in message
    assert count(conn, "kitchen_printtemplate") == 0


def test_a_ticket_written_by_a_pos_with_such_a_station_is_refused(conn: Conn) -> None:
    bill = make_bill(conn, make_brand(conn))
    message = refused(
        conn,
        "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status)"
        " VALUES (%s, %s, 'new')",
        (bill, "kitchen\x1b[2J"),
    )
    assert message.startswith(f"ticket for bill {bill}: station (printer_target) 'kitchen\\x1b[2j'")
    assert count(conn, "kitchen_kitchenticket") == 0


def test_a_send_with_an_item_going_to_such_a_station_is_refused_whole(conn: Conn) -> None:
    brand = make_brand(conn)
    make_printer(conn, brand, "kitchen")
    make_printer(conn, brand, "checker")
    tea = make_product(conn, brand, "Es Teh", "bar\u200b")
    rice = make_product(conn, brand, "Nasi Goreng", "kitchen")
    bill = make_bill(conn, brand)
    first = add_item(conn, bill, tea)
    add_item(conn, bill, rice)
    second = add_item(conn, bill, tea, quantity=2)
    own = add_item(conn, bill, rice, printer_target="Grill\x1b[31m")

    message = refused(conn, "SELECT * FROM kitchen_create_tickets(%s)", (bill,))
    # Stations go out in name order: 'bar\u200b' is refused first.
    assert message.startswith(
        f"bill {bill}: nothing sent to the kitchen: bill items {first} ('Es Teh', its product's"
        f" printer_target), {second} ('Es Teh', its product's printer_target) go to station"
        " 'bar\\u200b', which is refused"
    )
    for table in ("kitchen_kitchenticket", "kitchen_kitchenticketitem", "kitchen_kitchenticketlog"):
        assert count(conn, table) == 0, f"nothing half-created in {table}"

    conn.execute("UPDATE core_product SET printer_target = 'bar' WHERE id = %s", (tea,))
    message = refused(conn, "SELECT * FROM kitchen_create_tickets(%s)", (bill,))
    assert f"bill item {own} ('Nasi Goreng', its own printer_target) goes to station" in message
    assert "'grill\\x1b[31m'" in message
    assert count(conn, "kitchen_kitchenticket") == 0

    conn.execute("UPDATE pos_billitem SET printer_target = NULL WHERE id = %s", (own,))
    tickets = send_to_kitchen(conn, bill)
    assert sorted(t["printer_target"] for t in tickets) == ["bar", "checker", "kitchen"]


def test_a_session_replica_role_does_not_skip_the_rule(conn: Conn) -> None:
    brand = make_brand(conn)
    conn.execute("SET session_replication_role = replica")
    refused(
        conn,
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip)"
        " VALUES (%s, 'bar\u200b', 'Bar', '192.168.1.100')",
        (brand,),
    )


# --- Rows written before the rule -----------------------------------------------------------------


def test_a_printer_written_before_the_rule_keeps_working_until_its_code_changes(
    conn: Conn,
) -> None:
    brand = make_brand(conn)
    row = legacy(
        conn,
        "kitchen_stationprinter",
        "kitchen_stationprinter_station_visible",
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip)"
        " VALUES (%s, %s, 'Bar', '192.168.1.100') RETURNING id",
        (brand, "bar\u200b"),
    )
    printer = row["id"]
    # The daemon counting a print; an ORM saving every column as it was.
    conn.execute("UPDATE kitchen_stationprinter SET total_prints = 5 WHERE id = %s", (printer,))
    conn.execute(
        "UPDATE kitchen_stationprinter SET station_code = station_code, is_active = false"
        " WHERE id = %s",
        (printer,),
    )
    refused(
        conn,
        "UPDATE kitchen_stationprinter SET station_code = %s WHERE id = %s",
        ("bar\u200c", printer),
    )
    conn.execute("UPDATE kitchen_stationprinter SET station_code = 'bar' WHERE id = %s", (printer,))


def test_a_void_or_reprint_of_a_ticket_written_before_the_rule_still_prints(conn: Conn) -> None:
    brand = make_brand(conn)
    bill = make_bill(conn, brand)
    product = make_product(conn, brand, "Es Teh", "bar")
    item = add_item(conn, bill, product)
    ticket = legacy(
        conn,
        "kitchen_kitchenticket",
        "kitchen_kitchenticket_station_visible",
        "INSERT INTO kitchen_kitchenticket (bill_id, printer_target, status) VALUES (%s, %s,"
        " 'printed') RETURNING id",
        (bill, "bar\u200b"),
    )["id"]
    conn.execute(
        "INSERT INTO kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity,"
        " written_by_kprintd) VALUES (%s, %s, 1, true)",
        (ticket, item),
    )
    conn.execute("SELECT kitchen_reprint(%s, 'admin:sari')", (ticket,))
    void_item(conn, item)
    (void,) = send_to_kitchen(conn, bill)
    assert (void["ticket_type"], void["printer_target"]) == ("void", "bar\u200b")


def test_status_shows_such_codes_escaped(conn: Conn, database_url: str) -> None:
    brand = make_brand(conn)
    legacy(
        conn,
        "kitchen_stationprinter",
        "kitchen_stationprinter_station_visible",
        "INSERT INTO kitchen_stationprinter (brand_id, station_code, printer_name, printer_ip)"
        " VALUES (%s, %s, %s, '192.168.1.100') RETURNING id",
        (brand, "bar\x1b[2J\u200b", "Bar\u202e"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "kprintd.cli", "status"],
        env=daemon_env(database_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert not any(c in result.stdout for c in "\x1b\u200b\u202e")
    assert "bar\\x1b[2j\\u200b" in result.stdout and "Bar\\u202e" in result.stdout
