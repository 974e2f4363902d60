-- 0026 Tickets a POS writes itself: announced at commit, printed complete, once.
--
-- A POS of the spec's kind does not call kitchen_create_tickets(): it inserts the ticket row, then
-- its item rows one by one, then its own 'created' log row (the spec's Example 1), in one
-- transaction or, at a reprint screen, each in its own autocommit statement. kprintd fits that:
--
-- * A ticket is announced on kitchen_ticket_new when the transaction that inserted it commits (a
--   deferred trigger), so a ticket written with its items in one transaction prints at once,
--   complete.
-- * A ticket committed without items waits: its items follow in later statements. Each item
--   written onto a waiting ticket moves its next_attempt_at to kitchen_writer_quiet_interval()
--   after that item, so the ticket prints complete once the writer has gone quiet, never empty or
--   partial. The item's write locks the ticket row, so a claim never runs alongside it.
-- * An item written onto a ticket that is printing, printed or failed (or that may have printed)
--   goes out on another ticket for that station, an ADDITION (the original's kind for a checker or
--   void ticket), never silently dropped.
-- * The log has one 'created' row per ticket: the writer's own when it writes one in the inserting
--   transaction, else kprintd's, written at commit (actor kprintd.actor, else session_user).
-- * A POS's kitchen tables may have NOT NULL columns with no default, which its ORM always fills;
--   kprintd's own inserts and updates fill them with the column type's empty value ('' / 0 / false
--   / now() / '{}') where they would be NULL (kitchen_fill_required_columns).
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. How long a writer may pause between the rows of one ticket -----------------------------------
CREATE FUNCTION kprintd.kitchen_writer_quiet_interval() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN interval '500 milliseconds';

COMMENT ON FUNCTION kprintd.kitchen_writer_quiet_interval() IS
    'How long a ticket committed without all of its items waits after the last item written onto it '
    'before it prints (a POS writing ticket and items in separate statements). Replace it with CREATE OR '
    'REPLACE FUNCTION to fit a slower writer; a ticket written with its items in one transaction never '
    'waits for it.';

-- 2. A ticket's commit ------------------------------------------------------------------------------
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

DROP TRIGGER kitchen_kitchenticket_notify_insert ON public.kitchen_kitchenticket;

CREATE CONSTRAINT TRIGGER kitchen_kitchenticket_committed
    AFTER INSERT ON public.kitchen_kitchenticket
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status = 'new') EXECUTE FUNCTION kprintd.kitchen_ticket_committed();

-- 3. Items written after their ticket ------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_ticketitem_arrived() RETURNS trigger
    LANGUAGE plpgsql AS $$
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

-- 4. NOT NULL columns a POS's ORM always fills -------------------------------------------------------
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
