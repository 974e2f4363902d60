-- 0012 Integrity the spec's own queries rely on.
--
-- The spec compares station codes with `=` (kt.printer_target = sp.station_code), filters with
-- `is_active = true` and `print_attempts < max_retries`, and orders by priority. A NULL in those
-- columns, or a printer saved as ' Kitchen', silently drops rows from those queries and from
-- routing. So: the columns get NOT NULL (after giving existing NULLs the spec's defaults), and
-- station codes are stored trimmed and lowercase, like ticket targets already are (0003).

UPDATE public.kitchen_stationprinter SET printer_port = 9100 WHERE printer_port IS NULL;
UPDATE public.kitchen_stationprinter SET priority = 1 WHERE priority IS NULL;
UPDATE public.kitchen_stationprinter SET is_active = true WHERE is_active IS NULL;
UPDATE public.kitchen_stationprinter SET paper_width_mm = 80 WHERE paper_width_mm IS NULL;
UPDATE public.kitchen_stationprinter SET chars_per_line = 32 WHERE chars_per_line IS NULL;
UPDATE public.kitchen_stationprinter SET total_prints = 0 WHERE total_prints IS NULL;
UPDATE public.kitchen_stationprinter SET failed_prints = 0 WHERE failed_prints IS NULL;
UPDATE public.kitchen_stationprinter SET station_code = lower(btrim(station_code))
 WHERE station_code <> lower(btrim(station_code));

ALTER TABLE public.kitchen_stationprinter
    ALTER COLUMN printer_port SET NOT NULL,
    ALTER COLUMN priority SET NOT NULL,
    ALTER COLUMN is_active SET NOT NULL,
    ALTER COLUMN paper_width_mm SET NOT NULL,
    ALTER COLUMN chars_per_line SET NOT NULL,
    ALTER COLUMN total_prints SET NOT NULL,
    ALTER COLUMN failed_prints SET NOT NULL;

CREATE FUNCTION kprintd.kitchen_stationprinter_normalize() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.station_code := COALESCE(kprintd.kitchen_normalize_station(NEW.station_code), NEW.station_code);
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_stationprinter_normalize() IS
    'BEFORE INSERT OR UPDATE on kitchen_stationprinter: stores station_code trimmed and lowercase, '
    'so it matches kitchen_kitchenticket.printer_target with a plain = (as the spec''s queries do).';

CREATE TRIGGER kitchen_stationprinter_normalize
    BEFORE INSERT OR UPDATE OF station_code ON public.kitchen_stationprinter
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_stationprinter_normalize();

UPDATE public.kitchen_kitchenticket SET print_attempts = 0 WHERE print_attempts IS NULL;
UPDATE public.kitchen_kitchenticket SET max_retries = 3 WHERE max_retries IS NULL;
ALTER TABLE public.kitchen_kitchenticket
    ALTER COLUMN print_attempts SET NOT NULL,
    ALTER COLUMN max_retries SET NOT NULL;

-- A ticket sent back to 'new' by hand (the spec's own troubleshooting UPDATE does not touch
-- print_attempts) must get another chance, or no daemon and no pending-tickets query would ever
-- see it again. The daemon itself only returns tickets to 'new' with attempts left.
CREATE FUNCTION kprintd.kitchen_ticket_fresh_attempts() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.print_attempts >= NEW.max_retries THEN
        NEW.print_attempts := 0;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_fresh_attempts() IS
    'BEFORE UPDATE on kitchen_kitchenticket, when status changes to new: a ticket with no print '
    'attempts left starts over at 0, so a hand-made reset is picked up by the daemon.';

CREATE TRIGGER kitchen_kitchenticket_fresh_attempts
    BEFORE UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (NEW.status = 'new' AND OLD.status IS DISTINCT FROM 'new')
    EXECUTE FUNCTION kprintd.kitchen_ticket_fresh_attempts();
