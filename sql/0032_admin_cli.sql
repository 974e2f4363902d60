-- 0032 The admin command line's ticket list: `kprintd tickets` and `kprintd tickets --bill`.
--
-- Owns: kitchen_ticket_list(). Everything else the admin commands use already exists: the
-- actions are kitchen_reprint(), kitchen_reset_ticket(), kitchen_mark_printed() and
-- kitchen_mark_failed() (sql/0007); `--failed`, `--stuck` and the bill lookup of `--bill` read
-- the views kitchen_failed_tickets, kitchen_stuck_tickets and kitchen_bill_status (sql/0021).
--
-- kitchen_ticket_list() only reads, and runs with its owner's rights (SECURITY DEFINER, names
-- resolved in pg_catalog and public only), like the admin actions it serves: a manager needs
-- EXECUTE on it and no rights on the tickets, their lines or the POS's bills and items. EXECUTE is
-- revoked from PUBLIC here; grant it by duty, e.g.
--   GRANT EXECUTE ON FUNCTION kitchen_ticket_list(integer, bigint[], uuid[], uuid) TO kprintd_manager;
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

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
           -- The lines as they print (sql/0011): a partial reprint names their bill_item_id.
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

REVOKE EXECUTE ON FUNCTION kprintd.kitchen_ticket_list(integer, bigint[], uuid[], uuid) FROM PUBLIC;
