-- The views: each bill item's kitchen state, and the monitoring views for DBAs, managers,
-- dashboards (Grafana) and `kprintd status`.
--
-- Bill items: kitchen_billitem_status (what kitchen_create_tickets() reads to know what is unsent).
-- Printers: kitchen_printer_maintenance (planned windows), kitchen_printer_status (latest check of
-- each printer, window in force), kitchen_printer_offline (offline for more than 5 minutes),
-- kitchen_printer_uptime_7d and kitchen_printer_failure_rate (the spec's uptime and failure-rate
-- reports). Tickets: kitchen_print_sla (print times per station and day), kitchen_stuck_tickets and
-- kitchen_failed_tickets (what needs a human), kitchen_station_queue (what waits, per station),
-- kitchen_bill_status (the spec's BillKitchenStatus, per bill). Daemons: kitchen_daemon_status.
--
-- Every view stays fast on a long history when filtered on its time column (day, created_at,
-- failed_at): see bench/views.py. Station codes are shown as tickets carry them (trimmed, lowercase).

-- Bill items -------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_billitem_status AS
SELECT
    bi.id                          AS bill_item_id,
    bi.bill_id,
    bi.quantity,
    COALESCE(bi.is_void, false)    AS is_void,
    st.station,
    sent.kitchen_ticket_id         AS sent_ticket_id,
    sent.printer_target            AS sent_station,
    sent.quantity                  AS sent_quantity,
    vd.kitchen_ticket_id           AS void_ticket_id,
    CASE
        WHEN sent.kitchen_ticket_id IS NOT NULL THEN
            CASE WHEN vd.kitchen_ticket_id IS NOT NULL THEN 'void_sent'
                 WHEN COALESCE(bi.is_void, false) THEN 'void_pending'
                 ELSE 'sent' END
        WHEN COALESCE(bi.is_void, false) THEN 'voided_unsent'
        WHEN st.station IS NULL OR bi.quantity < 1 THEN 'not_printed'
        ELSE 'pending'
    END                            AS kitchen_state
FROM public.kitchen_pos_billitem bi
CROSS JOIN LATERAL (SELECT kprintd.kitchen_item_station(bi.printer_target, bi.product_printer_target) AS station) st
LEFT JOIN LATERAL (
    SELECT kti.kitchen_ticket_id, kt.printer_target, kti.quantity
      FROM public.kitchen_kitchenticketitem kti
      JOIN public.kitchen_kitchenticket kt ON kt.id = kti.kitchen_ticket_id
     WHERE kti.bill_item_id = bi.id AND NOT kti.is_reprint AND kti.ticket_type IN ('order', 'addition')
     ORDER BY kti.id
     LIMIT 1
) sent ON true
LEFT JOIN LATERAL (
    SELECT kti.kitchen_ticket_id
      FROM public.kitchen_kitchenticketitem kti
     WHERE kti.bill_item_id = bi.id AND NOT kti.is_reprint AND kti.ticket_type = 'void'
     ORDER BY kti.id
     LIMIT 1
) vd ON true;

COMMENT ON VIEW public.kitchen_billitem_status IS
    'Each bill item''s kitchen state, for POS screens and for kitchen_create_tickets(). station: where it prints '
    '(item printer_target, else product''s, else ''kitchen''; NULL = ''none''). kitchen_state: ''pending'' (goes out with the '
    'next send), ''sent'' (on sent_ticket_id at sent_station), ''void_pending'' (sent, now void: the next send prints a void '
    'ticket), ''void_sent'' (void ticket void_ticket_id created), ''voided_unsent'' (voided before it was sent: never printed), '
    '''not_printed'' (station ''none'' or quantity < 1). Filter by bill_id.';

-- Printers -----------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_printer_maintenance AS
SELECT m.id AS schedule_id,
       m.printer_id,
       sp.brand_id,
       sp.store_id,
       kprintd.kitchen_normalize_station(sp.station_code) AS station,
       sp.printer_name,
       kprintd.kitchen_printer_host(sp.printer_ip::text) || ':' || coalesce(sp.printer_port, 9100) AS address,
       m.starts_at,
       m.ends_at,
       m.ends_at - m.starts_at AS duration,
       CASE WHEN m.ends_at <= now() THEN 'past'
            WHEN m.starts_at <= now() THEN 'active'
            ELSE 'upcoming' END AS state,
       m.reason,
       m.created_by,
       m.created_at,
       -- Whether the station keeps printing during the whole window on another active printer
       -- of the same brand (store-specific or brand-wide) that has no window overlapping it.
       EXISTS (
           SELECT 1
           FROM public.kitchen_stationprinter other
           WHERE other.id <> sp.id
             AND other.brand_id = sp.brand_id
             AND kprintd.kitchen_normalize_station(other.station_code)
                 = kprintd.kitchen_normalize_station(sp.station_code)
             AND coalesce(other.is_active, true)
             AND (other.store_id IS NULL OR sp.store_id IS NULL OR other.store_id = sp.store_id)
             AND NOT EXISTS (SELECT 1 FROM public.kitchen_stationprinterschedule o
                             WHERE o.printer_id = other.id
                               AND o.starts_at < m.ends_at AND o.ends_at > m.starts_at)
       ) AS station_keeps_printing
FROM public.kitchen_stationprinterschedule m
JOIN public.kitchen_stationprinter sp ON sp.id = m.printer_id;

COMMENT ON VIEW public.kitchen_printer_maintenance IS
    'Every maintenance window with its printer and station: state (active, upcoming or past), '
    'duration, and station_keeps_printing: true when another active printer of the station has no '
    'window overlapping this one, false when the station''s tickets will wait for the window to '
    'end. Filter on state <> ''past'' for the plan ahead.';

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
       -- A printer unplugged on purpose is not "offline": its last check is from before.
       CASE WHEN mw.ends_at IS NOT NULL THEN 'maintenance'
            ELSE kprintd.kitchen_printer_state(hc.is_online, hc.paper_status, hc.error_code) END AS state,
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
       coalesce(sp.failed_prints, 0) AS failed_prints,
       mw.ends_at AS maintenance_until,
       sp.answers_status
FROM public.kitchen_stationprinter sp
LEFT JOIN LATERAL (SELECT m.ends_at FROM kprintd.kitchen_printer_maintenance(sp.id) m
                   WHERE m.starts_at <= now()) mw ON true
LEFT JOIN LATERAL (
    SELECT h.is_online, h.paper_status, h.response_time_ms, h.error_code, h.error_message,
           h.cutter_ok, h.temperature_ok, h.checked_at
    FROM public.kitchen_printerhealthcheck h
    WHERE h.printer_id = sp.id
    ORDER BY h.checked_at DESC
    LIMIT 1
) hc ON true;

COMMENT ON VIEW public.kitchen_printer_status IS
    'Every printer with its latest health check: state (maintenance while in a maintenance window, '
    'else kitchen_printer_state(): ok, paper_low, paper_out, cover_open, offline, error, no_status, '
    'or unknown when never checked), online, paper, '
    'response time, error and when it was checked; plus its last print, last print failure '
    '(last_error_at/last_error_message) and lifetime counters total_prints (printed) and failed_prints '
    '(attempts that failed on it, failover included). maintenance_until: the end of the maintenance '
    'window the printer is in now (NULL when none; it gets no tickets and no checks until then; the '
    'health columns are from before it). answers_status: false for a printer checked by connecting '
    'only (its state is then no_status or offline).';

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

-- Daemons ------------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_daemon_status AS
SELECT d.daemon_id, d.host, d.pid, d.version, d.store_id, d.brand_ids,
       CASE WHEN d.stopped_at IS NOT NULL THEN 'stopped'
            WHEN d.last_seen_at >= now() - make_interval(secs => greatest(3 * d.interval_s, 15))
                THEN 'alive'
            ELSE 'stale'
       END AS state,
       d.started_at, d.last_seen_at, now() - d.last_seen_at AS last_seen_ago, d.stopped_at,
       d.interval_s, d.tickets_printed,
       d.listening, d.not_listening_since,
       CASE WHEN d.listening IS FALSE AND d.stopped_at IS NULL
            THEN now() - d.not_listening_since END AS not_listening_for
FROM public.kitchen_daemon_heartbeat d;

COMMENT ON VIEW public.kitchen_daemon_status IS
    'Each daemon''s heartbeat with its state: ''alive'' (seen within 3 heartbeat intervals, at least '
    '15 s), ''stale'' (not seen since: it died, hangs, or cannot reach the database) or ''stopped'' '
    '(stopped cleanly); listening (its LISTEN connection is up and read: new tickets print at once; '
    'NULL = not said), not_listening_since and not_listening_for (while it is not listening and not '
    'stopped; as of its last beat, which comes within a second of a change).';
