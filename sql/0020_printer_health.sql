-- 0020 Printer health: the daemon's health checks, their retention, and the daemon heartbeat.
--
-- kprintd run checks every active printer of its scope every KPRINTD_HEALTH_INTERVAL_S seconds
-- (DLE EOT real-time status, asked on the printer's own connection, never while it prints) and
-- records one kitchen_printerhealthcheck row per printer and check with
-- kitchen_record_health_checks(). Rows older than KPRINTD_HEALTH_RETENTION_DAYS are deleted in
-- small batches with kitchen_prune_health_checks(); nothing else is ever pruned (the ticket log
-- is append-only). On the same interval each daemon upserts its kitchen_daemon_heartbeat row,
-- which `kprintd status` and kitchen_daemon_status read.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. What a health check says --------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_printer_state(p_is_online boolean, p_paper_status text, p_error_code text)
RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN p_is_online IS NULL THEN 'unknown'
        WHEN NOT p_is_online THEN 'offline'
        WHEN p_error_code = 'cover_open' THEN 'cover_open'
        WHEN p_paper_status = 'out' OR p_error_code = 'paper_out' THEN 'paper_out'
        WHEN p_error_code IS NOT NULL OR p_paper_status = 'jam' THEN 'error'
        WHEN p_paper_status = 'low' THEN 'paper_low'
        WHEN p_paper_status = 'ok' THEN 'ok'
        ELSE 'no_status'
    END;

COMMENT ON FUNCTION kprintd.kitchen_printer_state(boolean, text, text) IS
    'The state of a printer as one health check (is_online, paper_status, error_code) shows it: '
    '''offline'' (not reachable, or the printer says it is offline), ''cover_open'', ''paper_out'', '
    '''error'' (cutter jam, printer error, garbled status), ''paper_low'' (prints; near-end sensor), '
    '''ok'', ''no_status'' (reachable but did not answer the status request) and ''unknown'' (no check). '
    'offline, cover_open, paper_out and error mean the printer cannot print: kprintd routes to a backup.';

-- A printer's last online check, for "offline since": kitchen_printer_offline.
CREATE INDEX idx_printerhealthcheck_online
    ON public.kitchen_printerhealthcheck (printer_id, checked_at DESC) WHERE is_online;

-- 2. The printers a daemon checks ------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_health_printers(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
RETURNS TABLE (
    printer_id   bigint,
    printer_name text,
    host         text,
    port         integer,
    brand_id     uuid,
    store_id     uuid,
    station      text
)
    LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.printer_name, kprintd.kitchen_printer_host(sp.printer_ip::text), coalesce(sp.printer_port, 9100),
           sp.brand_id, sp.store_id, kprintd.kitchen_normalize_station(sp.station_code)
    FROM public.kitchen_stationprinter sp
    WHERE coalesce(sp.is_active, true)
      AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR sp.brand_id = ANY (p_brand_ids))
      AND (p_store_id IS NULL OR sp.store_id IS NULL OR sp.store_id = p_store_id)
    ORDER BY sp.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_health_printers(uuid[], uuid) IS
    'The active printers a daemon of this scope checks (p_brand_ids NULL or empty = every brand; '
    'p_store_id NULL = every store, otherwise that store''s printers and the brand-wide ones), with '
    'their address and normalized station code.';

-- 3. Recording checks ------------------------------------------------------------------------------
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

-- 4. Retention -------------------------------------------------------------------------------------
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

-- 5. Daemon heartbeat ------------------------------------------------------------------------------
CREATE TABLE public.kitchen_daemon_heartbeat (
    daemon_id        VARCHAR(200) PRIMARY KEY,
    host             TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    version          VARCHAR(50) NOT NULL,
    store_id         UUID NULL,
    brand_ids        UUID[] NOT NULL DEFAULT '{}',
    interval_s       DOUBLE PRECISION NOT NULL,
    started_at       TIMESTAMP WITH TIME ZONE NOT NULL,
    last_seen_at     TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    stopped_at       TIMESTAMP WITH TIME ZONE NULL,
    tickets_printed  BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT kitchen_daemon_heartbeat_interval_positive CHECK (interval_s > 0),
    CONSTRAINT kitchen_daemon_heartbeat_printed_nonnegative CHECK (tickets_printed >= 0)
);

COMMENT ON TABLE public.kitchen_daemon_heartbeat IS
    'One row per kprintd daemon, upserted every interval_s seconds while it runs (kitchen_daemon_beat) '
    'and stamped stopped_at on a clean stop. Rows not seen for 7 days are removed. Read it through '
    'kitchen_daemon_status.';

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
    INSERT INTO public.kitchen_daemon_heartbeat AS d
        (daemon_id, host, pid, version, store_id, brand_ids, interval_s, started_at, last_seen_at,
         stopped_at, tickets_printed)
    VALUES (p_daemon_id, p_host, p_pid, p_version, p_store_id, coalesce(p_brand_ids, '{}'),
            p_interval_s, p_started_at, now(), NULL, p_tickets_printed)
    ON CONFLICT (daemon_id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version,
            store_id = EXCLUDED.store_id, brand_ids = EXCLUDED.brand_ids,
            interval_s = EXCLUDED.interval_s, started_at = EXCLUDED.started_at,
            last_seen_at = EXCLUDED.last_seen_at, stopped_at = NULL,
            tickets_printed = EXCLUDED.tickets_printed;
    DELETE FROM public.kitchen_daemon_heartbeat WHERE last_seen_at < now() - interval '7 days';
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) IS
    'A running daemon says it is alive: upserts its kitchen_daemon_heartbeat row (last_seen_at = now(), '
    'stopped_at cleared) and removes rows of daemons not seen for 7 days.';

CREATE FUNCTION kprintd.kitchen_daemon_stopped(p_daemon_id text, p_tickets_printed bigint) RETURNS void
    LANGUAGE sql AS $$
    UPDATE public.kitchen_daemon_heartbeat
    SET stopped_at = now(), last_seen_at = now(), tickets_printed = p_tickets_printed
    WHERE daemon_id = p_daemon_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) IS
    'A daemon stopping cleanly stamps its heartbeat row stopped_at, so kprintd status tells a stopped '
    'daemon from one that died (stale).';

CREATE VIEW public.kitchen_daemon_status AS
SELECT d.daemon_id, d.host, d.pid, d.version, d.store_id, d.brand_ids,
       CASE WHEN d.stopped_at IS NOT NULL THEN 'stopped'
            WHEN d.last_seen_at >= now() - make_interval(secs => greatest(3 * d.interval_s, 15))
                THEN 'alive'
            ELSE 'stale'
       END AS state,
       d.started_at, d.last_seen_at, now() - d.last_seen_at AS last_seen_ago, d.stopped_at,
       d.interval_s, d.tickets_printed
FROM public.kitchen_daemon_heartbeat d;

COMMENT ON VIEW public.kitchen_daemon_status IS
    'Each daemon''s heartbeat with its state: ''alive'' (seen within 3 heartbeat intervals, at least '
    '15 s), ''stale'' (not seen since: it died, hangs, or cannot reach the database) or ''stopped'' '
    '(stopped cleanly).';
