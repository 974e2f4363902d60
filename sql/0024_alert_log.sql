-- 0024 Every alert is kept, and a change two daemons both notice is announced once.
--
-- Until now an alert was only a NOTIFY on kitchen_alert: whoever was not listening at that moment
-- (a dashboard restarting, `kprintd alerts` reconnecting) never heard it, and nobody could ask
-- what happened at lunch. kitchen_raise_alert() now also writes kitchen_alertlog, append-only like
-- the ticket log, and the NOTIFY payload carries the row's id (alert_id), so a listener can catch
-- up on what it missed: SELECT * FROM kitchen_alerts_after(<last alert_id seen>).
--
-- Several daemons may watch the same printers (two store servers for one store). Each checks
-- them and each would announce the same outage. An alert that names the daemon raising it
-- (details.daemon) is held back, logged with sent = false, when the latest alert sent about the
-- same subject (the ticket, else the printer, else the station) came from another daemon in the
-- last minute and said the same thing (same type).
--
-- kitchen_status_report() (kprintd status) now also lists the last hour's alerts, and the planned
-- maintenance windows of 0023.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

CREATE TABLE public.kitchen_alertlog (
    id          BIGSERIAL PRIMARY KEY,
    raised_at   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    alert_type  VARCHAR(50) NOT NULL,
    severity    VARCHAR(10) NOT NULL,
    message     TEXT NOT NULL,
    subject     TEXT NULL,
    raised_by   TEXT NULL,
    sent        BOOLEAN NOT NULL,
    alert       JSONB NOT NULL,

    CONSTRAINT kitchen_alertlog_severity_known CHECK (severity IN ('info', 'warning', 'critical'))
);

CREATE INDEX idx_alertlog_raised_at ON public.kitchen_alertlog (raised_at DESC);
-- "The latest alert about this printer": one index probe per alert raised.
CREATE INDEX idx_alertlog_subject ON public.kitchen_alertlog (subject, id DESC) WHERE sent;

COMMENT ON TABLE public.kitchen_alertlog IS
    'Every alert kitchen_raise_alert() raised, in order (append-only). sent = false: held back as '
    'a repeat of another daemon''s alert about the same subject; it was not sent on NOTIFY '
    'kitchen_alert. alert is the JSON as sent (or as it would have been).';
COMMENT ON COLUMN public.kitchen_alertlog.alert_type IS
    'printer_down, printer_paper_low, printer_recovered, station_unroutable, station_recovered, '
    'station_in_maintenance, ticket_failed (docs/monitoring.md).';
COMMENT ON COLUMN public.kitchen_alertlog.subject IS
    'What the alert is about: ticket:<id>, printer:<id> or station:<brand>/<store>/<station>; '
    'NULL when the details name none of them.';
COMMENT ON COLUMN public.kitchen_alertlog.raised_by IS
    'The daemon that raised it (details.daemon); NULL when the database raised it itself (a '
    'ticket failed for good in kitchen_finish_print_jobs or kitchen_reclaim_expired_leases).';
COMMENT ON COLUMN public.kitchen_alertlog.sent IS
    'True when it went out on NOTIFY kitchen_alert; false when held back as another daemon''s repeat.';

CREATE FUNCTION kprintd.kitchen_alertlog_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kitchen_alertlog is an append-only record of alerts: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = 'This holds for every role, the table owner and superusers included.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_alertlog_append_only() IS
    'BEFORE UPDATE OR DELETE (row) and TRUNCATE (statement) on kitchen_alertlog: refuses them, so '
    'the record of alerts cannot be rewritten.';

CREATE TRIGGER kitchen_alertlog_no_update_delete
    BEFORE UPDATE OR DELETE ON public.kitchen_alertlog
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_alertlog_append_only();
CREATE TRIGGER kitchen_alertlog_no_truncate
    BEFORE TRUNCATE ON public.kitchen_alertlog
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_alertlog_append_only();

-- Raising an alert (same signature as in 0011: replace) -------------------------------------------
CREATE OR REPLACE FUNCTION kprintd.kitchen_raise_alert(
    p_type      text,
    p_severity  text,
    p_message   text,
    p_details   jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_details  jsonb := coalesce(p_details, '{}');
    v_daemon   text := nullif(v_details ->> 'daemon', '');
    v_subject  text;
    v_latest   public.kitchen_alertlog%ROWTYPE;
    v_sent     boolean := true;
    v_id       bigint;
    v_alert    jsonb;
BEGIN
    IF p_severity NOT IN ('info', 'warning', 'critical') THEN
        RAISE EXCEPTION 'alert severity must be info, warning or critical, not %', p_severity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_subject := coalesce(
        'ticket:' || (v_details ->> 'ticket_id'),
        'printer:' || (v_details ->> 'printer_id'),
        'station:' || (v_details ->> 'brand_id') || '/' || coalesce(v_details ->> 'store_id', '-')
            || '/' || (v_details ->> 'station'));
    IF v_daemon IS NOT NULL AND v_subject IS NOT NULL THEN
        -- Two daemons announcing the same change at the same moment: the second waits here for
        -- the first to commit, then sees its row.
        PERFORM pg_advisory_xact_lock(hashtext('kitchen_alertlog'), hashtext(v_subject));
        SELECT * INTO v_latest
        FROM public.kitchen_alertlog a
        WHERE a.subject = v_subject AND a.sent
        ORDER BY a.id DESC
        LIMIT 1;
        v_sent := NOT (FOUND
                       AND v_latest.alert_type = p_type
                       AND v_latest.raised_by IS DISTINCT FROM v_daemon
                       AND v_latest.raised_at > clock_timestamp() - interval '1 minute');
    END IF;
    v_id := nextval(pg_get_serial_sequence('public.kitchen_alertlog', 'id'));
    -- Details come first, so none of them can stand in for the alert's own fields.
    v_alert := v_details || jsonb_build_object(
        'type', p_type, 'severity', p_severity, 'message', p_message,
        'at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'alert_id', v_id);
    INSERT INTO public.kitchen_alertlog (id, alert_type, severity, message, subject, raised_by, sent, alert)
    VALUES (v_id, p_type, p_severity, p_message, v_subject, v_daemon, v_sent, v_alert);
    IF v_sent THEN
        -- NOTIFY payloads are limited to 8000 bytes; a manager's message never needs more.
        PERFORM pg_notify('kitchen_alert', left(v_alert::text, 7900));
    END IF;
    RETURN v_alert || jsonb_build_object('sent', v_sent);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_raise_alert(text, text, text, jsonb) IS
    'Record one alert in kitchen_alertlog and send it as JSON on NOTIFY channel kitchen_alert: '
    '{type, severity, message, at, alert_id, ...details}, delivered when the calling transaction '
    'commits. Not sent (logged with sent = false) when details.daemon names the daemon raising it '
    'and the latest alert sent about the same subject (ticket, printer or station) is of the same type, '
    'from another daemon, less than a minute old. Returns the alert with sent.';

-- Catching up ----------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_alerts_after(p_after_id bigint, p_since interval DEFAULT NULL)
RETURNS TABLE (alert_id bigint, alert jsonb)
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.alert
    FROM public.kitchen_alertlog a
    WHERE a.sent AND (a.id > p_after_id OR a.raised_at > now() - p_since)
    ORDER BY a.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_alerts_after(bigint, interval) IS
    'The alerts sent on NOTIFY kitchen_alert after the one whose alert_id is p_after_id, oldest '
    'first: what a listener missed while it was not connected. With p_since, also those of that '
    'last interval (kprintd alerts --since); either may be NULL. Rows: alert_id, alert (the '
    'payload as sent).';

-- kprintd status: planned maintenance and the last hour's alerts (same signature: replace) --------
CREATE OR REPLACE FUNCTION kprintd.kitchen_status_report(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
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
        'maintenance', v_maintenance,
        'alerts_1h', v_alerts_n,
        'recent_alerts', v_alerts,
        'attention', v_attention);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_status_report(uuid[], uuid) IS
    'Summary for kprintd status, as JSON: {generated_at, scope, daemons (heartbeats of daemons whose '
    'scope overlaps, alive first), printers (active printers in scope with their latest check, '
    'kitchen_printer_status), queues (kitchen_station_queue), failed_24h and failed_tickets (the 10 '
    'latest of kitchen_failed_tickets in 24 h), stuck_count and stuck_tickets (10 oldest of '
    'kitchen_stuck_tickets), maintenance (active and upcoming windows of active printers in scope, '
    'kitchen_printer_maintenance), alerts_1h and recent_alerts (alerts sent in the last hour, the 10 '
    'latest, from kitchen_alertlog), attention: [{kind, message}] = what needs a person: no live '
    'daemon, a printer offline / cover open / out of paper / in error, failed or stuck tickets}. '
    'Empty attention means all is well. Scope as for the daemon: p_brand_ids NULL/empty = every '
    'brand, p_store_id NULL = every store.';
