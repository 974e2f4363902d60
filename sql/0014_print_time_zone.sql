-- 0014 The time printed on a ticket, in the restaurant's own time zone.
--
-- A ticket shows "Sent HH:MM". Until now that was the time zone of the machine running kprintd.
-- One daemon may serve stores in several zones (Indonesia alone has WIB, WITA and WIT), and a
-- store server's clock is often left on UTC. A print template can now name the zone (an IANA
-- name such as 'Asia/Makassar'); without one, the daemon machine's zone applies as before.

CREATE FUNCTION kprintd.kitchen_is_time_zone(p_name text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_name);

COMMENT ON FUNCTION kprintd.kitchen_is_time_zone(text) IS
    'True when p_name is a time zone name PostgreSQL knows (pg_timezone_names, e.g. ''Asia/Jakarta''); '
    'abbreviations such as ''WIB'' and POSIX offsets are not accepted.';

ALTER TABLE public.kitchen_printtemplate ADD COLUMN time_zone VARCHAR(64) NULL;

COMMENT ON COLUMN public.kitchen_printtemplate.time_zone IS
    'IANA time zone of the "Sent HH:MM" printed on tickets (e.g. ''Asia/Makassar''); NULL = the zone '
    'of the machine running kprintd.';

-- A CHECK may not look into a catalog view, so a trigger refuses an unknown zone, with its name.
CREATE FUNCTION kprintd.kitchen_printtemplate_check_time_zone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.time_zone IS NOT NULL AND NOT kprintd.kitchen_is_time_zone(NEW.time_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(NEW.time_zone)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an IANA name from pg_timezone_names, such as ''Asia/Jakarta'', or NULL for the server''s zone.';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_printtemplate_check_time_zone() IS
    'BEFORE INSERT OR UPDATE OF time_zone on kitchen_printtemplate: refuses a zone PostgreSQL does not know '
    '(22023 invalid_parameter_value).';

CREATE TRIGGER kitchen_printtemplate_time_zone
    BEFORE INSERT OR UPDATE OF time_zone ON public.kitchen_printtemplate
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_printtemplate_check_time_zone();

-- The route's printers now carry the template's zone too (a new result column: drop, create).
DROP FUNCTION kprintd.kitchen_route_printers(uuid, uuid, text);

CREATE FUNCTION kprintd.kitchen_route_printers(p_brand_id uuid, p_store_id uuid, p_station text)
RETURNS TABLE (
    printer_id      bigint,
    printer_name    text,
    printer_ip      text,
    printer_port    integer,
    priority        integer,
    paper_width_mm  integer,
    chars_per_line  integer,
    header_line     text,
    buzzer          boolean,
    copies          integer,
    large_item_font boolean,
    codepage        text,
    cut_mode        text,
    time_zone       text
)
LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.printer_name, kprintd.kitchen_printer_host(sp.printer_ip::text), coalesce(sp.printer_port, 9100),
           coalesce(sp.priority, 1), coalesce(sp.paper_width_mm, 80),
           coalesce(sp.chars_per_line, 32),
           tpl.header_line, coalesce(tpl.buzzer, false), coalesce(tpl.copies, 1),
           coalesce(tpl.large_item_font, true), coalesce(tpl.codepage, 'CP437'),
           coalesce(tpl.cut_mode, 'partial'), tpl.time_zone
    FROM public.kitchen_stationprinter sp
    LEFT JOIN LATERAL (
        SELECT t.*
        FROM public.kitchen_printtemplate t
        WHERE (t.brand_id = sp.brand_id OR t.brand_id IS NULL)
          AND (kprintd.kitchen_normalize_station(t.station_code) = p_station OR t.station_code IS NULL)
        ORDER BY t.brand_id IS NULL, t.station_code IS NULL
        LIMIT 1
    ) tpl ON true
    WHERE sp.brand_id = p_brand_id
      AND kprintd.kitchen_normalize_station(sp.station_code) = p_station
      AND coalesce(sp.is_active, true)
      AND (sp.store_id IS NULL OR sp.store_id = p_store_id)
    ORDER BY coalesce(sp.priority, 1), sp.store_id IS NULL, sp.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_route_printers(uuid, uuid, text) IS
    'The active printers that may print a ticket of this brand, store and station, in the order '
    'to try them (priority, store-specific before brand-wide), with their ticket layout (from the '
    'most specific kitchen_printtemplate row, time_zone NULL = the daemon machine''s zone).';
