-- 0027 Ticket retention: old final tickets leave with their items and log rows, and every purge is
-- recorded for good.
--
-- Owns: kitchen_purge(); the table kitchen_purgelog and its trigger function
-- kitchen_purgelog_append_only(); the digest aggregate kitchen_sha256_chain() and its step
-- kitchen_sha256_chain_step(); kitchen_ticketlog_append_only() as of this file.
--
-- kitchen_purge(older_than interval, actor text) removes, in the caller's transaction, every
-- ticket that is final ('printed' or 'failed') and was created before now() - older_than, with its
-- kitchen_kitchenticketitem and kitchen_kitchenticketlog rows. It never removes:
--   - anything younger than 7 days (the floor: a smaller older_than is refused);
--   - a ticket still 'new' or 'printing';
--   - a ticket that a ticket it keeps still references (original_ticket_id: a reprint's original),
--     so a young reprint keeps its old original.
-- Each call, also one that removed nothing, adds one row to kitchen_purgelog: who, when, the
-- cutoff, what was removed and kept, and a SHA-256 digest of the removed rows. kitchen_purgelog is
-- append-only like the ticket log.
--
-- kitchen_kitchenticketlog stays append-only for everyone else. UPDATE and TRUNCATE are refused,
-- and so is a DELETE unless it runs inside kitchen_purge: its transaction-local flag kprintd.purge
-- is set AND the current user is kitchen_purge's owner, as it is inside that SECURITY DEFINER
-- function. Another role that sets the flag itself is still refused; only the owner could, who may
-- as well drop the trigger. Every refused DELETE names kitchen_purge, so whoever tried learns what
-- to call.
--
-- Rows elsewhere that only name a ticket (kitchen_alertlog.subject 'ticket:<id>') have no foreign
-- key and are kept.
--
-- EXECUTE on kitchen_purge is revoked from PUBLIC: grant it to the role that purges, e.g.
--   GRANT EXECUTE ON FUNCTION kitchen_purge(interval, text) TO pos;
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. The digest -----------------------------------------------------------------------------------
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

-- 2. The record of purges -------------------------------------------------------------------------
CREATE TABLE public.kitchen_purgelog (
    id                       BIGSERIAL PRIMARY KEY,
    purged_at                TIMESTAMP WITH TIME ZONE NOT NULL,
    actor                    VARCHAR(100) NOT NULL,
    cutoff                   TIMESTAMP WITH TIME ZONE NOT NULL,
    older_than               INTERVAL NOT NULL,
    tickets_deleted          BIGINT NOT NULL,
    items_deleted            BIGINT NOT NULL,
    log_rows_deleted         BIGINT NOT NULL,
    tickets_kept_not_final   BIGINT NOT NULL,
    tickets_kept_referenced  BIGINT NOT NULL,
    digest                   CHAR(64) NOT NULL,
    db_user                  TEXT NOT NULL,

    CONSTRAINT kitchen_purgelog_actor_nonblank CHECK (btrim(actor) <> ''),
    CONSTRAINT kitchen_purgelog_counts_nonnegative
        CHECK (tickets_deleted >= 0 AND items_deleted >= 0 AND log_rows_deleted >= 0
               AND tickets_kept_not_final >= 0 AND tickets_kept_referenced >= 0),
    CONSTRAINT kitchen_purgelog_digest_hex CHECK (digest ~ '^[0-9a-f]{64}$')
);

CREATE INDEX idx_purgelog_purged_at ON public.kitchen_purgelog (purged_at DESC);

COMMENT ON TABLE public.kitchen_purgelog IS
    'One row per kitchen_purge() call, also when it removed nothing (append-only): who asked (actor, and '
    'db_user, the session user that ran it), when (purged_at, the transaction''s time), the cutoff '
    '(purged_at - older_than: final tickets created before it were removed), what was removed and what was '
    'kept, and a digest of the removed rows.';
COMMENT ON COLUMN public.kitchen_purgelog.tickets_kept_not_final IS
    'Tickets created before the cutoff that were kept because they were still new or printing.';
COMMENT ON COLUMN public.kitchen_purgelog.tickets_kept_referenced IS
    'Final tickets created before the cutoff that were kept because a kept ticket (a reprint) references them.';
COMMENT ON COLUMN public.kitchen_purgelog.digest IS
    'Hex of kitchen_sha256_chain over one line per removed row, ''<table> <row_to_json(row)>'' with '
    'timestamps in UTC: kitchen_kitchenticket rows by id, then kitchen_kitchenticketitem rows by id, then '
    'kitchen_kitchenticketlog rows by id. The same rows always give the same digest, so a backup taken '
    'before the purge can prove what was removed. No rows: sha256 of nothing (e3b0c442...).';

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

-- ALWAYS: also with session_replication_role = replica, the usual way to skip triggers.
ALTER TABLE public.kitchen_purgelog ENABLE ALWAYS TRIGGER kitchen_purgelog_no_update_delete;
ALTER TABLE public.kitchen_purgelog ENABLE ALWAYS TRIGGER kitchen_purgelog_no_modify;

-- 3. The purge ------------------------------------------------------------------------------------
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

REVOKE EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) FROM PUBLIC;

COMMENT ON FUNCTION kprintd.kitchen_purge(interval, text) IS
    'Ticket retention, in the caller''s transaction: removes every final ticket (printed or failed) created before '
    'now() - p_older_than, with its kitchen_kitchenticketitem and kitchen_kitchenticketlog rows, except tickets a '
    'kept ticket still references (a young reprint''s original). Adds one kitchen_purgelog row (also when nothing '
    'was removed) and returns it. Concurrent purges run one after the other (advisory lock); tickets being removed '
    'are locked, so a reset or reprint of one of them waits. The only way to delete ticket log rows. Example: '
    'SELECT * FROM kitchen_purge(interval ''30 days'', ''pos:nightly''); '
    'Errors: 22023 (invalid_parameter_value) older_than NULL or under the floor of 7 days, actor NULL, blank or '
    'over 100 characters. EXECUTE is not granted to PUBLIC.';

-- 4. The ticket log: DELETE only from kitchen_purge (same signature as in 0004: replace) ----------
-- search_path is fixed: this runs with the deleter's settings, and a deleter's own "=" operator
-- must not decide whether it is the purge.
CREATE OR REPLACE FUNCTION kprintd.kitchen_ticketlog_append_only() RETURNS trigger
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
