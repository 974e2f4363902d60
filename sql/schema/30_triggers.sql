-- The triggers on kprintd's tables and their trigger functions: what the database itself does when
-- anyone (kprintd, a POS, a DBA with psql) writes a ticket, its lines, a printer or a template.
--
-- * Tickets: a writer that leaves columns out gets the ticket's scope from its bill, its station
--   code trimmed and lowercase, its type from its station and bill; status changes keep the claim,
--   retry and banner columns consistent; a line lists an item of the ticket's own bill only.
-- * Station codes must be visible text.
-- * The audit trail: every ticket insert and status change writes one kitchen_kitchenticketlog row
--   (AFTER triggers, so a DBA's hand-typed UPDATE is audited too). Writers describe their change
--   with kitchen_describe_change() (41_tickets.sql) in the same transaction, before the UPDATE:
--   kprintd.action, kprintd.actor, kprintd.duration_ms, kprintd.error_code, kprintd.metadata
--   (transaction-local settings; an empty string counts as unset). The ticket log, the alert log
--   and the purge log are append-only for every role, the owner and superusers included, and with
--   session_replication_role = replica too (ENABLE ALWAYS); the ticket log accepts a DELETE only
--   from kitchen_purge.
-- * Waking the daemon: NOTIFY kitchen_ticket_new when a ticket is committed and whenever it goes
--   back to 'new' (delivered at COMMIT, in commit order; a listener that was not connected misses
--   them, so the daemon also looks for due tickets when it connects); NOTIFY kitchen_printers_changed
--   when printers, templates or maintenance windows change.
-- * Tickets a POS writes itself (the spec's Example 1: ticket row, then its items one by one, then
--   its own 'created' log row): a ticket is announced when its transaction commits; one committed
--   without items waits until the writer has been quiet for kitchen_writer_quiet_interval(); an
--   item written onto a ticket that is printing or printed goes out on an addition ticket; the log
--   has one 'created' row per ticket; NOT NULL columns a POS's ORM always fills get the column
--   type's empty value when kprintd writes.

-- Tickets: what a writer leaves out, the database fills in --------------------------------------
CREATE FUNCTION kprintd.kitchen_ticket_before_insert() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.printer_target := COALESCE(kprintd.kitchen_normalize_station(NEW.printer_target), NEW.printer_target);
    NEW.status := COALESCE(NEW.status, 'new');
    NEW.is_reprint := COALESCE(NEW.is_reprint, false);
    IF NEW.ticket_type IS NULL OR (NEW.ticket_type = 'order' AND NOT NEW.is_reprint) THEN
        -- A writer that does not know the column (a POS writing the spec's tables itself) gets the
        -- default, 'order': the ticket is what its station and bill make it.
        NEW.ticket_type := CASE
            WHEN NEW.printer_target = 'checker' THEN 'checker'
            WHEN NEW.is_reprint THEN (SELECT o.ticket_type FROM public.kitchen_kitchenticket o
                                       WHERE o.id = NEW.original_ticket_id)
            WHEN EXISTS (SELECT 1 FROM public.kitchen_kitchenticket o
                          WHERE o.bill_id = NEW.bill_id AND o.printer_target = NEW.printer_target
                            AND o.ticket_type IN ('order', 'addition') AND NOT o.is_reprint)
                THEN 'addition'
        END;
        NEW.ticket_type := COALESCE(NEW.ticket_type, 'order');
    END IF;
    NEW.may_have_printed := COALESCE(NEW.may_have_printed, false);
    NEW.next_attempt_at := COALESCE(NEW.next_attempt_at, now());
    IF NEW.status = 'printed' AND NEW.printed_at IS NULL THEN
        NEW.printed_at := now();
    END IF;
    -- The bill is authoritative for scope: whatever the inserter wrote is replaced.
    SELECT b.brand_id, b.store_id INTO NEW.brand_id, NEW.store_id
      FROM public.kitchen_pos_bill b WHERE b.id = NEW.bill_id;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_before_insert() IS
    'BEFORE INSERT on kitchen_kitchenticket: copies brand_id/store_id from the bill (kitchen_pos_bill, even for hand-inserted rows), '
    'stores printer_target trimmed and lowercase, defaults status to ''new'', and sets printed_at for a ticket inserted as printed. '
    'A ticket_type left NULL or ''order'' (the default a writer that does not know the column gets) becomes ''checker'' at '
    'station checker, the original''s type for a reprint, ''addition'' when the bill already has an original order or addition '
    'ticket for the station, else ''order''.';

CREATE TRIGGER kitchen_kitchenticket_prepare_insert
    BEFORE INSERT ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticket_before_insert();

CREATE FUNCTION kprintd.kitchen_ticket_before_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.printer_target IS DISTINCT FROM OLD.printer_target THEN
        NEW.printer_target := COALESCE(kprintd.kitchen_normalize_station(NEW.printer_target), NEW.printer_target);
    END IF;
    IF NEW.bill_id IS DISTINCT FROM OLD.bill_id THEN
        SELECT b.brand_id, b.store_id INTO NEW.brand_id, NEW.store_id
          FROM public.kitchen_pos_bill b WHERE b.id = NEW.bill_id;
    END IF;
    -- "Bytes may have reached paper" and "printed before" can only become true.
    NEW.may_have_printed := COALESCE(NEW.may_have_printed, false) OR OLD.may_have_printed;
    NEW.reprinted := COALESCE(NEW.reprinted, false) OR OLD.reprinted;
    IF NEW.is_reprint AND NEW.original_ticket_id IS NULL THEN
        -- The spec's "printed -> new (reprint with is_reprint=true)" done in place: the ticket is
        -- its own original.
        NEW.original_ticket_id := NEW.id;
    END IF;

    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status = 'new' THEN
            -- Back in the queue (retry, manual reset, a DBA's UPDATE): nobody holds it, due now
            -- unless the writer scheduled it.
            NEW.claimed_by := NULL;
            NEW.lease_expires_at := NULL;
            IF NEW.next_attempt_at IS NOT DISTINCT FROM OLD.next_attempt_at THEN
                NEW.next_attempt_at := now();
            END IF;
            IF OLD.status = 'printing' AND NULLIF(btrim(current_setting('kprintd.action', true)), '') IS NULL THEN
                -- A lease broken by hand: part of the ticket may be on paper already.
                NEW.may_have_printed := true;
            END IF;
            IF OLD.status = 'printed' THEN
                -- Printed once already: the cook must see that this one is a copy.
                NEW.reprinted := true;
            END IF;
        ELSIF NEW.status = 'printed' THEN
            IF NEW.printed_at IS NULL THEN
                NEW.printed_at := now();
            END IF;
        END IF;
        IF OLD.status = 'printing' AND NEW.status IN ('printed', 'failed') THEN
            NEW.claimed_by := NULL;
            NEW.lease_expires_at := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_before_update() IS
    'BEFORE UPDATE on kitchen_kitchenticket, generic housekeeping the daemon relies on. Status -> ''new'' (from anything): '
    'claimed_by and lease_expires_at cleared; next_attempt_at = now() unless the UPDATE itself changed it; from ''printing'' '
    'in an undescribed change (kprintd.action unset, e.g. a DBA''s UPDATE breaking a lease) also may_have_printed = true, '
    'so the next print carries a RETRY banner (a describing writer sets may_have_printed itself); from ''printed'' also '
    'reprinted = true, so every later print carries the REPRINT banner. Status -> ''printed'': '
    'printed_at = now() if NULL. ''printing'' -> ''printed''/''failed'': claim cleared. Always: may_have_printed and reprinted '
    'never go back to false, printer_target is stored lowercase, brand_id/store_id follow bill_id, and is_reprint set '
    'without an original makes the ticket its own original.';

CREATE TRIGGER kitchen_kitchenticket_housekeeping
    BEFORE UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticket_before_update();

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

CREATE FUNCTION kprintd.kitchen_ticketitem_before_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ticket_type IS NULL OR NEW.is_reprint IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.kitchen_ticket_id IS DISTINCT FROM OLD.kitchen_ticket_id) THEN
        SELECT kt.ticket_type, kt.is_reprint INTO NEW.ticket_type, NEW.is_reprint
          FROM public.kitchen_kitchenticket kt WHERE kt.id = NEW.kitchen_ticket_id;
        IF NOT FOUND AND NEW.kitchen_ticket_id IS NOT NULL THEN
            RAISE EXCEPTION 'insert or update on table "kitchen_kitchenticketitem" violates foreign key constraint "kitchen_kitchenticketitem_kitchen_ticket_id_fkey"'
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'kitchen_kitchenticketitem_kitchen_ticket_id_fkey',
                      TABLE = 'kitchen_kitchenticketitem',
                      DETAIL = format('Key (kitchen_ticket_id)=(%s) is not present in table "kitchen_kitchenticket".',
                                      NEW.kitchen_ticket_id);
        END IF;
    END IF;
    IF NEW.ticket_type = 'void' THEN
        NEW.line_type := 'void';
    ELSIF NEW.ticket_type IN ('order', 'addition') THEN
        NEW.line_type := 'item';
    ELSE
        NEW.line_type := COALESCE(NEW.line_type, 'item');
    END IF;
    IF NEW.quantity IS NULL THEN
        SELECT bi.quantity INTO NEW.quantity FROM public.kitchen_pos_billitem bi WHERE bi.id = NEW.bill_item_id;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketitem_before_write() IS
    'BEFORE INSERT/UPDATE on kitchen_kitchenticketitem: fills ticket_type/is_reprint from the ticket when not given '
    '(SQLSTATE 23503 naming kitchen_kitchenticketitem_kitchen_ticket_id_fkey if the ticket does not exist), derives '
    'line_type from the ticket type (void tickets: ''void''; order/addition: ''item''; checker: as given, default ''item''), '
    'and defaults quantity to the bill item''s.';

CREATE TRIGGER kitchen_kitchenticketitem_prepare
    BEFORE INSERT OR UPDATE ON public.kitchen_kitchenticketitem
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticketitem_before_write();

CREATE FUNCTION kprintd.kitchen_ticketitem_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket_bill bigint;
    v_item_bill   bigint;
BEGIN
    SELECT kt.bill_id INTO v_ticket_bill FROM public.kitchen_kitchenticket kt WHERE kt.id = NEW.kitchen_ticket_id;
    SELECT bi.bill_id INTO v_item_bill FROM public.kitchen_pos_billitem bi WHERE bi.id = NEW.bill_item_id;
    IF v_ticket_bill IS DISTINCT FROM v_item_bill THEN
        RAISE EXCEPTION 'bill item % (bill %) cannot go on ticket % of bill %',
                NEW.bill_item_id, v_item_bill, NEW.kitchen_ticket_id, v_ticket_bill
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'kitchen_kitchenticketitem_same_bill',
                  HINT = 'A ticket lists items of its own bill only.';
    END IF;
    IF NEW.line_type = 'void' AND NOT NEW.is_reprint AND NOT EXISTS (
        SELECT 1 FROM public.kitchen_kitchenticketitem s
         WHERE s.bill_item_id = NEW.bill_item_id AND NOT s.is_reprint
           AND s.ticket_type IN ('order', 'addition')) THEN
        RAISE EXCEPTION 'bill item % was never sent to the kitchen, so it cannot be voided there', NEW.bill_item_id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'kitchen_kitchenticketitem_void_after_send',
                  HINT = 'Items voided before they were sent are simply never printed.';
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketitem_check() IS
    'AFTER INSERT/UPDATE on kitchen_kitchenticketitem (runs at the end of the statement, so a ticket and its lines may be '
    'inserted by one statement): the bill item belongs to the ticket''s bill, and an original void line cancels an item that '
    'was sent. Raises SQLSTATE 23514 (check_violation) otherwise.';

CREATE TRIGGER kitchen_kitchenticketitem_check
    AFTER INSERT OR UPDATE OF kitchen_ticket_id, bill_item_id, line_type, is_reprint
    ON public.kitchen_kitchenticketitem
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticketitem_check();

-- Station codes a kitchen can read --------------------------------------------------------------
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
    -- A row written before codes were judged keeps its code through updates that do not change it (an ORM
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
    -- ticket written before codes were judged): the kitchen must get it, and it names no new station.
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
    'reprint ticket for a station the bill already has a ticket for: rows written before codes were '
    'judged keep working.';

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

ALTER TABLE public.kitchen_stationprinter ENABLE ALWAYS TRIGGER kitchen_stationprinter_station_visible;

ALTER TABLE public.kitchen_printtemplate ENABLE ALWAYS TRIGGER kitchen_printtemplate_station_visible;

ALTER TABLE public.kitchen_kitchenticket ENABLE ALWAYS TRIGGER kitchen_kitchenticket_station_visible;

-- Printers and templates ------------------------------------------------------------------------
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

-- The audit trail -------------------------------------------------------------------------------
-- Whose description of a change is believed: the daemon's and a manager's (the admin functions).
-- Where the roles do not exist (60_roles_and_grants.sql not applied), everyone's.
CREATE FUNCTION kprintd.kitchen_session_trusted() RETURNS boolean
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN to_regrole('kprintd_daemon') IS NULL OR to_regrole('kprintd_manager') IS NULL
                THEN true
                ELSE pg_has_role(session_user, 'kprintd_daemon', 'MEMBER')
                     OR pg_has_role(session_user, 'kprintd_manager', 'MEMBER')
           END;

COMMENT ON FUNCTION kprintd.kitchen_session_trusted() IS
    'True when the session''s login is a member of kprintd_daemon or kprintd_manager (or a superuser): '
    'only then do kprintd.action and kprintd.actor describe a ticket''s status change in the log. Anyone '
    'else''s change is logged as manual_update by session_user, with what it claimed in metadata '
    '(claimed_action, claimed_actor).';

-- The 'created' row kprintd writes, when the audit trigger (a described insert) or the commit of an
-- undescribed one (kitchen_ticket_committed) logs a ticket's creation.
CREATE FUNCTION kprintd.kitchen_log_created(p_ticket public.kitchen_kitchenticket, p_actor text, p_extra jsonb,
                                    p_at timestamptz) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    v_base jsonb := jsonb_build_object(
        'items_count', (SELECT count(*) FROM public.kitchen_kitchenticketitem i
                         WHERE i.kitchen_ticket_id = p_ticket.id),
        'bill_id', p_ticket.bill_id,
        'station', p_ticket.printer_target,
        'ticket_type', p_ticket.ticket_type);
BEGIN
    IF p_ticket.is_reprint THEN
        v_base := v_base || jsonb_build_object('reprint_of', p_ticket.original_ticket_id);
    END IF;
    INSERT INTO public.kitchen_kitchenticketlog
        (ticket_id, timestamp, old_status, new_status, action, actor,
         printer_ip, error_code, error_message, duration_ms, metadata)
    VALUES
        (p_ticket.id, p_at, NULL, p_ticket.status, 'created', left(p_actor, 100),
         p_ticket.printer_ip, p_ticket.error_code, p_ticket.error_message, NULL,
         v_base || coalesce(p_extra, '{}'));
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_log_created(public.kitchen_kitchenticket, text, jsonb, timestamptz) IS
    'Writes a ticket''s ''created'' log row: actor p_actor, metadata {items_count, bill_id, station, '
    'ticket_type[, reprint_of]} plus p_extra, timestamp p_at. Called by the audit trigger and at commit '
    '(kitchen_ticket_committed); writing the log needs INSERT on it, which only kprintd''s owner has.';

-- A claim is recognised first and its description is fixed; a description is believed only from a
-- trusted session (kitchen_session_trusted).
CREATE FUNCTION kprintd.kitchen_ticket_audit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_action     text;
    v_actor      text;
    v_duration   text;
    v_error_code text;
    v_meta_text  text;
    v_extra      jsonb := '{}';
    v_base       jsonb;
    v_trusted    boolean := kprintd.kitchen_session_trusted();
    v_described  boolean;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status = 'new' AND NEW.status = 'printing'
       AND NEW.claimed_by IS NOT NULL AND v_trusted THEN
        -- A claim: described by what it is, whatever the transaction describes, so a claim
        -- need not set (and then restore) the settings below.
        v_action := 'print_start';
        v_actor := 'printer_service';
        v_base := jsonb_build_object('print_attempts', NEW.print_attempts, 'daemon', NEW.claimed_by);
    ELSE
        v_action     := NULLIF(btrim(current_setting('kprintd.action', true)), '');
        v_actor      := NULLIF(btrim(current_setting('kprintd.actor', true)), '');
        v_duration   := NULLIF(btrim(current_setting('kprintd.duration_ms', true)), '');
        v_error_code := NULLIF(btrim(current_setting('kprintd.error_code', true)), '');
        v_meta_text  := NULLIF(btrim(current_setting('kprintd.metadata', true)), '');
        IF v_duration IS NOT NULL AND v_duration !~ '^[0-9]{1,9}$' THEN
            RAISE EXCEPTION 'kprintd.duration_ms must be a non-negative integer of milliseconds, got %', quote_literal(v_duration)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Set it with kitchen_describe_change(), or clear it with set_config(''kprintd.duration_ms'', '''', true).';
        END IF;
        IF v_meta_text IS NOT NULL THEN
            v_extra := v_meta_text::jsonb;
            IF jsonb_typeof(v_extra) <> 'object' THEN
                RAISE EXCEPTION 'kprintd.metadata must be a JSON object, got %', v_meta_text
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Set it with kitchen_describe_change(), or clear it with set_config(''kprintd.metadata'', '''', true).';
            END IF;
        END IF;

        v_described := v_actor IS NOT NULL;
        IF NOT v_trusted AND (v_action IS NOT NULL OR v_actor IS NOT NULL) THEN
            -- Logged as who they are; what they said is kept beside it.
            v_extra := v_extra || jsonb_strip_nulls(jsonb_build_object(
                'claimed_action', v_action, 'claimed_actor', v_actor));
            v_action := NULL;
            v_actor := NULL;
        END IF;

        IF TG_OP = 'INSERT' THEN
            -- A ticket inserted as anything but 'new' records what already happened: logged now.
            IF v_described OR NEW.status IS DISTINCT FROM 'new' THEN
                PERFORM kprintd.kitchen_log_created(NEW, coalesce(v_actor, session_user), v_extra,
                                            clock_timestamp());
            END IF;
            -- An undescribed 'new' ticket (a POS writing the tables itself): the writer may log its
            -- own 'created' row later in its transaction; kitchen_ticket_committed() logs one at
            -- commit if not.
            RETURN NULL;
        END IF;
        v_base := jsonb_build_object('print_attempts', NEW.print_attempts);
    END IF;

    -- UPDATE that changed status (the trigger's WHEN clause)
    IF OLD.claimed_by IS NOT NULL AND NEW.claimed_by IS DISTINCT FROM OLD.claimed_by THEN
        v_base := v_base || jsonb_build_object('previous_claimed_by', OLD.claimed_by);
    END IF;
    IF NEW.may_have_printed AND NOT OLD.may_have_printed THEN
        v_base := v_base || jsonb_build_object('may_have_printed', true);
    END IF;
    IF v_action IS NULL THEN
        v_base := v_base || jsonb_build_object('application_name', current_setting('application_name'));
    END IF;
    INSERT INTO public.kitchen_kitchenticketlog
        (ticket_id, timestamp, old_status, new_status, action, actor,
         printer_ip, error_code, error_message, duration_ms, metadata)
    VALUES
        (NEW.id, clock_timestamp(), OLD.status, NEW.status,
         left(COALESCE(v_action, 'manual_update'), 50),
         left(COALESCE(v_actor, session_user), 100),
         NEW.printer_ip,
         left(COALESCE(v_error_code,
                       CASE WHEN NEW.status = 'failed' OR NEW.error_code IS DISTINCT FROM OLD.error_code
                            THEN NEW.error_code END), 50),
         CASE WHEN NEW.status = 'failed' OR NEW.error_message IS DISTINCT FROM OLD.error_message
              THEN NEW.error_message END,
         v_duration::integer,
         v_base || v_extra);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_audit() IS
    'AFTER INSERT and AFTER UPDATE-of-status on kitchen_kitchenticket: writes the kitchen_kitchenticketlog row. '
    'INSERT described with kprintd.actor (kprintd''s own functions): action ''created'' by that actor, metadata {items_count, '
    'bill_id, station, ticket_type[, reprint_of]} plus kprintd.metadata (kitchen_log_created); an undescribed INSERT is '
    'logged at commit by kitchen_ticket_committed() unless the writer logs it. A claim (''new'' -> ''printing'' with claimed_by set): action ''print_start'', '
    'actor ''printer_service'', metadata {print_attempts, daemon: claimed_by[, previous_claimed_by][, may_have_printed]}, '
    'whatever the transaction describes. Other status changes: action kprintd.action else ''manual_update'', actor kprintd.actor '
    'else session_user, duration_ms kprintd.duration_ms, error_code kprintd.error_code else the ticket''s (when it failed or '
    'changed), error_message the ticket''s (when it failed or changed), printer_ip the ticket''s, metadata {print_attempts'
    '[, previous_claimed_by][, may_have_printed][, application_name when undescribed]} plus kprintd.metadata. '
    'timestamp is clock_timestamp(). Raises 22023 for a malformed kprintd.duration_ms or kprintd.metadata.';

CREATE TRIGGER kitchen_kitchenticket_audit_insert
    AFTER INSERT ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticket_audit();

-- Not "UPDATE OF status": that would miss a status set by another BEFORE trigger.
CREATE TRIGGER kitchen_kitchenticket_audit_status
    AFTER UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kprintd.kitchen_ticket_audit();

-- The ticket log: DELETE only from kitchen_purge.
-- search_path is fixed: this runs with the deleter's settings, and a deleter's own "=" operator
-- must not decide whether it is the purge.
CREATE FUNCTION kprintd.kitchen_ticketlog_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('kprintd.purge', true) = 'running'
           AND current_user = (SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
                                WHERE p.oid = to_regprocedure('kprintd.kitchen_purge(interval, text)')) THEN
            IF TG_LEVEL = 'ROW' THEN
                RETURN OLD;
            END IF;
            RETURN NULL;
        END IF;
        RAISE EXCEPTION 'kitchen_kitchenticketlog is an append-only audit trail: DELETE is allowed only inside kitchen_purge(older_than interval, actor text)'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Only kitchen_purge deletes log rows, with their tickets, and it records each purge in kitchen_purgelog.',
                  HINT = 'To remove old tickets with their items and log rows, call '
                         'SELECT * FROM kitchen_purge(interval ''30 days'', ''pos:nightly''); it removes final tickets '
                         'older than that (7 days at least) in one transaction and records the purge in kitchen_purgelog. '
                         'Your role needs GRANT EXECUTE ON FUNCTION kitchen_purge(interval, text).';
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'kitchen_kitchenticketlog is an append-only audit trail: TRUNCATE is not allowed'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'This holds for every role, the table owner and superusers included.',
                  HINT = 'Old tickets are removed with their log rows by kitchen_purge(older_than interval, actor text).';
    END IF;
    RAISE EXCEPTION 'kitchen_kitchenticketlog is an append-only audit trail: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = 'This holds for every role, the table owner and superusers included.',
              HINT = 'Log rows are written by triggers on kitchen_kitchenticket; to correct a ticket, change the ticket and a new log row records it.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketlog_append_only() IS
    'BEFORE UPDATE/DELETE (row and statement) and TRUNCATE on kitchen_kitchenticketlog: raises SQLSTATE 42501 '
    '(insufficient_privilege) for UPDATE and TRUNCATE always, and for DELETE unless it runs inside '
    'kitchen_purge(interval, text) (transaction-local setting kprintd.purge = ''running'' and current_user = the '
    'owner of kitchen_purge, as inside that SECURITY DEFINER function). The refusal of a DELETE names kitchen_purge.';

CREATE TRIGGER kitchen_kitchenticketlog_no_update
    BEFORE UPDATE ON public.kitchen_kitchenticketlog
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticketlog_append_only();

CREATE TRIGGER kitchen_kitchenticketlog_no_delete
    BEFORE DELETE ON public.kitchen_kitchenticketlog
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticketlog_append_only();

-- Statement level too, so a statement that happens to match no row is refused as well.
CREATE TRIGGER kitchen_kitchenticketlog_no_modify
    BEFORE UPDATE OR DELETE OR TRUNCATE ON public.kitchen_kitchenticketlog
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_ticketlog_append_only();

ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_update;
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_delete;
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_modify;

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

ALTER TABLE public.kitchen_alertlog ENABLE ALWAYS TRIGGER kitchen_alertlog_no_update_delete;
ALTER TABLE public.kitchen_alertlog ENABLE ALWAYS TRIGGER kitchen_alertlog_no_truncate;

CREATE FUNCTION kprintd.kitchen_purgelog_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kitchen_purgelog is an append-only record of purges: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = 'This holds for every role, the table owner and superusers included.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_purgelog_append_only() IS
    'BEFORE UPDATE/DELETE (row and statement) and TRUNCATE on kitchen_purgelog: always raises SQLSTATE 42501 '
    '(insufficient_privilege), so the record of purges cannot be rewritten.';

CREATE TRIGGER kitchen_purgelog_no_update_delete
    BEFORE UPDATE OR DELETE ON public.kitchen_purgelog
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_purgelog_append_only();

-- Statement level too, so a statement that happens to match no row is refused as well.
CREATE TRIGGER kitchen_purgelog_no_modify
    BEFORE UPDATE OR DELETE OR TRUNCATE ON public.kitchen_purgelog
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_purgelog_append_only();

ALTER TABLE public.kitchen_purgelog ENABLE ALWAYS TRIGGER kitchen_purgelog_no_update_delete;
ALTER TABLE public.kitchen_purgelog ENABLE ALWAYS TRIGGER kitchen_purgelog_no_modify;

-- Waking the daemon -----------------------------------------------------------------------------
-- The payload, for the notification sent when a ticket is committed (kitchen_ticket_committed) and
-- when it goes back to 'new': where the ticket goes, nothing of what it says (any login can LISTEN).
CREATE FUNCTION kprintd.kitchen_ticket_notice(p_ticket public.kitchen_kitchenticket) RETURNS text
    LANGUAGE sql STABLE
    RETURN jsonb_build_object(
        'ticket_id',   p_ticket.id,
        'station',     p_ticket.printer_target,
        'brand_id',    p_ticket.brand_id,
        'store_id',    p_ticket.store_id,
        'ticket_type', p_ticket.ticket_type,
        'due_at',      p_ticket.next_attempt_at)::text;

COMMENT ON FUNCTION kprintd.kitchen_ticket_notice(public.kitchen_kitchenticket) IS
    'The kitchen_ticket_new payload of a ticket: {"ticket_id", "station", "brand_id", "store_id", '
    '"ticket_type", "due_at"}. due_at is next_attempt_at: the ticket is not due before it. It carries '
    'nothing secret and nothing kprintd prints: any role that can connect can LISTEN, and NOTIFY a '
    'payload of its own; kprintd only wakes the route it names.';

CREATE FUNCTION kprintd.kitchen_ticket_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kitchen_ticket_new', kprintd.kitchen_ticket_notice(NEW));
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_notify() IS
    'AFTER UPDATE (status changed to ''new'') on kitchen_kitchenticket: '
    'pg_notify(''kitchen_ticket_new'', kitchen_ticket_notice(NEW)), delivered at commit. '
    'A new ticket is announced when its transaction commits (kitchen_ticket_committed).';

CREATE TRIGGER kitchen_kitchenticket_notify_status
    AFTER UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (NEW.status = 'new' AND OLD.status IS DISTINCT FROM 'new')
    EXECUTE FUNCTION kprintd.kitchen_ticket_notify();

-- How long a writer may pause between the rows of one ticket.
CREATE FUNCTION kprintd.kitchen_writer_quiet_interval() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN interval '500 milliseconds';

COMMENT ON FUNCTION kprintd.kitchen_writer_quiet_interval() IS
    'How long a ticket committed without all of its items waits after the last item written onto it '
    'before it prints (a POS writing ticket and items in separate statements). Replace it with CREATE OR '
    'REPLACE FUNCTION to fit a slower writer; a ticket written with its items in one transaction never '
    'waits for it.';

-- A ticket's commit announces it.
-- SECURITY DEFINER: it writes the log, which application roles cannot.
CREATE FUNCTION kprintd.kitchen_ticket_committed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_lines  bigint;
BEGIN
    SELECT * INTO v_ticket FROM public.kitchen_kitchenticket t WHERE t.id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;  -- deleted again in its own transaction
    END IF;
    SELECT count(*) INTO v_lines FROM public.kitchen_kitchenticketitem i WHERE i.kitchen_ticket_id = NEW.id;

    IF NOT EXISTS (SELECT 1 FROM public.kitchen_kitchenticketlog l
                    WHERE l.ticket_id = NEW.id AND l.action = 'created') THEN
        -- Dated now, or just before a status change the same transaction logged, so that it stays
        -- the ticket's first row.
        PERFORM kprintd.kitchen_log_created(
            v_ticket,
            CASE WHEN kprintd.kitchen_session_trusted()
                 THEN coalesce(NULLIF(btrim(current_setting('kprintd.actor', true)), ''), session_user)
                 ELSE session_user END,
            NULL,
            (SELECT least(clock_timestamp(), min(l."timestamp") - interval '1 microsecond')
               FROM public.kitchen_kitchenticketlog l WHERE l.ticket_id = NEW.id));
    END IF;

    IF v_ticket.status = 'new' THEN
        IF v_lines = 0 THEN
            -- Its items follow in later transactions.
            UPDATE public.kitchen_kitchenticket t
               SET next_attempt_at = greatest(t.next_attempt_at,
                                              clock_timestamp() + kprintd.kitchen_writer_quiet_interval())
             WHERE t.id = NEW.id
            RETURNING * INTO v_ticket;
        ELSIF v_ticket.next_attempt_at > now() AND v_ticket.print_attempts = 0 THEN
            -- Its own items, written in this transaction, held it back: the writer is done now.
            UPDATE public.kitchen_kitchenticket t SET next_attempt_at = now()
             WHERE t.id = NEW.id
            RETURNING * INTO v_ticket;
        END IF;
        PERFORM pg_notify('kitchen_ticket_new', kprintd.kitchen_ticket_notice(v_ticket));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_committed() IS
    'Deferred AFTER INSERT of a ''new'' ticket (a ticket inserted in another status is history, logged '
    'at once by kitchen_ticket_audit), run when the inserting transaction commits: logs '
    'the ticket''s ''created'' row unless the writer wrote one (actor kprintd.actor, else session_user); '
    'for a ticket still ''new'', makes it due now if it has items, or holds it '
    'kitchen_writer_quiet_interval() if its items are still to come, and NOTIFYs kitchen_ticket_new '
    '(kitchen_ticket_notice).';

CREATE CONSTRAINT TRIGGER kitchen_kitchenticket_committed
    AFTER INSERT ON public.kitchen_kitchenticket
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status = 'new') EXECUTE FUNCTION kprintd.kitchen_ticket_committed();

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

-- Tickets a POS writes itself -------------------------------------------------------------------
-- Items written after their ticket.
CREATE FUNCTION kprintd.kitchen_ticketitem_arrived() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_type   text;
    v_target bigint;
    v_saved  jsonb;
BEGIN
    -- Still waiting to print for the first time: the item joins it, and the ticket waits for the
    -- writer's next row. The row lock keeps a claim from taking the ticket until this commits.
    UPDATE public.kitchen_kitchenticket t
       SET next_attempt_at = greatest(t.next_attempt_at,
                                      clock_timestamp() + kprintd.kitchen_writer_quiet_interval())
     WHERE t.id = NEW.kitchen_ticket_id
       AND t.status = 'new' AND t.print_attempts = 0 AND NOT t.may_have_printed AND NOT t.reprinted;
    IF FOUND THEN
        RETURN NULL;
    END IF;

    -- Handed to a printer already (claimed, printed, failed, or maybe on paper): the paper the
    -- cook has, or will get, lacks this item. A ticket its writer inserted as printing, printed or
    -- failed never went to kprintd, and one written or changed in this very transaction is being
    -- recorded after the fact: the item only joins it.
    -- Written in this very transaction (history recorded after the fact): it only joins.
    SELECT * INTO v_ticket FROM public.kitchen_kitchenticket t WHERE t.id = NEW.kitchen_ticket_id;
    IF NOT FOUND OR NOT (v_ticket.print_attempts > 0 OR v_ticket.may_have_printed
                         OR v_ticket.reprinted)
       OR (SELECT t.xmin = pg_current_xact_id()::xid FROM public.kitchen_kitchenticket t
            WHERE t.id = NEW.kitchen_ticket_id) THEN
        RETURN NULL;
    END IF;
    v_type := CASE v_ticket.ticket_type WHEN 'order' THEN 'addition' ELSE v_ticket.ticket_type END;

    SELECT a.id INTO v_target
      FROM public.kitchen_kitchenticket a
     WHERE a.bill_id = v_ticket.bill_id AND a.printer_target = v_ticket.printer_target
       AND a.ticket_type = v_type AND a.is_reprint = v_ticket.is_reprint AND a.id > v_ticket.id
       AND a.status = 'new' AND a.print_attempts = 0 AND NOT a.may_have_printed AND NOT a.reprinted
     ORDER BY a.id
     LIMIT 1
       FOR NO KEY UPDATE SKIP LOCKED;
    IF v_target IS NULL THEN
        v_saved := kprintd.kitchen_change_description();
        PERFORM kprintd.kitchen_describe_change(NULL, session_user::text, NULL, NULL,
            jsonb_build_object('late_item_of', v_ticket.id, 'bill_item_id', NEW.bill_item_id));
        INSERT INTO public.kitchen_kitchenticket
            (bill_id, printer_target, status, ticket_type, is_reprint, original_ticket_id)
        VALUES (v_ticket.bill_id, v_ticket.printer_target, 'new', v_type, v_ticket.is_reprint,
                v_ticket.original_ticket_id)
        RETURNING id INTO v_target;
        PERFORM kprintd.kitchen_restore_change_description(v_saved);
    END IF;
    INSERT INTO public.kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity, line_type)
    VALUES (v_target, NEW.bill_item_id, NEW.quantity, NEW.line_type);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketitem_arrived() IS
    'AFTER INSERT on kitchen_kitchenticketitem, for lines a POS writes itself (not kprintd''s own): on a '
    'ticket still waiting for its first print, holds the ticket kitchen_writer_quiet_interval() after '
    'this item (and locks it against a claim until this commits); on a ticket kprintd tried to print '
    '(print_attempts > 0, may_have_printed or reprinted), puts the item on another ticket of that bill and station (''addition'' for '
    'an order, else the same kind), a waiting one made for such items or a new one, logged ''created'' '
    'with metadata late_item_of.';

CREATE TRIGGER kitchen_kitchenticketitem_arrived
    AFTER INSERT ON public.kitchen_kitchenticketitem
    FOR EACH ROW WHEN (NOT NEW.written_by_kprintd)
    EXECUTE FUNCTION kprintd.kitchen_ticketitem_arrived();

-- NOT NULL columns a POS's ORM always fills.
CREATE FUNCTION kprintd.kitchen_fill_required() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_row  jsonb := to_jsonb(NEW);
    v_fill jsonb;
BEGIN
    SELECT jsonb_object_agg(f.key, CASE WHEN f.value = '"now()"' THEN to_jsonb(now()) ELSE f.value END)
      INTO v_fill
      FROM jsonb_each(TG_ARGV[0]::jsonb) f
     WHERE v_row -> f.key = 'null'::jsonb;
    IF v_fill IS NOT NULL THEN
        NEW := jsonb_populate_record(NEW, v_fill);
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_fill_required() IS
    'BEFORE INSERT OR UPDATE on a kitchen table whose POS columns are NOT NULL with no default: sets '
    'each column named in the trigger''s argument (a JSON object column -> empty value, "now()" for '
    'now()) that would be NULL. Installed by kitchen_install_required_fillers().';

CREATE FUNCTION kprintd.kitchen_install_required_fillers() RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    v_table   text;
    v_fill    jsonb;
    v_refused text;
    -- Columns kprintd always writes itself, or that a writer must give.
    v_written CONSTANT jsonb := '{
        "kitchen_stationprinter": ["id", "brand_id", "station_code", "printer_name", "printer_ip"],
        "kitchen_kitchenticket": ["id", "bill_id", "printer_target", "status", "ticket_type", "is_reprint"],
        "kitchen_kitchenticketitem": ["id", "kitchen_ticket_id", "bill_item_id", "quantity", "ticket_type",
                                      "is_reprint", "line_type"],
        "kitchen_kitchenticketlog": ["id", "ticket_id", "new_status", "action", "actor"],
        "kitchen_printerhealthcheck": ["id", "printer_id", "is_online"]}';
BEGIN
    FOR v_table IN SELECT jsonb_object_keys(v_written) LOOP
        SELECT jsonb_object_agg(a.attname, CASE
                   WHEN t.typcategory = 'S' THEN to_jsonb(''::text)
                   WHEN t.typcategory = 'N' THEN to_jsonb(0)
                   WHEN t.typcategory = 'B' THEN to_jsonb(false)
                   WHEN t.typcategory = 'D' THEN to_jsonb('now()'::text)
                   WHEN t.typname IN ('json', 'jsonb') THEN '{}'::jsonb
               END),
               string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ')
                   FILTER (WHERE t.typcategory NOT IN ('S', 'N', 'B', 'D')
                             AND t.typname NOT IN ('json', 'jsonb'))
          INTO v_fill, v_refused
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = ('public.' || quote_ident(v_table))::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
           AND NOT (v_written -> v_table) ? a.attname::text;
        IF v_refused IS NOT NULL THEN
            RAISE EXCEPTION 'kprintd cannot write %: % NOT NULL with no default, and kprintd cannot know the value',
                    v_table, v_refused
                USING ERRCODE = 'not_null_violation',
                      HINT = 'Give the column a database default (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT ...) '
                             'or allow NULL, then migrate again.';
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS kitchen_fill_required ON public.%I', v_table);
        IF v_fill IS NOT NULL THEN
            EXECUTE format('CREATE TRIGGER kitchen_fill_required BEFORE INSERT OR UPDATE ON public.%I '
                           'FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_fill_required(%L)',
                           v_table, v_fill);
            RAISE NOTICE 'fill % where kprintd would leave NULL: %', v_table, v_fill;
            RETURN NEXT format('%s: %s', v_table, v_fill);
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_install_required_fillers() IS
    'Looks at the five kitchen tables for columns that are NOT NULL with no default and that kprintd does '
    'not always write (a POS''s ORM fills them itself), and (re)creates a kitchen_fill_required trigger on '
    'each such table; returns one line per table it fills. Raises 23502 naming the columns whose type has '
    'no empty value (a uuid, say). Run by kprintd migrate; run it again after the POS adds such a column.';

SELECT kprintd.kitchen_install_required_fillers();
