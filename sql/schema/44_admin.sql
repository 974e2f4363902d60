-- Admin actions and retention: reprint, reset, mark printed, mark failed, the ticket list of
-- `kprintd tickets`, and kitchen_purge.
--
-- Each admin action runs in the caller's transaction, locks the ticket, refuses transitions that
-- make no sense with SQLSTATE 55000 (object_not_in_prerequisite_state), and is audited under the
-- spec's action names through kitchen_describe_change(); the caller's own description is put back
-- afterwards. They run with their owner's rights (SECURITY DEFINER): a manager needs EXECUTE only.
--
-- kitchen_purge(older_than, actor) removes, in the caller's transaction, every ticket that is final
-- ('printed' or 'failed') and was created before now() - older_than, with its lines and log rows.
-- It never removes anything younger than 7 days, a ticket still 'new' or 'printing', or a ticket a
-- kept ticket references (a young reprint keeps its old original). Each call, also one that removed
-- nothing, adds one row to kitchen_purgelog with a SHA-256 digest of the removed rows. Rows
-- elsewhere that only name a ticket (kitchen_alertlog.subject 'ticket:<id>') are kept.

-- Admin actions ---------------------------------------------------------------------------------
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
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

CREATE FUNCTION kprintd.kitchen_ticket_list(
    p_limit      integer,
    p_bill_ids   bigint[] DEFAULT NULL,
    p_brand_ids  uuid[] DEFAULT NULL,
    p_store_id   uuid DEFAULT NULL
)
RETURNS TABLE (
    ticket_id           bigint,
    bill_id             bigint,
    bill_number         text,
    brand_id            uuid,
    store_id            uuid,
    station             text,
    ticket_type         text,
    is_reprint          boolean,
    original_ticket_id  bigint,
    status              text,
    print_attempts      integer,
    max_retries         integer,
    may_have_printed    boolean,
    next_attempt_at     timestamptz,
    created_at          timestamptz,
    printed_at          timestamptz,
    last_error_at       timestamptz,
    error_code          text,
    error_message       text,
    items               jsonb
)
    LANGUAGE sql STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    -- Casts: a POS's adopted table may have varchar, smallint or timestamp-without-zone columns.
    SELECT t.id::bigint,
           t.bill_id::bigint,
           b.bill_number,
           t.brand_id,
           t.store_id,
           t.printer_target::text,
           t.ticket_type::text,
           coalesce(t.is_reprint, false),
           t.original_ticket_id::bigint,
           t.status::text,
           coalesce(t.print_attempts, 0)::integer,
           t.max_retries::integer,
           t.may_have_printed,
           t.next_attempt_at,
           t.created_at::timestamptz,
           t.printed_at::timestamptz,
           t.last_error_at::timestamptz,
           nullif(t.error_code::text, ''),
           nullif(t.error_message::text, ''),
           -- The lines as they print (kitchen_ticket_document): a partial reprint names their bill_item_id.
           coalesce(kprintd.kitchen_ticket_document(t.id) -> 'lines', '[]')
    FROM (
        SELECT k.*
        FROM public.kitchen_kitchenticket k
        WHERE (p_bill_ids IS NULL OR k.bill_id = ANY (p_bill_ids))
          AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR k.brand_id = ANY (p_brand_ids))
          AND (p_store_id IS NULL OR k.store_id = p_store_id)
        ORDER BY k.id DESC
        LIMIT p_limit
    ) t
    LEFT JOIN public.kitchen_pos_bill b ON b.id = t.bill_id
    ORDER BY t.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_list(integer, bigint[], uuid[], uuid) IS
    'The tickets `kprintd tickets` lists: the last p_limit tickets by id (every one when NULL), '
    'only of the bills p_bill_ids when given, in the scope p_brand_ids (NULL or empty = every '
    'brand) and p_store_id (NULL = every store) as kitchen_status_report() takes it; oldest first. '
    'Per ticket: bill number, station, type, reprint of which original, status, attempts of '
    'max_retries, may_have_printed, due, created, printed and last error times, error code and '
    'message (NULL when empty), and items: the lines as kitchen_ticket_document() gives them '
    '(bill_item_id, quantity, name, notes, is_void, station, modifiers), whose bill_item_id a '
    'partial kitchen_reprint() takes. Reads only, with its owner''s rights: EXECUTE is granted by '
    'duty, not to PUBLIC.';

-- Retention -------------------------------------------------------------------------------------
-- The digest.
-- SHA-256 has no incremental form in PostgreSQL, and hashing one long string would hold every
-- removed row in memory at once; a hash chain needs 32 bytes of state.
CREATE FUNCTION kprintd.kitchen_sha256_chain_step(p_state bytea, p_line text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN sha256(p_state || convert_to(p_line, 'UTF8'));

COMMENT ON FUNCTION kprintd.kitchen_sha256_chain_step(bytea, text) IS
    'State transition of the kitchen_sha256_chain aggregate: sha256(state || UTF-8 bytes of line).';

CREATE AGGREGATE kprintd.kitchen_sha256_chain(text) (
    SFUNC = kprintd.kitchen_sha256_chain_step,
    STYPE = bytea,
    -- sha256 of zero bytes: the chain of no lines is the well-known digest of nothing.
    INITCOND = '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
);

COMMENT ON AGGREGATE kprintd.kitchen_sha256_chain(text) IS
    'SHA-256 hash chain over lines, in memory of 32 bytes: h0 = sha256(''''), h(i) = sha256(h(i-1) || '
    'UTF-8 bytes of line i); returns h(n) as bytea. Order matters: call it with ORDER BY, e.g. '
    'encode(kitchen_sha256_chain(line ORDER BY n), ''hex''). kitchen_purge digests the rows it removes with it.';

-- The purge.
-- SECURITY DEFINER: callers need no DELETE on the kitchen tables, and the log's trigger recognises
-- the purge by its owner. search_path is fixed with pg_temp last, so nothing of the caller's (a
-- temp table, a function or an operator of its own schema) can stand in for what is named here.
-- TimeZone is fixed because row_to_json writes timestamps in it, and the digest must not depend on
-- the caller.
CREATE FUNCTION kprintd.kitchen_purge(p_older_than interval, p_actor text) RETURNS public.kitchen_purgelog
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
AS $$
DECLARE
    v_floor  CONSTANT interval := interval '7 days';
    v_actor  text := btrim(p_actor);
    v_cutoff timestamptz;
    v_record public.kitchen_purgelog;
BEGIN
    IF p_older_than IS NULL OR p_older_than < v_floor THEN
        RAISE EXCEPTION 'kitchen_purge: older_than must be at least %, got %', v_floor, quote_nullable(p_older_than)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Tickets younger than 7 days are never purged (they may still be reprinted or questioned). '
                         'A nightly purge usually passes interval ''30 days''.';
    END IF;
    IF v_actor IS NULL OR v_actor = '' OR length(v_actor) > 100 THEN
        RAISE EXCEPTION 'kitchen_purge: actor must be 1 to 100 characters, got %', quote_nullable(p_actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Say who purges, e.g. ''pos:nightly'' or ''admin:sari''; it goes into kitchen_purgelog.';
    END IF;

    -- Two purges at once would each count and digest rows the other removes.
    PERFORM pg_advisory_xact_lock(hashtext('kitchen_purge'));
    v_cutoff := now() - p_older_than;

    -- Lock the candidates before reading anything else. A ticket reset or reprinted meanwhile has
    -- either committed (and the next statement, with a newer snapshot, sees its new state, its
    -- new log row and its reprint) or waits for this purge to commit. count(*): nothing is kept
    -- in memory.
    PERFORM count(*)
       FROM (SELECT 1 FROM public.kitchen_kitchenticket t
              WHERE t.status IN ('printed', 'failed') AND t.created_at < v_cutoff
                FOR UPDATE) AS locked;

    PERFORM set_config('kprintd.purge', 'running', true);
    WITH RECURSIVE
        candidate AS MATERIALIZED (
            SELECT t.id FROM public.kitchen_kitchenticket t
             WHERE t.status IN ('printed', 'failed') AND t.created_at < v_cutoff),
        -- Tickets a kept ticket references, and what those reference in turn.
        held (id) AS (
            SELECT r.original_ticket_id FROM public.kitchen_kitchenticket r
             WHERE r.original_ticket_id IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM candidate c WHERE c.id = r.id)
            UNION
            SELECT r.original_ticket_id FROM public.kitchen_kitchenticket r JOIN held h ON r.id = h.id
             WHERE r.original_ticket_id IS NOT NULL),
        doomed AS MATERIALIZED (
            SELECT c.id FROM candidate c WHERE NOT EXISTS (SELECT 1 FROM held h WHERE h.id = c.id)),
        gone_log AS (
            DELETE FROM public.kitchen_kitchenticketlog l USING doomed d WHERE l.ticket_id = d.id RETURNING l.*),
        gone_items AS (
            DELETE FROM public.kitchen_kitchenticketitem i USING doomed d WHERE i.kitchen_ticket_id = d.id RETURNING i.*),
        gone_tickets AS (
            DELETE FROM public.kitchen_kitchenticket t USING doomed d WHERE t.id = d.id RETURNING t.*)
    INSERT INTO public.kitchen_purgelog
        (purged_at, actor, cutoff, older_than, tickets_deleted, items_deleted, log_rows_deleted,
         tickets_kept_not_final, tickets_kept_referenced, digest, db_user)
    SELECT now(), v_actor, v_cutoff, p_older_than,
           (SELECT count(*) FROM gone_tickets),
           (SELECT count(*) FROM gone_items),
           (SELECT count(*) FROM gone_log),
           (SELECT count(*) FROM public.kitchen_kitchenticket t
             WHERE t.created_at < v_cutoff AND t.status NOT IN ('printed', 'failed')),
           (SELECT count(*) FROM candidate) - (SELECT count(*) FROM gone_tickets),
           (SELECT encode(kprintd.kitchen_sha256_chain(x.line ORDER BY x.part, x.id), 'hex')
              FROM (SELECT 1 AS part, g.id, 'kitchen_kitchenticket ' || row_to_json(g)::text AS line
                      FROM gone_tickets g
                    UNION ALL
                    SELECT 2, g.id, 'kitchen_kitchenticketitem ' || row_to_json(g)::text FROM gone_items g
                    UNION ALL
                    SELECT 3, g.id, 'kitchen_kitchenticketlog ' || row_to_json(g)::text FROM gone_log g) AS x),
           session_user
    RETURNING * INTO v_record;
    PERFORM set_config('kprintd.purge', '', true);
    RETURN v_record;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_purge(interval, text) IS
    'Ticket retention, in the caller''s transaction: removes every final ticket (printed or failed) created before '
    'now() - p_older_than, with its kitchen_kitchenticketitem and kitchen_kitchenticketlog rows, except tickets a '
    'kept ticket still references (a young reprint''s original). Adds one kitchen_purgelog row (also when nothing '
    'was removed) and returns it. Concurrent purges run one after the other (advisory lock); tickets being removed '
    'are locked, so a reset or reprint of one of them waits. The only way to delete ticket log rows. Example: '
    'SELECT * FROM kitchen_purge(interval ''30 days'', ''pos:nightly''); '
    'Errors: 22023 (invalid_parameter_value) older_than NULL or under the floor of 7 days, actor NULL, blank or '
    'over 100 characters. EXECUTE is not granted to PUBLIC.';
