-- 0029 What reaches a terminal or a kitchen must be what it looks like, and what says "alive" must
-- be listening.
--
-- 1. Station codes are visible text. A station code is compared with `=` everywhere (printers,
--    tickets, templates), so 'bar' followed by a zero-width space is another station that looks
--    exactly like 'bar', and 'kitchen' followed by ESC [2J clears the screen of whoever reads a
--    report. kitchen_valid_station() says whether a code is visible text; a trigger refuses any
--    other (SQLSTATE 22023, naming the printer, template, ticket or bill items and the rule) where
--    a station code enters: kitchen_stationprinter.station_code, kitchen_printtemplate.station_code,
--    kitchen_kitchenticket.printer_target, and so kitchen_create_tickets() for an item whose own or
--    product's printer_target is not visible text (the whole send is refused, nothing is created).
--    Triggers rather than CHECK constraints: a row written before this file keeps working (the
--    daemon updates printers and tickets on every print, a POS's ORM saves every column); only a
--    new or changed code is judged. They fire ALWAYS, also with session_replication_role = replica.
--    Existing rows are left as they are; find them with the queries in docs/monitoring.md.
-- 2. The heartbeat says whether the daemon is listening for new tickets (its LISTEN connection is
--    up and read) and since when it is not: kitchen_daemon_heartbeat.listening and
--    not_listening_since, written by kitchen_daemon_beat() (new signature; the daemon beats as
--    soon as this changes), shown by kitchen_daemon_status. A live daemon that has not been
--    listening for more than 30 s needs attention in kitchen_status_report() (kind
--    daemon_not_listening): its tickets print only when its periodic sweep finds them.
-- 3. kitchen_alertlog's append-only triggers fire ALWAYS, like the ticket log's (sql/0004).
--
-- Owns: kitchen_valid_station(), kitchen_printable(), kitchen_refuse_invisible_station() and its
-- triggers; kitchen_daemon_beat() (both signatures), kitchen_daemon_status; and
-- kitchen_status_report(), the one-screen summary behind `kprintd status` (its only definition).
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. Station codes are visible text ----------------------------------------------------------------
-- Control characters (C0, DEL, C1), format characters (Unicode category Cf: zero-width spaces and
-- joiners, bidirectional overrides, the byte order mark, tags, ...), line and paragraph separators,
-- spaces other than the plain one (no-break, en, em, ideographic, ...), the combining grapheme
-- joiner and the Hangul fillers. The patterns are plain ASCII escapes, read by the regex engine:
-- in a database whose encoding is not UTF8 only what that encoding can tell apart is judged.
CREATE FUNCTION kprintd.kitchen_valid_station(p_code text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN p_code IS NULL OR p_code !~ CASE
        WHEN getdatabaseencoding() = 'UTF8' THEN
            '[\u0001-\u001f\u007f-\u00a0\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891'
            '\u08e2\u115f\u1160\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f'
            '\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f'
            '\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'
        -- ISO 8859: C1 controls, no-break space and soft hyphen are at the same places as in Unicode.
        WHEN getdatabaseencoding() ~ '^(LATIN|ISO_8859_)' THEN '[\u0001-\u001f\u007f-\u00a0\u00ad]'
        -- SQL_ASCII, Windows code pages, multi-byte encodings: only ASCII is known for sure.
        ELSE '[\u0001-\u001f\u007f]'
    END;

COMMENT ON FUNCTION kprintd.kitchen_valid_station(text) IS
    'True when p_code (a station code, or any text) is visible text: no control character (C0, DEL, '
    'C1, e.g. ESC), no format character (Unicode Cf: zero-width space and joiners, bidirectional '
    'overrides, byte order mark, ...), no line or paragraph separator, no space but the plain one '
    '(no-break, en, em, ideographic, ...), no combining grapheme joiner or Hangul filler. NULL is '
    'valid (nothing to judge). In a database not in UTF8, only the control characters the encoding '
    'can tell apart are judged. kprintd refuses station codes for which it is false.';

CREATE FUNCTION kprintd.kitchen_printable(p_text text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_out   text := '';
    v_char  text;
    v_code  integer;
BEGIN
    IF kprintd.kitchen_valid_station(p_text) THEN
        RETURN p_text;
    END IF;
    FOR v_char IN SELECT c FROM regexp_split_to_table(p_text, '') AS c LOOP
        IF kprintd.kitchen_valid_station(v_char) THEN
            v_out := v_out || v_char;
        ELSE
            v_code := ascii(v_char);
            v_out := v_out || CASE WHEN v_code < 256 THEN '\x' || lpad(to_hex(v_code), 2, '0')
                                   WHEN v_code < 65536 THEN '\u' || lpad(to_hex(v_code), 4, '0')
                                   ELSE '\U' || lpad(to_hex(v_code), 8, '0') END;
        END IF;
    END LOOP;
    RETURN v_out;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_printable(text) IS
    'p_text with every character kitchen_valid_station() refuses written as an escape (ESC as \x1b, '
    'a zero-width space as \u200b), as kprintd shows text on a terminal; other text unchanged. For '
    'error messages and reports: a station code with ESC [2J in it must not clear the screen of '
    'whoever reads about it.';

CREATE FUNCTION kprintd.kitchen_refuse_invisible_station() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_code   text;
    v_old    text;
    v_shown  text;
    v_items  text;
    v_count  integer;
    v_rule   constant text := 'a station code must be visible text: no control characters (such as '
                              'ESC), no zero-width or other invisible format characters, no line '
                              'separators and no spaces but the plain one';
BEGIN
    IF TG_TABLE_NAME = 'kitchen_kitchenticket' THEN
        v_code := NEW.printer_target;
        IF TG_OP = 'UPDATE' THEN
            v_old := OLD.printer_target;
        END IF;
    ELSE
        v_code := NEW.station_code;
        IF TG_OP = 'UPDATE' THEN
            v_old := OLD.station_code;
        END IF;
    END IF;
    -- A row written before 0029 keeps its code through updates that do not change it (an ORM
    -- saving every column, the daemon counting prints).
    IF kprintd.kitchen_valid_station(v_code) OR (TG_OP = 'UPDATE' AND v_code IS NOT DISTINCT FROM v_old) THEN
        RETURN NEW;
    END IF;
    v_shown := kprintd.kitchen_printable(left(v_code, 60));

    IF TG_TABLE_NAME = 'kitchen_stationprinter' THEN
        RAISE EXCEPTION 'printer ''%'': station code ''%'' refused: %',
                        kprintd.kitchen_printable(left(NEW.printer_name, 60)), v_shown, v_rule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Type the station code again (a copy from a document or chat may carry '
                         'invisible characters); it must equal the printer_target of the products '
                         'printed there.';
    ELSIF TG_TABLE_NAME = 'kitchen_printtemplate' THEN
        RAISE EXCEPTION 'print template %: station code ''%'' refused: %', NEW.id, v_shown, v_rule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Type the station code again, as the printers of that station have it.';
    END IF;

    -- A ticket. A void or a reprint repeats a station that is on paper already for this bill (a
    -- ticket written before 0029): the kitchen must get it, and it names no new station.
    IF (NEW.ticket_type = 'void' OR NEW.is_reprint)
       AND EXISTS (SELECT 1 FROM public.kitchen_kitchenticket o
                    WHERE o.bill_id = NEW.bill_id AND o.printer_target = NEW.printer_target) THEN
        RETURN NEW;
    END IF;
    -- The bill items that would go there: kitchen_create_tickets() names them, so the POS can say
    -- which item (or its product) to fix.
    SELECT count(*),
           string_agg(format('%s (%s, %s)', i.id,
                             coalesce('''' || kprintd.kitchen_printable(left(i.product_name, 40)) || '''',
                                      'no product'),
                             CASE WHEN kprintd.kitchen_normalize_station(i.printer_target) IS NOT NULL
                                  THEN 'its own printer_target'
                                  ELSE 'its product''s printer_target' END),
                      ', ' ORDER BY i.id) FILTER (WHERE i.n <= 10)
      INTO v_count, v_items
      FROM (SELECT bi.*, row_number() OVER (ORDER BY bi.id) AS n
              FROM public.kitchen_pos_billitem bi
             WHERE bi.bill_id = NEW.bill_id
               AND kprintd.kitchen_item_station(bi.printer_target, bi.product_printer_target)
                   = kprintd.kitchen_normalize_station(NEW.printer_target)) i;
    IF v_count > 0 THEN
        RAISE EXCEPTION 'bill %: nothing sent to the kitchen: % to station ''%'', which is refused: %',
                        NEW.bill_id,
                        CASE WHEN v_count = 1 THEN 'bill item ' ELSE 'bill items ' END || v_items
                            || CASE WHEN v_count > 10 THEN format(' and %s more', v_count - 10) ELSE '' END
                            || CASE WHEN v_count = 1 THEN ' goes' ELSE ' go' END,
                        v_shown, v_rule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Fix the printer_target of the item or of its product (core_product), then '
                         'send the bill again.';
    END IF;
    RAISE EXCEPTION 'ticket for bill %: station (printer_target) ''%'' refused: %',
                    NEW.bill_id, v_shown, v_rule
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Write the station code as the printers of that station have it.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_refuse_invisible_station() IS
    'BEFORE INSERT OR UPDATE of the station code on kitchen_stationprinter (station_code), '
    'kitchen_printtemplate (station_code) and kitchen_kitchenticket (printer_target): refuses a code '
    'that is not visible text (kitchen_valid_station()) with SQLSTATE 22023, naming the printer, the '
    'template, or the ticket''s bill and the bill items that go to that station (so '
    'kitchen_create_tickets() refuses the whole send). The code is shown escaped '
    '(kitchen_printable()). An UPDATE that leaves the code as it was passes, and so does a void or '
    'reprint ticket for a station the bill already has a ticket for: rows written before 0029 keep '
    'working.';

CREATE TRIGGER kitchen_stationprinter_station_visible
    BEFORE INSERT OR UPDATE OF station_code ON public.kitchen_stationprinter
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_refuse_invisible_station();
CREATE TRIGGER kitchen_printtemplate_station_visible
    BEFORE INSERT OR UPDATE OF station_code ON public.kitchen_printtemplate
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_refuse_invisible_station();
-- Named to fire after kitchen_kitchenticket_prepare_insert (triggers fire in name order), which
-- stores the code trimmed and lowercase and settles ticket_type.
CREATE TRIGGER kitchen_kitchenticket_station_visible
    BEFORE INSERT OR UPDATE OF printer_target ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_refuse_invisible_station();

-- ALWAYS: also with session_replication_role = replica, the usual way to skip triggers.
ALTER TABLE public.kitchen_stationprinter ENABLE ALWAYS TRIGGER kitchen_stationprinter_station_visible;
ALTER TABLE public.kitchen_printtemplate ENABLE ALWAYS TRIGGER kitchen_printtemplate_station_visible;
ALTER TABLE public.kitchen_kitchenticket ENABLE ALWAYS TRIGGER kitchen_kitchenticket_station_visible;

-- 2. Is the daemon listening? -------------------------------------------------------------------------
ALTER TABLE public.kitchen_daemon_heartbeat
    ADD COLUMN listening           BOOLEAN NULL,
    ADD COLUMN not_listening_since TIMESTAMP WITH TIME ZONE NULL;

COMMENT ON COLUMN public.kitchen_daemon_heartbeat.listening IS
    'True while the daemon''s LISTEN connection is up and read, so a new ticket prints at once; false '
    'while it is not (tickets then print only when the daemon''s periodic sweep finds them); NULL when '
    'the writer did not say (the 9-argument kitchen_daemon_beat()).';
COMMENT ON COLUMN public.kitchen_daemon_heartbeat.not_listening_since IS
    'While listening is false: since when the daemon has not been listening (its start, or the moment '
    'its listener stopped). NULL otherwise.';

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

CREATE OR REPLACE FUNCTION kprintd.kitchen_daemon_beat(
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
    'The heartbeat of a writer that does not say whether it listens (before 0029): as the 11-argument '
    'kitchen_daemon_beat() with listening NULL (unknown), so it is never said to be not listening.';

CREATE OR REPLACE VIEW public.kitchen_daemon_status AS
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

-- kprintd status: the one-screen summary ------------------------------------------------------------
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
    v_maintenance jsonb;
    v_alerts      jsonb;
    v_alerts_n    bigint;
    v_unserved    jsonb;
    v_unserved_n  bigint;
    v_deaf        jsonb;
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

    -- Not filtered by this report's scope: an unserved ticket is outside every running daemon's
    -- scope (or has no printer), so no scoped report would ever show it. One row per route, and
    -- routes are few: all of them are listed.
    SELECT coalesce(sum(u.waiting), 0),
           coalesce(jsonb_agg(jsonb_build_object(
               'brand', u.brand, 'brand_id', u.brand_id, 'store_id', u.store_id,
               'station', u.station, 'reason', u.reason, 'waiting', u.waiting,
               'oldest_created_at', u.oldest_created_at, 'oldest_ticket_id', u.oldest_ticket_id,
               'message', u.message)
               ORDER BY u.oldest_created_at, u.oldest_ticket_id), '[]')
      INTO v_unserved_n, v_unserved
      FROM kprintd.kitchen_unserved_routes() u;

    -- Daemons whose scope overlaps this one; a daemon seen in the last day is shown even if gone.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'daemon_id', d.daemon_id, 'host', d.host, 'version', d.version, 'state', d.state,
               'started_at', d.started_at, 'last_seen_at', d.last_seen_at,
               'stopped_at', d.stopped_at, 'tickets_printed', d.tickets_printed,
               'store_id', d.store_id, 'brand_ids', d.brand_ids, 'listening', d.listening,
               'not_listening_since', d.not_listening_since)
               ORDER BY d.state <> 'alive', d.last_seen_at DESC), '[]'),
           coalesce(bool_or(d.state = 'alive'), false)
      INTO v_daemons, v_live
      FROM public.kitchen_daemon_status d
     WHERE (d.state = 'alive' OR d.last_seen_at > now() - interval '1 day')
       AND (d.store_id IS NULL OR p_store_id IS NULL OR d.store_id = p_store_id)
       AND (cardinality(d.brand_ids) = 0 OR v_all_brands OR d.brand_ids && p_brand_ids);

    -- Live daemons of this scope that have not been listening for more than 30 s: they still print,
    -- but a new ticket waits for their periodic sweep. Shorter gaps are a reconnect in progress.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'kind', 'daemon_not_listening', 'daemon_id', d.daemon_id,
               'not_listening_since', d.not_listening_since,
               'message', format('kprintd daemon %s has not been listening for new tickets for %s s:'
                                 ' they print only when its periodic sweep finds them, not at once;'
                                 ' its log (journalctl -u kprintd) says why',
                                 d.daemon_id, floor(extract(epoch FROM d.not_listening_for))))
               ORDER BY d.not_listening_since, d.daemon_id), '[]')
      INTO v_deaf
      FROM public.kitchen_daemon_status d
     WHERE d.state = 'alive'
       AND d.listening IS FALSE
       AND d.not_listening_for > interval '30 seconds'
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

    SELECT coalesce(jsonb_agg(a.item ORDER BY a.ord, a.sub), '[]')
      INTO v_attention
      FROM (
        SELECT 1 AS ord, 0::bigint AS sub, jsonb_build_object('kind', 'daemon', 'message',
                   'no kprintd daemon is running for these printers: nothing prints') AS item
         WHERE NOT v_live
        UNION ALL
        SELECT 1, l.n, l.e FROM jsonb_array_elements(v_deaf) WITH ORDINALITY AS l(e, n)
        UNION ALL
        SELECT 2, u.n, jsonb_build_object('kind', 'unserved_tickets', 'brand_id', u.e -> 'brand_id',
                   'store_id', u.e -> 'store_id', 'station', u.e -> 'station',
                   'reason', u.e -> 'reason', 'message', u.e ->> 'message')
          FROM jsonb_array_elements(v_unserved) WITH ORDINALITY AS u(e, n)
        UNION ALL
        SELECT 3, p.n, jsonb_build_object('kind', 'printer', 'printer_id', p.e -> 'printer_id',
                   'message',
                   format('printer %s (%s, %s) %s%s', p.e ->> 'printer_name', p.e ->> 'station',
                          p.e ->> 'address',
                          CASE p.e ->> 'state' WHEN 'offline' THEN 'is offline'
                                               WHEN 'cover_open' THEN 'has its cover open'
                                               WHEN 'paper_out' THEN 'is out of paper'
                                               ELSE 'reports an error' END,
                          CASE WHEN p.e ->> 'state' IN ('offline', 'error')
                               THEN coalesce(': ' || (p.e ->> 'error_message'), '') ELSE '' END))
          FROM jsonb_array_elements(v_printers) WITH ORDINALITY AS p(e, n)
         WHERE p.e ->> 'state' IN ('offline', 'cover_open', 'paper_out', 'error')
        UNION ALL
        SELECT 4, 0, jsonb_build_object('kind', 'failed_tickets', 'message',
                   format('%s ticket(s) failed in the last 24 h: SELECT * FROM kitchen_failed_tickets',
                          v_failed_n))
         WHERE v_failed_n > 0
        UNION ALL
        SELECT 5, 0, jsonb_build_object('kind', 'stuck_tickets', 'message',
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
        'unserved_count', v_unserved_n,
        'unserved', v_unserved,
        'maintenance', v_maintenance,
        'alerts_1h', v_alerts_n,
        'recent_alerts', v_alerts,
        'attention', v_attention);
END;
$$;


COMMENT ON FUNCTION kprintd.kitchen_status_report(uuid[], uuid) IS
    'Summary for kprintd status, as JSON: {generated_at, scope, daemons (heartbeats of daemons whose '
    'scope overlaps, alive first, with listening and not_listening_since), printers (active printers '
    'in scope with their latest check, kitchen_printer_status), queues (kitchen_station_queue), '
    'failed_24h and failed_tickets (the 10 latest of kitchen_failed_tickets in 24 h), stuck_count and '
    'stuck_tickets (10 oldest of kitchen_stuck_tickets), unserved_count and unserved (tickets nothing '
    'will print, per route, from kitchen_unserved_routes(), whatever the scope), maintenance (active '
    'and upcoming windows of active printers in scope, kitchen_printer_maintenance), alerts_1h and '
    'recent_alerts (alerts sent in the last hour, the 10 latest, from kitchen_alertlog), attention: '
    '[{kind, message}] = what needs a person: no live daemon (kind daemon), a live daemon not listening '
    'for new tickets for more than 30 s (kind daemon_not_listening, with daemon_id and '
    'not_listening_since), an unserved route (kind unserved_tickets, with brand_id, store_id, station, '
    'reason), a printer offline / cover open / out of paper / in error, failed or stuck tickets}. '
    'Empty attention means all is well. Scope as for the daemon: p_brand_ids NULL/empty = every '
    'brand, p_store_id NULL = every store.';

-- 3. The alert log stays append-only, whatever the session's replication role -----------------------
-- ALWAYS: also with session_replication_role = replica, the usual way to skip triggers.
ALTER TABLE public.kitchen_alertlog ENABLE ALWAYS TRIGGER kitchen_alertlog_no_update_delete;
ALTER TABLE public.kitchen_alertlog ENABLE ALWAYS TRIGGER kitchen_alertlog_no_truncate;
