-- The daemon's side of the queue: which printers a ticket may go to, routing, claiming with leases,
-- the document a ticket prints, recording outcomes, and reclaiming expired leases.
--
-- A claimed ticket is 'printing' and belongs to claimed_by until lease_expires_at; a lease that
-- expires is reclaimed, and the ticket prints again with a RETRY banner. The daemon calls these
-- functions as kprintd_daemon (60_roles_and_grants.sql).

-- Printers a ticket may go to -------------------------------------------------------------------
-- What a health check says.
CREATE FUNCTION kprintd.kitchen_printer_state(p_is_online boolean, p_paper_status text, p_error_code text)
RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN p_is_online IS NULL THEN 'unknown'
        WHEN NOT p_is_online THEN 'offline'
        WHEN p_error_code = 'cover_open' THEN 'cover_open'
        WHEN p_paper_status = 'out' OR p_error_code = 'paper_out' THEN 'paper_out'
        WHEN p_error_code IS NOT NULL OR p_paper_status = 'jam' THEN 'error'
        WHEN p_paper_status = 'low' THEN 'paper_low'
        WHEN p_paper_status = 'ok' THEN 'ok'
        ELSE 'no_status'
    END;

COMMENT ON FUNCTION kprintd.kitchen_printer_state(boolean, text, text) IS
    'The state of a printer as one health check (is_online, paper_status, error_code) shows it: '
    '''offline'' (not reachable, or the printer says it is offline), ''cover_open'', ''paper_out'', '
    '''error'' (cutter jam, printer error, garbled status), ''paper_low'' (prints; near-end sensor), '
    '''ok'', ''no_status'' (reachable but did not answer the status request) and ''unknown'' (no check). '
    'offline, cover_open, paper_out and error mean the printer cannot print: kprintd routes to a backup.';

-- One printer's current or next maintenance window.
CREATE FUNCTION kprintd.kitchen_printer_maintenance(p_printer_id bigint, p_at timestamptz DEFAULT now())
RETURNS TABLE (starts_at timestamptz, ends_at timestamptz, reason text)
LANGUAGE sql STABLE AS $$
    SELECT m.starts_at, m.ends_at, m.reason
    FROM public.kitchen_stationprinterschedule m
    WHERE m.printer_id = p_printer_id
      AND m.ends_at > p_at
    -- The window in force (the one ending last, if several overlap), else the next to start.
    ORDER BY m.starts_at > p_at,
             CASE WHEN m.starts_at <= p_at THEN m.ends_at END DESC,
             m.starts_at, m.ends_at DESC
    LIMIT 1
$$;

COMMENT ON FUNCTION kprintd.kitchen_printer_maintenance(bigint, timestamptz) IS
    'The printer''s maintenance window in force at p_at (default now; of overlapping ones, the one '
    'ending last), else its next one; no row when none is planned. starts_at <= p_at means the '
    'printer is in maintenance until ends_at.';

-- Routing and claiming --------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_route_printers(p_brand_id uuid, p_store_id uuid, p_station text)
RETURNS TABLE (
    printer_id        bigint,
    printer_name      text,
    printer_ip        text,
    printer_port      integer,
    priority          integer,
    paper_width_mm    integer,
    chars_per_line    integer,
    header_line       text,
    buzzer            boolean,
    copies            integer,
    large_item_font   boolean,
    codepage          text,
    cut_mode          text,
    time_zone         text,
    maintenance_from  timestamptz,
    maintenance_until timestamptz,
    answers_status    boolean
)
LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.printer_name, kprintd.kitchen_printer_host(sp.printer_ip::text), coalesce(sp.printer_port, 9100),
           coalesce(sp.priority, 1), coalesce(sp.paper_width_mm, 80),
           coalesce(sp.chars_per_line, 32),
           tpl.header_line, coalesce(tpl.buzzer, false), coalesce(tpl.copies, 1),
           coalesce(tpl.large_item_font, true), coalesce(tpl.codepage, 'CP437'),
           coalesce(tpl.cut_mode, 'partial'), tpl.time_zone,
           mw.starts_at, mw.ends_at, sp.answers_status
    FROM public.kitchen_stationprinter sp
    LEFT JOIN LATERAL (
        SELECT t.*
        FROM public.kitchen_printtemplate t
        WHERE (t.brand_id = sp.brand_id OR t.brand_id IS NULL)
          AND (kprintd.kitchen_normalize_station(t.station_code) = p_station OR t.station_code IS NULL)
        ORDER BY t.brand_id IS NULL, t.station_code IS NULL
        LIMIT 1
    ) tpl ON true
    LEFT JOIN LATERAL kprintd.kitchen_printer_maintenance(sp.id) mw ON true
    WHERE sp.brand_id = p_brand_id
      AND kprintd.kitchen_normalize_station(sp.station_code) = p_station
      AND coalesce(sp.is_active, true)
      AND (sp.store_id IS NULL OR sp.store_id = p_store_id)
    ORDER BY coalesce(sp.priority, 1), sp.store_id IS NULL, sp.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_route_printers(uuid, uuid, text) IS
    'The active printers that may print a ticket of this brand, store and station, in the order '
    'to try them (priority, store-specific before brand-wide), with their ticket layout (from the '
    'most specific kitchen_printtemplate row, time_zone NULL = the daemon machine''s zone) and '
    'their current or next maintenance window (maintenance_from/maintenance_until, NULL when none '
    'is planned; from kitchen_printer_maintenance()). The daemon skips a printer inside its window. '
    'answers_status false: send without asking the printer''s status.';

CREATE FUNCTION kprintd.kitchen_route_next_due(p_brand_id uuid, p_store_id uuid, p_station text)
RETURNS timestamp with time zone
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT min(t.next_attempt_at)
            FROM public.kitchen_kitchenticket t
            WHERE t.status = 'new'
              AND t.print_attempts < t.max_retries
              AND t.printer_target = p_station
              AND t.brand_id IS NOT DISTINCT FROM p_brand_id
              AND t.store_id IS NOT DISTINCT FROM p_store_id);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_route_next_due(uuid, uuid, text) IS
    'When the next ticket of this route becomes due (NULL: none waiting).';

CREATE FUNCTION kprintd.kitchen_due_routes(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
RETURNS TABLE (brand_id uuid, store_id uuid, station text, waiting bigint, next_due_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT t.brand_id, t.store_id, t.printer_target::text, count(*), min(t.next_attempt_at)
    FROM public.kitchen_kitchenticket t
    WHERE t.status = 'new'
      AND t.print_attempts < t.max_retries
      AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR t.brand_id = ANY (p_brand_ids))
      AND (p_store_id IS NULL OR t.store_id = p_store_id)
    GROUP BY t.brand_id, t.store_id, t.printer_target
$$;

COMMENT ON FUNCTION kprintd.kitchen_due_routes(uuid[], uuid) IS
    'The routes (brand, store, station) with tickets waiting to print, within a daemon''s scope, '
    'with how many wait and when the first is due. The daemon scans this at start and on its sweep.';

-- The document a ticket prints.
-- PL/pgSQL, not SQL: PostgreSQL caches a PL/pgSQL statement's plan, while a SQL function with a
-- FROM clause is planned again on every call (0.5 ms of every claim).
CREATE FUNCTION kprintd.kitchen_ticket_document(p_ticket_id bigint) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
        'ticket_id', t.id,
        'station', t.printer_target,
        'ticket_type', t.ticket_type,
        'bill_id', b.id,
        'bill_number', b.bill_number,
        'bill_type', coalesce(b.bill_type, 'dine_in'),
        'table_number', b.table_number,
        'queue_number', b.queue_number,
        'customer_name', b.customer_name,
        'sent_at', t.created_at,
        -- A reprint: a ticket made as one, or a printed ticket sent back to 'new' (its own original).
        'is_reprint', coalesce(t.is_reprint, false) OR t.reprinted,
        'original_ticket_id', coalesce(t.original_ticket_id, CASE WHEN t.reprinted THEN t.id END),
        'is_retry', t.may_have_printed,
        'attempt', coalesce(t.print_attempts, 0),
        'lines', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'bill_item_id', bi.id,
                       'quantity', kti.quantity,
                       'name', coalesce(bi.product_name, '?'),
                       'notes', coalesce(bi.notes, ''),
                       'is_void', kti.line_type = 'void',
                       'station', coalesce(kprintd.kitchen_item_station(bi.printer_target, bi.product_printer_target),
                                           'none'),
                       'modifiers', (
                           SELECT coalesce(jsonb_agg(
                               CASE jsonb_typeof(m)
                                   WHEN 'string' THEN m #>> '{}'
                                   WHEN 'object' THEN coalesce(
                                       m ->> 'name', m ->> 'label', m ->> 'value', m::text)
                                   ELSE m::text
                               END), '[]')
                           FROM jsonb_array_elements(
                               CASE jsonb_typeof(bi.modifiers)
                                   WHEN 'array' THEN bi.modifiers
                                   WHEN 'null' THEN '[]'::jsonb
                                   ELSE coalesce(jsonb_build_array(bi.modifiers), '[]')
                               END) m)
                   ) ORDER BY bi.id)
            FROM public.kitchen_kitchenticketitem kti
            -- Each line's bill item by its key, one index probe per line, whatever the
            -- statistics say (OFFSET 0 keeps the planner from merging this into a join): with
            -- statistics older than a burst it hashed all of pos_billitem for every ticket.
            CROSS JOIN LATERAL (SELECT * FROM public.kitchen_pos_billitem item
                                 WHERE item.id = kti.bill_item_id OFFSET 0) bi
            WHERE kti.kitchen_ticket_id = t.id
        ), '[]'))
    FROM public.kitchen_kitchenticket t
    JOIN public.kitchen_pos_bill b ON b.id = t.bill_id
    WHERE t.id = p_ticket_id);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_document(bigint) IS
    'Everything printed on a ticket, as JSON: bill header, ticket kind, reprint/retry marks and the '
    'lines (quantity, product name, modifiers as text, notes, item station, is_void). NULL if no such '
    'ticket.';

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

-- Recording outcomes.
CREATE FUNCTION kprintd.kitchen_finish_print_jobs(
    p_daemon            text,
    p_results           jsonb,
    p_printer_failures  jsonb DEFAULT '[]'
) RETURNS TABLE (ticket_id bigint, final_status text, recorded boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r           jsonb;
    v_ticket    public.kitchen_kitchenticket%ROWTYPE;
    v_id        bigint;
    v_outcome   text;
    v_meta      jsonb;
    v_refund    integer;
    v_recorded  boolean;
    v_printed   bigint[] := '{}';
    v_saved     jsonb := kprintd.kitchen_change_description();
BEGIN
    -- Printers that refused, timed out or lied during these attempts, ticket printed or not:
    -- one UPDATE per printer, whatever the number of tickets.
    UPDATE public.kitchen_stationprinter sp
    SET failed_prints = sp.failed_prints + f.failures,
        last_error_at = now(),
        last_error_message = f.last_message,
        updated_at = now()
    FROM (SELECT (x ->> 'printer_id')::bigint AS printer_id, count(*) AS failures,
                 (array_agg(x ->> 'error_message' ORDER BY n DESC))[1] AS last_message
          FROM jsonb_array_elements(coalesce(p_printer_failures, '[]')) WITH ORDINALITY AS e(x, n)
          GROUP BY 1) f
    WHERE sp.id = f.printer_id;

    FOR r IN SELECT * FROM jsonb_array_elements(p_results) LOOP
        v_outcome := r ->> 'outcome';
        v_id := (r ->> 'ticket_id')::bigint;
        v_meta := jsonb_strip_nulls(jsonb_build_object(
            'attempt', r -> 'attempt',
            'daemon', p_daemon,
            'printer_id', r -> 'printer_id',
            'printer_name', r ->> 'printer_name',
            'bytes', r -> 'bytes',
            'tried', r -> 'tried'));

        -- Each UPDATE below only touches a ticket this daemon still holds. NOT FOUND means the
        -- lease expired and the ticket moved on without us; its new owner records it.
        IF v_outcome = 'printed' THEN
            PERFORM kprintd.kitchen_describe_change('print_success', 'printer_service',
                                            (r ->> 'duration_ms')::integer, NULL, v_meta);
            UPDATE public.kitchen_kitchenticket t
            SET status = 'printed', printed_at = now(),
                printer_ip = (SELECT sp.printer_ip FROM public.kitchen_stationprinter sp
                              WHERE sp.id = (r ->> 'printer_id')::bigint),
                printer_id = (r ->> 'printer_id')::bigint,
                claimed_by = NULL, lease_expires_at = NULL
            WHERE t.id = v_id AND t.status = 'printing' AND t.claimed_by = p_daemon
            RETURNING * INTO v_ticket;
            v_recorded := FOUND;
            IF v_recorded THEN
                v_printed := v_printed || (r ->> 'printer_id')::bigint;
            END IF;
            final_status := 'printed';

        ELSIF v_outcome = 'released' THEN
            -- Claimed but never sent (shutdown): give the attempt back.
            PERFORM kprintd.kitchen_describe_change('claim_released', 'printer_service', NULL, NULL, v_meta);
            UPDATE public.kitchen_kitchenticket t
            SET status = 'new', print_attempts = greatest(t.print_attempts - 1, 0),
                claimed_by = NULL, lease_expires_at = NULL, next_attempt_at = now()
            WHERE t.id = v_id AND t.status = 'printing' AND t.claimed_by = p_daemon
            RETURNING * INTO v_ticket;
            v_recorded := FOUND;
            final_status := 'new';

        ELSIF v_outcome = 'failed' THEN
            v_refund := CASE WHEN coalesce((r ->> 'refund_attempt')::boolean, false) THEN 1 ELSE 0 END;
            PERFORM kprintd.kitchen_describe_change('print_failed', 'printer_service',
                                            (r ->> 'duration_ms')::integer, r ->> 'error_code',
                                            v_meta);
            UPDATE public.kitchen_kitchenticket t
            SET status = 'failed',
                error_message = r ->> 'error_message',
                error_code = r ->> 'error_code',
                last_error_at = now(),
                printer_ip = coalesce((SELECT sp.printer_ip FROM public.kitchen_stationprinter sp
                                       WHERE sp.id = (r ->> 'printer_id')::bigint), t.printer_ip),
                may_have_printed = t.may_have_printed
                                   OR coalesce((r ->> 'may_have_printed')::boolean, false),
                claimed_by = NULL, lease_expires_at = NULL
            WHERE t.id = v_id AND t.status = 'printing' AND t.claimed_by = p_daemon
            RETURNING * INTO v_ticket;
            v_recorded := FOUND;
            IF v_recorded AND v_ticket.print_attempts - v_refund < v_ticket.max_retries
               AND coalesce((r ->> 'retryable')::boolean, true) THEN
                PERFORM kprintd.kitchen_describe_change('retry', 'printer_service', NULL, r ->> 'error_code',
                    v_meta || jsonb_build_object('retry_in_s', (r ->> 'retry_delay_s')::numeric,
                                                 'attempt_given_back', v_refund = 1));
                UPDATE public.kitchen_kitchenticket t
                SET status = 'new',
                    print_attempts = t.print_attempts - v_refund,
                    next_attempt_at = now()
                        + make_interval(secs => coalesce((r ->> 'retry_delay_s')::double precision, 0))
                WHERE t.id = v_id;
                final_status := 'new';
            ELSIF v_recorded THEN
                PERFORM kprintd.kitchen_raise_alert('ticket_failed', 'critical',
                    format('Ticket %s for %s (bill %s) could not be printed: %s. Print it again with '
                           'kitchen_reset_ticket(%s, ...) once a printer works.',
                           v_ticket.id, v_ticket.printer_target,
                           (SELECT b.bill_number FROM public.kitchen_pos_bill b WHERE b.id = v_ticket.bill_id),
                           coalesce(r ->> 'error_message', 'unknown error'), v_ticket.id),
                    jsonb_build_object('ticket_id', v_ticket.id, 'bill_id', v_ticket.bill_id,
                                       'station', v_ticket.printer_target,
                                       'brand_id', v_ticket.brand_id, 'store_id', v_ticket.store_id,
                                       'error_code', r ->> 'error_code'));
                final_status := 'failed';
            END IF;
        ELSE
            RAISE EXCEPTION 'unknown print outcome % for ticket %', v_outcome, v_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        ticket_id := v_id;
        recorded := v_recorded;
        IF NOT v_recorded THEN
            final_status := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;

    UPDATE public.kitchen_stationprinter sp
    SET total_prints = sp.total_prints + c.prints, last_print_at = now(), updated_at = now()
    FROM (SELECT id, count(*) AS prints FROM unnest(v_printed) AS id GROUP BY id) c
    WHERE sp.id = c.id;

    PERFORM kprintd.kitchen_restore_change_description(v_saved);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_finish_print_jobs(text, jsonb, jsonb) IS
    'Record what happened to tickets p_daemon claimed. p_results: [{ticket_id, outcome: printed | '
    'failed | released, attempt, printer_id, printer_name, printer_ip, duration_ms, bytes, error_code, '
    'error_message, may_have_printed, retryable, retry_delay_s, refund_attempt}]. A failed ticket '
    'with attempts left goes back to new after retry_delay_s (refund_attempt: the attempt could not '
    'have printed anything and is not counted); otherwise it stays failed and an alert is raised. '
    'p_printer_failures: [{printer_id, error_message}] counts failures against printers. Tickets '
    'no longer held by p_daemon are left alone (recorded = false).';

-- Leases.
CREATE FUNCTION kprintd.kitchen_reclaim_expired_leases(
    p_brand_ids uuid[] DEFAULT NULL,
    p_store_id  uuid DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_ticket    public.kitchen_kitchenticket%ROWTYPE;
    v_count     integer := 0;
    v_saved     jsonb := kprintd.kitchen_change_description();
BEGIN
    FOR v_ticket IN
        SELECT * FROM public.kitchen_kitchenticket t
        WHERE t.status = 'printing'
          AND (t.lease_expires_at IS NULL OR t.lease_expires_at < now())
          AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR t.brand_id = ANY (p_brand_ids))
          AND (p_store_id IS NULL OR t.store_id = p_store_id)
        ORDER BY t.created_at
        FOR UPDATE SKIP LOCKED
    LOOP
        -- Whoever held it may have sent some or all of it: any later print is marked RETRY.
        IF v_ticket.print_attempts < v_ticket.max_retries THEN
            PERFORM kprintd.kitchen_describe_change('retry', 'printer_service', NULL, 'lease_expired',
                jsonb_build_object('reason', 'lease_expired', 'claimed_by', v_ticket.claimed_by,
                                   'attempt', v_ticket.print_attempts));
            UPDATE public.kitchen_kitchenticket t
            SET status = 'new', may_have_printed = true, claimed_by = NULL,
                lease_expires_at = NULL, next_attempt_at = now()
            WHERE t.id = v_ticket.id;
        ELSE
            PERFORM kprintd.kitchen_describe_change('print_failed', 'printer_service', NULL, 'lease_expired',
                jsonb_build_object('reason', 'lease_expired', 'claimed_by', v_ticket.claimed_by,
                                   'attempt', v_ticket.print_attempts));
            UPDATE public.kitchen_kitchenticket t
            SET status = 'failed', may_have_printed = true, claimed_by = NULL,
                lease_expires_at = NULL, error_code = 'lease_expired', last_error_at = now(),
                error_message = format('the printer service holding it (%s) stopped answering '
                                       'on its last attempt', coalesce(v_ticket.claimed_by, '?'))
            WHERE t.id = v_ticket.id;
            PERFORM kprintd.kitchen_raise_alert('ticket_failed', 'critical',
                format('Ticket %s for %s may not have printed: the printer service stopped on its '
                       'last attempt. Check the printer and reprint if needed.',
                       v_ticket.id, v_ticket.printer_target),
                jsonb_build_object('ticket_id', v_ticket.id, 'bill_id', v_ticket.bill_id,
                                   'station', v_ticket.printer_target,
                                   'error_code', 'lease_expired'));
        END IF;
        v_count := v_count + 1;
    END LOOP;
    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN v_count;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_reclaim_expired_leases(uuid[], uuid) IS
    'Tickets left in printing by a daemon that died or hung (lease expired, or no lease at all): '
    'back to new marked may_have_printed (they print again with a RETRY banner), or failed with '
    'an alert when no attempt is left. Returns how many were reclaimed. Run by every daemon.';
