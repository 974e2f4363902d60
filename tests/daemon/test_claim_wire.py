"""The claim on the wire (kprintd.db: a prepared statement run through psycopg.pq): prepared on
a connection's first claim and again after the server forgets it, its errors raised as psycopg's,
its text in the connection's encoding, and the connection handed back to the pool as it was."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg
import pytest

from kprintd.config import Settings
from kprintd.db import ClaimedJob, Database, RouteKey, create_pool
from kprintd.harness import add_item, make_bill, make_brand, make_product, send_to_kitchen

Conn = psycopg.Connection[dict[str, Any]]


def claim_twice(
    database_url: str, route: RouteKey, between: str | None = None
) -> tuple[list[ClaimedJob], list[ClaimedJob], str]:
    """Two claims on a pool of one connection, `between` run on that connection in between."""

    async def scenario() -> tuple[list[ClaimedJob], list[ClaimedJob], str]:
        settings = Settings(database_url=database_url, daemon_id="wire-test")
        pool = create_pool(settings, max_size=1)
        await pool.open(wait=True)
        try:
            database = Database(pool, settings)
            first = await database.claim(route, 16)
            if between is not None:
                async with pool.connection() as conn:
                    await conn.execute(between)
            second = await database.claim(route, 16)
            async with pool.connection() as conn:
                status = conn.info.transaction_status.name
            return first, second, status
        finally:
            await pool.close()

    return asyncio.run(scenario())


def new_ticket(conn: Conn, brand: UUID, station: str) -> int:
    product = make_product(conn, brand, "Rawon", station)
    bill = make_bill(conn, brand)
    add_item(conn, bill, product)
    [created] = send_to_kitchen(conn, bill)
    return int(created["id"])


def test_a_claim_is_prepared_once_and_again_after_the_server_forgets(
    conn: Conn, database_url: str
) -> None:
    brand = make_brand(conn)
    ticket_id = new_ticket(conn, brand, "kitchen")
    route = RouteKey(brand, None, "kitchen")
    first, second, status = claim_twice(database_url, route, between="DEALLOCATE ALL")
    assert [job.ticket_id for job in first] == [ticket_id]
    assert first[0].attempt == 1 and first[0].document is not None
    assert second == [], "nothing left to claim, and no error for the forgotten statement"
    assert status == "IDLE", "the pool gets its connection back idle"


def test_a_station_named_beyond_ascii_is_claimed(conn: Conn, database_url: str) -> None:
    brand = make_brand(conn)
    station = "dapur-pâtisserie-甜点"
    ticket_id = new_ticket(conn, brand, station)
    [routed] = conn.execute(
        "SELECT printer_target FROM kitchen_kitchenticket WHERE id = %s", (ticket_id,)
    ).fetchall()
    first, _, _ = claim_twice(database_url, RouteKey(brand, None, routed["printer_target"]))
    assert [job.ticket_id for job in first] == [ticket_id]
    assert first[0].document is not None and first[0].document["ticket_id"] == ticket_id


def test_an_error_in_the_claim_is_raised_as_psycopgs_and_leaves_the_pool_usable(
    conn: Conn, database_url: str
) -> None:
    brand = make_brand(conn)
    route = RouteKey(brand, None, "kitchen")

    async def scenario() -> int:
        settings = Settings(database_url=database_url, daemon_id=" ")
        pool = create_pool(settings, max_size=1)
        await pool.open(wait=True)
        try:
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="daemon id"):
                await Database(pool, settings).claim(route, 16)
            async with pool.connection() as again:
                row = await (await again.execute("SELECT 42")).fetchone()
            return int(row[0]) if row else 0
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == 42
