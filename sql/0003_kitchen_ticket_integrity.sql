-- 0003 Ticket integrity: station codes, bill scope copied onto tickets, status housekeeping, and the
-- "a bill item is sent to the kitchen at most once" rule enforced by the database itself.
--
-- Station codes are stored lowercase and trimmed. A bill item's station is its own printer_target,
-- else its product's printer_target, else 'kitchen'; 'none' means "never printed".
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. Station codes ---------------------------------------------------------------------------------
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

-- 2. Tickets: scope copied from the bill, normalized station, status housekeeping ---------------------
-- Backfill before the triggers exist, so old rows pass the NOT NULL below without audit noise.
UPDATE public.kitchen_kitchenticket SET is_reprint = false WHERE is_reprint IS NULL;
ALTER TABLE public.kitchen_kitchenticket ALTER COLUMN is_reprint SET NOT NULL;

-- Target of the composite foreign key from kitchen_kitchenticketitem (section 3).
ALTER TABLE public.kitchen_kitchenticket
    ADD CONSTRAINT kitchen_kitchenticket_id_type_reprint_key UNIQUE (id, ticket_type, is_reprint);

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

-- 3. Ticket lines: what each line is for, and "sent once" as unique indexes -----------------------------
-- ticket_type and is_reprint are copies of the ticket's, kept equal by a composite foreign key with
-- ON UPDATE CASCADE; line_type says whether the line makes the item ('item') or cancels it ('void');
-- written_by_kprintd marks the lines kprintd's own functions wrote together with their ticket
-- (kitchen_create_tickets, kitchen_reprint): the only ones "sent once" binds.
ALTER TABLE public.kitchen_kitchenticketitem
    ADD COLUMN ticket_type VARCHAR(20),
    ADD COLUMN is_reprint  BOOLEAN,
    ADD COLUMN line_type   VARCHAR(10),
    ADD COLUMN written_by_kprintd   BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE public.kitchen_kitchenticketitem kti
   SET ticket_type = kt.ticket_type,
       is_reprint = kt.is_reprint,
       line_type = CASE WHEN kt.ticket_type = 'void' THEN 'void' ELSE 'item' END
  FROM public.kitchen_kitchenticket kt
 WHERE kt.id = kti.kitchen_ticket_id;

ALTER TABLE public.kitchen_kitchenticketitem
    ALTER COLUMN ticket_type SET NOT NULL,
    ALTER COLUMN is_reprint SET NOT NULL,
    ALTER COLUMN line_type SET NOT NULL,
    ALTER COLUMN line_type SET DEFAULT 'item',
    ADD CONSTRAINT kitchen_kitchenticketitem_line_type_valid
        CHECK (line_type IN ('item', 'void')),
    ADD CONSTRAINT kitchen_kitchenticketitem_line_matches_ticket
        CHECK (CASE ticket_type WHEN 'void' THEN line_type = 'void'
                                WHEN 'checker' THEN true
                                ELSE line_type = 'item' END),
    ADD CONSTRAINT kitchen_kitchenticketitem_ticket_copy_fkey
        FOREIGN KEY (kitchen_ticket_id, ticket_type, is_reprint)
        REFERENCES public.kitchen_kitchenticket (id, ticket_type, is_reprint) ON UPDATE CASCADE;

-- kitchen_create_tickets() puts a bill item on at most one original (non-reprint) order/addition
-- ticket, at most one void ticket, and at most once per line type on checker tickets; reprints are
-- free. The rule binds that function only: a POS writing the tables itself is never refused for it
-- (its lines have written_by_kprintd false); its tickets print as it wrote them, and the log shows them.
CREATE UNIQUE INDEX kitchen_kitchenticketitem_sent_once
    ON public.kitchen_kitchenticketitem (bill_item_id)
    WHERE written_by_kprintd AND NOT is_reprint AND ticket_type IN ('order', 'addition');
CREATE UNIQUE INDEX kitchen_kitchenticketitem_voided_once
    ON public.kitchen_kitchenticketitem (bill_item_id)
    WHERE written_by_kprintd AND NOT is_reprint AND ticket_type = 'void';
CREATE UNIQUE INDEX kitchen_kitchenticketitem_checked_once
    ON public.kitchen_kitchenticketitem (bill_item_id, line_type)
    WHERE written_by_kprintd AND NOT is_reprint AND ticket_type = 'checker';

COMMENT ON COLUMN public.kitchen_kitchenticketitem.ticket_type IS
    'Copy of the ticket''s ticket_type (filled in by trigger, kept equal by foreign key); makes "sent once" a unique index.';
COMMENT ON COLUMN public.kitchen_kitchenticketitem.is_reprint IS
    'Copy of the ticket''s is_reprint (filled in by trigger, kept equal by foreign key).';
COMMENT ON COLUMN public.kitchen_kitchenticketitem.written_by_kprintd IS
    'True for lines written with their ticket by kprintd''s own functions (kitchen_create_tickets, kitchen_reprint): '
    'only those are held to "sent once" (unique indexes). A POS''s own lines are false.';
COMMENT ON COLUMN public.kitchen_kitchenticketitem.line_type IS
    '''item'': make this item; ''void'': stop making it (every line of a void ticket; void lines of a checker ticket).';

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
