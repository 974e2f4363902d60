-- 0021 Monitoring views for DBAs, managers, dashboards (Grafana) and `kprintd status`.
--
-- Printers: kitchen_printer_status (latest check of each printer), kitchen_printer_offline (offline
-- for more than 5 minutes), kitchen_printer_uptime_7d and kitchen_printer_failure_rate (the spec's
-- uptime and failure-rate reports). Tickets: kitchen_print_sla (print times per station and day),
-- kitchen_stuck_tickets and kitchen_failed_tickets (what needs a human), kitchen_station_queue
-- (what waits, per station), kitchen_bill_status (the spec's BillKitchenStatus, per bill).
--
-- Every view stays fast on a long history when filtered on its time column (day, created_at,
-- failed_at): see bench/views.py. Station codes are shown as tickets carry them (trimmed, lowercase).
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- Indexes ------------------------------------------------------------------------------------------
-- Failed tickets by when they failed (kitchen_failed_tickets, kprintd status): few rows, small index.
CREATE INDEX idx_kitchenticket_failed_at
    ON public.kitchen_kitchenticket ((coalesce(last_error_at, created_at))) WHERE status = 'failed';
-- Bills of a period (kitchen_bill_status), where the POS's bills have a creation time. The POS may
-- have such an index already; this one is kprintd's.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'pos_bill'::regclass AND attname = 'created_at' AND NOT attisdropped) THEN
        CREATE INDEX IF NOT EXISTS idx_pos_bill_created_at ON public.pos_bill (created_at);
    END IF;
END
$$;

-- Printers -----------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_printer_status AS
SELECT sp.id AS printer_id,
       sp.brand_id,
       sp.store_id,
       kprintd.kitchen_normalize_station(sp.station_code) AS station,
       sp.printer_name,
       sp.printer_ip,
       coalesce(sp.printer_port, 9100) AS printer_port,
       kprintd.kitchen_printer_host(sp.printer_ip::text) || ':' || coalesce(sp.printer_port, 9100) AS address,
       coalesce(sp.priority, 1) AS priority,
       coalesce(sp.is_active, true) AS is_active,
       kprintd.kitchen_printer_state(hc.is_online, hc.paper_status, hc.error_code) AS state,
       hc.is_online,
       hc.paper_status,
       hc.response_time_ms,
       hc.error_code,
       hc.error_message,
       hc.cutter_ok,
       hc.temperature_ok,
       hc.checked_at,
       sp.last_print_at,
       sp.last_error_at,
       sp.last_error_message,
       coalesce(sp.total_prints, 0) AS total_prints,
       coalesce(sp.failed_prints, 0) AS failed_prints
FROM public.kitchen_stationprinter sp
LEFT JOIN LATERAL (
    SELECT h.is_online, h.paper_status, h.response_time_ms, h.error_code, h.error_message,
           h.cutter_ok, h.temperature_ok, h.checked_at
    FROM public.kitchen_printerhealthcheck h
    WHERE h.printer_id = sp.id
    ORDER BY h.checked_at DESC
    LIMIT 1
) hc ON true;

COMMENT ON VIEW public.kitchen_printer_status IS
    'Every printer with its latest health check: state (kitchen_printer_state(): ok, paper_low, '
    'paper_out, cover_open, offline, error, no_status, or unknown when never checked), online, paper, '
    'response time, error and when it was checked; plus its last print, last print failure '
    '(last_error_at/last_error_message) and lifetime counters total_prints (printed) and failed_prints '
    '(attempts that failed on it, failover included).';

CREATE VIEW public.kitchen_printer_offline AS
SELECT s.printer_id,
       s.brand_id,
       s.store_id,
       s.station,
       s.printer_name,
       s.printer_ip,
       s.printer_port,
       s.address,
       o.offline_since,
       now() - o.offline_since AS downtime,
       s.checked_at AS last_checked_at,
       s.error_code,
       s.error_message
FROM public.kitchen_printer_status s
CROSS JOIN LATERAL (
    SELECT min(h.checked_at) AS offline_since
    FROM public.kitchen_printerhealthcheck h
    WHERE h.printer_id = s.printer_id
      AND h.checked_at > coalesce(
          (SELECT max(u.checked_at) FROM public.kitchen_printerhealthcheck u
           WHERE u.printer_id = s.printer_id AND u.is_online),
          '-infinity')
) o
WHERE s.is_active
  AND NOT s.is_online
  AND o.offline_since < now() - interval '5 minutes';

COMMENT ON VIEW public.kitchen_printer_offline IS
    'Active printers whose latest check is offline and that have been offline for more than 5 '
    'minutes: offline_since is the first check after the last online one, downtime how long ago that '
    'was. (A printer that is reachable but has its cover open or is out of paper is online; see '
    'kitchen_printer_status.state.)';

CREATE VIEW public.kitchen_printer_uptime_7d AS
SELECT sp.station_code,
       sp.printer_name,
       c.total_checks,
       c.online_checks,
       round(100.0 * c.online_checks / c.total_checks, 2) AS uptime_percent,
       sp.id AS printer_id,
       c.ready_checks,
       round(100.0 * c.ready_checks / c.total_checks, 2) AS ready_percent
FROM (
    SELECT phc.printer_id,
           count(*) AS total_checks,
           count(*) FILTER (WHERE phc.is_online) AS online_checks,
           count(*) FILTER (WHERE kprintd.kitchen_printer_state(phc.is_online, phc.paper_status,
                                                        phc.error_code)
                                  IN ('ok', 'paper_low', 'no_status')) AS ready_checks
    FROM public.kitchen_printerhealthcheck phc
    WHERE phc.checked_at > now() - interval '7 days'
    GROUP BY phc.printer_id
) c
JOIN public.kitchen_stationprinter sp ON sp.id = c.printer_id;

COMMENT ON VIEW public.kitchen_printer_uptime_7d IS
    'The spec''s uptime report over the last 7 days, per printer with checks in that time: '
    'station_code, printer_name, total_checks, online_checks, uptime_percent (online checks / all '
    'checks). Also ready_checks/ready_percent: checks where the printer could print (online and not '
    'cover open, out of paper or in error).';

CREATE VIEW public.kitchen_printer_failure_rate AS
SELECT sp.printer_name,
       coalesce(sp.total_prints, 0) AS total_prints,
       coalesce(sp.failed_prints, 0) AS failed_prints,
       round(100.0 * sp.failed_prints / nullif(sp.total_prints, 0), 2) AS failure_rate,
       sp.id AS printer_id,
       kprintd.kitchen_normalize_station(sp.station_code) AS station,
       coalesce(sp.is_active, true) AS is_active,
       round(100.0 * sp.failed_prints
             / nullif(coalesce(sp.total_prints, 0) + coalesce(sp.failed_prints, 0), 0), 2)
           AS failed_attempt_percent
FROM public.kitchen_stationprinter sp
WHERE coalesce(sp.total_prints, 0) > 0 OR coalesce(sp.failed_prints, 0) > 0;

COMMENT ON VIEW public.kitchen_printer_failure_rate IS
    'The spec''s failure-rate report from the printers'' lifetime counters: failure_rate = 100 * '
    'failed_prints / total_prints (failed attempts per 100 successful prints; NULL when it never '
    'printed). Unlike the spec''s query it also lists printers that only ever failed. '
    'failed_attempt_percent = share of all attempts on the printer that failed. Sort it yourself, '
    'e.g. ORDER BY failure_rate DESC NULLS FIRST.';

-- Tickets ------------------------------------------------------------------------------------------
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

CREATE VIEW public.kitchen_print_sla AS
SELECT c.day,
       s.brand_id,
       s.store_id,
       s.station,
       s.printed,
       s.print_ms_avg,
       s.print_ms_p50,
       s.print_ms_p95,
       s.print_ms_max,
       s.end_to_end_ms_avg,
       s.end_to_end_ms_p50,
       s.end_to_end_ms_p95,
       s.end_to_end_ms_max
FROM (
    -- One row per calendar day since the first print. A filter on day is applied to this list,
    -- so only the days asked for are computed.
    SELECT f.first_day + n AS day
    FROM (SELECT min(l."timestamp")::date AS first_day
          FROM public.kitchen_kitchenticketlog l WHERE l.action = 'print_success') f
    CROSS JOIN LATERAL generate_series(0, current_date - f.first_day) AS n
) c
CROSS JOIN LATERAL kprintd.kitchen_print_sla_of_day(c.day) s;

COMMENT ON VIEW public.kitchen_print_sla IS
    'Print service levels per calendar day (session time zone) and brand/store/station, from the '
    'audit log''s print_success rows of that day: printed = how many; print_ms_* = avg, p50, p95 and '
    'max of duration_ms (the printer round trip); end_to_end_ms_* = the same of the time from ticket '
    'creation to print_success. Filter on day (WHERE day >= current_date - 1): only those days are '
    'computed.';

CREATE VIEW public.kitchen_stuck_tickets AS
SELECT t.id AS ticket_id,
       t.bill_id,
       b.bill_number,
       t.brand_id,
       t.store_id,
       t.printer_target AS station,
       t.ticket_type,
       t.status,
       r.reason,
       r.stuck_since,
       now() - r.stuck_since AS stuck_for,
       t.print_attempts,
       t.max_retries,
       t.claimed_by,
       t.lease_expires_at,
       t.next_attempt_at,
       t.created_at,
       t.error_code,
       t.error_message,
       t.last_error_at
FROM public.kitchen_kitchenticket t
LEFT JOIN public.kitchen_pos_bill b ON b.id = t.bill_id
CROSS JOIN LATERAL (
    -- When it entered its status: for printing the daemon's last claim (print_start), else the
    -- last audit row that set the status.
    SELECT coalesce(max(l."timestamp") FILTER (WHERE t.status = 'printing'
                                               AND l.action = 'print_start'),
                    max(l."timestamp") FILTER (WHERE l.new_status = t.status)) AS at
    FROM public.kitchen_kitchenticketlog l
    WHERE l.ticket_id = t.id
) entered
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN t.status = 'printing' AND coalesce(t.lease_expires_at < now(), true)
                   THEN 'lease_expired'
               WHEN t.status = 'printing' AND entered.at < now() - interval '5 minutes'
                   THEN 'printing_too_long'
               WHEN t.status = 'new' AND t.print_attempts >= t.max_retries
                   THEN 'out_of_attempts'
               WHEN t.status = 'new' AND t.next_attempt_at < now() - interval '1 minute'
                   THEN 'overdue'
           END AS reason,
           CASE
               WHEN t.status = 'printing' AND t.lease_expires_at < now() THEN t.lease_expires_at
               WHEN t.status = 'printing' THEN entered.at
               WHEN t.print_attempts >= t.max_retries THEN entered.at
               ELSE t.next_attempt_at
           END AS stuck_since
) r
WHERE t.status IN ('new', 'printing')
  AND r.reason IS NOT NULL;

COMMENT ON VIEW public.kitchen_stuck_tickets IS
    'Tickets that should have printed by now and need a look, with the last error they had. reason: '
    '''lease_expired'' (printing, but the daemon holding it stopped renewing: the next sweep reclaims '
    'it), ''printing_too_long'' (printing for more than 5 minutes), ''out_of_attempts'' (new with '
    'print_attempts >= max_retries: no daemon will pick it up; kitchen_reset_ticket() it), '
    '''overdue'' (new and due for more than 1 minute: is a daemon running for its store and '
    'brand?). stuck_since: when the condition began (lease expiry, entering its status, or due time).';

CREATE VIEW public.kitchen_failed_tickets AS
SELECT t.id AS ticket_id,
       t.bill_id,
       b.bill_number,
       t.brand_id,
       t.store_id,
       t.printer_target AS station,
       t.ticket_type,
       t.is_reprint,
       coalesce(t.last_error_at, t.created_at) AS failed_at,
       t.error_code,
       t.error_message,
       t.print_attempts,
       t.max_retries,
       t.may_have_printed,
       t.printer_ip,
       last_log.action AS failed_by_action,
       last_log.actor AS failed_by,
       t.created_at
FROM public.kitchen_kitchenticket t
LEFT JOIN public.kitchen_pos_bill b ON b.id = t.bill_id
LEFT JOIN LATERAL (
    SELECT l.action, l.actor
    FROM public.kitchen_kitchenticketlog l
    WHERE l.ticket_id = t.id
    ORDER BY l."timestamp" DESC, l.id DESC
    LIMIT 1
) last_log ON true
WHERE t.status = 'failed';

COMMENT ON VIEW public.kitchen_failed_tickets IS
    'Tickets that failed for good and were not printed: a person must act (fix the printer, then '
    'kitchen_reset_ticket(ticket_id, actor), or kitchen_mark_printed() if the kitchen has it). '
    'failed_at = last_error_at; error_code/error_message = the last error; failed_by/failed_by_action = '
    'who failed it (printer_service: print_failed, or an admin: marked_failed). may_have_printed: part '
    'of it may be on paper. Filter on failed_at (WHERE failed_at > now() - interval ''1 day'').';

CREATE VIEW public.kitchen_station_queue AS
SELECT t.brand_id,
       t.store_id,
       t.printer_target::text AS station,
       count(*) FILTER (WHERE t.status = 'new') AS waiting,
       count(*) FILTER (WHERE t.status = 'new' AND t.next_attempt_at <= now()) AS due,
       count(*) FILTER (WHERE t.status = 'printing') AS printing,
       min(t.created_at) FILTER (WHERE t.status = 'new') AS oldest_waiting_since
FROM public.kitchen_kitchenticket t
WHERE t.status IN ('new', 'printing')
GROUP BY t.brand_id, t.store_id, t.printer_target;

COMMENT ON VIEW public.kitchen_station_queue IS
    'Queue depth per brand, store and station: waiting = tickets new (due = of those, due now; the '
    'rest wait for a retry backoff), printing = claimed by a daemon, oldest_waiting_since = creation '
    'of the oldest waiting ticket. Stations with nothing queued are not listed.';

CREATE VIEW public.kitchen_bill_status AS
SELECT b.id AS bill_id,
       b.bill_number,
       b.brand_id,
       b.store_id,
       b.created_at,
       s.ticket_count,
       s.new_count,
       s.printing_count,
       s.printed_count,
       s.failed_count,
       s.printed_count = s.ticket_count AS all_printed,
       CASE WHEN s.failed_count > 0 THEN 'failed'
            WHEN s.printed_count = s.ticket_count THEN 'printed'
            ELSE 'pending'
       END AS kitchen_status,
       s.first_sent_at,
       s.last_sent_at,
       s.last_printed_at
FROM public.kitchen_pos_bill b
CROSS JOIN LATERAL (
    SELECT count(*) AS ticket_count,
           count(*) FILTER (WHERE t.status = 'new') AS new_count,
           count(*) FILTER (WHERE t.status = 'printing') AS printing_count,
           count(*) FILTER (WHERE t.status = 'printed') AS printed_count,
           count(*) FILTER (WHERE t.status = 'failed') AS failed_count,
           min(t.created_at) AS first_sent_at,
           max(t.created_at) AS last_sent_at,
           max(t.printed_at) AS last_printed_at
    FROM public.kitchen_kitchenticket t
    WHERE t.bill_id = b.id
) s
WHERE s.ticket_count > 0;

COMMENT ON VIEW public.kitchen_bill_status IS
    'The spec''s BillKitchenStatus: per bill sent to the kitchen, how many of its tickets (reprints '
    'included) are new, printing, printed and failed; all_printed = everything sent has been printed; '
    'kitchen_status = ''failed'' (a ticket failed: someone must act), ''printed'' or ''pending''. '
    'created_at is the bill''s. Filter on bill_id (one bill, for a POS screen) or created_at.';
