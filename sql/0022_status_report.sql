-- 0022 kitchen_status_report(): the one-screen summary behind `kprintd status`.
--
-- Everything a person at the store server needs, as one JSON document, with the list of what
-- needs attention worked out here (so psql, a POS back office and `kprintd status` agree):
-- printers that cannot print, tickets failed in the last 24 hours, stuck tickets, no live daemon.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

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

    -- Daemons whose scope overlaps this one; a daemon seen in the last day is shown even if gone.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'daemon_id', d.daemon_id, 'host', d.host, 'version', d.version, 'state', d.state,
               'started_at', d.started_at, 'last_seen_at', d.last_seen_at,
               'stopped_at', d.stopped_at, 'tickets_printed', d.tickets_printed,
               'store_id', d.store_id, 'brand_ids', d.brand_ids)
               ORDER BY d.state <> 'alive', d.last_seen_at DESC), '[]'),
           coalesce(bool_or(d.state = 'alive'), false)
      INTO v_daemons, v_live
      FROM public.kitchen_daemon_status d
     WHERE (d.state = 'alive' OR d.last_seen_at > now() - interval '1 day')
       AND (d.store_id IS NULL OR p_store_id IS NULL OR d.store_id = p_store_id)
       AND (cardinality(d.brand_ids) = 0 OR v_all_brands OR d.brand_ids && p_brand_ids);

    SELECT coalesce(jsonb_agg(a.item ORDER BY a.ord), '[]')
      INTO v_attention
      FROM (
        SELECT 1 AS ord, jsonb_build_object('kind', 'daemon', 'message',
                   'no kprintd daemon is running for these printers: nothing prints') AS item
         WHERE NOT v_live
        UNION ALL
        SELECT 2, jsonb_build_object('kind', 'printer', 'printer_id', p -> 'printer_id', 'message',
                   format('printer %s (%s, %s) %s%s', p ->> 'printer_name', p ->> 'station',
                          p ->> 'address',
                          CASE p ->> 'state' WHEN 'offline' THEN 'is offline'
                                             WHEN 'cover_open' THEN 'has its cover open'
                                             WHEN 'paper_out' THEN 'is out of paper'
                                             ELSE 'reports an error' END,
                          CASE WHEN p ->> 'state' IN ('offline', 'error')
                               THEN coalesce(': ' || (p ->> 'error_message'), '') ELSE '' END))
          FROM jsonb_array_elements(v_printers) p
         WHERE p ->> 'state' IN ('offline', 'cover_open', 'paper_out', 'error')
        UNION ALL
        SELECT 3, jsonb_build_object('kind', 'failed_tickets', 'message',
                   format('%s ticket(s) failed in the last 24 h: SELECT * FROM kitchen_failed_tickets',
                          v_failed_n))
         WHERE v_failed_n > 0
        UNION ALL
        SELECT 4, jsonb_build_object('kind', 'stuck_tickets', 'message',
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
        'attention', v_attention);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_status_report(uuid[], uuid) IS
    'Summary for kprintd status, as JSON: {generated_at, scope, daemons (heartbeats of daemons whose '
    'scope overlaps, alive first), printers (active printers in scope with their latest check, '
    'kitchen_printer_status), queues (kitchen_station_queue), failed_24h and failed_tickets (the 10 '
    'latest of kitchen_failed_tickets in 24 h), stuck_count and stuck_tickets (10 oldest of '
    'kitchen_stuck_tickets), attention: [{kind, message}] = what needs a person: no live daemon, a '
    'printer offline / cover open / out of paper / in error, failed or stuck tickets}. Empty '
    'attention means all is well. Scope as for the daemon: p_brand_ids NULL/empty = every brand, '
    'p_store_id NULL = every store.';
