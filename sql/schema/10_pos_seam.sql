-- The POS's tables, and the seam through which kprintd reads them.
--
-- kprintd lives in the POS's database and reads the POS's bills, items, products and brands. It
-- never names a POS column anywhere else: every trigger, function and view of kprintd reads them
-- through three views made here, with fixed column names and types:
--
--   kitchen_pos_brand     (id uuid, name text)
--   kitchen_pos_bill      (id bigint, brand_id uuid, store_id uuid, bill_number text, bill_type text,
--                          table_number text, queue_number integer, customer_name text,
--                          created_at timestamptz)
--   kitchen_pos_billitem  (id bigint, bill_id bigint, quantity integer, notes text, modifiers jsonb,
--                          printer_target text, is_void boolean, product_name text,
--                          product_printer_target text, created_at timestamptz)
--
-- On a database without POS tables (a fresh install, the demo, the tests) the tables below are
-- created. Where the POS made them long ago, they are kept as they are, and each view is built from
-- the columns the POS actually has: a column it lacks reads as NULL (or a neutral value), the table
-- number comes from pos_bill.table_number or, where the POS keeps tables in a table of their own,
-- from pos_bill.table_id -> tables_table.number. A POS shaped differently gets its own view with
-- CREATE OR REPLACE VIEW, same columns in the same order (docs/pos-integration.md shows how).

-- kprintd's functions live in a schema of their own, where only kprintd's owner creates anything:
-- a POS that owns public cannot put an overload or an operator in their way. Each of them names
-- what it uses (kprintd.f(), public.t) and resolves nothing else through the caller's search_path.
CREATE SCHEMA IF NOT EXISTS kprintd;
COMMENT ON SCHEMA kprintd IS
    'kprintd''s functions (kitchen_*). The spec''s tables and kprintd''s tables and views stay in public.';

CREATE TABLE IF NOT EXISTS public.core_brand (
    id      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name    TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS public.core_product (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id        UUID REFERENCES public.core_brand(id),
    name            TEXT NOT NULL,
    printer_target  VARCHAR(50) DEFAULT 'kitchen'
);

CREATE TABLE IF NOT EXISTS public.pos_bill (
    id              BIGSERIAL PRIMARY KEY,
    brand_id        UUID NOT NULL REFERENCES public.core_brand(id),
    store_id        UUID NULL,
    bill_number     VARCHAR(50) NOT NULL,
    bill_type       VARCHAR(20) DEFAULT 'dine_in',
    table_number    VARCHAR(20) NULL,
    queue_number    INTEGER NULL,
    customer_name   TEXT NULL,
    created_at      TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS public.pos_billitem (
    id              BIGSERIAL PRIMARY KEY,
    bill_id         BIGINT NOT NULL REFERENCES public.pos_bill(id),
    product_id      UUID NOT NULL REFERENCES public.core_product(id),
    quantity        INTEGER NOT NULL,
    notes           TEXT DEFAULT '',
    modifiers       JSONB DEFAULT '[]',
    printer_target  VARCHAR(50) NULL,
    is_void         BOOLEAN DEFAULT FALSE,
    created_at      TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_pos_billitem_bill ON public.pos_billitem(bill_id);

-- Bills of a period (kitchen_bill_status), where the POS's bills have a creation time. The POS may
-- have such an index already; this one is kprintd's.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'pos_bill'::regclass AND attname = 'created_at' AND NOT attisdropped) THEN
        CREATE INDEX IF NOT EXISTS idx_pos_bill_created_at ON public.pos_bill (created_at);
    END IF;
END
$$;

-- The seam ----------------------------------------------------------------------------------------
-- Built from the catalog once, at install time: afterwards they are plain views (\d+ shows each
-- one's definition), costing nothing beyond the joins they name.
CREATE FUNCTION pg_temp.kitchen_pos_column(p_table text, p_alias text, p_column text, p_type text,
                                           p_missing text)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_attribute a
                              WHERE a.attrelid = to_regclass(p_table) AND a.attname = p_column
                                AND a.attnum > 0 AND NOT a.attisdropped)
                THEN format('%s.%I::%s', p_alias, p_column, p_type)
                ELSE p_missing END
$$;

DO $seam$
DECLARE
    v_table_number text := pg_temp.kitchen_pos_column('pos_bill', 'b', 'table_number', 'text', NULL);
    v_tables_join  text := '';
    v_product_join text := '';
BEGIN
    IF v_table_number IS NULL THEN
        IF pg_temp.kitchen_pos_column('pos_bill', 'b', 'table_id', 'text', NULL) IS NOT NULL
           AND pg_temp.kitchen_pos_column('tables_table', 't', 'id', 'text', NULL) IS NOT NULL
           AND pg_temp.kitchen_pos_column('tables_table', 't', 'number', 'text', NULL) IS NOT NULL THEN
            -- The POS keeps its tables in a table of their own.
            v_table_number := 'tt.number::text';
            v_tables_join := ' LEFT JOIN tables_table tt ON tt.id = b.table_id';
        ELSE
            v_table_number := 'NULL::text';
        END IF;
    END IF;
    EXECUTE format(
        'CREATE VIEW kitchen_pos_bill AS SELECT b.id::bigint AS id, %s AS brand_id, %s AS store_id, '
        '%s AS bill_number, %s AS bill_type, %s AS table_number, %s AS queue_number, '
        '%s AS customer_name, %s AS created_at FROM pos_bill b%s',
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'brand_id', 'uuid', 'NULL::uuid'),
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'store_id', 'uuid', 'NULL::uuid'),
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'bill_number', 'text', 'b.id::text'),
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'bill_type', 'text', $$'dine_in'::text$$),
        v_table_number,
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'queue_number', 'integer', 'NULL::integer'),
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'customer_name', 'text', 'NULL::text'),
        pg_temp.kitchen_pos_column('pos_bill', 'b', 'created_at', 'timestamptz', 'NULL::timestamptz'),
        v_tables_join);

    IF pg_temp.kitchen_pos_column('pos_billitem', 'bi', 'product_id', 'text', NULL) IS NOT NULL
       AND pg_temp.kitchen_pos_column('core_product', 'p', 'id', 'text', NULL) IS NOT NULL THEN
        v_product_join := ' LEFT JOIN core_product p ON p.id = bi.product_id';
    END IF;
    EXECUTE format(
        'CREATE VIEW kitchen_pos_billitem AS SELECT bi.id::bigint AS id, bi.bill_id::bigint AS bill_id, '
        'bi.quantity::integer AS quantity, %s AS notes, %s AS modifiers, %s AS printer_target, '
        '%s AS is_void, %s AS product_name, %s AS product_printer_target, %s AS created_at '
        'FROM pos_billitem bi%s',
        pg_temp.kitchen_pos_column('pos_billitem', 'bi', 'notes', 'text', $$''::text$$),
        pg_temp.kitchen_pos_column('pos_billitem', 'bi', 'modifiers', 'jsonb', $$'[]'::jsonb$$),
        pg_temp.kitchen_pos_column('pos_billitem', 'bi', 'printer_target', 'text', 'NULL::text'),
        pg_temp.kitchen_pos_column('pos_billitem', 'bi', 'is_void', 'boolean', 'false'),
        CASE WHEN v_product_join = '' THEN 'NULL::text'
             ELSE pg_temp.kitchen_pos_column('core_product', 'p', 'name', 'text', 'NULL::text') END,
        CASE WHEN v_product_join = '' THEN 'NULL::text'
             ELSE pg_temp.kitchen_pos_column('core_product', 'p', 'printer_target', 'text',
                                             'NULL::text') END,
        pg_temp.kitchen_pos_column('pos_billitem', 'bi', 'created_at', 'timestamptz',
                                   'NULL::timestamptz'),
        v_product_join);

    EXECUTE format(
        'CREATE VIEW kitchen_pos_brand AS SELECT br.id::uuid AS id, %s AS name FROM core_brand br',
        pg_temp.kitchen_pos_column('core_brand', 'br', 'name', 'text', 'br.id::text'));
END
$seam$;

COMMENT ON VIEW public.kitchen_pos_bill IS
    'The seam to the POS''s bills: kprintd reads pos_bill only through this view. Made at install time '
    'from the columns pos_bill has (table_number from pos_bill.table_number, else from '
    'tables_table.number through pos_bill.table_id, else NULL). Fit another POS with CREATE OR REPLACE '
    'VIEW, keeping these columns, names and types, in this order.';
COMMENT ON VIEW public.kitchen_pos_billitem IS
    'The seam to the POS''s bill items and their products: kprintd reads pos_billitem and core_product '
    'only through this view (one row per bill item, with its product''s name and printer_target). Made '
    'at install time from the columns present; fit another POS with CREATE OR REPLACE VIEW, keeping '
    'these columns, names and types, in this order.';
COMMENT ON VIEW public.kitchen_pos_brand IS
    'The seam to the POS''s brands (id, name), for reports. Fit another POS with CREATE OR REPLACE VIEW.';
