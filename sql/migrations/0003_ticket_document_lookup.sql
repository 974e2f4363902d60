-- 0003: kitchen_ticket_document() looks each line's bill item up by its key, whatever the
-- statistics say (as in sql/schema/42_claims.sql). With statistics older than a burst of tickets,
-- the planner hashed all of pos_billitem for every ticket a claim returned: about 0.3 ms of the
-- server's CPU per ticket on 3,000 bill items, and more with every item the POS keeps.

CREATE OR REPLACE FUNCTION kprintd.kitchen_ticket_document(p_ticket_id bigint) RETURNS jsonb
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

-- CREATE OR REPLACE keeps the owner, grants and comment, not the function's settings.
ALTER FUNCTION kprintd.kitchen_ticket_document(bigint) SET search_path = pg_catalog, pg_temp;

-- This file is applied: recorded so that `kprintd run` accepts the database however it was applied.
INSERT INTO public.kprintd_schema_migrations (version, filename) VALUES ('0003', '0003_ticket_document_lookup.sql');
