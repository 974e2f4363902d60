-- 0028 Tickets nothing will print: found whatever the asker's scope, listed by kprintd status,
-- announced by the daemon.
--
-- A waiting ticket prints when a running daemon's scope (KPRINTD_STORE_ID, KPRINTD_BRAND_IDS)
-- covers its brand and store and its station has an active printer for that store. A ticket that
-- misses one of them waits for ever: a POS that writes bills without store_id while every daemon
-- serves one store, a brand no daemon serves, a station with no printer. Daemons and scoped
-- reports only look inside their own scope, so these functions look at every waiting ticket.
--
-- Owns: kitchen_unserved_reason(), kitchen_unserved_tickets(), kitchen_unserved_routes(); the list
-- of alert types on kitchen_alertlog.alert_type. kitchen_status_report() (sql/0029) lists them. The daemon's health
-- monitor (kprintd/health.py) raises ticket_unserved and ticket_unserved_cleared from
-- kitchen_unserved_routes().
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

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

COMMENT ON COLUMN public.kitchen_alertlog.alert_type IS
    'printer_down, printer_paper_low, printer_recovered, station_unroutable, station_recovered, '
    'station_in_maintenance, ticket_failed, ticket_unserved, ticket_unserved_cleared '
    '(docs/monitoring.md).';
