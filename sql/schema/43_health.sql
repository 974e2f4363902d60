-- Health: the printers a daemon checks and the record of its checks, daemon heartbeats, alerts
-- (kept in kitchen_alertlog; a change two daemons both notice is announced once), and the print
-- times the SLA view reports.
--
-- An alert is a NOTIFY on kitchen_alert and a kitchen_alertlog row; the payload carries the row's
-- id (alert_id), so a listener that reconnects catches up with kitchen_alerts_after(). An alert that
-- names the daemon raising it (details.daemon) is held back, logged with sent = false, when the
-- latest alert sent about the same subject (the ticket, else the printer, else the station) came
-- from another daemon in the last minute and said the same thing.

-- Printers --------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_health_printers(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
RETURNS TABLE (
    printer_id     bigint,
    printer_name   text,
    host           text,
    port           integer,
    brand_id       uuid,
    store_id       uuid,
    station        text,
    answers_status boolean
)
    LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.printer_name, kprintd.kitchen_printer_host(sp.printer_ip::text), coalesce(sp.printer_port, 9100),
           sp.brand_id, sp.store_id, kprintd.kitchen_normalize_station(sp.station_code), sp.answers_status
    FROM public.kitchen_stationprinter sp
    WHERE coalesce(sp.is_active, true)
      AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR sp.brand_id = ANY (p_brand_ids))
      AND (p_store_id IS NULL OR sp.store_id IS NULL OR sp.store_id = p_store_id)
      AND NOT EXISTS (SELECT 1 FROM public.kitchen_stationprinterschedule m
                      WHERE m.printer_id = sp.id AND m.starts_at <= now() AND m.ends_at > now())
    ORDER BY sp.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_health_printers(uuid[], uuid) IS
    'The active printers a daemon of this scope checks (p_brand_ids NULL or empty = every brand; '
    'p_store_id NULL = every store, otherwise that store''s printers and the brand-wide ones), with '
    'their address, normalized station code and whether they answer status requests (false: the '
    'check only connects). Printers inside a maintenance window (kitchen_stationprinterschedule) are '
    'left out: nobody is alerted about a printer unplugged on purpose.';

-- Recording checks.
CREATE FUNCTION kprintd.kitchen_record_health_checks(p_checks jsonb)
RETURNS TABLE (printer_id bigint, state text)
    LANGUAGE sql AS $$
    INSERT INTO public.kitchen_printerhealthcheck AS h
        (printer_id, checked_at, is_online, response_time_ms, paper_status, error_code,
         error_message, temperature_ok, cutter_ok)
    SELECT c.printer_id, now(), c.is_online, c.response_time_ms, coalesce(c.paper_status, 'unknown'),
           c.error_code, left(c.error_message, 2000), c.temperature_ok, c.cutter_ok
    FROM jsonb_to_recordset(coalesce(p_checks, '[]')) AS c(
        printer_id bigint, is_online boolean, response_time_ms integer, paper_status text,
        error_code text, error_message text, temperature_ok boolean, cutter_ok boolean)
    -- A printer deleted since the daemon listed it has nothing left to record.
    WHERE EXISTS (SELECT 1 FROM public.kitchen_stationprinter sp WHERE sp.id = c.printer_id)
    RETURNING h.printer_id, kprintd.kitchen_printer_state(h.is_online, h.paper_status, h.error_code)
$$;

COMMENT ON FUNCTION kprintd.kitchen_record_health_checks(jsonb) IS
    'Records health checks, one kitchen_printerhealthcheck row each, checked_at = now(). p_checks: '
    '[{printer_id, is_online, response_time_ms, paper_status, error_code, error_message, '
    'temperature_ok, cutter_ok}] (paper_status default ''unknown''). Returns each recorded printer '
    'with its kitchen_printer_state(); printers that no longer exist are skipped.';

-- Retention of checks.
CREATE FUNCTION kprintd.kitchen_prune_health_checks(p_retention_days integer, p_batch_size integer DEFAULT 1000)
RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    v_deleted integer;
BEGIN
    IF p_retention_days IS NULL OR p_retention_days < 1 THEN
        RAISE EXCEPTION 'kitchen_prune_health_checks: retention must be at least 1 day, got %',
                        quote_nullable(p_retention_days)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'kitchen_prune_health_checks: batch size must be at least 1, got %',
                        quote_nullable(p_batch_size)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.kitchen_printerhealthcheck h
    WHERE h.id = ANY (ARRAY(
        SELECT o.id FROM public.kitchen_printerhealthcheck o
        WHERE o.checked_at < now() - make_interval(days => p_retention_days)
        ORDER BY o.checked_at
        LIMIT p_batch_size
        FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_prune_health_checks(integer, integer) IS
    'Deletes up to p_batch_size of the oldest kitchen_printerhealthcheck rows older than '
    'p_retention_days days and returns how many it deleted; call it again until it returns less than '
    'p_batch_size. Small batches keep locks and WAL bursts short. Touches no other table. '
    'Errors: 22023 retention < 1 day or batch size < 1.';

-- Daemons ---------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_daemon_beat(
    p_daemon_id            text,
    p_host                 text,
    p_pid                  integer,
    p_version              text,
    p_store_id             uuid,
    p_brand_ids            uuid[],
    p_interval_s           double precision,
    p_started_at           timestamptz,
    p_tickets_printed      bigint,
    p_listening            boolean,
    p_not_listening_since  timestamptz
) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO public.kitchen_daemon_heartbeat AS d
        (daemon_id, host, pid, version, store_id, brand_ids, interval_s, started_at, last_seen_at,
         stopped_at, tickets_printed, listening, not_listening_since)
    VALUES (p_daemon_id, p_host, p_pid, p_version, p_store_id, coalesce(p_brand_ids, '{}'),
            p_interval_s, p_started_at, now(), NULL, p_tickets_printed, p_listening,
            -- The daemon's clock says when; never later than now.
            CASE WHEN p_listening IS FALSE
                 THEN least(coalesce(p_not_listening_since, now()), now()) END)
    ON CONFLICT (daemon_id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version,
            store_id = EXCLUDED.store_id, brand_ids = EXCLUDED.brand_ids,
            interval_s = EXCLUDED.interval_s, started_at = EXCLUDED.started_at,
            last_seen_at = EXCLUDED.last_seen_at, stopped_at = NULL,
            tickets_printed = EXCLUDED.tickets_printed, listening = EXCLUDED.listening,
            not_listening_since = EXCLUDED.not_listening_since;
    DELETE FROM public.kitchen_daemon_heartbeat WHERE last_seen_at < now() - interval '7 days';
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint, boolean, timestamptz) IS
    'A running daemon says it is alive and whether it is listening for new tickets: upserts its '
    'kitchen_daemon_heartbeat row (last_seen_at = now(), stopped_at cleared, listening, and '
    'not_listening_since while listening is false: p_not_listening_since, at most now(), default '
    'now()) and removes rows of daemons not seen for 7 days. kprintd run calls it every health '
    'interval and as soon as its listener stops or starts listening.';

CREATE FUNCTION kprintd.kitchen_daemon_beat(
    p_daemon_id        text,
    p_host             text,
    p_pid              integer,
    p_version          text,
    p_store_id         uuid,
    p_brand_ids        uuid[],
    p_interval_s       double precision,
    p_started_at       timestamptz,
    p_tickets_printed  bigint
) RETURNS void
    LANGUAGE sql AS $$
    SELECT kprintd.kitchen_daemon_beat(p_daemon_id, p_host, p_pid, p_version, p_store_id, p_brand_ids,
                               p_interval_s, p_started_at, p_tickets_printed, NULL::boolean,
                               NULL::timestamptz)
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) IS
    'The heartbeat of a writer that does not say whether it listens: as the 11-argument '
    'kitchen_daemon_beat() with listening NULL (unknown), so it is never said to be not listening.';

CREATE FUNCTION kprintd.kitchen_daemon_stopped(p_daemon_id text, p_tickets_printed bigint) RETURNS void
    LANGUAGE sql AS $$
    UPDATE public.kitchen_daemon_heartbeat
    SET stopped_at = now(), last_seen_at = now(), tickets_printed = p_tickets_printed
    WHERE daemon_id = p_daemon_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) IS
    'A daemon stopping cleanly stamps its heartbeat row stopped_at, so kprintd status tells a stopped '
    'daemon from one that died (stale).';

-- Alerts ----------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_raise_alert(
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

-- Catching up on alerts a listener missed.
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

-- Where a listener starts reading.
CREATE FUNCTION kprintd.kitchen_last_alert_id()
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(a.id), 0) FROM public.kitchen_alertlog a
$$;

COMMENT ON FUNCTION kprintd.kitchen_last_alert_id() IS
    'The alert_id of the last row of kitchen_alertlog, sent or held back (0 when it is empty): '
    'what a listener passes to kitchen_alerts_after() to read only the alerts raised from now on '
    '(kprintd alerts).';

-- Print times -----------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_print_sla_of_day(p_day date)
RETURNS TABLE (
    brand_id           uuid,
    store_id           uuid,
    station            text,
    printed            bigint,
    print_ms_avg       numeric,
    print_ms_p50       numeric,
    print_ms_p95       numeric,
    print_ms_max       integer,
    end_to_end_ms_avg  numeric,
    end_to_end_ms_p50  numeric,
    end_to_end_ms_p95  numeric,
    end_to_end_ms_max  numeric
)
    LANGUAGE sql STABLE
    -- A day is a few thousand rows read by an index range scan: compiling the plan (JIT) or
    -- starting parallel workers would take longer than running it.
    SET jit = off
    SET max_parallel_workers_per_gather = 0
    ROWS 20
AS $$
    SELECT t.brand_id,
           t.store_id,
           t.printer_target::text,
           count(*),
           round(avg(l.duration_ms), 1),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1),
           max(l.duration_ms),
           round(avg(e.ms), 1),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY e.ms)::numeric, 1),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY e.ms)::numeric, 1),
           round(max(e.ms), 1)
    FROM public.kitchen_kitchenticketlog l
    JOIN public.kitchen_kitchenticket t ON t.id = l.ticket_id
    CROSS JOIN LATERAL (SELECT extract(epoch FROM l."timestamp" - t.created_at) * 1000 AS ms) e
    WHERE l.action = 'print_success'
      AND l."timestamp" >= p_day::timestamptz
      AND l."timestamp" < (p_day + 1)::timestamptz
    GROUP BY t.brand_id, t.store_id, t.printer_target
$$;

COMMENT ON FUNCTION kprintd.kitchen_print_sla_of_day(date) IS
    'One day (session time zone) of kitchen_print_sla: per brand, store and station, the count, '
    'avg, p50, p95 and max of print_success duration_ms and of the time from ticket creation to '
    'print_success, in milliseconds.';
