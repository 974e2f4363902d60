-- 0002: the queries `kprintd tickets` and `kprintd alerts` made inline become named functions:
-- kitchen_failed_ticket_list(), kitchen_stuck_ticket_list() and kitchen_bill_lookup() (as in
-- sql/schema/55_reports.sql) and kitchen_last_alert_id() (sql/schema/43_health.sql), owned, granted
-- and pinned as sql/schema/60_roles_and_grants.sql does it.

-- The listings of `kprintd tickets` ---------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_failed_ticket_list(
    p_limit      integer,
    p_brand_ids  uuid[] DEFAULT NULL,
    p_store_id   uuid DEFAULT NULL
)
RETURNS SETOF public.kitchen_failed_tickets
    LANGUAGE sql STABLE AS $$
    SELECT f.*
    FROM (
        SELECT v.*
        FROM public.kitchen_failed_tickets v
        WHERE (coalesce(cardinality(p_brand_ids), 0) = 0 OR v.brand_id = ANY (p_brand_ids))
          AND (p_store_id IS NULL OR v.store_id = p_store_id)
        ORDER BY v.failed_at DESC, v.ticket_id DESC
        LIMIT p_limit
    ) f
    ORDER BY f.failed_at, f.ticket_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) IS
    'The failed tickets `kprintd tickets --failed` lists: the p_limit rows of kitchen_failed_tickets '
    'that failed last (every one when NULL), by failed_at then ticket_id, in the scope p_brand_ids '
    '(NULL or empty = every brand) and p_store_id (NULL = every store); oldest first. Rows: the '
    'view''s columns. Reads with the caller''s rights.';

CREATE FUNCTION kprintd.kitchen_stuck_ticket_list(
    p_limit      integer,
    p_brand_ids  uuid[] DEFAULT NULL,
    p_store_id   uuid DEFAULT NULL
)
RETURNS SETOF public.kitchen_stuck_tickets
    LANGUAGE sql STABLE AS $$
    SELECT s.*
    FROM (
        SELECT v.*
        FROM public.kitchen_stuck_tickets v
        WHERE (coalesce(cardinality(p_brand_ids), 0) = 0 OR v.brand_id = ANY (p_brand_ids))
          AND (p_store_id IS NULL OR v.store_id = p_store_id)
        ORDER BY v.stuck_since DESC, v.ticket_id DESC
        LIMIT p_limit
    ) s
    ORDER BY s.stuck_since, s.ticket_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) IS
    'The stuck tickets `kprintd tickets --stuck` lists: the p_limit rows of kitchen_stuck_tickets '
    'that got stuck last (every one when NULL), by stuck_since then ticket_id, in the scope '
    'p_brand_ids (NULL or empty = every brand) and p_store_id (NULL = every store); oldest first, '
    'a stuck_since of NULL last. Rows: the view''s columns. Reads with the caller''s rights.';

CREATE FUNCTION kprintd.kitchen_bill_lookup(
    p_bill_number  text,
    p_bill_id      bigint DEFAULT NULL,
    p_brand_ids    uuid[] DEFAULT NULL,
    p_store_id     uuid DEFAULT NULL
)
RETURNS SETOF public.kitchen_bill_status
    LANGUAGE sql STABLE AS $$
    SELECT v.*
    FROM public.kitchen_bill_status v
    WHERE (v.bill_number = p_bill_number OR v.bill_id = p_bill_id)
      AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR v.brand_id = ANY (p_brand_ids))
      AND (p_store_id IS NULL OR v.store_id = p_store_id)
    ORDER BY v.bill_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) IS
    'The bills `kprintd tickets --bill` shows: the kitchen_bill_status rows of every bill numbered '
    'p_bill_number or with id p_bill_id (either may be NULL), in the scope p_brand_ids (NULL or '
    'empty = every brand) and p_store_id (NULL = every store), by bill_id. Only bills with tickets '
    '(the view''s rows). Reads with the caller''s rights.';

-- Where `kprintd alerts` starts reading -----------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_last_alert_id()
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(a.id), 0) FROM public.kitchen_alertlog a
$$;

COMMENT ON FUNCTION kprintd.kitchen_last_alert_id() IS
    'The alert_id of the last row of kitchen_alertlog, sent or held back (0 when it is empty): '
    'what a listener passes to kitchen_alerts_after() to read only the alerts raised from now on '
    '(kprintd alerts).';

-- Owner, grants and search_path, as 60_roles_and_grants.sql sets them ------------------------------
ALTER FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) OWNER TO kprintd_owner;
ALTER FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) OWNER TO kprintd_owner;
ALTER FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) OWNER TO kprintd_owner;
ALTER FUNCTION kprintd.kitchen_last_alert_id() OWNER TO kprintd_owner;

REVOKE EXECUTE ON FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) TO kprintd_manager, kprintd_auditor;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) TO kprintd_manager, kprintd_auditor;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) TO kprintd_manager, kprintd_auditor;

ALTER FUNCTION kprintd.kitchen_failed_ticket_list(integer, uuid[], uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION kprintd.kitchen_stuck_ticket_list(integer, uuid[], uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION kprintd.kitchen_bill_lookup(text, bigint, uuid[], uuid) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION kprintd.kitchen_last_alert_id() SET search_path = pg_catalog, pg_temp;

-- This file is applied: recorded so that `kprintd run` accepts the database however it was applied.
INSERT INTO public.kprintd_schema_migrations (version, filename) VALUES ('0002', '0002_named_admin_queries.sql');
