-- Tickets: station codes and printable text, describing a change for the audit trail, and send to
-- kitchen (kitchen_create_tickets), the call a POS makes to turn a bill's unsent items into tickets.
--
-- Station codes are stored lowercase and trimmed. A bill item's station is its own printer_target,
-- else its product's printer_target, else 'kitchen'; 'none' means "never printed".
--
-- One kitchen_create_tickets() call is one "send": for every station with unsent items one ticket
-- ('order' the first time the station gets items of this bill, 'addition' afterwards); for every
-- station with items that were sent and are now void one 'void' ticket; and, when the brand has an
-- active 'checker' printer for the bill's store, one 'checker' ticket listing every line of this
-- send (voids as void lines). Calling it again creates nothing new: a bill item goes on one
-- original order/addition ticket and one void ticket at most, which unique indexes on
-- kitchen_kitchenticketitem enforce (20_tables.sql).

-- Station codes and printable text --------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_normalize_station(p_code text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(lower(btrim(p_code)), '');

COMMENT ON FUNCTION kprintd.kitchen_normalize_station(text) IS
    'A station code as kprintd stores it: trimmed and lowercase; NULL for NULL or blank input. '
    'Compare kitchen_stationprinter.station_code through it: kitchen_normalize_station(station_code) = ticket.printer_target.';

CREATE FUNCTION kprintd.kitchen_item_station(p_item_target text, p_product_target text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(
        COALESCE(kprintd.kitchen_normalize_station(p_item_target),
                 kprintd.kitchen_normalize_station(p_product_target),
                 'kitchen'),
        'none');

COMMENT ON FUNCTION kprintd.kitchen_item_station(text, text) IS
    'The station a bill item is printed at: the item''s printer_target, else the product''s, else ''kitchen'' '
    '(blank counts as unset; codes are trimmed and lowercased). NULL means ''none'': the item is never printed.';

-- Station codes are visible text.
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

-- The printer address kprintd connects to, as text: an inet's host part, or a POS's varchar as
-- written (an address or a host name).
CREATE FUNCTION kprintd.kitchen_printer_host(p_address text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(btrim(regexp_replace(p_address, '/(32|128)$', '')), '');

COMMENT ON FUNCTION kprintd.kitchen_printer_host(text) IS
    'The host kprintd connects to for a printer_ip value of any type (call it with printer_ip::text): '
    'an inet''s address without its /32 or /128 mask, or a varchar''s address or host name, trimmed.';

CREATE FUNCTION kprintd.kitchen_is_time_zone(p_name text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_name);

COMMENT ON FUNCTION kprintd.kitchen_is_time_zone(text) IS
    'True when p_name is a time zone name PostgreSQL knows (pg_timezone_names, e.g. ''Asia/Jakarta''); '
    'abbreviations such as ''WIB'' and POSIX offsets are not accepted.';

-- Describing a change for the audit trail -------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_describe_change(
    p_action      text,
    p_actor       text,
    p_duration_ms integer DEFAULT NULL,
    p_error_code  text DEFAULT NULL,
    p_metadata    jsonb DEFAULT '{}'
) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF p_action IS NOT NULL AND (btrim(p_action) = '' OR length(btrim(p_action)) > 50) THEN
        RAISE EXCEPTION 'kitchen_describe_change: action must be 1 to 50 characters, got %', quote_literal(p_action)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use the spec''s names: print_start, print_success, print_failed, retry, manual_reset, marked_printed, marked_failed; NULL clears it.';
    END IF;
    IF p_actor IS NOT NULL AND (btrim(p_actor) = '' OR length(btrim(p_actor)) > 100) THEN
        RAISE EXCEPTION 'kitchen_describe_change: actor must be 1 to 100 characters, got %', quote_literal(p_actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''printer_service'' or ''admin:alice''; NULL means session_user.';
    END IF;
    IF p_duration_ms < 0 THEN
        RAISE EXCEPTION 'kitchen_describe_change: duration_ms must not be negative, got %', p_duration_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_error_code IS NOT NULL AND (btrim(p_error_code) = '' OR length(btrim(p_error_code)) > 50) THEN
        RAISE EXCEPTION 'kitchen_describe_change: error_code must be 1 to 50 characters, got %', quote_literal(p_error_code)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_metadata IS NOT NULL AND jsonb_typeof(p_metadata) <> 'object' THEN
        RAISE EXCEPTION 'kitchen_describe_change: metadata must be a JSON object, got %', p_metadata
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('kprintd.action', COALESCE(btrim(p_action), ''), true),
            set_config('kprintd.actor', COALESCE(btrim(p_actor), ''), true),
            set_config('kprintd.duration_ms', COALESCE(p_duration_ms::text, ''), true),
            set_config('kprintd.error_code', COALESCE(btrim(p_error_code), ''), true),
            set_config('kprintd.metadata',
                       CASE WHEN p_metadata IS NULL OR p_metadata = '{}'::jsonb THEN '' ELSE p_metadata::text END,
                       true);
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_describe_change(text, text, integer, text, jsonb) IS
    'Describes the ticket status changes that follow IN THE SAME TRANSACTION (until described again or cleared) for the '
    'audit trail: sets kprintd.action, kprintd.actor, kprintd.duration_ms, kprintd.error_code and kprintd.metadata as '
    'transaction-local settings. NULL clears a setting (kitchen_describe_change(NULL, NULL) clears all). Example: '
    'SELECT kitchen_describe_change(''print_success'', ''printer_service'', 1234, NULL, ''{"attempt":1}''); UPDATE ... SET status = ''printed'' ...; '
    'Errors: 22023 invalid_parameter_value (blank or too long action/actor/error_code, negative duration, metadata not an object).';

CREATE FUNCTION kprintd.kitchen_change_description() RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_build_object(
        'action',      NULLIF(current_setting('kprintd.action', true), ''),
        'actor',       NULLIF(current_setting('kprintd.actor', true), ''),
        'duration_ms', NULLIF(current_setting('kprintd.duration_ms', true), ''),
        'error_code',  NULLIF(current_setting('kprintd.error_code', true), ''),
        'metadata',    NULLIF(current_setting('kprintd.metadata', true), ''));

COMMENT ON FUNCTION kprintd.kitchen_change_description() IS
    'The description in force for the next ticket status change of this transaction, as the raw setting texts '
    '{"action", "actor", "duration_ms", "error_code", "metadata"} (JSON null = unset). Pass it to '
    'kitchen_restore_change_description() to put it back after describing changes of your own.';

CREATE FUNCTION kprintd.kitchen_restore_change_description(p_saved jsonb) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT set_config('kprintd.action',      COALESCE(p_saved ->> 'action', ''), true),
               set_config('kprintd.actor',       COALESCE(p_saved ->> 'actor', ''), true),
               set_config('kprintd.duration_ms', COALESCE(p_saved ->> 'duration_ms', ''), true),
               set_config('kprintd.error_code',  COALESCE(p_saved ->> 'error_code', ''), true),
               set_config('kprintd.metadata',    COALESCE(p_saved ->> 'metadata', ''), true);
    END;

COMMENT ON FUNCTION kprintd.kitchen_restore_change_description(jsonb) IS
    'Puts back a description saved with kitchen_change_description() (NULL or missing keys clear that setting). '
    'kprintd''s own SQL functions use it so their descriptions do not leak into the caller''s later statements.';

-- Send to kitchen -------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_create_tickets(
    p_bill_id  bigint,
    p_item_ids bigint[] DEFAULT NULL,
    p_actor    text DEFAULT 'pos'
) RETURNS SETOF public.kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_brand_id   uuid;
    v_store_id   uuid;
    v_missing    bigint[];
    v_checker    boolean;
    v_saved      jsonb;
    v_group      record;
    v_type       text;
    v_ticket     public.kitchen_kitchenticket;
    v_all_ids    bigint[] := '{}';
    v_all_qtys   integer[] := '{}';
    v_all_lines  text[] := '{}';
BEGIN
    IF p_bill_id IS NULL THEN
        RAISE EXCEPTION 'kitchen_create_tickets: bill id is NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' OR length(btrim(p_actor)) > 100 THEN
        RAISE EXCEPTION 'kitchen_create_tickets: actor must be 1 to 100 characters, got %', quote_nullable(p_actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the terminal or user, e.g. ''pos:terminal-2''; the default is ''pos''.';
    END IF;
    IF array_position(p_item_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'kitchen_create_tickets: item ids contain NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- One send per bill at a time: a second terminal sending the same bill waits here, then sees
    -- what the first one sent. The lock is kprintd's own, not a lock on the POS's bill row, so the
    -- POS's writes to its bill never wait for a send.
    PERFORM pg_advisory_xact_lock(1801611628, hashint8(p_bill_id));
    SELECT b.brand_id, b.store_id INTO v_brand_id, v_store_id
      FROM public.kitchen_pos_bill b WHERE b.id = p_bill_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'kitchen_create_tickets: bill % does not exist', p_bill_id
            USING ERRCODE = 'no_data_found';
    END IF;

    IF p_item_ids IS NOT NULL THEN
        SELECT array_agg(DISTINCT x ORDER BY x) INTO v_missing
          FROM unnest(p_item_ids) AS x
         WHERE NOT EXISTS (SELECT 1 FROM public.kitchen_pos_billitem bi WHERE bi.id = x AND bi.bill_id = p_bill_id);
        IF v_missing IS NOT NULL THEN
            RAISE EXCEPTION 'kitchen_create_tickets: items % are not on bill %', v_missing, p_bill_id
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('missing_item_ids=%s', v_missing),
                      HINT = 'Pass ids of pos_billitem rows of this bill, or NULL for all of its items.';
        END IF;
    END IF;

    v_checker := EXISTS (
        SELECT 1 FROM public.kitchen_stationprinter sp
         WHERE sp.brand_id = v_brand_id
           AND kprintd.kitchen_normalize_station(sp.station_code) = 'checker'
           AND sp.is_active IS TRUE
           AND (sp.store_id IS NULL OR sp.store_id = v_store_id));

    v_saved := kprintd.kitchen_change_description();
    PERFORM kprintd.kitchen_describe_change(NULL, p_actor);

    BEGIN
        FOR v_group IN
            SELECT g.station, g.line_type,
                   array_agg(g.bill_item_id ORDER BY g.bill_item_id) AS ids,
                   array_agg(g.quantity ORDER BY g.bill_item_id) AS qtys
              FROM (SELECT s.station, 'item' AS line_type, s.bill_item_id, s.quantity
                      FROM public.kitchen_billitem_status s
                     WHERE s.bill_id = p_bill_id AND s.kitchen_state = 'pending'
                       AND (p_item_ids IS NULL OR s.bill_item_id = ANY (p_item_ids))
                    UNION ALL
                    SELECT s.sent_station, 'void', s.bill_item_id, s.sent_quantity
                      FROM public.kitchen_billitem_status s
                     WHERE s.bill_id = p_bill_id AND s.kitchen_state = 'void_pending'
                       AND (p_item_ids IS NULL OR s.bill_item_id = ANY (p_item_ids))) g
             GROUP BY g.station, g.line_type
             ORDER BY g.line_type, g.station
        LOOP
            IF v_group.line_type = 'void' THEN
                v_type := 'void';
            ELSIF EXISTS (SELECT 1 FROM public.kitchen_kitchenticket kt
                           WHERE kt.bill_id = p_bill_id AND kt.printer_target = v_group.station
                             AND kt.ticket_type IN ('order', 'addition') AND NOT kt.is_reprint) THEN
                v_type := 'addition';
            ELSE
                v_type := 'order';
            END IF;

            -- Ticket and lines in one statement: the 'created' log row (an AFTER trigger, fired at
            -- the end of the statement) counts the lines.
            WITH t AS (
                INSERT INTO public.kitchen_kitchenticket (bill_id, printer_target, status, ticket_type, is_reprint)
                VALUES (p_bill_id, v_group.station, 'new', v_type, false)
                RETURNING *
            ), lines AS (
                INSERT INTO public.kitchen_kitchenticketitem
                    (kitchen_ticket_id, bill_item_id, quantity, ticket_type, is_reprint, line_type, written_by_kprintd)
                SELECT t.id, u.bill_item_id, u.quantity, v_type, false, v_group.line_type, true
                  FROM t, unnest(v_group.ids, v_group.qtys) WITH ORDINALITY AS u(bill_item_id, quantity, n)
                 ORDER BY u.n
            )
            SELECT * INTO v_ticket FROM t;

            v_all_ids := v_all_ids || v_group.ids;
            v_all_qtys := v_all_qtys || v_group.qtys;
            v_all_lines := v_all_lines || array_fill(v_group.line_type::text, ARRAY[cardinality(v_group.ids)]);
            RETURN NEXT v_ticket;
        END LOOP;

        IF v_checker AND cardinality(v_all_ids) > 0 THEN
            WITH t AS (
                INSERT INTO public.kitchen_kitchenticket (bill_id, printer_target, status, ticket_type, is_reprint)
                VALUES (p_bill_id, 'checker', 'new', 'checker', false)
                RETURNING *
            ), lines AS (
                INSERT INTO public.kitchen_kitchenticketitem
                    (kitchen_ticket_id, bill_item_id, quantity, ticket_type, is_reprint, line_type, written_by_kprintd)
                SELECT t.id, u.bill_item_id, u.quantity, 'checker', false, u.line_type, true
                  FROM t, unnest(v_all_ids, v_all_qtys, v_all_lines)
                          WITH ORDINALITY AS u(bill_item_id, quantity, line_type, n)
                 ORDER BY u.n
            )
            SELECT * INTO v_ticket FROM t;
            RETURN NEXT v_ticket;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- Only reachable when the caller's isolation level hides a concurrent send's tickets
        -- (REPEATABLE READ / SERIALIZABLE): report it as the retryable error it is.
        RAISE EXCEPTION 'kitchen_create_tickets: bill % was sent to the kitchen by a concurrent transaction', p_bill_id
            USING ERRCODE = 'serialization_failure',
                  DETAIL = SQLERRM,
                  HINT = 'Retry the transaction; the retry creates only what is still unsent.';
    END;

    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_create_tickets(bigint, bigint[], text) IS
    'Send to kitchen. Creates, in the caller''s transaction, one ticket per station for the bill''s unsent items '
    '(''order'' the first time a station gets items of the bill, ''addition'' after that), one ''void'' ticket per station '
    'for items sent earlier and now is_void, and one ''checker'' ticket with every line of this send when the brand has an '
    'active ''checker'' printer for the bill''s store (store_id NULL or equal). p_item_ids limits the send to those items '
    '(NULL = all). Idempotent: an item goes on one original order/addition ticket and one void ticket at most, so a repeated '
    'call returns no rows ("nothing to send" is an empty result, not an error). Items voided before they were sent, station '
    '''none'' and quantity < 1 are skipped. Returns the created tickets (status ''new''; each is logged ''created'' with actor '
    'p_actor and NOTIFYs kitchen_ticket_new at commit). Takes a transaction advisory lock on the bill id: concurrent sends of one bill '
    'run one after the other. Errors: 22004 null bill id; P0002 (no_data_found) unknown bill; 22023 (invalid_parameter_value) '
    'blank actor, NULL in p_item_ids, items not on the bill; 40001 (serialization_failure) a concurrent send under '
    'REPEATABLE READ/SERIALIZABLE: retry. On any error nothing is created.';
