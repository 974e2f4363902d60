-- 0007 Admin actions: reprint, reset, mark printed, mark failed.
--
-- Each runs in the caller's transaction, locks the ticket, refuses transitions that make no sense
-- with SQLSTATE 55000 (object_not_in_prerequisite_state), and is audited under the spec's action
-- names through kitchen_describe_change(); the caller's own description is put back afterwards.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

CREATE FUNCTION kprintd.kitchen_admin_check_args(p_function text, p_ticket_id bigint, p_actor text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF p_ticket_id IS NULL THEN
        RAISE EXCEPTION '%: ticket id is NULL', p_function
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' OR length(btrim(p_actor)) > 100 THEN
        RAISE EXCEPTION '%: actor must be 1 to 100 characters, got %', p_function, quote_nullable(p_actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say who does it, e.g. ''admin:alice''; it goes into the audit trail.';
    END IF;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_admin_check_args(text, bigint, text) IS
    'Argument checks shared by the admin functions: 22004 (null_value_not_allowed) for a NULL ticket id, '
    '22023 (invalid_parameter_value) for a NULL, blank or over-100-character actor.';

CREATE FUNCTION kprintd.kitchen_admin_lock_ticket(p_function text, p_ticket_id bigint) RETURNS public.kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
BEGIN
    SELECT * INTO v_ticket FROM public.kitchen_kitchenticket WHERE id = p_ticket_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION '%: ticket % does not exist', p_function, p_ticket_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN v_ticket;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_admin_lock_ticket(text, bigint) IS
    'Locks a ticket row FOR UPDATE for an admin function and returns it; P0002 (no_data_found) if it does not exist.';

-- Reprint ----------------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_reprint(p_ticket_id bigint, p_actor text, p_item_ids bigint[] DEFAULT NULL)
    RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    v_source  public.kitchen_kitchenticket;
    v_missing bigint[];
    v_saved   jsonb;
    v_new_id  bigint;
BEGIN
    PERFORM kprintd.kitchen_admin_check_args('kitchen_reprint', p_ticket_id, p_actor);
    IF array_position(p_item_ids, NULL) IS NOT NULL OR cardinality(p_item_ids) = 0 THEN
        RAISE EXCEPTION 'kitchen_reprint: item ids must be NULL (all items) or a non-empty list without NULLs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- FOR SHARE: a concurrent reset or mark of the same ticket waits until this reprint commits.
    SELECT * INTO v_source FROM public.kitchen_kitchenticket WHERE id = p_ticket_id FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'kitchen_reprint: ticket % does not exist', p_ticket_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF v_source.status IN ('new', 'printing') THEN
        RAISE EXCEPTION 'kitchen_reprint: ticket % is %, not printed yet', p_ticket_id, v_source.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'It is still going to print. A ticket stuck in printing can be put back with kitchen_reset_ticket().';
    END IF;
    IF p_item_ids IS NOT NULL THEN
        SELECT array_agg(DISTINCT x ORDER BY x) INTO v_missing
          FROM unnest(p_item_ids) AS x
         WHERE NOT EXISTS (SELECT 1 FROM public.kitchen_kitchenticketitem kti
                            WHERE kti.kitchen_ticket_id = p_ticket_id AND kti.bill_item_id = x);
        IF v_missing IS NOT NULL THEN
            RAISE EXCEPTION 'kitchen_reprint: items % are not on ticket %', v_missing, p_ticket_id
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('missing_item_ids=%s', v_missing),
                      HINT = 'Item ids are pos_billitem ids (kitchen_kitchenticketitem.bill_item_id) of that ticket.';
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM public.kitchen_kitchenticketitem kti WHERE kti.kitchen_ticket_id = p_ticket_id) THEN
        RAISE EXCEPTION 'kitchen_reprint: ticket % has no items to reprint', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    v_saved := kprintd.kitchen_change_description();
    PERFORM kprintd.kitchen_describe_change(NULL, p_actor, NULL, NULL, jsonb_build_object('reprint_of', p_ticket_id));
    WITH t AS (
        INSERT INTO public.kitchen_kitchenticket
            (bill_id, printer_target, status, ticket_type, is_reprint, original_ticket_id)
        VALUES
            (v_source.bill_id, v_source.printer_target, 'new', v_source.ticket_type, true,
             CASE WHEN v_source.is_reprint THEN v_source.original_ticket_id ELSE v_source.id END)
        RETURNING id
    ), lines AS (
        INSERT INTO public.kitchen_kitchenticketitem
            (kitchen_ticket_id, bill_item_id, quantity, ticket_type, is_reprint, line_type, written_by_kprintd)
        SELECT t.id, kti.bill_item_id, kti.quantity, v_source.ticket_type, true, kti.line_type, true
          FROM t, public.kitchen_kitchenticketitem kti
         WHERE kti.kitchen_ticket_id = p_ticket_id
           AND (p_item_ids IS NULL OR kti.bill_item_id = ANY (p_item_ids))
         ORDER BY kti.id
    )
    SELECT t.id INTO v_new_id FROM t;
    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN v_new_id;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_reprint(bigint, text, bigint[]) IS
    'Reprints a printed (or failed) ticket: a new ticket (status ''new'', is_reprint = true, same bill, station and '
    'ticket_type) with all of its lines, or only those of p_item_ids (pos_billitem ids on that ticket: a partial reprint). '
    'original_ticket_id is always the root original: reprinting a reprint points at the ticket it reprinted; the log''s '
    '''created'' row has actor p_actor and metadata {"reprint_of": p_ticket_id} (the ticket actually reprinted). Returns the '
    'new ticket id. Errors: 22004 NULL ticket id; 22023 blank actor, empty list or NULL in p_item_ids, items not on the ticket; '
    'P0002 unknown ticket; 55000 (object_not_in_prerequisite_state) ticket still new/printing, or without items.';

-- Reset -------------------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_reset_ticket(p_ticket_id bigint, p_actor text) RETURNS public.kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_saved  jsonb;
BEGIN
    PERFORM kprintd.kitchen_admin_check_args('kitchen_reset_ticket', p_ticket_id, p_actor);
    v_ticket := kprintd.kitchen_admin_lock_ticket('kitchen_reset_ticket', p_ticket_id);
    IF v_ticket.status = 'printed' THEN
        RAISE EXCEPTION 'kitchen_reset_ticket: ticket % was printed; resetting it would print it again unmarked', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'To print it again, use kitchen_reprint(): the copy is marked as a reprint.';
    ELSIF v_ticket.status = 'new' THEN
        RAISE EXCEPTION 'kitchen_reset_ticket: ticket % is already waiting to print', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    v_saved := kprintd.kitchen_change_description();
    PERFORM kprintd.kitchen_describe_change('manual_reset', p_actor, NULL, NULL, jsonb_strip_nulls(jsonb_build_object(
        'previous_status', v_ticket.status,
        'previous_attempts', v_ticket.print_attempts,
        'previous_error_code', v_ticket.error_code,
        'previous_error', v_ticket.error_message)));
    UPDATE public.kitchen_kitchenticket
       SET status = 'new', print_attempts = 0, error_message = NULL, error_code = NULL,
           printer_ip = NULL, printer_id = NULL, next_attempt_at = now(),
           -- A stuck print may have reached paper: the next one carries a RETRY banner.
           may_have_printed = may_have_printed OR status = 'printing'
     WHERE id = p_ticket_id
    RETURNING * INTO v_ticket;
    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN v_ticket;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_reset_ticket(bigint, text) IS
    'Puts a failed or stuck (''printing'') ticket back in the queue: status ''new'', print_attempts 0, error_message/error_code '
    'and printer_ip/printer_id cleared, due now; logged ''manual_reset'' by p_actor (metadata previous_status, '
    'previous_attempts, previous_error_code, previous_error). From ''printing'' the ticket gets may_have_printed (its next '
    'print carries a RETRY banner). Returns the updated ticket. Errors: 22004 NULL ticket id; 22023 blank actor; P0002 '
    'unknown ticket; 55000 (object_not_in_prerequisite_state) ticket printed (use kitchen_reprint) or already new.';

-- Mark printed ------------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_mark_printed(p_ticket_id bigint, p_actor text) RETURNS public.kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_saved  jsonb;
BEGIN
    PERFORM kprintd.kitchen_admin_check_args('kitchen_mark_printed', p_ticket_id, p_actor);
    v_ticket := kprintd.kitchen_admin_lock_ticket('kitchen_mark_printed', p_ticket_id);
    IF v_ticket.status = 'printed' THEN
        RAISE EXCEPTION 'kitchen_mark_printed: ticket % is already printed', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    v_saved := kprintd.kitchen_change_description();
    PERFORM kprintd.kitchen_describe_change('marked_printed', p_actor);
    UPDATE public.kitchen_kitchenticket
       SET status = 'printed', printed_at = now()
     WHERE id = p_ticket_id
    RETURNING * INTO v_ticket;
    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN v_ticket;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_mark_printed(bigint, text) IS
    'Marks a new, printing or failed ticket as printed (for example the cook has it, printed by hand): status ''printed'', '
    'printed_at now, claim cleared; logged ''marked_printed'' by p_actor. Returns the updated ticket. Errors: 22004 NULL '
    'ticket id; 22023 blank actor; P0002 unknown ticket; 55000 (object_not_in_prerequisite_state) already printed.';

-- Mark failed -------------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_mark_failed(p_ticket_id bigint, p_actor text, p_reason text) RETURNS public.kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_saved  jsonb;
BEGIN
    PERFORM kprintd.kitchen_admin_check_args('kitchen_mark_failed', p_ticket_id, p_actor);
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'kitchen_mark_failed: a reason is required'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'It becomes the ticket''s error_message, e.g. ''printer replaced, order re-entered''.';
    END IF;
    v_ticket := kprintd.kitchen_admin_lock_ticket('kitchen_mark_failed', p_ticket_id);
    IF v_ticket.status = 'printed' THEN
        RAISE EXCEPTION 'kitchen_mark_failed: ticket % was printed and cannot fail any more', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'If the paper is lost, use kitchen_reprint().';
    ELSIF v_ticket.status = 'failed' THEN
        RAISE EXCEPTION 'kitchen_mark_failed: ticket % has already failed', p_ticket_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    v_saved := kprintd.kitchen_change_description();
    PERFORM kprintd.kitchen_describe_change('marked_failed', p_actor, NULL, 'manual');
    UPDATE public.kitchen_kitchenticket
       SET status = 'failed', error_message = btrim(p_reason), error_code = 'manual', last_error_at = now()
     WHERE id = p_ticket_id
    RETURNING * INTO v_ticket;
    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN v_ticket;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_mark_failed(bigint, text, text) IS
    'Gives up on a new or printing ticket: status ''failed'', error_message = p_reason, error_code ''manual'', last_error_at '
    'now, claim cleared; logged ''marked_failed'' by p_actor with error_code ''manual''. Returns the updated ticket. Errors: '
    '22004 NULL ticket id; 22023 blank actor or reason; P0002 unknown ticket; 55000 (object_not_in_prerequisite_state) '
    'ticket printed or already failed.';
