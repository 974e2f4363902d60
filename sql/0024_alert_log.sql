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
