-- 0006 Send to kitchen: kitchen_create_tickets() turns a bill's unsent items into tickets.
--
-- One call is one "send": for every station with unsent items one ticket ('order' the first time
-- the station gets items of this bill, 'addition' afterwards); for every station with items that
-- were sent and are now void one 'void' ticket; and, when the brand has an active 'checker'
-- printer for the bill's store, one 'checker' ticket listing every line of this send (voids as
-- void lines). Calling it again creates nothing new: a bill item goes on one original order/addition
-- ticket and one void ticket at most, which unique indexes on kitchen_kitchenticketitem enforce.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

CREATE VIEW public.kitchen_billitem_status AS
SELECT
    bi.id                          AS bill_item_id,
    bi.bill_id,
    bi.quantity,
    COALESCE(bi.is_void, false)    AS is_void,
    st.station,
    sent.kitchen_ticket_id         AS sent_ticket_id,
    sent.printer_target            AS sent_station,
    sent.quantity                  AS sent_quantity,
    vd.kitchen_ticket_id           AS void_ticket_id,
    CASE
        WHEN sent.kitchen_ticket_id IS NOT NULL THEN
            CASE WHEN vd.kitchen_ticket_id IS NOT NULL THEN 'void_sent'
                 WHEN COALESCE(bi.is_void, false) THEN 'void_pending'
                 ELSE 'sent' END
        WHEN COALESCE(bi.is_void, false) THEN 'voided_unsent'
        WHEN st.station IS NULL OR bi.quantity < 1 THEN 'not_printed'
        ELSE 'pending'
    END                            AS kitchen_state
FROM public.kitchen_pos_billitem bi
CROSS JOIN LATERAL (SELECT kprintd.kitchen_item_station(bi.printer_target, bi.product_printer_target) AS station) st
LEFT JOIN LATERAL (
    SELECT kti.kitchen_ticket_id, kt.printer_target, kti.quantity
      FROM public.kitchen_kitchenticketitem kti
      JOIN public.kitchen_kitchenticket kt ON kt.id = kti.kitchen_ticket_id
     WHERE kti.bill_item_id = bi.id AND NOT kti.is_reprint AND kti.ticket_type IN ('order', 'addition')
     ORDER BY kti.id
     LIMIT 1
) sent ON true
LEFT JOIN LATERAL (
    SELECT kti.kitchen_ticket_id
      FROM public.kitchen_kitchenticketitem kti
     WHERE kti.bill_item_id = bi.id AND NOT kti.is_reprint AND kti.ticket_type = 'void'
     ORDER BY kti.id
     LIMIT 1
) vd ON true;

COMMENT ON VIEW public.kitchen_billitem_status IS
    'Each bill item''s kitchen state, for POS screens and for kitchen_create_tickets(). station: where it prints '
    '(item printer_target, else product''s, else ''kitchen''; NULL = ''none''). kitchen_state: ''pending'' (goes out with the '
    'next send), ''sent'' (on sent_ticket_id at sent_station), ''void_pending'' (sent, now void: the next send prints a void '
    'ticket), ''void_sent'' (void ticket void_ticket_id created), ''voided_unsent'' (voided before it was sent: never printed), '
    '''not_printed'' (station ''none'' or quantity < 1). Filter by bill_id.';

CREATE FUNCTION kprintd.kitchen_create_tickets(
    p_bill_id  bigint,
    p_item_ids bigint[] DEFAULT NULL,
    p_actor    text DEFAULT 'pos'
) RETURNS SETOF public.kitchen_kitchenticket
    LANGUAGE plpgsql AS $$
DECLARE
    v_brand_id   uuid;
    v_store_id   uuid;
    v_missing    bigint[];
    v_checker    boolean;
    v_saved      jsonb;
    v_group      record;
    v_type       text;
    v_ticket     public.kitchen_kitchenticket;
    v_all_ids    bigint[] := '{}';
    v_all_qtys   integer[] := '{}';
    v_all_lines  text[] := '{}';
BEGIN
    IF p_bill_id IS NULL THEN
        RAISE EXCEPTION 'kitchen_create_tickets: bill id is NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_actor IS NULL OR btrim(p_actor) = '' OR length(btrim(p_actor)) > 100 THEN
        RAISE EXCEPTION 'kitchen_create_tickets: actor must be 1 to 100 characters, got %', quote_nullable(p_actor)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the terminal or user, e.g. ''pos:terminal-2''; the default is ''pos''.';
    END IF;
    IF array_position(p_item_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'kitchen_create_tickets: item ids contain NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- One send per bill at a time: a second terminal sending the same bill waits here, then sees
    -- what the first one sent. The lock is kprintd's own, not a lock on the POS's bill row, so the
    -- POS's writes to its bill never wait for a send.
    PERFORM pg_advisory_xact_lock(1801611628, hashint8(p_bill_id));
    SELECT b.brand_id, b.store_id INTO v_brand_id, v_store_id
      FROM public.kitchen_pos_bill b WHERE b.id = p_bill_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'kitchen_create_tickets: bill % does not exist', p_bill_id
            USING ERRCODE = 'no_data_found';
    END IF;

    IF p_item_ids IS NOT NULL THEN
        SELECT array_agg(DISTINCT x ORDER BY x) INTO v_missing
          FROM unnest(p_item_ids) AS x
         WHERE NOT EXISTS (SELECT 1 FROM public.kitchen_pos_billitem bi WHERE bi.id = x AND bi.bill_id = p_bill_id);
        IF v_missing IS NOT NULL THEN
            RAISE EXCEPTION 'kitchen_create_tickets: items % are not on bill %', v_missing, p_bill_id
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('missing_item_ids=%s', v_missing),
                      HINT = 'Pass ids of pos_billitem rows of this bill, or NULL for all of its items.';
        END IF;
    END IF;

    v_checker := EXISTS (
        SELECT 1 FROM public.kitchen_stationprinter sp
         WHERE sp.brand_id = v_brand_id
           AND kprintd.kitchen_normalize_station(sp.station_code) = 'checker'
           AND sp.is_active IS TRUE
           AND (sp.store_id IS NULL OR sp.store_id = v_store_id));

    v_saved := kprintd.kitchen_change_description();
    PERFORM kprintd.kitchen_describe_change(NULL, p_actor);

    BEGIN
        FOR v_group IN
            SELECT g.station, g.line_type,
                   array_agg(g.bill_item_id ORDER BY g.bill_item_id) AS ids,
                   array_agg(g.quantity ORDER BY g.bill_item_id) AS qtys
              FROM (SELECT s.station, 'item' AS line_type, s.bill_item_id, s.quantity
                      FROM public.kitchen_billitem_status s
                     WHERE s.bill_id = p_bill_id AND s.kitchen_state = 'pending'
                       AND (p_item_ids IS NULL OR s.bill_item_id = ANY (p_item_ids))
                    UNION ALL
                    SELECT s.sent_station, 'void', s.bill_item_id, s.sent_quantity
                      FROM public.kitchen_billitem_status s
                     WHERE s.bill_id = p_bill_id AND s.kitchen_state = 'void_pending'
                       AND (p_item_ids IS NULL OR s.bill_item_id = ANY (p_item_ids))) g
             GROUP BY g.station, g.line_type
             ORDER BY g.line_type, g.station
        LOOP
            IF v_group.line_type = 'void' THEN
                v_type := 'void';
            ELSIF EXISTS (SELECT 1 FROM public.kitchen_kitchenticket kt
                           WHERE kt.bill_id = p_bill_id AND kt.printer_target = v_group.station
                             AND kt.ticket_type IN ('order', 'addition') AND NOT kt.is_reprint) THEN
                v_type := 'addition';
            ELSE
                v_type := 'order';
            END IF;

            -- Ticket and lines in one statement: the 'created' log row (an AFTER trigger, fired at
            -- the end of the statement) counts the lines.
            WITH t AS (
                INSERT INTO public.kitchen_kitchenticket (bill_id, printer_target, status, ticket_type, is_reprint)
                VALUES (p_bill_id, v_group.station, 'new', v_type, false)
                RETURNING *
            ), lines AS (
                INSERT INTO public.kitchen_kitchenticketitem
                    (kitchen_ticket_id, bill_item_id, quantity, ticket_type, is_reprint, line_type, written_by_kprintd)
                SELECT t.id, u.bill_item_id, u.quantity, v_type, false, v_group.line_type, true
                  FROM t, unnest(v_group.ids, v_group.qtys) WITH ORDINALITY AS u(bill_item_id, quantity, n)
                 ORDER BY u.n
            )
            SELECT * INTO v_ticket FROM t;

            v_all_ids := v_all_ids || v_group.ids;
            v_all_qtys := v_all_qtys || v_group.qtys;
            v_all_lines := v_all_lines || array_fill(v_group.line_type::text, ARRAY[cardinality(v_group.ids)]);
            RETURN NEXT v_ticket;
        END LOOP;

        IF v_checker AND cardinality(v_all_ids) > 0 THEN
            WITH t AS (
                INSERT INTO public.kitchen_kitchenticket (bill_id, printer_target, status, ticket_type, is_reprint)
                VALUES (p_bill_id, 'checker', 'new', 'checker', false)
                RETURNING *
            ), lines AS (
                INSERT INTO public.kitchen_kitchenticketitem
                    (kitchen_ticket_id, bill_item_id, quantity, ticket_type, is_reprint, line_type, written_by_kprintd)
                SELECT t.id, u.bill_item_id, u.quantity, 'checker', false, u.line_type, true
                  FROM t, unnest(v_all_ids, v_all_qtys, v_all_lines)
                          WITH ORDINALITY AS u(bill_item_id, quantity, line_type, n)
                 ORDER BY u.n
            )
            SELECT * INTO v_ticket FROM t;
            RETURN NEXT v_ticket;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- Only reachable when the caller's isolation level hides a concurrent send's tickets
        -- (REPEATABLE READ / SERIALIZABLE): report it as the retryable error it is.
        RAISE EXCEPTION 'kitchen_create_tickets: bill % was sent to the kitchen by a concurrent transaction', p_bill_id
            USING ERRCODE = 'serialization_failure',
                  DETAIL = SQLERRM,
                  HINT = 'Retry the transaction; the retry creates only what is still unsent.';
    END;

    PERFORM kprintd.kitchen_restore_change_description(v_saved);
    RETURN;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_create_tickets(bigint, bigint[], text) IS
    'Send to kitchen. Creates, in the caller''s transaction, one ticket per station for the bill''s unsent items '
    '(''order'' the first time a station gets items of the bill, ''addition'' after that), one ''void'' ticket per station '
    'for items sent earlier and now is_void, and one ''checker'' ticket with every line of this send when the brand has an '
    'active ''checker'' printer for the bill''s store (store_id NULL or equal). p_item_ids limits the send to those items '
    '(NULL = all). Idempotent: an item goes on one original order/addition ticket and one void ticket at most, so a repeated '
    'call returns no rows ("nothing to send" is an empty result, not an error). Items voided before they were sent, station '
    '''none'' and quantity < 1 are skipped. Returns the created tickets (status ''new''; each is logged ''created'' with actor '
    'p_actor and NOTIFYs kitchen_ticket_new at commit). Takes a transaction advisory lock on the bill id: concurrent sends of one bill '
    'run one after the other. Errors: 22004 null bill id; P0002 (no_data_found) unknown bill; 22023 (invalid_parameter_value) '
    'blank actor, NULL in p_item_ids, items not on the bill; 40001 (serialization_failure) a concurrent send under '
    'REPEATABLE READ/SERIALIZABLE: retry. On any error nothing is created.';
