-- 0008 Follow-ups to 0003 and 0007 (replaced with CREATE OR REPLACE; 0003/0007 stay as applied).
--
-- 1. A line inserted for a ticket that does not exist is refused as the foreign key violation it is
--    (kitchen_kitchenticketitem_kitchen_ticket_id_fkey), not as a NOT NULL violation of the copied
--    ticket_type.
-- 2. printing -> new sets may_have_printed only when the change is not described
--    (kprintd.action unset): a hand-typed UPDATE that breaks a lease cannot know what reached paper,
--    but a writer that describes its change (the daemon giving back a claim it never sent, a lease
--    reclaim) says itself whether anything was printed.
-- 3. kitchen_reset_ticket() of a 'printing' ticket sets may_have_printed itself.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

CREATE OR REPLACE FUNCTION kitchen_ticketitem_before_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ticket_type IS NULL OR NEW.is_reprint IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.kitchen_ticket_id IS DISTINCT FROM OLD.kitchen_ticket_id) THEN
        SELECT kt.ticket_type, kt.is_reprint INTO NEW.ticket_type, NEW.is_reprint
          FROM kitchen_kitchenticket kt WHERE kt.id = NEW.kitchen_ticket_id;
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
        SELECT bi.quantity INTO NEW.quantity FROM pos_billitem bi WHERE bi.id = NEW.bill_item_id;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kitchen_ticketitem_before_write() IS
    'BEFORE INSERT/UPDATE on kitchen_kitchenticketitem: fills ticket_type/is_reprint from the ticket when not given '
    '(SQLSTATE 23503 naming kitchen_kitchenticketitem_kitchen_ticket_id_fkey if the ticket does not exist), derives '
    'line_type from the ticket type (void tickets: ''void''; order/addition: ''item''; checker: as given, default ''item''), '
    'and defaults quantity to the bill item''s.';

CREATE OR REPLACE FUNCTION kitchen_ticket_before_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.printer_target IS DISTINCT FROM OLD.printer_target THEN
        NEW.printer_target := COALESCE(kitchen_normalize_station(NEW.printer_target), NEW.printer_target);
    END IF;
    IF NEW.bill_id IS DISTINCT FROM OLD.bill_id THEN
        SELECT b.brand_id, b.store_id INTO NEW.brand_id, NEW.store_id
          FROM pos_bill b WHERE b.id = NEW.bill_id;
    END IF;
    -- "Bytes may have reached paper" can only become true.
    NEW.may_have_printed := COALESCE(NEW.may_have_printed, false) OR OLD.may_have_printed;

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

COMMENT ON FUNCTION kitchen_ticket_before_update() IS
    'BEFORE UPDATE on kitchen_kitchenticket, generic housekeeping the daemon relies on. Status -> ''new'' (from anything): '
    'claimed_by and lease_expires_at cleared; next_attempt_at = now() unless the UPDATE itself changed it; from ''printing'' '
    'in an undescribed change (kprintd.action unset, e.g. a DBA''s UPDATE breaking a lease) also may_have_printed = true, '
    'so the next print carries a RETRY banner (a describing writer sets may_have_printed itself). Status -> ''printed'': '
    'printed_at = now() if NULL. ''printing'' -> ''printed''/''failed'': claim cleared. Always: may_have_printed never goes '
    'back to false, printer_target is stored lowercase, brand_id/store_id follow bill_id.';

CREATE OR REPLACE FUNCTION kitchen_reset_ticket(p_ticket_id bigint, p_actor text) RETURNS kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket kitchen_kitchenticket;
    v_saved  jsonb;
BEGIN
    PERFORM kitchen_admin_check_args('kitchen_reset_ticket', p_ticket_id, p_actor);
    v_ticket := kitchen_admin_lock_ticket('kitchen_reset_ticket', p_ticket_id);
    IF v_ticket.status = 'printed' THEN
        RAISE EXCEPTION 'kitchen_reset_ticket: ticket % was printed; resetting it would print it again unmarked', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'To print it again, use kitchen_reprint(): the copy is marked as a reprint.';
    ELSIF v_ticket.status = 'new' THEN
        RAISE EXCEPTION 'kitchen_reset_ticket: ticket % is already waiting to print', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    v_saved := kitchen_change_description();
    PERFORM kitchen_describe_change('manual_reset', p_actor, NULL, NULL, jsonb_strip_nulls(jsonb_build_object(
        'previous_status', v_ticket.status,
        'previous_attempts', v_ticket.print_attempts,
        'previous_error_code', v_ticket.error_code,
        'previous_error', v_ticket.error_message)));
    UPDATE kitchen_kitchenticket
       SET status = 'new', print_attempts = 0, error_message = NULL, error_code = NULL,
           printer_ip = NULL, printer_id = NULL, next_attempt_at = now(),
           -- A stuck print may have reached paper: the next one carries a RETRY banner.
           may_have_printed = may_have_printed OR status = 'printing'
     WHERE id = p_ticket_id
    RETURNING * INTO v_ticket;
    PERFORM kitchen_restore_change_description(v_saved);
    RETURN v_ticket;
END
$$;

COMMENT ON FUNCTION kitchen_reset_ticket(bigint, text) IS
    'Puts a failed or stuck (''printing'') ticket back in the queue: status ''new'', print_attempts 0, error_message/error_code '
    'and printer_ip/printer_id cleared, due now; logged ''manual_reset'' by p_actor (metadata previous_status, '
    'previous_attempts, previous_error_code, previous_error). From ''printing'' the ticket gets may_have_printed (its next '
    'print carries a RETRY banner). Returns the updated ticket. Errors: 22004 NULL ticket id; 22023 blank actor; P0002 '
    'unknown ticket; 55000 (object_not_in_prerequisite_state) ticket printed (use kitchen_reprint) or already new.';
