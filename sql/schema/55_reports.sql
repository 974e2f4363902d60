-- Reports over the views of 50_views.sql: tickets nothing will print, the one-screen summary of
-- `kprintd status`, and what `kprintd tickets` lists from the views (failed and stuck tickets, the
-- bills of a number). Their SQL reads the views, so they are made after them.

-- Tickets nothing will print --------------------------------------------------------------------
-- Why a route's tickets would not print ----------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_unserved_reason(p_brand_id uuid, p_store_id uuid, p_station text)
RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM public.kitchen_daemon_status d WHERE d.state = 'alive')
            THEN 'no_daemon'
        -- A daemon's scope as kitchen_due_routes() applies it: store NULL = every store (tickets
        -- without a store included), brand_ids empty = every brand.
        WHEN NOT EXISTS (SELECT 1 FROM public.kitchen_daemon_status d
                         WHERE d.state = 'alive'
                           AND (d.store_id IS NULL OR d.store_id = p_store_id)
                           AND (cardinality(d.brand_ids) = 0 OR p_brand_id = ANY (d.brand_ids)))
            THEN 'no_daemon_in_scope'
        -- Routing's own list, so the two cannot disagree. A printer in planned maintenance counts:
        -- its tickets are held on purpose and the daemon announces that (station_in_maintenance).
        WHEN NOT EXISTS (SELECT 1 FROM kprintd.kitchen_route_printers(p_brand_id, p_store_id, p_station))
            THEN 'no_printer'
    END
$$;

COMMENT ON FUNCTION kprintd.kitchen_unserved_reason(uuid, uuid, text) IS
    'Why the waiting tickets of this route (brand, store, station) would not print, or NULL when '
    'they will: ''no_daemon'' (no daemon is alive in kitchen_daemon_status), ''no_daemon_in_scope'' '
    '(no alive daemon''s scope covers the brand and store: a daemon with a store serves only that '
    'store, not tickets without one), ''no_printer'' (kitchen_route_printers() has no active printer '
    'for it). The first missing link is named.';

-- The tickets ------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_unserved_tickets(p_grace interval DEFAULT interval '30 seconds')
RETURNS TABLE (
    ticket_id   bigint,
    bill_id     bigint,
    brand_id    uuid,
    store_id    uuid,
    station     text,
    created_at  timestamptz,
    reason      text
)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    -- Waiting tickets are few even on a long history, and the partial index of the claim
    -- (idx_kitchenticket_due, status 'new') finds them. The reason is worked out once per route:
    -- MATERIALIZED keeps the planner from pushing "reason IS NOT NULL" below the DISTINCT, which
    -- would work it out once per ticket. A SQL-standard body binds its names when created (no
    -- search_path to pin) and stays inlinable.
    WITH waiting AS (
        SELECT t.id, t.bill_id, t.brand_id, t.store_id, t.printer_target::text AS station,
               t.created_at
        FROM public.kitchen_kitchenticket t
        WHERE t.status = 'new'
          AND t.print_attempts < t.max_retries
          AND t.created_at < now() - p_grace
    ), routes AS MATERIALIZED (
        SELECT r.brand_id, r.store_id, r.station,
               kprintd.kitchen_unserved_reason(r.brand_id, r.store_id, r.station) AS reason
        FROM (SELECT DISTINCT w.brand_id, w.store_id, w.station FROM waiting w) r
    )
    SELECT w.id, w.bill_id, w.brand_id, w.store_id, w.station, w.created_at, r.reason
    FROM waiting w
    JOIN routes r ON r.brand_id IS NOT DISTINCT FROM w.brand_id
                 AND r.store_id IS NOT DISTINCT FROM w.store_id
                 AND r.station = w.station
    WHERE r.reason IS NOT NULL
    ORDER BY w.created_at, w.id;
END;

COMMENT ON FUNCTION kprintd.kitchen_unserved_tickets(interval) IS
    'Every waiting ticket (new, attempts left) created more than p_grace ago (default 30 s) that '
    'nothing will print, oldest first, whatever the caller''s scope, with kitchen_unserved_reason() '
    'of its route: no_daemon, no_daemon_in_scope or no_printer. Tickets out of attempts are '
    'kitchen_stuck_tickets'' (out_of_attempts), not listed here.';

CREATE FUNCTION kprintd.kitchen_unserved_routes(p_grace interval DEFAULT interval '30 seconds')
RETURNS TABLE (
    brand_id          uuid,
    brand             text,
    store_id          uuid,
    station           text,
    reason            text,
    waiting           bigint,
    oldest_created_at timestamptz,
    oldest_ticket_id  bigint,
    message           text
)
    LANGUAGE sql STABLE AS $$
    SELECT g.brand_id, g.brand, g.store_id, g.station, g.reason, g.waiting, g.oldest_created_at,
           g.oldest_ticket_id,
           format('%s ticket(s) for %s of brand %s %s wait and %s', g.waiting, g.station,
                  coalesce(g.brand, g.brand_id::text, '?'),
                  coalesce('in store ' || g.store_id, 'without a store'),
                  CASE g.reason
                      WHEN 'no_daemon' THEN 'no kprintd daemon is running'
                      WHEN 'no_daemon_in_scope' THEN
                          'no running kprintd daemon serves them'
                          || CASE WHEN g.store_id IS NULL
                                  THEN ' (their bills have no store_id)' ELSE '' END
                      ELSE 'no active printer is configured for them'
                           || CASE WHEN g.store_id IS NULL
                                   THEN ' (only a printer with store_id NULL serves tickets '
                                        'without a store)' ELSE '' END
                  END)
    FROM (SELECT u.brand_id, br.name AS brand, u.store_id, u.station, u.reason,
                 count(*) AS waiting, min(u.created_at) AS oldest_created_at,
                 (array_agg(u.ticket_id ORDER BY u.created_at, u.ticket_id))[1] AS oldest_ticket_id
          FROM kprintd.kitchen_unserved_tickets(p_grace) u
          LEFT JOIN public.kitchen_pos_brand br ON br.id = u.brand_id
          GROUP BY u.brand_id, br.name, u.store_id, u.station, u.reason) g
    ORDER BY g.oldest_created_at, g.oldest_ticket_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_unserved_routes(interval) IS
    'kitchen_unserved_tickets(p_grace) per route (brand, store, station): reason, waiting (how '
    'many), oldest_created_at and oldest_ticket_id, and message (the route, its count and its reason '
    'in words for a manager, as kprintd status and the ticket_unserved alert say it). Oldest first. '
    'kprintd status and the daemon call it with the default grace of 30 s.';

-- kprintd status: the one-screen summary --------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_status_report(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_all_brands  boolean := coalesce(cardinality(p_brand_ids), 0) = 0;
    v_printers    jsonb;
    v_queues      jsonb;
    v_failed      jsonb;
    v_failed_n    bigint;
    v_stuck       jsonb;
    v_stuck_n     bigint;
    v_daemons     jsonb;
    v_live        boolean;
    v_attention   jsonb;
    v_maintenance jsonb;
    v_alerts      jsonb;
    v_alerts_n    bigint;
    v_unserved    jsonb;
    v_unserved_n  bigint;
    v_deaf        jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'printer_id', s.printer_id, 'brand', br.name, 'brand_id', s.brand_id,
               'store_id', s.store_id, 'station', s.station, 'printer_name', s.printer_name,
               'address', s.address, 'priority', s.priority, 'state', s.state,
               'is_online', s.is_online, 'paper_status', s.paper_status,
               'response_time_ms', s.response_time_ms, 'error_code', s.error_code,
               'error_message', s.error_message, 'checked_at', s.checked_at,
               'last_print_at', s.last_print_at, 'last_error_at', s.last_error_at,
               'last_error_message', s.last_error_message)
               ORDER BY br.name, s.station, s.priority, s.printer_id), '[]')
      INTO v_printers
      FROM public.kitchen_printer_status s
      LEFT JOIN public.kitchen_pos_brand br ON br.id = s.brand_id
     WHERE s.is_active
       AND (v_all_brands OR s.brand_id = ANY (p_brand_ids))
       AND (p_store_id IS NULL OR s.store_id IS NULL OR s.store_id = p_store_id);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'station', q.station, 'brand', br.name, 'brand_id', q.brand_id,
               'store_id', q.store_id,
               'waiting', q.waiting, 'due', q.due, 'printing', q.printing,
               'oldest_waiting_since', q.oldest_waiting_since)
               ORDER BY br.name, q.station, q.store_id), '[]')
      INTO v_queues
      FROM public.kitchen_station_queue q
      LEFT JOIN public.kitchen_pos_brand br ON br.id = q.brand_id
     WHERE (v_all_brands OR q.brand_id = ANY (p_brand_ids))
       AND (p_store_id IS NULL OR q.store_id = p_store_id);

    SELECT count(*),
           coalesce(jsonb_agg(jsonb_build_object(
               'ticket_id', f.ticket_id, 'bill_number', f.bill_number, 'station', f.station,
               'failed_at', f.failed_at, 'error_code', f.error_code,
               'error_message', f.error_message)
               ORDER BY f.failed_at DESC, f.ticket_id DESC) FILTER (WHERE f.n <= 10), '[]')
      INTO v_failed_n, v_failed
      FROM (SELECT ft.*, row_number() OVER (ORDER BY ft.failed_at DESC, ft.ticket_id DESC) AS n
              FROM public.kitchen_failed_tickets ft
             WHERE ft.failed_at > now() - interval '24 hours'
               AND (v_all_brands OR ft.brand_id = ANY (p_brand_ids))
               AND (p_store_id IS NULL OR ft.store_id = p_store_id)) f;

    SELECT count(*),
           coalesce(jsonb_agg(jsonb_build_object(
               'ticket_id', st.ticket_id, 'bill_number', st.bill_number, 'station', st.station,
               'status', st.status, 'reason', st.reason, 'stuck_since', st.stuck_since,
               'error_message', st.error_message)
               ORDER BY st.stuck_since, st.ticket_id) FILTER (WHERE st.n <= 10), '[]')
      INTO v_stuck_n, v_stuck
      FROM (SELECT k.*, row_number() OVER (ORDER BY k.stuck_since, k.ticket_id) AS n
              FROM public.kitchen_stuck_tickets k
             WHERE (v_all_brands OR k.brand_id = ANY (p_brand_ids))
               AND (p_store_id IS NULL OR k.store_id = p_store_id)) st;

    -- Not filtered by this report's scope: an unserved ticket is outside every running daemon's
    -- scope (or has no printer), so no scoped report would ever show it. One row per route, and
    -- routes are few: all of them are listed.
    SELECT coalesce(sum(u.waiting), 0),
           coalesce(jsonb_agg(jsonb_build_object(
               'brand', u.brand, 'brand_id', u.brand_id, 'store_id', u.store_id,
               'station', u.station, 'reason', u.reason, 'waiting', u.waiting,
               'oldest_created_at', u.oldest_created_at, 'oldest_ticket_id', u.oldest_ticket_id,
               'message', u.message)
               ORDER BY u.oldest_created_at, u.oldest_ticket_id), '[]')
      INTO v_unserved_n, v_unserved
      FROM kprintd.kitchen_unserved_routes() u;

    -- Daemons whose scope overlaps this one; a daemon seen in the last day is shown even if gone.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'daemon_id', d.daemon_id, 'host', d.host, 'version', d.version, 'state', d.state,
               'started_at', d.started_at, 'last_seen_at', d.last_seen_at,
               'stopped_at', d.stopped_at, 'tickets_printed', d.tickets_printed,
               'store_id', d.store_id, 'brand_ids', d.brand_ids, 'listening', d.listening,
               'not_listening_since', d.not_listening_since)
               ORDER BY d.state <> 'alive', d.last_seen_at DESC), '[]'),
           coalesce(bool_or(d.state = 'alive'), false)
      INTO v_daemons, v_live
      FROM public.kitchen_daemon_status d
     WHERE (d.state = 'alive' OR d.last_seen_at > now() - interval '1 day')
       AND (d.store_id IS NULL OR p_store_id IS NULL OR d.store_id = p_store_id)
       AND (cardinality(d.brand_ids) = 0 OR v_all_brands OR d.brand_ids && p_brand_ids);

    -- Live daemons of this scope that have not been listening for more than 30 s: they still print,
    -- but a new ticket waits for their periodic sweep. Shorter gaps are a reconnect in progress.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'kind', 'daemon_not_listening', 'daemon_id', d.daemon_id,
               'not_listening_since', d.not_listening_since,
               'message', format('kprintd daemon %s has not been listening for new tickets for %s s:'
                                 ' they print only when its periodic sweep finds them, not at once;'
                                 ' its log (journalctl -u kprintd) says why',
                                 d.daemon_id, floor(extract(epoch FROM d.not_listening_for))))
               ORDER BY d.not_listening_since, d.daemon_id), '[]')
      INTO v_deaf
      FROM public.kitchen_daemon_status d
     WHERE d.state = 'alive'
       AND d.listening IS FALSE
       AND d.not_listening_for > interval '30 seconds'
       AND (d.store_id IS NULL OR p_store_id IS NULL OR d.store_id = p_store_id)
       AND (cardinality(d.brand_ids) = 0 OR v_all_brands OR d.brand_ids && p_brand_ids);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'printer_id', m.printer_id, 'brand', br.name, 'brand_id', m.brand_id,
               'store_id', m.store_id, 'station', m.station, 'printer_name', m.printer_name,
               'state', m.state, 'starts_at', m.starts_at, 'ends_at', m.ends_at,
               'reason', m.reason, 'station_keeps_printing', m.station_keeps_printing)
               ORDER BY m.starts_at, m.schedule_id), '[]')
      INTO v_maintenance
      FROM public.kitchen_printer_maintenance m
      LEFT JOIN public.kitchen_pos_brand br ON br.id = m.brand_id
      JOIN public.kitchen_stationprinter sp ON sp.id = m.printer_id
     WHERE m.state <> 'past'
       AND coalesce(sp.is_active, true)
       AND (v_all_brands OR m.brand_id = ANY (p_brand_ids))
       AND (p_store_id IS NULL OR m.store_id IS NULL OR m.store_id = p_store_id);

    -- Alerts carry their scope in the payload; compared as text, so an odd payload cannot fail
    -- the report.
    SELECT count(*),
           coalesce(jsonb_agg(r.alert ORDER BY r.id DESC) FILTER (WHERE r.n <= 10), '[]')
      INTO v_alerts_n, v_alerts
      FROM (SELECT a.id, a.alert, row_number() OVER (ORDER BY a.id DESC) AS n
              FROM public.kitchen_alertlog a
             WHERE a.sent
               AND a.raised_at > now() - interval '1 hour'
               AND (v_all_brands OR a.alert ->> 'brand_id' = ANY (p_brand_ids::text[]))
               AND (p_store_id IS NULL OR a.alert ->> 'store_id' IS NULL
                    OR a.alert ->> 'store_id' = p_store_id::text)) r;

    SELECT coalesce(jsonb_agg(a.item ORDER BY a.ord, a.sub), '[]')
      INTO v_attention
      FROM (
        SELECT 1 AS ord, 0::bigint AS sub, jsonb_build_object('kind', 'daemon', 'message',
                   'no kprintd daemon is running for these printers: nothing prints') AS item
         WHERE NOT v_live
        UNION ALL
        SELECT 1, l.n, l.e FROM jsonb_array_elements(v_deaf) WITH ORDINALITY AS l(e, n)
        UNION ALL
        SELECT 2, u.n, jsonb_build_object('kind', 'unserved_tickets', 'brand_id', u.e -> 'brand_id',
                   'store_id', u.e -> 'store_id', 'station', u.e -> 'station',
                   'reason', u.e -> 'reason', 'message', u.e ->> 'message')
          FROM jsonb_array_elements(v_unserved) WITH ORDINALITY AS u(e, n)
        UNION ALL
        SELECT 3, p.n, jsonb_build_object('kind', 'printer', 'printer_id', p.e -> 'printer_id',
                   'message',
                   format('printer %s (%s, %s) %s%s', p.e ->> 'printer_name', p.e ->> 'station',
                          p.e ->> 'address',
                          CASE p.e ->> 'state' WHEN 'offline' THEN 'is offline'
                                               WHEN 'cover_open' THEN 'has its cover open'
                                               WHEN 'paper_out' THEN 'is out of paper'
                                               ELSE 'reports an error' END,
                          CASE WHEN p.e ->> 'state' IN ('offline', 'error')
                               THEN coalesce(': ' || (p.e ->> 'error_message'), '') ELSE '' END))
          FROM jsonb_array_elements(v_printers) WITH ORDINALITY AS p(e, n)
         WHERE p.e ->> 'state' IN ('offline', 'cover_open', 'paper_out', 'error')
        UNION ALL
        SELECT 4, 0, jsonb_build_object('kind', 'failed_tickets', 'message',
                   format('%s ticket(s) failed in the last 24 h: SELECT * FROM kitchen_failed_tickets',
                          v_failed_n))
         WHERE v_failed_n > 0
        UNION ALL
        SELECT 5, 0, jsonb_build_object('kind', 'stuck_tickets', 'message',
                   format('%s ticket(s) stuck: SELECT * FROM kitchen_stuck_tickets', v_stuck_n))
         WHERE v_stuck_n > 0
      ) a;

    RETURN jsonb_build_object(
        'generated_at', now(),
        'scope', jsonb_build_object('brand_ids', coalesce(to_jsonb(p_brand_ids), '[]'),
                                    'store_id', p_store_id),
        'daemons', v_daemons,
        'printers', v_printers,
        'queues', v_queues,
        'failed_24h', v_failed_n,
        'failed_tickets', v_failed,
        'stuck_count', v_stuck_n,
        'stuck_tickets', v_stuck,
        'unserved_count', v_unserved_n,
        'unserved', v_unserved,
        'maintenance', v_maintenance,
        'alerts_1h', v_alerts_n,
        'recent_alerts', v_alerts,
        'attention', v_attention);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_status_report(uuid[], uuid) IS
    'Summary for kprintd status, as JSON: {generated_at, scope, daemons (heartbeats of daemons whose '
    'scope overlaps, alive first, with listening and not_listening_since), printers (active printers '
    'in scope with their latest check, kitchen_printer_status), queues (kitchen_station_queue), '
    'failed_24h and failed_tickets (the 10 latest of kitchen_failed_tickets in 24 h), stuck_count and '
    'stuck_tickets (10 oldest of kitchen_stuck_tickets), unserved_count and unserved (tickets nothing '
    'will print, per route, from kitchen_unserved_routes(), whatever the scope), maintenance (active '
    'and upcoming windows of active printers in scope, kitchen_printer_maintenance), alerts_1h and '
    'recent_alerts (alerts sent in the last hour, the 10 latest, from kitchen_alertlog), attention: '
    '[{kind, message}] = what needs a person: no live daemon (kind daemon), a live daemon not listening '
    'for new tickets for more than 30 s (kind daemon_not_listening, with daemon_id and '
    'not_listening_since), an unserved route (kind unserved_tickets, with brand_id, store_id, station, '
    'reason), a printer offline / cover open / out of paper / in error, failed or stuck tickets}. '
    'Empty attention means all is well. Scope as for the daemon: p_brand_ids NULL/empty = every '
    'brand, p_store_id NULL = every store.';

-- kprintd tickets: the failed tickets, the stuck ones, the bills of a number -------------------
-- Scope as kitchen_ticket_list() takes it. They read the views with the caller's rights: what a
-- caller sees is what the views' SELECT grants let it see.
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
