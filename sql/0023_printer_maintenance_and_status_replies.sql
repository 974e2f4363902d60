-- 0023 When and how kprintd may use a printer: planned maintenance windows (the spec's Phase 2
-- "StationPrinterSchedule"), and printers that never answer a status request.
--
-- 1. Maintenance windows.
-- A manager or IT person books a window in which a printer must not be used: a technician swaps
-- the cutter, the bar is rebuilt, the printer moves. During the window:
--   * the daemon does not send it tickets: they go to the station's other printers, in priority
--     order, with no failure counted and no printer_down alert;
--   * when every printer of a station is in maintenance, the station's tickets wait, still 'new'
--     and unclaimed, and print when the first window ends (the daemon raises one
--     station_in_maintenance alert so the kitchen knows);
--   * the health monitor leaves the printer alone, so an unplugged printer raises no alert.
-- Cancel or shorten a window by deleting or updating its row; the daemon notices within seconds.
--
--   INSERT INTO kitchen_stationprinterschedule (printer_id, starts_at, ends_at, reason, created_by)
--   VALUES (3, '2026-11-26 15:00+07', '2026-11-26 15:45+07', 'cutter replaced', 'it:andi');
--
-- 2. Printers without status replies. kprintd asks a printer for its real-time status (DLE EOT)
-- before a ticket and after it, which proves the printer read every byte and can print. Some
-- printers and network print servers never answer; until now kprintd treated them as down.
-- kitchen_stationprinter.answers_status = false sends their tickets without asking: a ticket
-- counts as printed once the printer's connection took every byte, one connection per batch,
-- closed after it. Such a printer's paper out or open cover cannot be seen, so give it a backup
-- that answers if the station matters; its health check only connects.
--
-- 3. Changes to printers, templates and windows are announced on NOTIFY kitchen_printers_changed,
-- so the daemon applies them to the next ticket instead of re-reading them on a timer.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

ALTER TABLE public.kitchen_stationprinter ADD COLUMN answers_status BOOLEAN NOT NULL DEFAULT TRUE;

COMMENT ON COLUMN public.kitchen_stationprinter.answers_status IS
    'kprintd: false for a printer (or print server) that never answers DLE EOT status requests. Its '
    'tickets are then sent without asking and count as printed once its connection took every byte; '
    'paper out, an open cover or a jam cannot be detected on it, and its health check only connects. '
    'Default true: status is asked before and after every ticket.';

CREATE TABLE public.kitchen_stationprinterschedule (
    id          BIGSERIAL PRIMARY KEY,
    printer_id  BIGINT NOT NULL REFERENCES public.kitchen_stationprinter(id) ON DELETE CASCADE,
    starts_at   TIMESTAMP WITH TIME ZONE NOT NULL,
    ends_at     TIMESTAMP WITH TIME ZONE NOT NULL,
    reason      TEXT NULL,
    created_by  VARCHAR(100) NULL,
    created_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),

    CONSTRAINT kitchen_stationprinterschedule_ends_after_start CHECK (ends_at > starts_at)
);

-- The daemon asks "which window of this printer has not ended yet?" on every route refresh.
CREATE INDEX idx_stationprinterschedule_printer_ends
    ON public.kitchen_stationprinterschedule (printer_id, ends_at);

COMMENT ON TABLE public.kitchen_stationprinterschedule IS
    'Planned maintenance windows (the spec''s StationPrinterSchedule): from starts_at until ends_at '
    'the printer gets no tickets and no health checks. Its station''s tickets go to its other '
    'printers, or wait for the window to end when all are in maintenance. Windows may overlap; '
    'delete or update a row to cancel or move a window.';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.printer_id IS
    'The printer (kitchen_stationprinter.id); its windows are deleted with it.';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.starts_at IS
    'Start of the window (inclusive).';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.ends_at IS
    'End of the window (exclusive); must be after starts_at.';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.reason IS
    'Why, in words for the kitchen and the audit (e.g. ''cutter replaced'').';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.created_by IS
    'Who booked it, e.g. ''it:andi'' or ''manager:siti''.';

-- One printer's current or next window --------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_printer_maintenance(p_printer_id bigint, p_at timestamptz DEFAULT now())
RETURNS TABLE (starts_at timestamptz, ends_at timestamptz, reason text)
LANGUAGE sql STABLE AS $$
    SELECT m.starts_at, m.ends_at, m.reason
    FROM public.kitchen_stationprinterschedule m
    WHERE m.printer_id = p_printer_id
      AND m.ends_at > p_at
    -- The window in force (the one ending last, if several overlap), else the next to start.
    ORDER BY m.starts_at > p_at,
             CASE WHEN m.starts_at <= p_at THEN m.ends_at END DESC,
             m.starts_at, m.ends_at DESC
    LIMIT 1
$$;

COMMENT ON FUNCTION kprintd.kitchen_printer_maintenance(bigint, timestamptz) IS
    'The printer''s maintenance window in force at p_at (default now; of overlapping ones, the one '
    'ending last), else its next one; no row when none is planned. starts_at <= p_at means the '
    'printer is in maintenance until ends_at.';

-- Routing: the printers of a route, with their windows (a new result column: drop, create) ----------
DROP FUNCTION kprintd.kitchen_route_printers(uuid, uuid, text);

CREATE FUNCTION kprintd.kitchen_route_printers(p_brand_id uuid, p_store_id uuid, p_station text)
RETURNS TABLE (
    printer_id        bigint,
    printer_name      text,
    printer_ip        text,
    printer_port      integer,
    priority          integer,
    paper_width_mm    integer,
    chars_per_line    integer,
    header_line       text,
    buzzer            boolean,
    copies            integer,
    large_item_font   boolean,
    codepage          text,
    cut_mode          text,
    time_zone         text,
    maintenance_from  timestamptz,
    maintenance_until timestamptz,
    answers_status    boolean
)
LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.printer_name, kprintd.kitchen_printer_host(sp.printer_ip::text), coalesce(sp.printer_port, 9100),
           coalesce(sp.priority, 1), coalesce(sp.paper_width_mm, 80),
           coalesce(sp.chars_per_line, 32),
           tpl.header_line, coalesce(tpl.buzzer, false), coalesce(tpl.copies, 1),
           coalesce(tpl.large_item_font, true), coalesce(tpl.codepage, 'CP437'),
           coalesce(tpl.cut_mode, 'partial'), tpl.time_zone,
           mw.starts_at, mw.ends_at, sp.answers_status
    FROM public.kitchen_stationprinter sp
    LEFT JOIN LATERAL (
        SELECT t.*
        FROM public.kitchen_printtemplate t
        WHERE (t.brand_id = sp.brand_id OR t.brand_id IS NULL)
          AND (kprintd.kitchen_normalize_station(t.station_code) = p_station OR t.station_code IS NULL)
        ORDER BY t.brand_id IS NULL, t.station_code IS NULL
        LIMIT 1
    ) tpl ON true
    LEFT JOIN LATERAL kprintd.kitchen_printer_maintenance(sp.id) mw ON true
    WHERE sp.brand_id = p_brand_id
      AND kprintd.kitchen_normalize_station(sp.station_code) = p_station
      AND coalesce(sp.is_active, true)
      AND (sp.store_id IS NULL OR sp.store_id = p_store_id)
    ORDER BY coalesce(sp.priority, 1), sp.store_id IS NULL, sp.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_route_printers(uuid, uuid, text) IS
    'The active printers that may print a ticket of this brand, store and station, in the order '
    'to try them (priority, store-specific before brand-wide), with their ticket layout (from the '
    'most specific kitchen_printtemplate row, time_zone NULL = the daemon machine''s zone) and '
    'their current or next maintenance window (maintenance_from/maintenance_until, NULL when none '
    'is planned; from kitchen_printer_maintenance()). The daemon skips a printer inside its window. '
    'answers_status false: send without asking the printer''s status.';

-- Health checks leave a printer in maintenance alone, and only connect to one that never answers
-- its status (a new result column: drop, create) ---------------------------------------------------
DROP FUNCTION kprintd.kitchen_health_printers(uuid[], uuid);

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

-- Views ------------------------------------------------------------------------------------------------
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

-- kitchen_printer_status gains the window in force (a column added at the end: replace) ----------
CREATE OR REPLACE VIEW public.kitchen_printer_status AS
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

-- Telling the daemon at once -----------------------------------------------------------------------
-- kprintd keeps each route's printers (kitchen_route_printers) in memory so that no ticket waits
-- for that query. These triggers tell it, on commit, when something that routing reads changed,
-- so a printer switched off, a new template or a maintenance window applies to the very next
-- ticket. The counters and last-print columns the daemon itself updates after every print are not
-- watched: they change nothing in routing.
CREATE FUNCTION kprintd.kitchen_notify_printers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kitchen_printers_changed', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_notify_printers_changed() IS
    'Statement trigger: NOTIFY kitchen_printers_changed (payload: the table) when printers, print '
    'templates or maintenance windows change; kprintd then reads its routes'' printers again.';

CREATE TRIGGER kitchen_stationprinter_changed
    AFTER INSERT OR DELETE OR TRUNCATE ON public.kitchen_stationprinter
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();
CREATE TRIGGER kitchen_stationprinter_config_changed
    AFTER UPDATE OF brand_id, store_id, station_code, printer_name, printer_ip, printer_port,
                    priority, is_active, paper_width_mm, chars_per_line, answers_status
    ON public.kitchen_stationprinter
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();
CREATE TRIGGER kitchen_printtemplate_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.kitchen_printtemplate
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();
CREATE TRIGGER kitchen_stationprinterschedule_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.kitchen_stationprinterschedule
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();
