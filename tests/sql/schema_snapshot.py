"""A comparable picture of everything kprintd's SQL puts in a database's catalog.

snapshot() reads, for the schemas public and kprintd and the kprintd_* roles: functions and
aggregates (signature, result, language, body, settings, security, volatility, owner, grants),
tables, views and their columns, constraints, indexes, triggers, sequences, schemas, comments,
role memberships and the database's own settings. Two databases built differently (migrated file
by file, or from sql/schema in one go) hold the same kprintd exactly when their snapshots are
equal. Object ids, the database's name and the order grants were given in are left out: they
differ between two equal schemas.
"""

from __future__ import annotations

from typing import Any

import psycopg

SCHEMAS = "('public', 'kprintd')"

# Each query returns rows that identify their object by name; rows are compared as sorted lists.
QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, pg_get_userbyid(n.nspowner), kprintd_test_acl(n.nspacl),
               obj_description(n.oid, 'pg_namespace')
          FROM pg_namespace n WHERE n.nspname IN {SCHEMAS}
    """,
    "functions": f"""
        SELECT p.oid::regprocedure::text, p.prokind, pg_get_function_arguments(p.oid),
               pg_get_function_result(p.oid), l.lanname, p.prosrc,
               CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid) END,
               p.proconfig, p.prosecdef, p.provolatile, p.proisstrict, p.proparallel,
               p.proleakproof, p.procost, p.prorows, p.proretset,
               pg_get_userbyid(p.proowner), kprintd_test_acl(p.proacl),
               obj_description(p.oid, 'pg_proc')
          FROM pg_proc p
          JOIN pg_language l ON l.oid = p.prolang
         WHERE p.pronamespace::regnamespace::text IN {SCHEMAS}
           AND p.proname <> 'kprintd_test_acl'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    """,
    "aggregates": f"""
        SELECT a.aggfnoid::regprocedure::text, a.aggkind, a.aggtransfn::regprocedure::text,
               a.aggfinalfn::text, format_type(a.aggtranstype, NULL), a.agginitval
          FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
         WHERE p.pronamespace::regnamespace::text IN {SCHEMAS}
    """,
    "relations": f"""
        SELECT c.oid::regclass::text, c.relkind, c.relpersistence, c.reloptions,
               c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner),
               kprintd_test_acl(c.relacl), obj_description(c.oid, 'pg_class'),
               CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true) END
          FROM pg_class c
         WHERE c.relnamespace::regnamespace::text IN {SCHEMAS}
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    """,
    "columns": f"""
        SELECT c.oid::regclass::text,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
               a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attcollation::regcollation::text, kprintd_test_acl(a.attacl),
               col_description(c.oid, a.attnum)
          FROM pg_class c
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace::regnamespace::text IN {SCHEMAS}
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    """,
    "constraints": f"""
        SELECT con.conrelid::regclass::text, con.conname, con.contype,
               pg_get_constraintdef(con.oid), con.condeferrable, con.condeferred,
               con.convalidated, con.connoinherit, obj_description(con.oid, 'pg_constraint')
          FROM pg_constraint con
         WHERE con.connamespace::regnamespace::text IN {SCHEMAS}
    """,
    "indexes": f"""
        SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text,
               pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary,
               obj_description(i.indexrelid, 'pg_class')
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE c.relnamespace::regnamespace::text IN {SCHEMAS}
    """,
    "triggers": f"""
        SELECT t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled,
               obj_description(t.oid, 'pg_trigger')
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text IN {SCHEMAS}
    """,
    "sequences": f"""
        SELECT s.seqrelid::regclass::text, format_type(s.seqtypid, NULL), s.seqstart,
               s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
               (SELECT d.refobjid::regclass::text || '.' || a.attname
                  FROM pg_depend d
                  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                   AND d.deptype IN ('a', 'i'))
          FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
         WHERE c.relnamespace::regnamespace::text IN {SCHEMAS}
    """,
    "types": f"""
        SELECT t.oid::regtype::text, t.typtype, pg_get_userbyid(t.typowner),
               obj_description(t.oid, 'pg_type')
          FROM pg_type t
         WHERE t.typnamespace::regnamespace::text IN {SCHEMAS}
           AND t.typtype NOT IN ('c', 'b')
    """,
    "policies": f"""
        SELECT pol.polrelid::regclass::text, pol.polname, pol.polcmd,
               pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)
          FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
         WHERE c.relnamespace::regnamespace::text IN {SCHEMAS}
    """,
    "default_privileges": """
        SELECT pg_get_userbyid(d.defaclrole), d.defaclnamespace::regnamespace::text,
               d.defaclobjtype, kprintd_test_acl(d.defaclacl)
          FROM pg_default_acl d
    """,
    "roles": """
        SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
               r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit
          FROM pg_roles r WHERE r.rolname LIKE 'kprintd\\_%' AND NOT r.rolcanlogin
    """,
    "role_memberships": """
        SELECT m.roleid::regrole::text, m.member::regrole::text, m.admin_option
          FROM pg_auth_members m
         WHERE m.roleid::regrole::text LIKE 'kprintd\\_%'
            OR m.member::regrole::text LIKE 'kprintd\\_%'
    """,
    "database_settings": """
        SELECT COALESCE(s.setrole::regrole::text, '(every role)'), s.setconfig
          FROM pg_db_role_setting s
         WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    """,
    "extensions": "SELECT e.extname, e.extnamespace::regnamespace::text FROM pg_extension e",
    "event_triggers": "SELECT e.evtname, e.evtevent, e.evtenabled FROM pg_event_trigger e",
}

# Grants listed in a fixed order: the same grants given in another order are the same schema.
ACL_FUNCTION = """
CREATE FUNCTION pg_temp.kprintd_test_acl(p_acl aclitem[]) RETURNS text[]
LANGUAGE sql IMMUTABLE
RETURN (SELECT array_agg(x::text ORDER BY x::text) FROM unnest(p_acl) AS x)
"""


def snapshot(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every catalog fact listed in QUERIES, each category sorted."""
    picture: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # Names print schema-qualified, whatever the database's own search_path.
        conn.execute("SET search_path = pg_catalog")
        conn.execute(ACL_FUNCTION)
        for name, query in QUERIES.items():
            rows = conn.execute(query.replace("kprintd_test_acl(", "pg_temp.kprintd_test_acl("))
            picture[name] = sorted((tuple(row) for row in rows.fetchall()), key=repr)
    return picture


def differences(
    left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    """One line per row found on one side only, '-' for left and '+' for right."""
    lines: list[str] = []
    for name in sorted(left.keys() | right.keys()):
        left_rows = {repr(row) for row in left.get(name, [])}
        right_rows = {repr(row) for row in right.get(name, [])}
        lines += [f"{name} - {row}" for row in sorted(left_rows - right_rows)]
        lines += [f"{name} + {row}" for row in sorted(right_rows - left_rows)]
    return lines
