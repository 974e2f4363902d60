"""Every function (in kprintd and public), view and kitchen table carries a COMMENT ON for the DBAs
reading it; tests/test_current_schema.py checks it sits next to its object in sql/schema."""

from __future__ import annotations

from typing import Any

import psycopg


def test_every_function_and_view_is_documented(conn: psycopg.Connection[Any]) -> None:
    undocumented = conn.execute(
        """
        SELECT n.nspname || '.' || p.proname
               || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS name
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('public', 'kprintd')
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.objid = p.oid AND d.deptype = 'e')
          AND obj_description(p.oid, 'pg_proc') IS NULL
        UNION ALL
        SELECT n.nspname || '.' || c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('public', 'kprintd') AND c.relkind IN ('v', 'm')
          AND obj_description(c.oid, 'pg_class') IS NULL
        ORDER BY 1
        """
    ).fetchall()
    assert [row["name"] for row in undocumented] == []


def test_every_kitchen_table_is_documented(conn: psycopg.Connection[Any]) -> None:
    undocumented = conn.execute(
        """
        SELECT c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'
          AND (c.relname LIKE 'kitchen\\_%' OR c.relname LIKE 'kprintd\\_%')
          AND obj_description(c.oid, 'pg_class') IS NULL
        """
    ).fetchall()
    assert undocumented == []
