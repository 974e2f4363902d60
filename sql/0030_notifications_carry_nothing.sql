-- 0030 A notification only wakes the daemon: what prints is what the database holds at the claim.
--
-- Owns: kitchen_claim_print_jobs() as of this file. The column kitchen_kitchenticket.notice_token
-- is dropped. The payload itself is kitchen_ticket_notice()'s (sql/0025).
--
-- Any role that can connect can LISTEN on kitchen_ticket_new and NOTIFY on it, grants or not, so
-- nothing sent there is secret and nothing heard there is trusted:
--
-- * The kitchen_ticket_new payload names the ticket and where it goes, nothing more:
--     {"ticket_id": 42, "station": "bar", "brand_id": "<uuid>", "store_id": "<uuid>|null",
--      "ticket_type": "order|addition|void|checker", "due_at": "<next_attempt_at, ISO 8601>"}
--   kprintd reads the station, brand and store from it to wake that route's worker, which then
--   claims whatever is due on the route. A forged notification can only wake a worker early.
-- * kitchen_claim_print_jobs() returns every claimed ticket's document, built from the tables in
--   the claiming transaction (kitchen_ticket_document()): its lines as they are then, and its
--   RETRY mark when an earlier attempt may have reached paper.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. No token ----------------------------------------------------------------------------------------
ALTER TABLE public.kitchen_kitchenticket DROP COLUMN notice_token;

-- 2. The claim -------------------------------------------------------------------------------------
DROP FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer,
                                       bigint[], uuid[], integer[]);

CREATE FUNCTION kprintd.kitchen_claim_print_jobs(
    p_daemon         text,
    p_lease_seconds  double precision,
    p_brand_id       uuid,
    p_store_id       uuid,
    p_station        text,
    p_limit          integer DEFAULT 1
) RETURNS TABLE (ticket_id bigint, attempt integer, max_retries integer, document jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF coalesce(btrim(p_daemon), '') = '' THEN
        RAISE EXCEPTION 'a daemon id is required to claim tickets' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT t.id
        FROM public.kitchen_kitchenticket t
        WHERE t.status = 'new'
          AND t.print_attempts < t.max_retries
          AND t.next_attempt_at <= now()
          AND t.printer_target = p_station
          AND t.brand_id IS NOT DISTINCT FROM p_brand_id
          AND t.store_id IS NOT DISTINCT FROM p_store_id
        ORDER BY t.created_at, t.id
        LIMIT greatest(p_limit, 1)
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE public.kitchen_kitchenticket t
        SET status = 'printing',
            claimed_by = p_daemon,
            lease_expires_at = now() + make_interval(secs => p_lease_seconds),
            print_attempts = t.print_attempts + 1
        FROM due
        WHERE t.id = due.id
        RETURNING t.id, t.print_attempts, t.max_retries, t.created_at
    )
    SELECT c.id, c.print_attempts, c.max_retries, kprintd.kitchen_ticket_document(c.id)
    FROM claimed c
    ORDER BY c.created_at, c.id;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer) IS
    'Claim up to p_limit due tickets of one route (brand, store, station), oldest first, skipping '
    'rows another daemon holds: status printing, a lease for p_daemon, one more print attempt, '
    'logged as print_start by printer_service (the audit trigger knows a claim; the caller''s own '
    'change description is not used and not changed). Returns each ticket''s printable document '
    '(kitchen_ticket_document()), built from the tables in this transaction: print that, and nothing '
    'a notification said. Commit before printing.';
