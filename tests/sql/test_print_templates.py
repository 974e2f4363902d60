"""kitchen_printtemplate's time zone: refused unless PostgreSQL knows it, handed to the route, and
a zone this machine's time zone database lacks costs the printed time, never the ticket."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg import errors

from kprintd.db import RoutePrinter
from kprintd.failover import layout_for
from kprintd.harness import make_brand, make_printer

Conn = psycopg.Connection[dict[str, Any]]


@pytest.mark.parametrize("name", ["Asia/Makassar", "UTC", None])
def test_a_known_zone_or_none_is_accepted(conn: Conn, name: str | None) -> None:
    conn.execute(
        "INSERT INTO kitchen_printtemplate (station_code, time_zone) VALUES ('bar', %s)", (name,)
    )


@pytest.mark.parametrize("name", ["WIB", "Asia/Atlantis", "UTC+7", ""])
def test_an_unknown_zone_is_refused_by_name(conn: Conn, name: str) -> None:
    with pytest.raises(errors.InvalidParameterValue, match="unknown time zone"):
        conn.execute(
            "INSERT INTO kitchen_printtemplate (station_code, time_zone) VALUES ('bar', %s)",
            (name,),
        )
    conn.execute("INSERT INTO kitchen_printtemplate (station_code) VALUES ('bar')")
    with pytest.raises(errors.InvalidParameterValue, match="unknown time zone"):
        conn.execute("UPDATE kitchen_printtemplate SET time_zone = %s", (name,))


def test_the_route_gets_the_most_specific_templates_zone(conn: Conn) -> None:
    brand = make_brand(conn)
    make_printer(conn, brand, "kitchen", "127.0.0.1")
    conn.execute(
        "INSERT INTO kitchen_printtemplate (station_code, time_zone) VALUES (NULL, 'Asia/Jakarta')"
    )
    conn.execute(
        "INSERT INTO kitchen_printtemplate (brand_id, station_code, time_zone)"
        " VALUES (%s, 'kitchen', 'Asia/Jayapura')",
        (brand,),
    )
    zones = conn.execute(
        "SELECT station, (SELECT time_zone FROM kitchen_route_printers(%s, NULL, station))"
        " FROM unnest(ARRAY['kitchen', 'bar']) station ORDER BY station",
        (brand,),
    ).fetchall()
    assert [(z["station"], z["time_zone"]) for z in zones] == [
        ("bar", None),  # no printer at the bar: no row
        ("kitchen", "Asia/Jayapura"),
    ]


def _printer(time_zone: str | None) -> RoutePrinter:
    return RoutePrinter(
        1, "Kitchen", "127.0.0.1", 9100, 1, 80, 32, None, False, 1, True, "CP437", "partial",
        time_zone,
    )  # fmt: skip


def test_the_layout_prints_in_the_templates_zone() -> None:
    assert layout_for(_printer("Asia/Jayapura")).timezone == ZoneInfo("Asia/Jayapura")
    assert layout_for(_printer(None)).timezone is None


def test_a_zone_missing_here_falls_back_to_the_machines() -> None:
    # PostgreSQL and Python read different time zone databases; a gap must not stop printing.
    assert layout_for(_printer("Mars/Olympus_Mons")).timezone is None
