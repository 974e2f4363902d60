-- 0004 The audit trail, kept by the database itself.
--
-- Every INSERT of a kitchen_kitchenticket and every change of its status writes one
-- kitchen_kitchenticketlog row from an AFTER trigger, so a DBA's hand-typed UPDATE is audited too.
-- Writers describe their change with transaction-local settings (set them with
-- kitchen_describe_change(), in the same transaction, before the UPDATE):
--
--   kprintd.action       action name (print_start, print_success, print_failed, retry, manual_reset,
--                        marked_printed, marked_failed, ...); unset: 'manual_update'. INSERTs are
--                        always logged as 'created'.
--   kprintd.actor        who ('printer_service', 'admin:alice', 'pos'); unset: session_user
--   kprintd.duration_ms  integer, for SLA tracking; unset: NULL
--   kprintd.error_code   machine-readable error; unset: the ticket's error_code when it failed or changed
--   kprintd.metadata     a JSON object merged over the row's own metadata; unset: nothing merged
--
-- An empty string counts as unset. A description stays in force for every status change that
-- follows in the same transaction until it is changed or cleared.
--
-- The log is append-only: UPDATE, DELETE and TRUNCATE raise an error for every role, the table
-- owner and superusers included, and even with session_replication_role = replica. Because the log
-- references its ticket, a ticket that has log rows (every ticket) cannot be deleted either.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- 1. Describing a change ----------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_describe_change(
    p_action      text,
    p_actor       text,
    p_duration_ms integer DEFAULT NULL,
    p_error_code  text DEFAULT NULL,
    p_metadata    jsonb DEFAULT '{}'
) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF p_action IS NOT NULL AND (btrim(p_action) = '' OR length(btrim(p_action)) > 50) THEN
        RAISE EXCEPTION 'kitchen_describe_change: action must be 1 to 50 characters, got %', quote_literal(p_action)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use the spec''s names: print_start, print_success, print_failed, retry, manual_reset, marked_printed, marked_failed; NULL clears it.';
    END IF;
    IF p_actor IS NOT NULL AND (btrim(p_actor) = '' OR length(btrim(p_actor)) > 100) THEN
        RAISE EXCEPTION 'kitchen_describe_change: actor must be 1 to 100 characters, got %', quote_literal(p_actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''printer_service'' or ''admin:alice''; NULL means session_user.';
    END IF;
    IF p_duration_ms < 0 THEN
        RAISE EXCEPTION 'kitchen_describe_change: duration_ms must not be negative, got %', p_duration_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_error_code IS NOT NULL AND (btrim(p_error_code) = '' OR length(btrim(p_error_code)) > 50) THEN
        RAISE EXCEPTION 'kitchen_describe_change: error_code must be 1 to 50 characters, got %', quote_literal(p_error_code)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_metadata IS NOT NULL AND jsonb_typeof(p_metadata) <> 'object' THEN
        RAISE EXCEPTION 'kitchen_describe_change: metadata must be a JSON object, got %', p_metadata
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('kprintd.action', COALESCE(btrim(p_action), ''), true),
            set_config('kprintd.actor', COALESCE(btrim(p_actor), ''), true),
            set_config('kprintd.duration_ms', COALESCE(p_duration_ms::text, ''), true),
            set_config('kprintd.error_code', COALESCE(btrim(p_error_code), ''), true),
            set_config('kprintd.metadata',
                       CASE WHEN p_metadata IS NULL OR p_metadata = '{}'::jsonb THEN '' ELSE p_metadata::text END,
                       true);
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_describe_change(text, text, integer, text, jsonb) IS
    'Describes the ticket status changes that follow IN THE SAME TRANSACTION (until described again or cleared) for the '
    'audit trail: sets kprintd.action, kprintd.actor, kprintd.duration_ms, kprintd.error_code and kprintd.metadata as '
    'transaction-local settings. NULL clears a setting (kitchen_describe_change(NULL, NULL) clears all). Example: '
    'SELECT kitchen_describe_change(''print_success'', ''printer_service'', 1234, NULL, ''{"attempt":1}''); UPDATE ... SET status = ''printed'' ...; '
    'Errors: 22023 invalid_parameter_value (blank or too long action/actor/error_code, negative duration, metadata not an object).';

CREATE FUNCTION kprintd.kitchen_change_description() RETURNS jsonb
    LANGUAGE sql STABLE
    RETURN jsonb_build_object(
        'action',      NULLIF(current_setting('kprintd.action', true), ''),
        'actor',       NULLIF(current_setting('kprintd.actor', true), ''),
        'duration_ms', NULLIF(current_setting('kprintd.duration_ms', true), ''),
        'error_code',  NULLIF(current_setting('kprintd.error_code', true), ''),
        'metadata',    NULLIF(current_setting('kprintd.metadata', true), ''));

COMMENT ON FUNCTION kprintd.kitchen_change_description() IS
    'The description in force for the next ticket status change of this transaction, as the raw setting texts '
    '{"action", "actor", "duration_ms", "error_code", "metadata"} (JSON null = unset). Pass it to '
    'kitchen_restore_change_description() to put it back after describing changes of your own.';

CREATE FUNCTION kprintd.kitchen_restore_change_description(p_saved jsonb) RETURNS void
    LANGUAGE sql VOLATILE
    BEGIN ATOMIC
        SELECT set_config('kprintd.action',      COALESCE(p_saved ->> 'action', ''), true),
               set_config('kprintd.actor',       COALESCE(p_saved ->> 'actor', ''), true),
               set_config('kprintd.duration_ms', COALESCE(p_saved ->> 'duration_ms', ''), true),
               set_config('kprintd.error_code',  COALESCE(p_saved ->> 'error_code', ''), true),
               set_config('kprintd.metadata',    COALESCE(p_saved ->> 'metadata', ''), true);
    END;

COMMENT ON FUNCTION kprintd.kitchen_restore_change_description(jsonb) IS
    'Puts back a description saved with kitchen_change_description() (NULL or missing keys clear that setting). '
    'kprintd''s own SQL functions use it so their descriptions do not leak into the caller''s later statements.';

-- 2. Writing the log ---------------------------------------------------------------------------------
-- SECURITY DEFINER: the log is written with the owner's rights, so application roles need no INSERT
-- privilege on kitchen_kitchenticketlog (revoke it and they cannot forge audit rows).
CREATE FUNCTION kprintd.kitchen_ticket_audit() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_action     text := NULLIF(btrim(current_setting('kprintd.action', true)), '');
    v_actor      text := NULLIF(btrim(current_setting('kprintd.actor', true)), '');
    v_duration   text := NULLIF(btrim(current_setting('kprintd.duration_ms', true)), '');
    v_error_code text := NULLIF(btrim(current_setting('kprintd.error_code', true)), '');
    v_meta_text  text := NULLIF(btrim(current_setting('kprintd.metadata', true)), '');
    v_extra      jsonb := '{}';
    v_base       jsonb;
BEGIN
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

    IF TG_OP = 'INSERT' THEN
        v_base := jsonb_build_object(
            'items_count', (SELECT count(*) FROM public.kitchen_kitchenticketitem i WHERE i.kitchen_ticket_id = NEW.id),
            'bill_id', NEW.bill_id,
            'station', NEW.printer_target,
            'ticket_type', NEW.ticket_type);
        IF NEW.is_reprint THEN
            v_base := v_base || jsonb_build_object('reprint_of', NEW.original_ticket_id);
        END IF;
        INSERT INTO public.kitchen_kitchenticketlog
            (ticket_id, timestamp, old_status, new_status, action, actor,
             printer_ip, error_code, error_message, duration_ms, metadata)
        VALUES
            (NEW.id, clock_timestamp(), NULL, NEW.status, 'created', left(COALESCE(v_actor, session_user), 100),
             NEW.printer_ip, NEW.error_code, NEW.error_message, NULL, v_base || v_extra);
        RETURN NULL;
    END IF;

    -- UPDATE that changed status (the trigger's WHEN clause)
    v_base := jsonb_build_object('print_attempts', NEW.print_attempts);
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
    'INSERT: action ''created'', actor kprintd.actor else session_user, metadata {items_count, bill_id, station, ticket_type'
    '[, reprint_of]} plus kprintd.metadata. Status change: action kprintd.action else ''manual_update'', actor kprintd.actor '
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

-- 3. Append-only ----------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_ticketlog_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kitchen_kitchenticketlog is an append-only audit trail: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = 'This holds for every role, the table owner and superusers included.',
              HINT = 'Log rows are written by triggers on kitchen_kitchenticket; to correct a ticket, change the ticket and a new log row records it.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketlog_append_only() IS
    'BEFORE UPDATE/DELETE/TRUNCATE on kitchen_kitchenticketlog: always raises SQLSTATE 42501 (insufficient_privilege). '
    'The log cannot be edited or emptied by anyone; only dropping the trigger (DDL, visible in the schema) would allow it.';

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

-- ALWAYS: also with session_replication_role = replica, the usual way to skip triggers.
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_update;
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_delete;
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_modify;
