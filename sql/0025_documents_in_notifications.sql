-- 0025 The ticket's document travels with its notification; a claim no longer describes itself.
--
-- Between a POS's COMMIT and the paper, the daemon waits for one round trip: the claim. Two things
-- made that claim longer than it had to be, and both move out of it here:
--
-- 1. Building the ticket's document (kitchen_ticket_document) was part of every claim. A ticket
--    inserted as 'new' now carries its document in its kitchen_ticket_new notification, built in
--    the inserting transaction, where the bill's rows were just written. The daemon holds the
--    documents it was sent and tells the claim which ones (p_held_ticket_ids, with their tokens
--    and line counts); the claim returns NULL instead of a document the caller already holds, but
--    only for a first attempt whose lines are still the ones announced. Everything else (a retry,
--    a ticket that may have printed, lines added after the insert, a notification without a
--    document) gets the document built at claim time, as before.
--
--    Anyone who can connect can NOTIFY on any channel, so a payload proves nothing by itself. Each
--    ticket gets a random notice_token at insert, sent in its notification only; the claim
--    accepts a held document only with its ticket's token. A forger would have to guess 122
--    random bits before the real notification arrives (the daemon keeps the first document it
--    hears of for a ticket), so the paper says what the POS sent.
-- 2. The claim saved, set and restored five settings to describe its status change for the audit
--    trigger. A claim (status 'new' -> 'printing' with claimed_by set) is now recognised by the
--    trigger itself and always logged as 'print_start' by 'printer_service', metadata
--    {"daemon": claimed_by}; the claim touches no setting, so the caller's description is left
--    as it was without saving it.
--
-- The payload keeps every key of 0005 and gains "document" (the JSON of kitchen_ticket_document)
-- for a ticket inserted as 'new' with at least one line, when the whole payload stays under
-- PostgreSQL's 8000-byte NOTIFY limit. Listeners that read only the old keys are unaffected.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. The notification ------------------------------------------------------------------------------
-- ADD COLUMN without a default and SET DEFAULT after: existing rows keep NULL (never matched), and
-- a large history is not rewritten.
ALTER TABLE public.kitchen_kitchenticket ADD COLUMN notice_token uuid;
ALTER TABLE public.kitchen_kitchenticket ALTER COLUMN notice_token SET DEFAULT gen_random_uuid();

COMMENT ON COLUMN public.kitchen_kitchenticket.notice_token IS
    'kprintd: a random value sent only in the ticket''s kitchen_ticket_new notification with its '
    'document; kitchen_claim_print_jobs() accepts the document a daemon holds only with it. '
    'Reporting roles need not read it: grant them the views.';

-- The payload, for the notification sent when a ticket is committed (sql/0026) and when it goes back
-- to 'new': where the ticket goes, nothing of what it says (any login can LISTEN).
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

CREATE OR REPLACE FUNCTION kprintd.kitchen_ticket_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kitchen_ticket_new', kprintd.kitchen_ticket_notice(NEW));
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_notify() IS
    'AFTER UPDATE (status changed to ''new'') on kitchen_kitchenticket: '
    'pg_notify(''kitchen_ticket_new'', kitchen_ticket_notice(NEW)), delivered at commit. '
    'A new ticket is announced when its transaction commits (kitchen_ticket_committed, sql/0026).';

-- 2. The audit trigger recognises a claim ---------------------------------------------------------
-- The 'created' row kprintd writes, when the audit trigger (a described insert) or the commit of an
-- undescribed one (sql/0026) logs a ticket's creation.
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

-- Whose description of a change is believed: the daemon's and a manager's (the admin functions).
-- Before the roles exist (sql/0033), everyone's, as on a database without them.
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

-- As in 0004, but a claim is recognised first and its description is fixed; a description is
-- believed only from a trusted session (kitchen_session_trusted).
CREATE OR REPLACE FUNCTION kprintd.kitchen_ticket_audit() RETURNS trigger
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

-- 3. The claim -------------------------------------------------------------------------------------
-- New arguments, so a new signature: the 0013 function is replaced, and callers that pass six
-- arguments get the same rows as before.
DROP FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer);

CREATE FUNCTION kprintd.kitchen_claim_print_jobs(
    p_daemon            text,
    p_lease_seconds     double precision,
    p_brand_id          uuid,
    p_store_id          uuid,
    p_station           text,
    p_limit             integer DEFAULT 1,
    p_held_ticket_ids   bigint[] DEFAULT NULL,
    p_held_tokens       uuid[] DEFAULT NULL,
    p_held_line_counts  integer[] DEFAULT NULL
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
        RETURNING t.id, t.print_attempts, t.max_retries, t.may_have_printed, t.created_at,
                  t.notice_token, array_position(p_held_ticket_ids, t.id) AS held
    )
    SELECT c.id, c.print_attempts, c.max_retries,
           CASE WHEN c.print_attempts = 1 AND NOT c.may_have_printed
                     AND c.notice_token = p_held_tokens[c.held]
                     AND p_held_line_counts[c.held]
                         = (SELECT count(*) FROM public.kitchen_kitchenticketitem i
                            WHERE i.kitchen_ticket_id = c.id)
                THEN NULL  -- the caller holds it (from the notification): not built twice
                ELSE kprintd.kitchen_ticket_document(c.id)
           END
    FROM claimed c
    ORDER BY c.created_at, c.id;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer, bigint[], uuid[], integer[]) IS
    'Claim up to p_limit due tickets of one route (brand, store, station), oldest first, skipping '
    'rows another daemon holds: status printing, a lease for p_daemon, one more print attempt, '
    'logged as print_start by printer_service (the audit trigger knows a claim; the caller''s own '
    'change description is not used and not changed). Returns each ticket''s printable document, '
    'or NULL for a ticket in p_held_ticket_ids whose document the caller already holds (from its '
    'kitchen_ticket_new notification): only on its first attempt, nothing possibly printed, its '
    'notice_token and line count the ones in p_held_tokens and p_held_line_counts at the same '
    'position. Commit before printing.';
