-- 0001 Baseline: kprintd's whole schema, a frozen copy of sql/schema/ (its files concatenated in
-- order) taken when the earlier migrations were folded into it.
--
-- FROZEN: never edit this file. kprintd migrate refuses a database where an applied file has
-- changed. A schema change is a new file sql/migrations/NNNN_name.sql, ending with the INSERT that
-- records it (as below), plus the same change in sql/schema/, where each object has its current
-- definition.
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- sql/schema/10_pos_seam.sql ======================================================================

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

-- sql/schema/20_tables.sql ========================================================================

-- The tables: the kitchen printer schema of the spec (KITCHEN_PRINTER_DATABASE_SCHEMA.md, version
-- 1.0), created where it is missing and adopted where a POS created it already, and kprintd's own
-- tables (templates, maintenance windows, heartbeats, alerts, purges, applied migrations).
--
-- Table names, column names, defaults and index names are the spec's, unchanged: POS systems and
-- DBAs query them directly. What kprintd adds is marked "kprintd:" and is either integrity the
-- spec only implied (CHECK constraints) or columns the daemon needs (multi-store scope, ticket
-- type, claiming leases, retry scheduling). Nothing of the spec is renamed or dropped.
--
-- Each spec table is made column by column, so the same statements fit a fresh database and one
-- where the POS's ORM made the spec's tables long ago: an existing table keeps every column it has,
-- the ones kprintd knows must be of a type it can use (else the install stops with one line naming
-- table, column, the type found and the types kprintd takes), and the missing ones are added, each
-- with a database default. A column is never dropped, renamed or retyped. A CHECK that rows the POS
-- wrote before already break is still added, enforced for new rows only (NOT VALID). Rows the POS
-- wrote before kprintd came are filled in where kprintd needs a value, before any trigger exists.
-- Triggers, functions and views are in the files that follow.

-- Helpers of this file only (pg_temp: gone with the session) --------------------------------------
CREATE TEMPORARY TABLE kitchen_adopted_tables (name text PRIMARY KEY);

-- Creates the table with just its id, or records that the POS made it already.
CREATE FUNCTION pg_temp.kitchen_table(p_table text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass(p_table) IS NULL THEN
        EXECUTE format('CREATE TABLE %I (id BIGSERIAL PRIMARY KEY)', p_table);
    ELSE
        INSERT INTO kitchen_adopted_tables VALUES (p_table);
        RAISE NOTICE 'adopt table %: it exists; its columns are kept', p_table;
    END IF;
END
$$;

-- Adds a missing column, or checks that an existing one has a type kprintd can use and gives it the
-- spec's database default where it has none (an ORM fills every column itself; kprintd's own
-- inserts rely on the spec's defaults).
CREATE FUNCTION pg_temp.kitchen_column(p_table text, p_column text, p_definition text,
                                       VARIADIC p_accepts text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_found   text;
    v_default boolean;
    v_spec    text := substring(p_definition FROM '\mDEFAULT\s+(.+)$');
BEGIN
    SELECT format_type(a.atttypid, NULL), a.atthasdef OR a.attidentity <> '' INTO v_found, v_default
      FROM pg_attribute a
     WHERE a.attrelid = p_table::regclass AND a.attname = p_column
       AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_found = ANY (p_accepts) AND NOT v_default AND v_spec IS NOT NULL THEN
        RAISE NOTICE 'set default %.% %', p_table, p_column, v_spec;
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET DEFAULT %s', p_table, p_column, v_spec);
    ELSIF v_found IS NULL THEN
        IF EXISTS (SELECT 1 FROM kitchen_adopted_tables WHERE name = p_table) THEN
            RAISE NOTICE 'add column %.% %', p_table, p_column, p_definition;
        END IF;
        EXECUTE format('ALTER TABLE %I ADD COLUMN %I %s', p_table, p_column, p_definition);
    ELSIF NOT v_found = ANY (p_accepts) THEN
        RAISE EXCEPTION 'kprintd cannot use %.%: its type is %, kprintd needs %',
                p_table, p_column, v_found, array_to_string(p_accepts, ' or ')
            USING ERRCODE = 'datatype_mismatch',
                  HINT = 'kprintd never retypes a POS column: change the column''s type yourself, '
                         'or ask for this type to be supported.';
    END IF;
END
$$;

-- Adds a CHECK; where existing rows break it, it is enforced for new rows only.
CREATE FUNCTION pg_temp.kitchen_check(p_table text, p_name text, p_expression text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = p_table::regclass AND conname = p_name) THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%s)', p_table, p_name, p_expression);
    EXCEPTION WHEN check_violation THEN
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%s) NOT VALID',
                       p_table, p_name, p_expression);
        RAISE NOTICE 'add check %.%: existing rows break it, so it holds for new rows only',
                     p_table, p_name;
    END;
END
$$;

-- 1. Station -> printer routing ------------------------------------------------------------------
SELECT pg_temp.kitchen_table('kitchen_stationprinter');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'brand_id', 'UUID NOT NULL REFERENCES core_brand(id)', 'uuid');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'station_code', 'VARCHAR(50) NOT NULL', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_name', 'VARCHAR(100) NOT NULL', 'character varying', 'text');
-- inet in kprintd's own table; a POS's varchar may also hold a host name, which kprintd resolves.
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_ip', 'INET NOT NULL', 'inet', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_port', 'INTEGER NOT NULL DEFAULT 9100', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'priority', 'INTEGER NOT NULL DEFAULT 1', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'is_active', 'BOOLEAN NOT NULL DEFAULT TRUE', 'boolean');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'paper_width_mm', 'INTEGER NOT NULL DEFAULT 80', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'chars_per_line', 'INTEGER NOT NULL DEFAULT 32', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'last_print_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'last_error_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'last_error_message', 'TEXT', 'text', 'character varying');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'total_prints', 'INTEGER NOT NULL DEFAULT 0', 'integer', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'failed_prints', 'INTEGER NOT NULL DEFAULT 0', 'integer', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'created_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'updated_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
-- kprintd: NULL means the printer serves every store of the brand.
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'store_id', 'UUID NULL', 'uuid');
-- kprintd: the columns a Django POS's printer admin shows; kprintd keeps them for it.
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_brand', $$VARCHAR(20) NOT NULL DEFAULT 'generic'$$, 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_type', $$VARCHAR(20) NOT NULL DEFAULT 'thermal'$$, 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'timeout_seconds', 'INTEGER NOT NULL DEFAULT 5', 'integer', 'smallint', 'bigint');
-- kprintd: false for a printer that never answers a status request (see the column's comment).
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'answers_status', 'BOOLEAN NOT NULL DEFAULT TRUE', 'boolean');
-- Rows the POS wrote before kprintd came may leave these empty: they get the spec's defaults, and
-- station codes are stored trimmed and lowercase, like ticket targets.
UPDATE public.kitchen_stationprinter SET printer_port = 9100 WHERE printer_port IS NULL;
UPDATE public.kitchen_stationprinter SET priority = 1 WHERE priority IS NULL;
UPDATE public.kitchen_stationprinter SET is_active = true WHERE is_active IS NULL;
UPDATE public.kitchen_stationprinter SET paper_width_mm = 80 WHERE paper_width_mm IS NULL;
UPDATE public.kitchen_stationprinter SET chars_per_line = 32 WHERE chars_per_line IS NULL;
UPDATE public.kitchen_stationprinter SET total_prints = 0 WHERE total_prints IS NULL;
UPDATE public.kitchen_stationprinter SET failed_prints = 0 WHERE failed_prints IS NULL;
UPDATE public.kitchen_stationprinter SET station_code = lower(btrim(station_code))
 WHERE station_code <> lower(btrim(station_code));
ALTER TABLE public.kitchen_stationprinter
    ALTER COLUMN printer_port SET NOT NULL,
    ALTER COLUMN priority SET NOT NULL,
    ALTER COLUMN is_active SET NOT NULL,
    ALTER COLUMN paper_width_mm SET NOT NULL,
    ALTER COLUMN chars_per_line SET NOT NULL,
    ALTER COLUMN total_prints SET NOT NULL,
    ALTER COLUMN failed_prints SET NOT NULL;

SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_station_code_nonblank', $$btrim(station_code) <> ''$$);
SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_printer_name_nonblank', $$btrim(printer_name) <> ''$$);
SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_port_range', 'printer_port BETWEEN 1 AND 65535');
SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_priority_positive', 'priority >= 1');
SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_paper_width_sane', 'paper_width_mm BETWEEN 40 AND 120');
SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_chars_per_line_sane', 'chars_per_line BETWEEN 16 AND 96');
SELECT pg_temp.kitchen_check('kitchen_stationprinter', 'kitchen_stationprinter_counters_nonnegative', 'total_prints >= 0 AND failed_prints >= 0');

CREATE INDEX IF NOT EXISTS idx_station_code_active_priority
    ON public.kitchen_stationprinter(station_code, is_active, priority);
CREATE INDEX IF NOT EXISTS idx_brand_station
    ON public.kitchen_stationprinter(brand_id, station_code);

-- 2. Print jobs: one ticket per station per send ---------------------------------------------------
SELECT pg_temp.kitchen_table('kitchen_kitchenticket');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'bill_id', 'BIGINT NOT NULL REFERENCES pos_bill(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'printer_target', 'VARCHAR(50) NOT NULL', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'status', 'VARCHAR(20) NOT NULL', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'print_attempts', 'INTEGER NOT NULL DEFAULT 0', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'max_retries', 'INTEGER NOT NULL DEFAULT 3', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'printer_ip', 'INET', 'inet', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'error_message', 'TEXT', 'text', 'character varying');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'last_error_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'created_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'printed_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'is_reprint', 'BOOLEAN NOT NULL DEFAULT FALSE', 'boolean');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'original_ticket_id', 'BIGINT REFERENCES kitchen_kitchenticket(id)', 'bigint', 'integer');
-- kprintd: what kind of ticket the cook holds. A writer that leaves it out gets it from the
-- ticket's station and bill (kitchen_ticket_before_insert); rows the POS wrote before kprintd came
-- are orders, or checker tickets.
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'ticket_type', $$VARCHAR(20) NOT NULL DEFAULT 'order'$$, 'character varying', 'text');
UPDATE public.kitchen_kitchenticket SET ticket_type = 'checker'
 WHERE lower(btrim(printer_target)) = 'checker' AND ticket_type = 'order';
-- kprintd: copied from the bill on insert, so scope filters and NOTIFY payloads need no join.
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'brand_id', 'UUID NULL', 'uuid');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'store_id', 'UUID NULL', 'uuid');
-- kprintd: machine-readable reason for the last failure ('no_printer', 'timeout', ...).
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'error_code', 'VARCHAR(50)', 'character varying', 'text');
-- kprintd: claiming. A 'printing' ticket belongs to claimed_by until lease_expires_at.
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'claimed_by', 'VARCHAR(200)', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'lease_expires_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone');
-- kprintd: retry scheduling. A 'new' ticket is due once next_attempt_at has passed.
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'next_attempt_at', 'TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW()', 'timestamp with time zone');
-- kprintd: true once bytes of this ticket may have reached paper; any later print of it carries
-- the RETRY banner so a possible duplicate is visible to the cook.
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'may_have_printed', 'BOOLEAN NOT NULL DEFAULT FALSE', 'boolean');
-- kprintd: set when a printed ticket is sent back to 'new' (a plain UPDATE, the spec's reprint
-- flow): every later print of it carries the REPRINT banner.
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'reprinted', 'BOOLEAN NOT NULL DEFAULT FALSE', 'boolean');
-- kprintd: the printer that printed it (printer_ip alone is ambiguous across ports).
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'printer_id', 'BIGINT NULL REFERENCES kitchen_stationprinter(id)', 'bigint');
-- A ticket a POS's own printer service left 'printing' may be on paper already: it prints again
-- with the RETRY banner once kprintd runs (its lease is over), never silently twice.
UPDATE public.kitchen_kitchenticket SET may_have_printed = true, lease_expires_at = now()
 WHERE status = 'printing' AND lease_expires_at IS NULL;
-- Rows the POS wrote before kprintd came may leave these empty.
UPDATE public.kitchen_kitchenticket SET is_reprint = false WHERE is_reprint IS NULL;
UPDATE public.kitchen_kitchenticket SET print_attempts = 0 WHERE print_attempts IS NULL;
UPDATE public.kitchen_kitchenticket SET max_retries = 3 WHERE max_retries IS NULL;
ALTER TABLE public.kitchen_kitchenticket
    ALTER COLUMN is_reprint SET NOT NULL,
    ALTER COLUMN print_attempts SET NOT NULL,
    ALTER COLUMN max_retries SET NOT NULL;

SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_status_valid',
    $$status IN ('new', 'printing', 'printed', 'failed')$$);
SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_ticket_type_valid',
    $$ticket_type IN ('order', 'addition', 'void', 'checker')$$);
SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_printer_target_nonblank', $$btrim(printer_target) <> ''$$);
SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_attempts_nonnegative', 'print_attempts >= 0');
SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_max_retries_positive', 'max_retries >= 1');
SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_reprint_has_original',
    'NOT is_reprint OR original_ticket_id IS NOT NULL');
SELECT pg_temp.kitchen_check('kitchen_kitchenticket', 'kitchen_kitchenticket_printed_has_time',
    $$status <> 'printed' OR printed_at IS NOT NULL$$);
-- Target of the composite foreign key from kitchen_kitchenticketitem (section 3).
ALTER TABLE public.kitchen_kitchenticket
    ADD CONSTRAINT kitchen_kitchenticket_id_type_reprint_key UNIQUE (id, ticket_type, is_reprint);

CREATE INDEX IF NOT EXISTS idx_status_created ON public.kitchen_kitchenticket(status, created_at);
CREATE INDEX IF NOT EXISTS idx_bill_target ON public.kitchen_kitchenticket(bill_id, printer_target);
CREATE INDEX IF NOT EXISTS idx_target_status ON public.kitchen_kitchenticket(printer_target, status);
CREATE INDEX IF NOT EXISTS idx_created ON public.kitchen_kitchenticket(created_at);
-- kprintd: the daemon's claim query reads only due work; this keeps it small on a long history.
CREATE INDEX IF NOT EXISTS idx_kitchenticket_due
    ON public.kitchen_kitchenticket(next_attempt_at, created_at) WHERE status = 'new';
CREATE INDEX IF NOT EXISTS idx_kitchenticket_lease
    ON public.kitchen_kitchenticket(lease_expires_at) WHERE status = 'printing';
CREATE INDEX IF NOT EXISTS idx_kitchenticket_original
    ON public.kitchen_kitchenticket(original_ticket_id) WHERE original_ticket_id IS NOT NULL;
-- Failed tickets by when they failed (kitchen_failed_tickets, kprintd status): few rows, small index.
CREATE INDEX idx_kitchenticket_failed_at
    ON public.kitchen_kitchenticket ((coalesce(last_error_at, created_at))) WHERE status = 'failed';

-- 3. Ticket <-> bill item ---------------------------------------------------------------------------
SELECT pg_temp.kitchen_table('kitchen_kitchenticketitem');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketitem', 'kitchen_ticket_id', 'BIGINT NOT NULL REFERENCES kitchen_kitchenticket(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketitem', 'bill_item_id', 'BIGINT NOT NULL REFERENCES pos_billitem(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketitem', 'quantity', 'INTEGER NOT NULL', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_check('kitchen_kitchenticketitem', 'kitchen_kitchenticketitem_quantity_positive', 'quantity > 0');

CREATE INDEX IF NOT EXISTS idx_ticket_item ON public.kitchen_kitchenticketitem(kitchen_ticket_id, bill_item_id);
CREATE INDEX IF NOT EXISTS idx_kitchenticketitem_bill_item ON public.kitchen_kitchenticketitem(bill_item_id);

-- ticket_type and is_reprint are copies of the ticket's, kept equal by a composite foreign key with
-- ON UPDATE CASCADE; line_type says whether the line makes the item ('item') or cancels it ('void');
-- written_by_kprintd marks the lines kprintd's own functions wrote together with their ticket
-- (kitchen_create_tickets, kitchen_reprint): the only ones "sent once" binds.
ALTER TABLE public.kitchen_kitchenticketitem
    ADD COLUMN ticket_type VARCHAR(20),
    ADD COLUMN is_reprint  BOOLEAN,
    ADD COLUMN line_type   VARCHAR(10),
    ADD COLUMN written_by_kprintd   BOOLEAN NOT NULL DEFAULT FALSE;

UPDATE public.kitchen_kitchenticketitem kti
   SET ticket_type = kt.ticket_type,
       is_reprint = kt.is_reprint,
       line_type = CASE WHEN kt.ticket_type = 'void' THEN 'void' ELSE 'item' END
  FROM public.kitchen_kitchenticket kt
 WHERE kt.id = kti.kitchen_ticket_id;

ALTER TABLE public.kitchen_kitchenticketitem
    ALTER COLUMN ticket_type SET NOT NULL,
    ALTER COLUMN is_reprint SET NOT NULL,
    ALTER COLUMN line_type SET NOT NULL,
    ALTER COLUMN line_type SET DEFAULT 'item',
    ADD CONSTRAINT kitchen_kitchenticketitem_line_type_valid
        CHECK (line_type IN ('item', 'void')),
    ADD CONSTRAINT kitchen_kitchenticketitem_line_matches_ticket
        CHECK (CASE ticket_type WHEN 'void' THEN line_type = 'void'
                                WHEN 'checker' THEN true
                                ELSE line_type = 'item' END),
    ADD CONSTRAINT kitchen_kitchenticketitem_ticket_copy_fkey
        FOREIGN KEY (kitchen_ticket_id, ticket_type, is_reprint)
        REFERENCES public.kitchen_kitchenticket (id, ticket_type, is_reprint) ON UPDATE CASCADE;

-- kitchen_create_tickets() puts a bill item on at most one original (non-reprint) order/addition
-- ticket, at most one void ticket, and at most once per line type on checker tickets; reprints are
-- free. The rule binds that function only: a POS writing the tables itself is never refused for it
-- (its lines have written_by_kprintd false); its tickets print as it wrote them, and the log shows them.
CREATE UNIQUE INDEX kitchen_kitchenticketitem_sent_once
    ON public.kitchen_kitchenticketitem (bill_item_id)
    WHERE written_by_kprintd AND NOT is_reprint AND ticket_type IN ('order', 'addition');
CREATE UNIQUE INDEX kitchen_kitchenticketitem_voided_once
    ON public.kitchen_kitchenticketitem (bill_item_id)
    WHERE written_by_kprintd AND NOT is_reprint AND ticket_type = 'void';
CREATE UNIQUE INDEX kitchen_kitchenticketitem_checked_once
    ON public.kitchen_kitchenticketitem (bill_item_id, line_type)
    WHERE written_by_kprintd AND NOT is_reprint AND ticket_type = 'checker';

COMMENT ON COLUMN public.kitchen_kitchenticketitem.ticket_type IS
    'Copy of the ticket''s ticket_type (filled in by trigger, kept equal by foreign key); makes "sent once" a unique index.';
COMMENT ON COLUMN public.kitchen_kitchenticketitem.is_reprint IS
    'Copy of the ticket''s is_reprint (filled in by trigger, kept equal by foreign key).';
COMMENT ON COLUMN public.kitchen_kitchenticketitem.written_by_kprintd IS
    'True for lines written with their ticket by kprintd''s own functions (kitchen_create_tickets, kitchen_reprint): '
    'only those are held to "sent once" (unique indexes). A POS''s own lines are false.';
COMMENT ON COLUMN public.kitchen_kitchenticketitem.line_type IS
    '''item'': make this item; ''void'': stop making it (every line of a void ticket; void lines of a checker ticket).';

-- 4. Immutable audit trail (its triggers are in 30_triggers.sql) ------------------------------------
SELECT pg_temp.kitchen_table('kitchen_kitchenticketlog');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'ticket_id', 'BIGINT NOT NULL REFERENCES kitchen_kitchenticket(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'timestamp', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'old_status', 'VARCHAR(20)', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'new_status', 'VARCHAR(20) NOT NULL', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'action', 'VARCHAR(50) NOT NULL', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'actor', 'VARCHAR(100) NOT NULL', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'printer_ip', 'INET', 'inet', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'error_code', 'VARCHAR(50)', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'error_message', 'TEXT', 'text', 'character varying');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'duration_ms', 'INTEGER', 'integer', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketlog', 'metadata', $$JSONB DEFAULT '{}'$$, 'jsonb');

CREATE INDEX IF NOT EXISTS idx_ticket_timestamp ON public.kitchen_kitchenticketlog(ticket_id, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_action_timestamp ON public.kitchen_kitchenticketlog(action, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_timestamp ON public.kitchen_kitchenticketlog(timestamp DESC);

-- 5. Printer health checks --------------------------------------------------------------------------
SELECT pg_temp.kitchen_table('kitchen_printerhealthcheck');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'printer_id', 'BIGINT NOT NULL REFERENCES kitchen_stationprinter(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'checked_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'is_online', 'BOOLEAN NOT NULL', 'boolean');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'response_time_ms', 'INTEGER', 'integer', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'paper_status', $$VARCHAR(20) DEFAULT 'unknown'$$, 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'error_code', 'VARCHAR(50)', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'error_message', 'TEXT', 'text', 'character varying');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'temperature_ok', 'BOOLEAN', 'boolean');
SELECT pg_temp.kitchen_column('kitchen_printerhealthcheck', 'cutter_ok', 'BOOLEAN', 'boolean');
SELECT pg_temp.kitchen_check('kitchen_printerhealthcheck', 'kitchen_printerhealthcheck_paper_status_valid',
    $$paper_status IN ('ok', 'low', 'out', 'jam', 'unknown')$$);
SELECT pg_temp.kitchen_check('kitchen_printerhealthcheck', 'kitchen_printerhealthcheck_response_time_nonnegative', 'response_time_ms >= 0');

CREATE INDEX IF NOT EXISTS idx_printer_checked ON public.kitchen_printerhealthcheck(printer_id, checked_at DESC);
CREATE INDEX IF NOT EXISTS idx_checked ON public.kitchen_printerhealthcheck(checked_at DESC);
CREATE INDEX IF NOT EXISTS idx_online_checked ON public.kitchen_printerhealthcheck(is_online, checked_at DESC);
-- A printer's last online check, for "offline since": kitchen_printer_offline.
CREATE INDEX idx_printerhealthcheck_online
    ON public.kitchen_printerhealthcheck (printer_id, checked_at DESC) WHERE is_online;

COMMENT ON TABLE public.kitchen_stationprinter IS
    'Station -> printer routing. Active printers of a station and brand are tried in priority order (1 = primary).';
COMMENT ON TABLE public.kitchen_kitchenticket IS
    'Print jobs: one ticket per station per send. Status flow: new -> printing -> printed | failed; failed -> new (retry); reprints are new rows with is_reprint.';
COMMENT ON TABLE public.kitchen_kitchenticketitem IS
    'The bill items (and quantities) printed on a ticket.';
COMMENT ON TABLE public.kitchen_kitchenticketlog IS
    'Immutable audit trail: one row per ticket creation and per status change, written by trigger.';
COMMENT ON TABLE public.kitchen_printerhealthcheck IS
    'One row per health check of a printer, written by the daemon.';
COMMENT ON COLUMN public.kitchen_kitchenticket.may_have_printed IS
    'True once bytes of this ticket may have reached paper; later prints carry a RETRY banner.';
COMMENT ON COLUMN public.kitchen_kitchenticket.next_attempt_at IS
    'A new ticket is due for printing once this time has passed (retry backoff).';
COMMENT ON COLUMN public.kitchen_kitchenticket.lease_expires_at IS
    'A printing ticket whose lease has expired is reclaimed and printed again with a RETRY banner.';
COMMENT ON COLUMN public.kitchen_stationprinter.answers_status IS
    'kprintd: false for a printer (or print server) that never answers DLE EOT status requests. Its '
    'tickets are then sent without asking and count as printed once its connection took every byte; '
    'paper out, an open cover or a jam cannot be detected on it, and its health check only connects. '
    'Default true: status is asked before and after every ticket.';

-- 6. Print templates (the spec's Phase 2 "PrintTemplate"): layout options per brand and station ----
-- The most specific row wins: (brand, station), then (brand, any station), then (any brand,
-- station), then (any brand, any station). With no row at all the built-in defaults apply.
CREATE TABLE public.kitchen_printtemplate (
    id                  BIGSERIAL PRIMARY KEY,
    brand_id            UUID NULL REFERENCES public.core_brand(id),
    station_code        VARCHAR(50) NULL,
    header_line         TEXT NULL,
    buzzer              BOOLEAN NOT NULL DEFAULT FALSE,
    copies              INTEGER NOT NULL DEFAULT 1,
    large_item_font     BOOLEAN NOT NULL DEFAULT TRUE,
    codepage            VARCHAR(20) NOT NULL DEFAULT 'CP437',
    cut_mode            VARCHAR(10) NOT NULL DEFAULT 'partial',
    created_at          TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    updated_at          TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    time_zone           VARCHAR(64) NULL,

    CONSTRAINT kitchen_printtemplate_copies_range CHECK (copies BETWEEN 1 AND 5),
    CONSTRAINT kitchen_printtemplate_cut_mode_valid CHECK (cut_mode IN ('full', 'partial')),
    CONSTRAINT kitchen_printtemplate_one_per_scope UNIQUE NULLS NOT DISTINCT (brand_id, station_code)
);

COMMENT ON TABLE public.kitchen_printtemplate IS
    'Ticket layout per brand and station (NULL = any). The most specific row wins; no row = defaults '
    '(no buzzer, 1 copy, large item font, CP437, partial cut).';
COMMENT ON COLUMN public.kitchen_printtemplate.time_zone IS
    'IANA time zone of the "Sent HH:MM" printed on tickets (e.g. ''Asia/Makassar''); NULL = the zone '
    'of the machine running kprintd.';

-- 7. Planned maintenance windows (the spec's Phase 2 "StationPrinterSchedule") -----------------------
CREATE TABLE public.kitchen_stationprinterschedule (
    id          BIGSERIAL PRIMARY KEY,
    printer_id  BIGINT NOT NULL REFERENCES public.kitchen_stationprinter(id) ON DELETE CASCADE,
    starts_at   TIMESTAMP WITH TIME ZONE NOT NULL,
    ends_at     TIMESTAMP WITH TIME ZONE NOT NULL,
    reason      TEXT NULL,
    created_by  VARCHAR(100) NULL,
    created_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),

    CONSTRAINT kitchen_stationprinterschedule_ends_after_start CHECK (ends_at > starts_at)
);

-- The daemon asks "which window of this printer has not ended yet?" on every route refresh.
CREATE INDEX idx_stationprinterschedule_printer_ends
    ON public.kitchen_stationprinterschedule (printer_id, ends_at);

COMMENT ON TABLE public.kitchen_stationprinterschedule IS
    'Planned maintenance windows (the spec''s StationPrinterSchedule): from starts_at until ends_at '
    'the printer gets no tickets and no health checks. Its station''s tickets go to its other '
    'printers, or wait for the window to end when all are in maintenance. Windows may overlap; '
    'delete or update a row to cancel or move a window.';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.printer_id IS
    'The printer (kitchen_stationprinter.id); its windows are deleted with it.';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.starts_at IS
    'Start of the window (inclusive).';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.ends_at IS
    'End of the window (exclusive); must be after starts_at.';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.reason IS
    'Why, in words for the kitchen and the audit (e.g. ''cutter replaced'').';
COMMENT ON COLUMN public.kitchen_stationprinterschedule.created_by IS
    'Who booked it, e.g. ''it:andi'' or ''manager:siti''.';

-- 8. Daemon heartbeat ------------------------------------------------------------------------------
CREATE TABLE public.kitchen_daemon_heartbeat (
    daemon_id        VARCHAR(200) PRIMARY KEY,
    host             TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    version          VARCHAR(50) NOT NULL,
    store_id         UUID NULL,
    brand_ids        UUID[] NOT NULL DEFAULT '{}',
    interval_s       DOUBLE PRECISION NOT NULL,
    started_at       TIMESTAMP WITH TIME ZONE NOT NULL,
    last_seen_at     TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    stopped_at       TIMESTAMP WITH TIME ZONE NULL,
    tickets_printed  BIGINT NOT NULL DEFAULT 0,
    listening           BOOLEAN NULL,
    not_listening_since TIMESTAMP WITH TIME ZONE NULL,

    CONSTRAINT kitchen_daemon_heartbeat_interval_positive CHECK (interval_s > 0),
    CONSTRAINT kitchen_daemon_heartbeat_printed_nonnegative CHECK (tickets_printed >= 0)
);

COMMENT ON TABLE public.kitchen_daemon_heartbeat IS
    'One row per kprintd daemon, upserted every interval_s seconds while it runs (kitchen_daemon_beat) '
    'and stamped stopped_at on a clean stop. Rows not seen for 7 days are removed. Read it through '
    'kitchen_daemon_status.';
COMMENT ON COLUMN public.kitchen_daemon_heartbeat.listening IS
    'True while the daemon''s LISTEN connection is up and read, so a new ticket prints at once; false '
    'while it is not (tickets then print only when the daemon''s periodic sweep finds them); NULL when '
    'the writer did not say (the 9-argument kitchen_daemon_beat()).';
COMMENT ON COLUMN public.kitchen_daemon_heartbeat.not_listening_since IS
    'While listening is false: since when the daemon has not been listening (its start, or the moment '
    'its listener stopped). NULL otherwise.';

-- 9. Alerts: every alert kept, append-only (its triggers are in 30_triggers.sql) ---------------------
CREATE TABLE public.kitchen_alertlog (
    id          BIGSERIAL PRIMARY KEY,
    raised_at   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    alert_type  VARCHAR(50) NOT NULL,
    severity    VARCHAR(10) NOT NULL,
    message     TEXT NOT NULL,
    subject     TEXT NULL,
    raised_by   TEXT NULL,
    sent        BOOLEAN NOT NULL,
    alert       JSONB NOT NULL,

    CONSTRAINT kitchen_alertlog_severity_known CHECK (severity IN ('info', 'warning', 'critical'))
);

CREATE INDEX idx_alertlog_raised_at ON public.kitchen_alertlog (raised_at DESC);
-- "The latest alert about this printer": one index probe per alert raised.
CREATE INDEX idx_alertlog_subject ON public.kitchen_alertlog (subject, id DESC) WHERE sent;

COMMENT ON TABLE public.kitchen_alertlog IS
    'Every alert kitchen_raise_alert() raised, in order (append-only). sent = false: held back as '
    'a repeat of another daemon''s alert about the same subject; it was not sent on NOTIFY '
    'kitchen_alert. alert is the JSON as sent (or as it would have been).';
COMMENT ON COLUMN public.kitchen_alertlog.alert_type IS
    'printer_down, printer_paper_low, printer_recovered, station_unroutable, station_recovered, '
    'station_in_maintenance, ticket_failed, ticket_unserved, ticket_unserved_cleared '
    '(docs/monitoring.md).';
COMMENT ON COLUMN public.kitchen_alertlog.subject IS
    'What the alert is about: ticket:<id>, printer:<id> or station:<brand>/<store>/<station>; '
    'NULL when the details name none of them.';
COMMENT ON COLUMN public.kitchen_alertlog.raised_by IS
    'The daemon that raised it (details.daemon); NULL when the database raised it itself (a '
    'ticket failed for good in kitchen_finish_print_jobs or kitchen_reclaim_expired_leases).';
COMMENT ON COLUMN public.kitchen_alertlog.sent IS
    'True when it went out on NOTIFY kitchen_alert; false when held back as another daemon''s repeat.';

-- 10. The record of purges (kitchen_purge; append-only, its triggers are in 30_triggers.sql) --------
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

-- 11. Applied migrations ---------------------------------------------------------------------------
-- Each file of sql/migrations records itself here as its last statement, so a database migrated
-- with psql is one `kprintd run` accepts. kprintd migrate adds the file's SHA-256 (checksum), and
-- refuses to go on when an applied file was edited; a row with no checksum was applied by hand.
CREATE TABLE public.kprintd_schema_migrations (
    version     VARCHAR(4) PRIMARY KEY,
    filename    TEXT NOT NULL,
    checksum    CHAR(64) NULL,
    applied_at  TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    applied_by  TEXT NOT NULL DEFAULT session_user
);

COMMENT ON TABLE public.kprintd_schema_migrations IS
    'The files of sql/migrations applied to this database: version, file name, SHA-256 of the file '
    '(filled in by kprintd migrate; NULL when the file was applied by hand), when and by whom.';

-- sql/schema/30_triggers.sql ======================================================================

-- The triggers on kprintd's tables and their trigger functions: what the database itself does when
-- anyone (kprintd, a POS, a DBA with psql) writes a ticket, its lines, a printer or a template.
--
-- * Tickets: a writer that leaves columns out gets the ticket's scope from its bill, its station
--   code trimmed and lowercase, its type from its station and bill; status changes keep the claim,
--   retry and banner columns consistent; a line lists an item of the ticket's own bill only.
-- * Station codes must be visible text.
-- * The audit trail: every ticket insert and status change writes one kitchen_kitchenticketlog row
--   (AFTER triggers, so a DBA's hand-typed UPDATE is audited too). Writers describe their change
--   with kitchen_describe_change() (41_tickets.sql) in the same transaction, before the UPDATE:
--   kprintd.action, kprintd.actor, kprintd.duration_ms, kprintd.error_code, kprintd.metadata
--   (transaction-local settings; an empty string counts as unset). The ticket log, the alert log
--   and the purge log are append-only for every role, the owner and superusers included, and with
--   session_replication_role = replica too (ENABLE ALWAYS); the ticket log accepts a DELETE only
--   from kitchen_purge.
-- * Waking the daemon: NOTIFY kitchen_ticket_new when a ticket is committed and whenever it goes
--   back to 'new' (delivered at COMMIT, in commit order; a listener that was not connected misses
--   them, so the daemon also looks for due tickets when it connects); NOTIFY kitchen_printers_changed
--   when printers, templates or maintenance windows change.
-- * Tickets a POS writes itself (the spec's Example 1: ticket row, then its items one by one, then
--   its own 'created' log row): a ticket is announced when its transaction commits; one committed
--   without items waits until the writer has been quiet for kitchen_writer_quiet_interval(); an
--   item written onto a ticket that is printing or printed goes out on an addition ticket; the log
--   has one 'created' row per ticket; NOT NULL columns a POS's ORM always fills get the column
--   type's empty value when kprintd writes.

-- Tickets: what a writer leaves out, the database fills in --------------------------------------
CREATE FUNCTION kprintd.kitchen_ticket_before_insert() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.printer_target := COALESCE(kprintd.kitchen_normalize_station(NEW.printer_target), NEW.printer_target);
    NEW.status := COALESCE(NEW.status, 'new');
    NEW.is_reprint := COALESCE(NEW.is_reprint, false);
    IF NEW.ticket_type IS NULL OR (NEW.ticket_type = 'order' AND NOT NEW.is_reprint) THEN
        -- A writer that does not know the column (a POS writing the spec's tables itself) gets the
        -- default, 'order': the ticket is what its station and bill make it.
        NEW.ticket_type := CASE
            WHEN NEW.printer_target = 'checker' THEN 'checker'
            WHEN NEW.is_reprint THEN (SELECT o.ticket_type FROM public.kitchen_kitchenticket o
                                       WHERE o.id = NEW.original_ticket_id)
            WHEN EXISTS (SELECT 1 FROM public.kitchen_kitchenticket o
                          WHERE o.bill_id = NEW.bill_id AND o.printer_target = NEW.printer_target
                            AND o.ticket_type IN ('order', 'addition') AND NOT o.is_reprint)
                THEN 'addition'
        END;
        NEW.ticket_type := COALESCE(NEW.ticket_type, 'order');
    END IF;
    NEW.may_have_printed := COALESCE(NEW.may_have_printed, false);
    NEW.next_attempt_at := COALESCE(NEW.next_attempt_at, now());
    IF NEW.status = 'printed' AND NEW.printed_at IS NULL THEN
        NEW.printed_at := now();
    END IF;
    -- The bill is authoritative for scope: whatever the inserter wrote is replaced.
    SELECT b.brand_id, b.store_id INTO NEW.brand_id, NEW.store_id
      FROM public.kitchen_pos_bill b WHERE b.id = NEW.bill_id;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_before_insert() IS
    'BEFORE INSERT on kitchen_kitchenticket: copies brand_id/store_id from the bill (kitchen_pos_bill, even for hand-inserted rows), '
    'stores printer_target trimmed and lowercase, defaults status to ''new'', and sets printed_at for a ticket inserted as printed. '
    'A ticket_type left NULL or ''order'' (the default a writer that does not know the column gets) becomes ''checker'' at '
    'station checker, the original''s type for a reprint, ''addition'' when the bill already has an original order or addition '
    'ticket for the station, else ''order''.';

CREATE TRIGGER kitchen_kitchenticket_prepare_insert
    BEFORE INSERT ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticket_before_insert();

CREATE FUNCTION kprintd.kitchen_ticket_before_update() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.printer_target IS DISTINCT FROM OLD.printer_target THEN
        NEW.printer_target := COALESCE(kprintd.kitchen_normalize_station(NEW.printer_target), NEW.printer_target);
    END IF;
    IF NEW.bill_id IS DISTINCT FROM OLD.bill_id THEN
        SELECT b.brand_id, b.store_id INTO NEW.brand_id, NEW.store_id
          FROM public.kitchen_pos_bill b WHERE b.id = NEW.bill_id;
    END IF;
    -- "Bytes may have reached paper" and "printed before" can only become true.
    NEW.may_have_printed := COALESCE(NEW.may_have_printed, false) OR OLD.may_have_printed;
    NEW.reprinted := COALESCE(NEW.reprinted, false) OR OLD.reprinted;
    IF NEW.is_reprint AND NEW.original_ticket_id IS NULL THEN
        -- The spec's "printed -> new (reprint with is_reprint=true)" done in place: the ticket is
        -- its own original.
        NEW.original_ticket_id := NEW.id;
    END IF;

    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status = 'new' THEN
            -- Back in the queue (retry, manual reset, a DBA's UPDATE): nobody holds it, due now
            -- unless the writer scheduled it.
            NEW.claimed_by := NULL;
            NEW.lease_expires_at := NULL;
            IF NEW.next_attempt_at IS NOT DISTINCT FROM OLD.next_attempt_at THEN
                NEW.next_attempt_at := now();
            END IF;
            IF OLD.status = 'printing' AND NULLIF(btrim(current_setting('kprintd.action', true)), '') IS NULL THEN
                -- A lease broken by hand: part of the ticket may be on paper already.
                NEW.may_have_printed := true;
            END IF;
            IF OLD.status = 'printed' THEN
                -- Printed once already: the cook must see that this one is a copy.
                NEW.reprinted := true;
            END IF;
        ELSIF NEW.status = 'printed' THEN
            IF NEW.printed_at IS NULL THEN
                NEW.printed_at := now();
            END IF;
        END IF;
        IF OLD.status = 'printing' AND NEW.status IN ('printed', 'failed') THEN
            NEW.claimed_by := NULL;
            NEW.lease_expires_at := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_before_update() IS
    'BEFORE UPDATE on kitchen_kitchenticket, generic housekeeping the daemon relies on. Status -> ''new'' (from anything): '
    'claimed_by and lease_expires_at cleared; next_attempt_at = now() unless the UPDATE itself changed it; from ''printing'' '
    'in an undescribed change (kprintd.action unset, e.g. a DBA''s UPDATE breaking a lease) also may_have_printed = true, '
    'so the next print carries a RETRY banner (a describing writer sets may_have_printed itself); from ''printed'' also '
    'reprinted = true, so every later print carries the REPRINT banner. Status -> ''printed'': '
    'printed_at = now() if NULL. ''printing'' -> ''printed''/''failed'': claim cleared. Always: may_have_printed and reprinted '
    'never go back to false, printer_target is stored lowercase, brand_id/store_id follow bill_id, and is_reprint set '
    'without an original makes the ticket its own original.';

CREATE TRIGGER kitchen_kitchenticket_housekeeping
    BEFORE UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticket_before_update();

-- A ticket sent back to 'new' by hand (the spec's own troubleshooting UPDATE does not touch
-- print_attempts) must get another chance, or no daemon and no pending-tickets query would ever
-- see it again. The daemon itself only returns tickets to 'new' with attempts left.
CREATE FUNCTION kprintd.kitchen_ticket_fresh_attempts() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.print_attempts >= NEW.max_retries THEN
        NEW.print_attempts := 0;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_fresh_attempts() IS
    'BEFORE UPDATE on kitchen_kitchenticket, when status changes to new: a ticket with no print '
    'attempts left starts over at 0, so a hand-made reset is picked up by the daemon.';

CREATE TRIGGER kitchen_kitchenticket_fresh_attempts
    BEFORE UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (NEW.status = 'new' AND OLD.status IS DISTINCT FROM 'new')
    EXECUTE FUNCTION kprintd.kitchen_ticket_fresh_attempts();

CREATE FUNCTION kprintd.kitchen_ticketitem_before_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ticket_type IS NULL OR NEW.is_reprint IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.kitchen_ticket_id IS DISTINCT FROM OLD.kitchen_ticket_id) THEN
        SELECT kt.ticket_type, kt.is_reprint INTO NEW.ticket_type, NEW.is_reprint
          FROM public.kitchen_kitchenticket kt WHERE kt.id = NEW.kitchen_ticket_id;
        IF NOT FOUND AND NEW.kitchen_ticket_id IS NOT NULL THEN
            RAISE EXCEPTION 'insert or update on table "kitchen_kitchenticketitem" violates foreign key constraint "kitchen_kitchenticketitem_kitchen_ticket_id_fkey"'
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'kitchen_kitchenticketitem_kitchen_ticket_id_fkey',
                      TABLE = 'kitchen_kitchenticketitem',
                      DETAIL = format('Key (kitchen_ticket_id)=(%s) is not present in table "kitchen_kitchenticket".',
                                      NEW.kitchen_ticket_id);
        END IF;
    END IF;
    IF NEW.ticket_type = 'void' THEN
        NEW.line_type := 'void';
    ELSIF NEW.ticket_type IN ('order', 'addition') THEN
        NEW.line_type := 'item';
    ELSE
        NEW.line_type := COALESCE(NEW.line_type, 'item');
    END IF;
    IF NEW.quantity IS NULL THEN
        SELECT bi.quantity INTO NEW.quantity FROM public.kitchen_pos_billitem bi WHERE bi.id = NEW.bill_item_id;
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketitem_before_write() IS
    'BEFORE INSERT/UPDATE on kitchen_kitchenticketitem: fills ticket_type/is_reprint from the ticket when not given '
    '(SQLSTATE 23503 naming kitchen_kitchenticketitem_kitchen_ticket_id_fkey if the ticket does not exist), derives '
    'line_type from the ticket type (void tickets: ''void''; order/addition: ''item''; checker: as given, default ''item''), '
    'and defaults quantity to the bill item''s.';

CREATE TRIGGER kitchen_kitchenticketitem_prepare
    BEFORE INSERT OR UPDATE ON public.kitchen_kitchenticketitem
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticketitem_before_write();

CREATE FUNCTION kprintd.kitchen_ticketitem_check() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_ticket_bill bigint;
    v_item_bill   bigint;
BEGIN
    SELECT kt.bill_id INTO v_ticket_bill FROM public.kitchen_kitchenticket kt WHERE kt.id = NEW.kitchen_ticket_id;
    SELECT bi.bill_id INTO v_item_bill FROM public.kitchen_pos_billitem bi WHERE bi.id = NEW.bill_item_id;
    IF v_ticket_bill IS DISTINCT FROM v_item_bill THEN
        RAISE EXCEPTION 'bill item % (bill %) cannot go on ticket % of bill %',
                NEW.bill_item_id, v_item_bill, NEW.kitchen_ticket_id, v_ticket_bill
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'kitchen_kitchenticketitem_same_bill',
                  HINT = 'A ticket lists items of its own bill only.';
    END IF;
    IF NEW.line_type = 'void' AND NOT NEW.is_reprint AND NOT EXISTS (
        SELECT 1 FROM public.kitchen_kitchenticketitem s
         WHERE s.bill_item_id = NEW.bill_item_id AND NOT s.is_reprint
           AND s.ticket_type IN ('order', 'addition')) THEN
        RAISE EXCEPTION 'bill item % was never sent to the kitchen, so it cannot be voided there', NEW.bill_item_id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'kitchen_kitchenticketitem_void_after_send',
                  HINT = 'Items voided before they were sent are simply never printed.';
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketitem_check() IS
    'AFTER INSERT/UPDATE on kitchen_kitchenticketitem (runs at the end of the statement, so a ticket and its lines may be '
    'inserted by one statement): the bill item belongs to the ticket''s bill, and an original void line cancels an item that '
    'was sent. Raises SQLSTATE 23514 (check_violation) otherwise.';

CREATE TRIGGER kitchen_kitchenticketitem_check
    AFTER INSERT OR UPDATE OF kitchen_ticket_id, bill_item_id, line_type, is_reprint
    ON public.kitchen_kitchenticketitem
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticketitem_check();

-- Station codes a kitchen can read --------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_refuse_invisible_station() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_code   text;
    v_old    text;
    v_shown  text;
    v_items  text;
    v_count  integer;
    v_rule   constant text := 'a station code must be visible text: no control characters (such as '
                              'ESC), no zero-width or other invisible format characters, no line '
                              'separators and no spaces but the plain one';
BEGIN
    IF TG_TABLE_NAME = 'kitchen_kitchenticket' THEN
        v_code := NEW.printer_target;
        IF TG_OP = 'UPDATE' THEN
            v_old := OLD.printer_target;
        END IF;
    ELSE
        v_code := NEW.station_code;
        IF TG_OP = 'UPDATE' THEN
            v_old := OLD.station_code;
        END IF;
    END IF;
    -- A row written before codes were judged keeps its code through updates that do not change it (an ORM
    -- saving every column, the daemon counting prints).
    IF kprintd.kitchen_valid_station(v_code) OR (TG_OP = 'UPDATE' AND v_code IS NOT DISTINCT FROM v_old) THEN
        RETURN NEW;
    END IF;
    v_shown := kprintd.kitchen_printable(left(v_code, 60));

    IF TG_TABLE_NAME = 'kitchen_stationprinter' THEN
        RAISE EXCEPTION 'printer ''%'': station code ''%'' refused: %',
                        kprintd.kitchen_printable(left(NEW.printer_name, 60)), v_shown, v_rule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Type the station code again (a copy from a document or chat may carry '
                         'invisible characters); it must equal the printer_target of the products '
                         'printed there.';
    ELSIF TG_TABLE_NAME = 'kitchen_printtemplate' THEN
        RAISE EXCEPTION 'print template %: station code ''%'' refused: %', NEW.id, v_shown, v_rule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Type the station code again, as the printers of that station have it.';
    END IF;

    -- A ticket. A void or a reprint repeats a station that is on paper already for this bill (a
    -- ticket written before codes were judged): the kitchen must get it, and it names no new station.
    IF (NEW.ticket_type = 'void' OR NEW.is_reprint)
       AND EXISTS (SELECT 1 FROM public.kitchen_kitchenticket o
                    WHERE o.bill_id = NEW.bill_id AND o.printer_target = NEW.printer_target) THEN
        RETURN NEW;
    END IF;
    -- The bill items that would go there: kitchen_create_tickets() names them, so the POS can say
    -- which item (or its product) to fix.
    SELECT count(*),
           string_agg(format('%s (%s, %s)', i.id,
                             coalesce('''' || kprintd.kitchen_printable(left(i.product_name, 40)) || '''',
                                      'no product'),
                             CASE WHEN kprintd.kitchen_normalize_station(i.printer_target) IS NOT NULL
                                  THEN 'its own printer_target'
                                  ELSE 'its product''s printer_target' END),
                      ', ' ORDER BY i.id) FILTER (WHERE i.n <= 10)
      INTO v_count, v_items
      FROM (SELECT bi.*, row_number() OVER (ORDER BY bi.id) AS n
              FROM public.kitchen_pos_billitem bi
             WHERE bi.bill_id = NEW.bill_id
               AND kprintd.kitchen_item_station(bi.printer_target, bi.product_printer_target)
                   = kprintd.kitchen_normalize_station(NEW.printer_target)) i;
    IF v_count > 0 THEN
        RAISE EXCEPTION 'bill %: nothing sent to the kitchen: % to station ''%'', which is refused: %',
                        NEW.bill_id,
                        CASE WHEN v_count = 1 THEN 'bill item ' ELSE 'bill items ' END || v_items
                            || CASE WHEN v_count > 10 THEN format(' and %s more', v_count - 10) ELSE '' END
                            || CASE WHEN v_count = 1 THEN ' goes' ELSE ' go' END,
                        v_shown, v_rule
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Fix the printer_target of the item or of its product (core_product), then '
                         'send the bill again.';
    END IF;
    RAISE EXCEPTION 'ticket for bill %: station (printer_target) ''%'' refused: %',
                    NEW.bill_id, v_shown, v_rule
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Write the station code as the printers of that station have it.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_refuse_invisible_station() IS
    'BEFORE INSERT OR UPDATE of the station code on kitchen_stationprinter (station_code), '
    'kitchen_printtemplate (station_code) and kitchen_kitchenticket (printer_target): refuses a code '
    'that is not visible text (kitchen_valid_station()) with SQLSTATE 22023, naming the printer, the '
    'template, or the ticket''s bill and the bill items that go to that station (so '
    'kitchen_create_tickets() refuses the whole send). The code is shown escaped '
    '(kitchen_printable()). An UPDATE that leaves the code as it was passes, and so does a void or '
    'reprint ticket for a station the bill already has a ticket for: rows written before codes were '
    'judged keep working.';

CREATE TRIGGER kitchen_stationprinter_station_visible
    BEFORE INSERT OR UPDATE OF station_code ON public.kitchen_stationprinter
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_refuse_invisible_station();

CREATE TRIGGER kitchen_printtemplate_station_visible
    BEFORE INSERT OR UPDATE OF station_code ON public.kitchen_printtemplate
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_refuse_invisible_station();

-- Named to fire after kitchen_kitchenticket_prepare_insert (triggers fire in name order), which
-- stores the code trimmed and lowercase and settles ticket_type.
CREATE TRIGGER kitchen_kitchenticket_station_visible
    BEFORE INSERT OR UPDATE OF printer_target ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_refuse_invisible_station();

ALTER TABLE public.kitchen_stationprinter ENABLE ALWAYS TRIGGER kitchen_stationprinter_station_visible;

ALTER TABLE public.kitchen_printtemplate ENABLE ALWAYS TRIGGER kitchen_printtemplate_station_visible;

ALTER TABLE public.kitchen_kitchenticket ENABLE ALWAYS TRIGGER kitchen_kitchenticket_station_visible;

-- Printers and templates ------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_stationprinter_normalize() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.station_code := COALESCE(kprintd.kitchen_normalize_station(NEW.station_code), NEW.station_code);
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_stationprinter_normalize() IS
    'BEFORE INSERT OR UPDATE on kitchen_stationprinter: stores station_code trimmed and lowercase, '
    'so it matches kitchen_kitchenticket.printer_target with a plain = (as the spec''s queries do).';

CREATE TRIGGER kitchen_stationprinter_normalize
    BEFORE INSERT OR UPDATE OF station_code ON public.kitchen_stationprinter
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_stationprinter_normalize();

-- A CHECK may not look into a catalog view, so a trigger refuses an unknown zone, with its name.
CREATE FUNCTION kprintd.kitchen_printtemplate_check_time_zone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.time_zone IS NOT NULL AND NOT kprintd.kitchen_is_time_zone(NEW.time_zone) THEN
        RAISE EXCEPTION 'unknown time zone %', quote_literal(NEW.time_zone)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an IANA name from pg_timezone_names, such as ''Asia/Jakarta'', or NULL for the server''s zone.';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_printtemplate_check_time_zone() IS
    'BEFORE INSERT OR UPDATE OF time_zone on kitchen_printtemplate: refuses a zone PostgreSQL does not know '
    '(22023 invalid_parameter_value).';

CREATE TRIGGER kitchen_printtemplate_time_zone
    BEFORE INSERT OR UPDATE OF time_zone ON public.kitchen_printtemplate
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_printtemplate_check_time_zone();

-- The audit trail -------------------------------------------------------------------------------
-- Whose description of a change is believed: the daemon's and a manager's (the admin functions).
-- Where the roles do not exist (60_roles_and_grants.sql not applied), everyone's.
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

-- The 'created' row kprintd writes, when the audit trigger (a described insert) or the commit of an
-- undescribed one (kitchen_ticket_committed) logs a ticket's creation.
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

-- A claim is recognised first and its description is fixed; a description is believed only from a
-- trusted session (kitchen_session_trusted).
CREATE FUNCTION kprintd.kitchen_ticket_audit() RETURNS trigger
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

CREATE TRIGGER kitchen_kitchenticket_audit_insert
    AFTER INSERT ON public.kitchen_kitchenticket
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_ticket_audit();

-- Not "UPDATE OF status": that would miss a status set by another BEFORE trigger.
CREATE TRIGGER kitchen_kitchenticket_audit_status
    AFTER UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kprintd.kitchen_ticket_audit();

-- The ticket log: DELETE only from kitchen_purge.
-- search_path is fixed: this runs with the deleter's settings, and a deleter's own "=" operator
-- must not decide whether it is the purge.
CREATE FUNCTION kprintd.kitchen_ticketlog_append_only() RETURNS trigger
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

ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_update;
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_delete;
ALTER TABLE public.kitchen_kitchenticketlog ENABLE ALWAYS TRIGGER kitchen_kitchenticketlog_no_modify;

CREATE FUNCTION kprintd.kitchen_alertlog_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'kitchen_alertlog is an append-only record of alerts: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = 'This holds for every role, the table owner and superusers included.';
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_alertlog_append_only() IS
    'BEFORE UPDATE OR DELETE (row) and TRUNCATE (statement) on kitchen_alertlog: refuses them, so '
    'the record of alerts cannot be rewritten.';

CREATE TRIGGER kitchen_alertlog_no_update_delete
    BEFORE UPDATE OR DELETE ON public.kitchen_alertlog
    FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_alertlog_append_only();

CREATE TRIGGER kitchen_alertlog_no_truncate
    BEFORE TRUNCATE ON public.kitchen_alertlog
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_alertlog_append_only();

ALTER TABLE public.kitchen_alertlog ENABLE ALWAYS TRIGGER kitchen_alertlog_no_update_delete;
ALTER TABLE public.kitchen_alertlog ENABLE ALWAYS TRIGGER kitchen_alertlog_no_truncate;

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

ALTER TABLE public.kitchen_purgelog ENABLE ALWAYS TRIGGER kitchen_purgelog_no_update_delete;
ALTER TABLE public.kitchen_purgelog ENABLE ALWAYS TRIGGER kitchen_purgelog_no_modify;

-- Waking the daemon -----------------------------------------------------------------------------
-- The payload, for the notification sent when a ticket is committed (kitchen_ticket_committed) and
-- when it goes back to 'new': where the ticket goes, nothing of what it says (any login can LISTEN).
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

CREATE FUNCTION kprintd.kitchen_ticket_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kitchen_ticket_new', kprintd.kitchen_ticket_notice(NEW));
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_notify() IS
    'AFTER UPDATE (status changed to ''new'') on kitchen_kitchenticket: '
    'pg_notify(''kitchen_ticket_new'', kitchen_ticket_notice(NEW)), delivered at commit. '
    'A new ticket is announced when its transaction commits (kitchen_ticket_committed).';

CREATE TRIGGER kitchen_kitchenticket_notify_status
    AFTER UPDATE ON public.kitchen_kitchenticket
    FOR EACH ROW WHEN (NEW.status = 'new' AND OLD.status IS DISTINCT FROM 'new')
    EXECUTE FUNCTION kprintd.kitchen_ticket_notify();

-- How long a writer may pause between the rows of one ticket.
CREATE FUNCTION kprintd.kitchen_writer_quiet_interval() RETURNS interval
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN interval '500 milliseconds';

COMMENT ON FUNCTION kprintd.kitchen_writer_quiet_interval() IS
    'How long a ticket committed without all of its items waits after the last item written onto it '
    'before it prints (a POS writing ticket and items in separate statements). Replace it with CREATE OR '
    'REPLACE FUNCTION to fit a slower writer; a ticket written with its items in one transaction never '
    'waits for it.';

-- A ticket's commit announces it.
-- SECURITY DEFINER: it writes the log, which application roles cannot.
CREATE FUNCTION kprintd.kitchen_ticket_committed() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_lines  bigint;
BEGIN
    SELECT * INTO v_ticket FROM public.kitchen_kitchenticket t WHERE t.id = NEW.id;
    IF NOT FOUND THEN
        RETURN NULL;  -- deleted again in its own transaction
    END IF;
    SELECT count(*) INTO v_lines FROM public.kitchen_kitchenticketitem i WHERE i.kitchen_ticket_id = NEW.id;

    IF NOT EXISTS (SELECT 1 FROM public.kitchen_kitchenticketlog l
                    WHERE l.ticket_id = NEW.id AND l.action = 'created') THEN
        -- Dated now, or just before a status change the same transaction logged, so that it stays
        -- the ticket's first row.
        PERFORM kprintd.kitchen_log_created(
            v_ticket,
            CASE WHEN kprintd.kitchen_session_trusted()
                 THEN coalesce(NULLIF(btrim(current_setting('kprintd.actor', true)), ''), session_user)
                 ELSE session_user END,
            NULL,
            (SELECT least(clock_timestamp(), min(l."timestamp") - interval '1 microsecond')
               FROM public.kitchen_kitchenticketlog l WHERE l.ticket_id = NEW.id));
    END IF;

    IF v_ticket.status = 'new' THEN
        IF v_lines = 0 THEN
            -- Its items follow in later transactions.
            UPDATE public.kitchen_kitchenticket t
               SET next_attempt_at = greatest(t.next_attempt_at,
                                              clock_timestamp() + kprintd.kitchen_writer_quiet_interval())
             WHERE t.id = NEW.id
            RETURNING * INTO v_ticket;
        ELSIF v_ticket.next_attempt_at > now() AND v_ticket.print_attempts = 0 THEN
            -- Its own items, written in this transaction, held it back: the writer is done now.
            UPDATE public.kitchen_kitchenticket t SET next_attempt_at = now()
             WHERE t.id = NEW.id
            RETURNING * INTO v_ticket;
        END IF;
        PERFORM pg_notify('kitchen_ticket_new', kprintd.kitchen_ticket_notice(v_ticket));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticket_committed() IS
    'Deferred AFTER INSERT of a ''new'' ticket (a ticket inserted in another status is history, logged '
    'at once by kitchen_ticket_audit), run when the inserting transaction commits: logs '
    'the ticket''s ''created'' row unless the writer wrote one (actor kprintd.actor, else session_user); '
    'for a ticket still ''new'', makes it due now if it has items, or holds it '
    'kitchen_writer_quiet_interval() if its items are still to come, and NOTIFYs kitchen_ticket_new '
    '(kitchen_ticket_notice).';

CREATE CONSTRAINT TRIGGER kitchen_kitchenticket_committed
    AFTER INSERT ON public.kitchen_kitchenticket
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.status = 'new') EXECUTE FUNCTION kprintd.kitchen_ticket_committed();

-- kprintd keeps each route's printers (kitchen_route_printers) in memory so that no ticket waits
-- for that query. These triggers tell it, on commit, when something that routing reads changed,
-- so a printer switched off, a new template or a maintenance window applies to the very next
-- ticket. The counters and last-print columns the daemon itself updates after every print are not
-- watched: they change nothing in routing.
CREATE FUNCTION kprintd.kitchen_notify_printers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kitchen_printers_changed', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_notify_printers_changed() IS
    'Statement trigger: NOTIFY kitchen_printers_changed (payload: the table) when printers, print '
    'templates or maintenance windows change; kprintd then reads its routes'' printers again.';

CREATE TRIGGER kitchen_stationprinter_changed
    AFTER INSERT OR DELETE OR TRUNCATE ON public.kitchen_stationprinter
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();

CREATE TRIGGER kitchen_stationprinter_config_changed
    AFTER UPDATE OF brand_id, store_id, station_code, printer_name, printer_ip, printer_port,
                    priority, is_active, paper_width_mm, chars_per_line, answers_status
    ON public.kitchen_stationprinter
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();

CREATE TRIGGER kitchen_printtemplate_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.kitchen_printtemplate
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();

CREATE TRIGGER kitchen_stationprinterschedule_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.kitchen_stationprinterschedule
    FOR EACH STATEMENT EXECUTE FUNCTION kprintd.kitchen_notify_printers_changed();

-- Tickets a POS writes itself -------------------------------------------------------------------
-- Items written after their ticket.
CREATE FUNCTION kprintd.kitchen_ticketitem_arrived() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ticket public.kitchen_kitchenticket;
    v_type   text;
    v_target bigint;
    v_saved  jsonb;
BEGIN
    -- Still waiting to print for the first time: the item joins it, and the ticket waits for the
    -- writer's next row. The row lock keeps a claim from taking the ticket until this commits.
    UPDATE public.kitchen_kitchenticket t
       SET next_attempt_at = greatest(t.next_attempt_at,
                                      clock_timestamp() + kprintd.kitchen_writer_quiet_interval())
     WHERE t.id = NEW.kitchen_ticket_id
       AND t.status = 'new' AND t.print_attempts = 0 AND NOT t.may_have_printed AND NOT t.reprinted;
    IF FOUND THEN
        RETURN NULL;
    END IF;

    -- Handed to a printer already (claimed, printed, failed, or maybe on paper): the paper the
    -- cook has, or will get, lacks this item. A ticket its writer inserted as printing, printed or
    -- failed never went to kprintd, and one written or changed in this very transaction is being
    -- recorded after the fact: the item only joins it.
    -- Written in this very transaction (history recorded after the fact): it only joins.
    SELECT * INTO v_ticket FROM public.kitchen_kitchenticket t WHERE t.id = NEW.kitchen_ticket_id;
    IF NOT FOUND OR NOT (v_ticket.print_attempts > 0 OR v_ticket.may_have_printed
                         OR v_ticket.reprinted)
       OR (SELECT t.xmin = pg_current_xact_id()::xid FROM public.kitchen_kitchenticket t
            WHERE t.id = NEW.kitchen_ticket_id) THEN
        RETURN NULL;
    END IF;
    v_type := CASE v_ticket.ticket_type WHEN 'order' THEN 'addition' ELSE v_ticket.ticket_type END;

    SELECT a.id INTO v_target
      FROM public.kitchen_kitchenticket a
     WHERE a.bill_id = v_ticket.bill_id AND a.printer_target = v_ticket.printer_target
       AND a.ticket_type = v_type AND a.is_reprint = v_ticket.is_reprint AND a.id > v_ticket.id
       AND a.status = 'new' AND a.print_attempts = 0 AND NOT a.may_have_printed AND NOT a.reprinted
     ORDER BY a.id
     LIMIT 1
       FOR NO KEY UPDATE SKIP LOCKED;
    IF v_target IS NULL THEN
        v_saved := kprintd.kitchen_change_description();
        PERFORM kprintd.kitchen_describe_change(NULL, session_user::text, NULL, NULL,
            jsonb_build_object('late_item_of', v_ticket.id, 'bill_item_id', NEW.bill_item_id));
        INSERT INTO public.kitchen_kitchenticket
            (bill_id, printer_target, status, ticket_type, is_reprint, original_ticket_id)
        VALUES (v_ticket.bill_id, v_ticket.printer_target, 'new', v_type, v_ticket.is_reprint,
                v_ticket.original_ticket_id)
        RETURNING id INTO v_target;
        PERFORM kprintd.kitchen_restore_change_description(v_saved);
    END IF;
    INSERT INTO public.kitchen_kitchenticketitem (kitchen_ticket_id, bill_item_id, quantity, line_type)
    VALUES (v_target, NEW.bill_item_id, NEW.quantity, NEW.line_type);
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_ticketitem_arrived() IS
    'AFTER INSERT on kitchen_kitchenticketitem, for lines a POS writes itself (not kprintd''s own): on a '
    'ticket still waiting for its first print, holds the ticket kitchen_writer_quiet_interval() after '
    'this item (and locks it against a claim until this commits); on a ticket kprintd tried to print '
    '(print_attempts > 0, may_have_printed or reprinted), puts the item on another ticket of that bill and station (''addition'' for '
    'an order, else the same kind), a waiting one made for such items or a new one, logged ''created'' '
    'with metadata late_item_of.';

CREATE TRIGGER kitchen_kitchenticketitem_arrived
    AFTER INSERT ON public.kitchen_kitchenticketitem
    FOR EACH ROW WHEN (NOT NEW.written_by_kprintd)
    EXECUTE FUNCTION kprintd.kitchen_ticketitem_arrived();

-- NOT NULL columns a POS's ORM always fills.
CREATE FUNCTION kprintd.kitchen_fill_required() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    v_row  jsonb := to_jsonb(NEW);
    v_fill jsonb;
BEGIN
    SELECT jsonb_object_agg(f.key, CASE WHEN f.value = '"now()"' THEN to_jsonb(now()) ELSE f.value END)
      INTO v_fill
      FROM jsonb_each(TG_ARGV[0]::jsonb) f
     WHERE v_row -> f.key = 'null'::jsonb;
    IF v_fill IS NOT NULL THEN
        NEW := jsonb_populate_record(NEW, v_fill);
    END IF;
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_fill_required() IS
    'BEFORE INSERT OR UPDATE on a kitchen table whose POS columns are NOT NULL with no default: sets '
    'each column named in the trigger''s argument (a JSON object column -> empty value, "now()" for '
    'now()) that would be NULL. Installed by kitchen_install_required_fillers().';

CREATE FUNCTION kprintd.kitchen_install_required_fillers() RETURNS SETOF text
    LANGUAGE plpgsql AS $$
DECLARE
    v_table   text;
    v_fill    jsonb;
    v_refused text;
    -- Columns kprintd always writes itself, or that a writer must give.
    v_written CONSTANT jsonb := '{
        "kitchen_stationprinter": ["id", "brand_id", "station_code", "printer_name", "printer_ip"],
        "kitchen_kitchenticket": ["id", "bill_id", "printer_target", "status", "ticket_type", "is_reprint"],
        "kitchen_kitchenticketitem": ["id", "kitchen_ticket_id", "bill_item_id", "quantity", "ticket_type",
                                      "is_reprint", "line_type"],
        "kitchen_kitchenticketlog": ["id", "ticket_id", "new_status", "action", "actor"],
        "kitchen_printerhealthcheck": ["id", "printer_id", "is_online"]}';
BEGIN
    FOR v_table IN SELECT jsonb_object_keys(v_written) LOOP
        SELECT jsonb_object_agg(a.attname, CASE
                   WHEN t.typcategory = 'S' THEN to_jsonb(''::text)
                   WHEN t.typcategory = 'N' THEN to_jsonb(0)
                   WHEN t.typcategory = 'B' THEN to_jsonb(false)
                   WHEN t.typcategory = 'D' THEN to_jsonb('now()'::text)
                   WHEN t.typname IN ('json', 'jsonb') THEN '{}'::jsonb
               END),
               string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ')
                   FILTER (WHERE t.typcategory NOT IN ('S', 'N', 'B', 'D')
                             AND t.typname NOT IN ('json', 'jsonb'))
          INTO v_fill, v_refused
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = ('public.' || quote_ident(v_table))::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = ''
           AND NOT (v_written -> v_table) ? a.attname::text;
        IF v_refused IS NOT NULL THEN
            RAISE EXCEPTION 'kprintd cannot write %: % NOT NULL with no default, and kprintd cannot know the value',
                    v_table, v_refused
                USING ERRCODE = 'not_null_violation',
                      HINT = 'Give the column a database default (ALTER TABLE ... ALTER COLUMN ... SET DEFAULT ...) '
                             'or allow NULL, then migrate again.';
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS kitchen_fill_required ON public.%I', v_table);
        IF v_fill IS NOT NULL THEN
            EXECUTE format('CREATE TRIGGER kitchen_fill_required BEFORE INSERT OR UPDATE ON public.%I '
                           'FOR EACH ROW EXECUTE FUNCTION kprintd.kitchen_fill_required(%L)',
                           v_table, v_fill);
            RAISE NOTICE 'fill % where kprintd would leave NULL: %', v_table, v_fill;
            RETURN NEXT format('%s: %s', v_table, v_fill);
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_install_required_fillers() IS
    'Looks at the five kitchen tables for columns that are NOT NULL with no default and that kprintd does '
    'not always write (a POS''s ORM fills them itself), and (re)creates a kitchen_fill_required trigger on '
    'each such table; returns one line per table it fills. Raises 23502 naming the columns whose type has '
    'no empty value (a uuid, say). Run by kprintd migrate; run it again after the POS adds such a column.';

SELECT kprintd.kitchen_install_required_fillers();

-- sql/schema/41_tickets.sql =======================================================================

-- Tickets: station codes and printable text, describing a change for the audit trail, and send to
-- kitchen (kitchen_create_tickets), the call a POS makes to turn a bill's unsent items into tickets.
--
-- Station codes are stored lowercase and trimmed. A bill item's station is its own printer_target,
-- else its product's printer_target, else 'kitchen'; 'none' means "never printed".
--
-- One kitchen_create_tickets() call is one "send": for every station with unsent items one ticket
-- ('order' the first time the station gets items of this bill, 'addition' afterwards); for every
-- station with items that were sent and are now void one 'void' ticket; and, when the brand has an
-- active 'checker' printer for the bill's store, one 'checker' ticket listing every line of this
-- send (voids as void lines). Calling it again creates nothing new: a bill item goes on one
-- original order/addition ticket and one void ticket at most, which unique indexes on
-- kitchen_kitchenticketitem enforce (20_tables.sql).

-- Station codes and printable text --------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_normalize_station(p_code text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(lower(btrim(p_code)), '');

COMMENT ON FUNCTION kprintd.kitchen_normalize_station(text) IS
    'A station code as kprintd stores it: trimmed and lowercase; NULL for NULL or blank input. '
    'Compare kitchen_stationprinter.station_code through it: kitchen_normalize_station(station_code) = ticket.printer_target.';

CREATE FUNCTION kprintd.kitchen_item_station(p_item_target text, p_product_target text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(
        COALESCE(kprintd.kitchen_normalize_station(p_item_target),
                 kprintd.kitchen_normalize_station(p_product_target),
                 'kitchen'),
        'none');

COMMENT ON FUNCTION kprintd.kitchen_item_station(text, text) IS
    'The station a bill item is printed at: the item''s printer_target, else the product''s, else ''kitchen'' '
    '(blank counts as unset; codes are trimmed and lowercased). NULL means ''none'': the item is never printed.';

-- Station codes are visible text.
-- Control characters (C0, DEL, C1), format characters (Unicode category Cf: zero-width spaces and
-- joiners, bidirectional overrides, the byte order mark, tags, ...), line and paragraph separators,
-- spaces other than the plain one (no-break, en, em, ideographic, ...), the combining grapheme
-- joiner and the Hangul fillers. The patterns are plain ASCII escapes, read by the regex engine:
-- in a database whose encoding is not UTF8 only what that encoding can tell apart is judged.
CREATE FUNCTION kprintd.kitchen_valid_station(p_code text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN p_code IS NULL OR p_code !~ CASE
        WHEN getdatabaseencoding() = 'UTF8' THEN
            '[\u0001-\u001f\u007f-\u00a0\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891'
            '\u08e2\u115f\u1160\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f'
            '\u3000\u3164\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f'
            '\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]'
        -- ISO 8859: C1 controls, no-break space and soft hyphen are at the same places as in Unicode.
        WHEN getdatabaseencoding() ~ '^(LATIN|ISO_8859_)' THEN '[\u0001-\u001f\u007f-\u00a0\u00ad]'
        -- SQL_ASCII, Windows code pages, multi-byte encodings: only ASCII is known for sure.
        ELSE '[\u0001-\u001f\u007f]'
    END;

COMMENT ON FUNCTION kprintd.kitchen_valid_station(text) IS
    'True when p_code (a station code, or any text) is visible text: no control character (C0, DEL, '
    'C1, e.g. ESC), no format character (Unicode Cf: zero-width space and joiners, bidirectional '
    'overrides, byte order mark, ...), no line or paragraph separator, no space but the plain one '
    '(no-break, en, em, ideographic, ...), no combining grapheme joiner or Hangul filler. NULL is '
    'valid (nothing to judge). In a database not in UTF8, only the control characters the encoding '
    'can tell apart are judged. kprintd refuses station codes for which it is false.';

CREATE FUNCTION kprintd.kitchen_printable(p_text text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_out   text := '';
    v_char  text;
    v_code  integer;
BEGIN
    IF kprintd.kitchen_valid_station(p_text) THEN
        RETURN p_text;
    END IF;
    FOR v_char IN SELECT c FROM regexp_split_to_table(p_text, '') AS c LOOP
        IF kprintd.kitchen_valid_station(v_char) THEN
            v_out := v_out || v_char;
        ELSE
            v_code := ascii(v_char);
            v_out := v_out || CASE WHEN v_code < 256 THEN '\x' || lpad(to_hex(v_code), 2, '0')
                                   WHEN v_code < 65536 THEN '\u' || lpad(to_hex(v_code), 4, '0')
                                   ELSE '\U' || lpad(to_hex(v_code), 8, '0') END;
        END IF;
    END LOOP;
    RETURN v_out;
END
$$;

COMMENT ON FUNCTION kprintd.kitchen_printable(text) IS
    'p_text with every character kitchen_valid_station() refuses written as an escape (ESC as \x1b, '
    'a zero-width space as \u200b), as kprintd shows text on a terminal; other text unchanged. For '
    'error messages and reports: a station code with ESC [2J in it must not clear the screen of '
    'whoever reads about it.';

-- The printer address kprintd connects to, as text: an inet's host part, or a POS's varchar as
-- written (an address or a host name).
CREATE FUNCTION kprintd.kitchen_printer_host(p_address text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(btrim(regexp_replace(p_address, '/(32|128)$', '')), '');

COMMENT ON FUNCTION kprintd.kitchen_printer_host(text) IS
    'The host kprintd connects to for a printer_ip value of any type (call it with printer_ip::text): '
    'an inet''s address without its /32 or /128 mask, or a varchar''s address or host name, trimmed.';

CREATE FUNCTION kprintd.kitchen_is_time_zone(p_name text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_name);

COMMENT ON FUNCTION kprintd.kitchen_is_time_zone(text) IS
    'True when p_name is a time zone name PostgreSQL knows (pg_timezone_names, e.g. ''Asia/Jakarta''); '
    'abbreviations such as ''WIB'' and POSIX offsets are not accepted.';

-- Describing a change for the audit trail -------------------------------------------------------
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

-- Send to kitchen -------------------------------------------------------------------------------
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

-- sql/schema/42_claims.sql ========================================================================

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
            JOIN public.kitchen_pos_billitem bi ON bi.id = kti.bill_item_id
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

-- sql/schema/43_health.sql ========================================================================

-- Health: the printers a daemon checks and the record of its checks, daemon heartbeats, alerts
-- (kept in kitchen_alertlog; a change two daemons both notice is announced once), and the print
-- times the SLA view reports.
--
-- An alert is a NOTIFY on kitchen_alert and a kitchen_alertlog row; the payload carries the row's
-- id (alert_id), so a listener that reconnects catches up with kitchen_alerts_after(). An alert that
-- names the daemon raising it (details.daemon) is held back, logged with sent = false, when the
-- latest alert sent about the same subject (the ticket, else the printer, else the station) came
-- from another daemon in the last minute and said the same thing.

-- Printers --------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_health_printers(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
RETURNS TABLE (
    printer_id     bigint,
    printer_name   text,
    host           text,
    port           integer,
    brand_id       uuid,
    store_id       uuid,
    station        text,
    answers_status boolean
)
    LANGUAGE sql STABLE AS $$
    SELECT sp.id, sp.printer_name, kprintd.kitchen_printer_host(sp.printer_ip::text), coalesce(sp.printer_port, 9100),
           sp.brand_id, sp.store_id, kprintd.kitchen_normalize_station(sp.station_code), sp.answers_status
    FROM public.kitchen_stationprinter sp
    WHERE coalesce(sp.is_active, true)
      AND (coalesce(cardinality(p_brand_ids), 0) = 0 OR sp.brand_id = ANY (p_brand_ids))
      AND (p_store_id IS NULL OR sp.store_id IS NULL OR sp.store_id = p_store_id)
      AND NOT EXISTS (SELECT 1 FROM public.kitchen_stationprinterschedule m
                      WHERE m.printer_id = sp.id AND m.starts_at <= now() AND m.ends_at > now())
    ORDER BY sp.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_health_printers(uuid[], uuid) IS
    'The active printers a daemon of this scope checks (p_brand_ids NULL or empty = every brand; '
    'p_store_id NULL = every store, otherwise that store''s printers and the brand-wide ones), with '
    'their address, normalized station code and whether they answer status requests (false: the '
    'check only connects). Printers inside a maintenance window (kitchen_stationprinterschedule) are '
    'left out: nobody is alerted about a printer unplugged on purpose.';

-- Recording checks.
CREATE FUNCTION kprintd.kitchen_record_health_checks(p_checks jsonb)
RETURNS TABLE (printer_id bigint, state text)
    LANGUAGE sql AS $$
    INSERT INTO public.kitchen_printerhealthcheck AS h
        (printer_id, checked_at, is_online, response_time_ms, paper_status, error_code,
         error_message, temperature_ok, cutter_ok)
    SELECT c.printer_id, now(), c.is_online, c.response_time_ms, coalesce(c.paper_status, 'unknown'),
           c.error_code, left(c.error_message, 2000), c.temperature_ok, c.cutter_ok
    FROM jsonb_to_recordset(coalesce(p_checks, '[]')) AS c(
        printer_id bigint, is_online boolean, response_time_ms integer, paper_status text,
        error_code text, error_message text, temperature_ok boolean, cutter_ok boolean)
    -- A printer deleted since the daemon listed it has nothing left to record.
    WHERE EXISTS (SELECT 1 FROM public.kitchen_stationprinter sp WHERE sp.id = c.printer_id)
    RETURNING h.printer_id, kprintd.kitchen_printer_state(h.is_online, h.paper_status, h.error_code)
$$;

COMMENT ON FUNCTION kprintd.kitchen_record_health_checks(jsonb) IS
    'Records health checks, one kitchen_printerhealthcheck row each, checked_at = now(). p_checks: '
    '[{printer_id, is_online, response_time_ms, paper_status, error_code, error_message, '
    'temperature_ok, cutter_ok}] (paper_status default ''unknown''). Returns each recorded printer '
    'with its kitchen_printer_state(); printers that no longer exist are skipped.';

-- Retention of checks.
CREATE FUNCTION kprintd.kitchen_prune_health_checks(p_retention_days integer, p_batch_size integer DEFAULT 1000)
RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    v_deleted integer;
BEGIN
    IF p_retention_days IS NULL OR p_retention_days < 1 THEN
        RAISE EXCEPTION 'kitchen_prune_health_checks: retention must be at least 1 day, got %',
                        quote_nullable(p_retention_days)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_batch_size IS NULL OR p_batch_size < 1 THEN
        RAISE EXCEPTION 'kitchen_prune_health_checks: batch size must be at least 1, got %',
                        quote_nullable(p_batch_size)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM public.kitchen_printerhealthcheck h
    WHERE h.id = ANY (ARRAY(
        SELECT o.id FROM public.kitchen_printerhealthcheck o
        WHERE o.checked_at < now() - make_interval(days => p_retention_days)
        ORDER BY o.checked_at
        LIMIT p_batch_size
        FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_prune_health_checks(integer, integer) IS
    'Deletes up to p_batch_size of the oldest kitchen_printerhealthcheck rows older than '
    'p_retention_days days and returns how many it deleted; call it again until it returns less than '
    'p_batch_size. Small batches keep locks and WAL bursts short. Touches no other table. '
    'Errors: 22023 retention < 1 day or batch size < 1.';

-- Daemons ---------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_daemon_beat(
    p_daemon_id            text,
    p_host                 text,
    p_pid                  integer,
    p_version              text,
    p_store_id             uuid,
    p_brand_ids            uuid[],
    p_interval_s           double precision,
    p_started_at           timestamptz,
    p_tickets_printed      bigint,
    p_listening            boolean,
    p_not_listening_since  timestamptz
) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO public.kitchen_daemon_heartbeat AS d
        (daemon_id, host, pid, version, store_id, brand_ids, interval_s, started_at, last_seen_at,
         stopped_at, tickets_printed, listening, not_listening_since)
    VALUES (p_daemon_id, p_host, p_pid, p_version, p_store_id, coalesce(p_brand_ids, '{}'),
            p_interval_s, p_started_at, now(), NULL, p_tickets_printed, p_listening,
            -- The daemon's clock says when; never later than now.
            CASE WHEN p_listening IS FALSE
                 THEN least(coalesce(p_not_listening_since, now()), now()) END)
    ON CONFLICT (daemon_id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version,
            store_id = EXCLUDED.store_id, brand_ids = EXCLUDED.brand_ids,
            interval_s = EXCLUDED.interval_s, started_at = EXCLUDED.started_at,
            last_seen_at = EXCLUDED.last_seen_at, stopped_at = NULL,
            tickets_printed = EXCLUDED.tickets_printed, listening = EXCLUDED.listening,
            not_listening_since = EXCLUDED.not_listening_since;
    DELETE FROM public.kitchen_daemon_heartbeat WHERE last_seen_at < now() - interval '7 days';
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint, boolean, timestamptz) IS
    'A running daemon says it is alive and whether it is listening for new tickets: upserts its '
    'kitchen_daemon_heartbeat row (last_seen_at = now(), stopped_at cleared, listening, and '
    'not_listening_since while listening is false: p_not_listening_since, at most now(), default '
    'now()) and removes rows of daemons not seen for 7 days. kprintd run calls it every health '
    'interval and as soon as its listener stops or starts listening.';

CREATE FUNCTION kprintd.kitchen_daemon_beat(
    p_daemon_id        text,
    p_host             text,
    p_pid              integer,
    p_version          text,
    p_store_id         uuid,
    p_brand_ids        uuid[],
    p_interval_s       double precision,
    p_started_at       timestamptz,
    p_tickets_printed  bigint
) RETURNS void
    LANGUAGE sql AS $$
    SELECT kprintd.kitchen_daemon_beat(p_daemon_id, p_host, p_pid, p_version, p_store_id, p_brand_ids,
                               p_interval_s, p_started_at, p_tickets_printed, NULL::boolean,
                               NULL::timestamptz)
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) IS
    'The heartbeat of a writer that does not say whether it listens: as the 11-argument '
    'kitchen_daemon_beat() with listening NULL (unknown), so it is never said to be not listening.';

CREATE FUNCTION kprintd.kitchen_daemon_stopped(p_daemon_id text, p_tickets_printed bigint) RETURNS void
    LANGUAGE sql AS $$
    UPDATE public.kitchen_daemon_heartbeat
    SET stopped_at = now(), last_seen_at = now(), tickets_printed = p_tickets_printed
    WHERE daemon_id = p_daemon_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) IS
    'A daemon stopping cleanly stamps its heartbeat row stopped_at, so kprintd status tells a stopped '
    'daemon from one that died (stale).';

-- Alerts ----------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_raise_alert(
    p_type      text,
    p_severity  text,
    p_message   text,
    p_details   jsonb DEFAULT '{}'
) RETURNS jsonb
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_details  jsonb := coalesce(p_details, '{}');
    v_daemon   text := nullif(v_details ->> 'daemon', '');
    v_subject  text;
    v_latest   public.kitchen_alertlog%ROWTYPE;
    v_sent     boolean := true;
    v_id       bigint;
    v_alert    jsonb;
BEGIN
    IF p_severity NOT IN ('info', 'warning', 'critical') THEN
        RAISE EXCEPTION 'alert severity must be info, warning or critical, not %', p_severity
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_subject := coalesce(
        'ticket:' || (v_details ->> 'ticket_id'),
        'printer:' || (v_details ->> 'printer_id'),
        'station:' || (v_details ->> 'brand_id') || '/' || coalesce(v_details ->> 'store_id', '-')
            || '/' || (v_details ->> 'station'));
    IF v_daemon IS NOT NULL AND v_subject IS NOT NULL THEN
        -- Two daemons announcing the same change at the same moment: the second waits here for
        -- the first to commit, then sees its row.
        PERFORM pg_advisory_xact_lock(hashtext('kitchen_alertlog'), hashtext(v_subject));
        SELECT * INTO v_latest
        FROM public.kitchen_alertlog a
        WHERE a.subject = v_subject AND a.sent
        ORDER BY a.id DESC
        LIMIT 1;
        v_sent := NOT (FOUND
                       AND v_latest.alert_type = p_type
                       AND v_latest.raised_by IS DISTINCT FROM v_daemon
                       AND v_latest.raised_at > clock_timestamp() - interval '1 minute');
    END IF;
    v_id := nextval(pg_get_serial_sequence('public.kitchen_alertlog', 'id'));
    -- Details come first, so none of them can stand in for the alert's own fields.
    v_alert := v_details || jsonb_build_object(
        'type', p_type, 'severity', p_severity, 'message', p_message,
        'at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'alert_id', v_id);
    INSERT INTO public.kitchen_alertlog (id, alert_type, severity, message, subject, raised_by, sent, alert)
    VALUES (v_id, p_type, p_severity, p_message, v_subject, v_daemon, v_sent, v_alert);
    IF v_sent THEN
        -- NOTIFY payloads are limited to 8000 bytes; a manager's message never needs more.
        PERFORM pg_notify('kitchen_alert', left(v_alert::text, 7900));
    END IF;
    RETURN v_alert || jsonb_build_object('sent', v_sent);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_raise_alert(text, text, text, jsonb) IS
    'Record one alert in kitchen_alertlog and send it as JSON on NOTIFY channel kitchen_alert: '
    '{type, severity, message, at, alert_id, ...details}, delivered when the calling transaction '
    'commits. Not sent (logged with sent = false) when details.daemon names the daemon raising it '
    'and the latest alert sent about the same subject (ticket, printer or station) is of the same type, '
    'from another daemon, less than a minute old. Returns the alert with sent.';

-- Catching up on alerts a listener missed.
CREATE FUNCTION kprintd.kitchen_alerts_after(p_after_id bigint, p_since interval DEFAULT NULL)
RETURNS TABLE (alert_id bigint, alert jsonb)
LANGUAGE sql STABLE AS $$
    SELECT a.id, a.alert
    FROM public.kitchen_alertlog a
    WHERE a.sent AND (a.id > p_after_id OR a.raised_at > now() - p_since)
    ORDER BY a.id
$$;

COMMENT ON FUNCTION kprintd.kitchen_alerts_after(bigint, interval) IS
    'The alerts sent on NOTIFY kitchen_alert after the one whose alert_id is p_after_id, oldest '
    'first: what a listener missed while it was not connected. With p_since, also those of that '
    'last interval (kprintd alerts --since); either may be NULL. Rows: alert_id, alert (the '
    'payload as sent).';

-- Print times -----------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_print_sla_of_day(p_day date)
RETURNS TABLE (
    brand_id           uuid,
    store_id           uuid,
    station            text,
    printed            bigint,
    print_ms_avg       numeric,
    print_ms_p50       numeric,
    print_ms_p95       numeric,
    print_ms_max       integer,
    end_to_end_ms_avg  numeric,
    end_to_end_ms_p50  numeric,
    end_to_end_ms_p95  numeric,
    end_to_end_ms_max  numeric
)
    LANGUAGE sql STABLE
    -- A day is a few thousand rows read by an index range scan: compiling the plan (JIT) or
    -- starting parallel workers would take longer than running it.
    SET jit = off
    SET max_parallel_workers_per_gather = 0
    ROWS 20
AS $$
    SELECT t.brand_id,
           t.store_id,
           t.printer_target::text,
           count(*),
           round(avg(l.duration_ms), 1),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1),
           max(l.duration_ms),
           round(avg(e.ms), 1),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY e.ms)::numeric, 1),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY e.ms)::numeric, 1),
           round(max(e.ms), 1)
    FROM public.kitchen_kitchenticketlog l
    JOIN public.kitchen_kitchenticket t ON t.id = l.ticket_id
    CROSS JOIN LATERAL (SELECT extract(epoch FROM l."timestamp" - t.created_at) * 1000 AS ms) e
    WHERE l.action = 'print_success'
      AND l."timestamp" >= p_day::timestamptz
      AND l."timestamp" < (p_day + 1)::timestamptz
    GROUP BY t.brand_id, t.store_id, t.printer_target
$$;

COMMENT ON FUNCTION kprintd.kitchen_print_sla_of_day(date) IS
    'One day (session time zone) of kitchen_print_sla: per brand, store and station, the count, '
    'avg, p50, p95 and max of print_success duration_ms and of the time from ticket creation to '
    'print_success, in milliseconds.';

-- sql/schema/44_admin.sql =========================================================================

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

-- sql/schema/50_views.sql =========================================================================

-- The views: each bill item's kitchen state, and the monitoring views for DBAs, managers,
-- dashboards (Grafana) and `kprintd status`.
--
-- Bill items: kitchen_billitem_status (what kitchen_create_tickets() reads to know what is unsent).
-- Printers: kitchen_printer_maintenance (planned windows), kitchen_printer_status (latest check of
-- each printer, window in force), kitchen_printer_offline (offline for more than 5 minutes),
-- kitchen_printer_uptime_7d and kitchen_printer_failure_rate (the spec's uptime and failure-rate
-- reports). Tickets: kitchen_print_sla (print times per station and day), kitchen_stuck_tickets and
-- kitchen_failed_tickets (what needs a human), kitchen_station_queue (what waits, per station),
-- kitchen_bill_status (the spec's BillKitchenStatus, per bill). Daemons: kitchen_daemon_status.
--
-- Every view stays fast on a long history when filtered on its time column (day, created_at,
-- failed_at): see bench/views.py. Station codes are shown as tickets carry them (trimmed, lowercase).

-- Bill items -------------------------------------------------------------------------------------
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

-- Printers -----------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_printer_maintenance AS
SELECT m.id AS schedule_id,
       m.printer_id,
       sp.brand_id,
       sp.store_id,
       kprintd.kitchen_normalize_station(sp.station_code) AS station,
       sp.printer_name,
       kprintd.kitchen_printer_host(sp.printer_ip::text) || ':' || coalesce(sp.printer_port, 9100) AS address,
       m.starts_at,
       m.ends_at,
       m.ends_at - m.starts_at AS duration,
       CASE WHEN m.ends_at <= now() THEN 'past'
            WHEN m.starts_at <= now() THEN 'active'
            ELSE 'upcoming' END AS state,
       m.reason,
       m.created_by,
       m.created_at,
       -- Whether the station keeps printing during the whole window on another active printer
       -- of the same brand (store-specific or brand-wide) that has no window overlapping it.
       EXISTS (
           SELECT 1
           FROM public.kitchen_stationprinter other
           WHERE other.id <> sp.id
             AND other.brand_id = sp.brand_id
             AND kprintd.kitchen_normalize_station(other.station_code)
                 = kprintd.kitchen_normalize_station(sp.station_code)
             AND coalesce(other.is_active, true)
             AND (other.store_id IS NULL OR sp.store_id IS NULL OR other.store_id = sp.store_id)
             AND NOT EXISTS (SELECT 1 FROM public.kitchen_stationprinterschedule o
                             WHERE o.printer_id = other.id
                               AND o.starts_at < m.ends_at AND o.ends_at > m.starts_at)
       ) AS station_keeps_printing
FROM public.kitchen_stationprinterschedule m
JOIN public.kitchen_stationprinter sp ON sp.id = m.printer_id;

COMMENT ON VIEW public.kitchen_printer_maintenance IS
    'Every maintenance window with its printer and station: state (active, upcoming or past), '
    'duration, and station_keeps_printing: true when another active printer of the station has no '
    'window overlapping this one, false when the station''s tickets will wait for the window to '
    'end. Filter on state <> ''past'' for the plan ahead.';

CREATE VIEW public.kitchen_printer_status AS
SELECT sp.id AS printer_id,
       sp.brand_id,
       sp.store_id,
       kprintd.kitchen_normalize_station(sp.station_code) AS station,
       sp.printer_name,
       sp.printer_ip,
       coalesce(sp.printer_port, 9100) AS printer_port,
       kprintd.kitchen_printer_host(sp.printer_ip::text) || ':' || coalesce(sp.printer_port, 9100) AS address,
       coalesce(sp.priority, 1) AS priority,
       coalesce(sp.is_active, true) AS is_active,
       -- A printer unplugged on purpose is not "offline": its last check is from before.
       CASE WHEN mw.ends_at IS NOT NULL THEN 'maintenance'
            ELSE kprintd.kitchen_printer_state(hc.is_online, hc.paper_status, hc.error_code) END AS state,
       hc.is_online,
       hc.paper_status,
       hc.response_time_ms,
       hc.error_code,
       hc.error_message,
       hc.cutter_ok,
       hc.temperature_ok,
       hc.checked_at,
       sp.last_print_at,
       sp.last_error_at,
       sp.last_error_message,
       coalesce(sp.total_prints, 0) AS total_prints,
       coalesce(sp.failed_prints, 0) AS failed_prints,
       mw.ends_at AS maintenance_until,
       sp.answers_status
FROM public.kitchen_stationprinter sp
LEFT JOIN LATERAL (SELECT m.ends_at FROM kprintd.kitchen_printer_maintenance(sp.id) m
                   WHERE m.starts_at <= now()) mw ON true
LEFT JOIN LATERAL (
    SELECT h.is_online, h.paper_status, h.response_time_ms, h.error_code, h.error_message,
           h.cutter_ok, h.temperature_ok, h.checked_at
    FROM public.kitchen_printerhealthcheck h
    WHERE h.printer_id = sp.id
    ORDER BY h.checked_at DESC
    LIMIT 1
) hc ON true;

COMMENT ON VIEW public.kitchen_printer_status IS
    'Every printer with its latest health check: state (maintenance while in a maintenance window, '
    'else kitchen_printer_state(): ok, paper_low, paper_out, cover_open, offline, error, no_status, '
    'or unknown when never checked), online, paper, '
    'response time, error and when it was checked; plus its last print, last print failure '
    '(last_error_at/last_error_message) and lifetime counters total_prints (printed) and failed_prints '
    '(attempts that failed on it, failover included). maintenance_until: the end of the maintenance '
    'window the printer is in now (NULL when none; it gets no tickets and no checks until then; the '
    'health columns are from before it). answers_status: false for a printer checked by connecting '
    'only (its state is then no_status or offline).';

CREATE VIEW public.kitchen_printer_offline AS
SELECT s.printer_id,
       s.brand_id,
       s.store_id,
       s.station,
       s.printer_name,
       s.printer_ip,
       s.printer_port,
       s.address,
       o.offline_since,
       now() - o.offline_since AS downtime,
       s.checked_at AS last_checked_at,
       s.error_code,
       s.error_message
FROM public.kitchen_printer_status s
CROSS JOIN LATERAL (
    SELECT min(h.checked_at) AS offline_since
    FROM public.kitchen_printerhealthcheck h
    WHERE h.printer_id = s.printer_id
      AND h.checked_at > coalesce(
          (SELECT max(u.checked_at) FROM public.kitchen_printerhealthcheck u
           WHERE u.printer_id = s.printer_id AND u.is_online),
          '-infinity')
) o
WHERE s.is_active
  AND NOT s.is_online
  AND o.offline_since < now() - interval '5 minutes';

COMMENT ON VIEW public.kitchen_printer_offline IS
    'Active printers whose latest check is offline and that have been offline for more than 5 '
    'minutes: offline_since is the first check after the last online one, downtime how long ago that '
    'was. (A printer that is reachable but has its cover open or is out of paper is online; see '
    'kitchen_printer_status.state.)';

CREATE VIEW public.kitchen_printer_uptime_7d AS
SELECT sp.station_code,
       sp.printer_name,
       c.total_checks,
       c.online_checks,
       round(100.0 * c.online_checks / c.total_checks, 2) AS uptime_percent,
       sp.id AS printer_id,
       c.ready_checks,
       round(100.0 * c.ready_checks / c.total_checks, 2) AS ready_percent
FROM (
    SELECT phc.printer_id,
           count(*) AS total_checks,
           count(*) FILTER (WHERE phc.is_online) AS online_checks,
           count(*) FILTER (WHERE kprintd.kitchen_printer_state(phc.is_online, phc.paper_status,
                                                        phc.error_code)
                                  IN ('ok', 'paper_low', 'no_status')) AS ready_checks
    FROM public.kitchen_printerhealthcheck phc
    WHERE phc.checked_at > now() - interval '7 days'
    GROUP BY phc.printer_id
) c
JOIN public.kitchen_stationprinter sp ON sp.id = c.printer_id;

COMMENT ON VIEW public.kitchen_printer_uptime_7d IS
    'The spec''s uptime report over the last 7 days, per printer with checks in that time: '
    'station_code, printer_name, total_checks, online_checks, uptime_percent (online checks / all '
    'checks). Also ready_checks/ready_percent: checks where the printer could print (online and not '
    'cover open, out of paper or in error).';

CREATE VIEW public.kitchen_printer_failure_rate AS
SELECT sp.printer_name,
       coalesce(sp.total_prints, 0) AS total_prints,
       coalesce(sp.failed_prints, 0) AS failed_prints,
       round(100.0 * sp.failed_prints / nullif(sp.total_prints, 0), 2) AS failure_rate,
       sp.id AS printer_id,
       kprintd.kitchen_normalize_station(sp.station_code) AS station,
       coalesce(sp.is_active, true) AS is_active,
       round(100.0 * sp.failed_prints
             / nullif(coalesce(sp.total_prints, 0) + coalesce(sp.failed_prints, 0), 0), 2)
           AS failed_attempt_percent
FROM public.kitchen_stationprinter sp
WHERE coalesce(sp.total_prints, 0) > 0 OR coalesce(sp.failed_prints, 0) > 0;

COMMENT ON VIEW public.kitchen_printer_failure_rate IS
    'The spec''s failure-rate report from the printers'' lifetime counters: failure_rate = 100 * '
    'failed_prints / total_prints (failed attempts per 100 successful prints; NULL when it never '
    'printed). Unlike the spec''s query it also lists printers that only ever failed. '
    'failed_attempt_percent = share of all attempts on the printer that failed. Sort it yourself, '
    'e.g. ORDER BY failure_rate DESC NULLS FIRST.';

-- Tickets ------------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_print_sla AS
SELECT c.day,
       s.brand_id,
       s.store_id,
       s.station,
       s.printed,
       s.print_ms_avg,
       s.print_ms_p50,
       s.print_ms_p95,
       s.print_ms_max,
       s.end_to_end_ms_avg,
       s.end_to_end_ms_p50,
       s.end_to_end_ms_p95,
       s.end_to_end_ms_max
FROM (
    -- One row per calendar day since the first print. A filter on day is applied to this list,
    -- so only the days asked for are computed.
    SELECT f.first_day + n AS day
    FROM (SELECT min(l."timestamp")::date AS first_day
          FROM public.kitchen_kitchenticketlog l WHERE l.action = 'print_success') f
    CROSS JOIN LATERAL generate_series(0, current_date - f.first_day) AS n
) c
CROSS JOIN LATERAL kprintd.kitchen_print_sla_of_day(c.day) s;

COMMENT ON VIEW public.kitchen_print_sla IS
    'Print service levels per calendar day (session time zone) and brand/store/station, from the '
    'audit log''s print_success rows of that day: printed = how many; print_ms_* = avg, p50, p95 and '
    'max of duration_ms (the printer round trip); end_to_end_ms_* = the same of the time from ticket '
    'creation to print_success. Filter on day (WHERE day >= current_date - 1): only those days are '
    'computed.';

CREATE VIEW public.kitchen_stuck_tickets AS
SELECT t.id AS ticket_id,
       t.bill_id,
       b.bill_number,
       t.brand_id,
       t.store_id,
       t.printer_target AS station,
       t.ticket_type,
       t.status,
       r.reason,
       r.stuck_since,
       now() - r.stuck_since AS stuck_for,
       t.print_attempts,
       t.max_retries,
       t.claimed_by,
       t.lease_expires_at,
       t.next_attempt_at,
       t.created_at,
       t.error_code,
       t.error_message,
       t.last_error_at
FROM public.kitchen_kitchenticket t
LEFT JOIN public.kitchen_pos_bill b ON b.id = t.bill_id
CROSS JOIN LATERAL (
    -- When it entered its status: for printing the daemon's last claim (print_start), else the
    -- last audit row that set the status.
    SELECT coalesce(max(l."timestamp") FILTER (WHERE t.status = 'printing'
                                               AND l.action = 'print_start'),
                    max(l."timestamp") FILTER (WHERE l.new_status = t.status)) AS at
    FROM public.kitchen_kitchenticketlog l
    WHERE l.ticket_id = t.id
) entered
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN t.status = 'printing' AND coalesce(t.lease_expires_at < now(), true)
                   THEN 'lease_expired'
               WHEN t.status = 'printing' AND entered.at < now() - interval '5 minutes'
                   THEN 'printing_too_long'
               WHEN t.status = 'new' AND t.print_attempts >= t.max_retries
                   THEN 'out_of_attempts'
               WHEN t.status = 'new' AND t.next_attempt_at < now() - interval '1 minute'
                   THEN 'overdue'
           END AS reason,
           CASE
               WHEN t.status = 'printing' AND t.lease_expires_at < now() THEN t.lease_expires_at
               WHEN t.status = 'printing' THEN entered.at
               WHEN t.print_attempts >= t.max_retries THEN entered.at
               ELSE t.next_attempt_at
           END AS stuck_since
) r
WHERE t.status IN ('new', 'printing')
  AND r.reason IS NOT NULL;

COMMENT ON VIEW public.kitchen_stuck_tickets IS
    'Tickets that should have printed by now and need a look, with the last error they had. reason: '
    '''lease_expired'' (printing, but the daemon holding it stopped renewing: the next sweep reclaims '
    'it), ''printing_too_long'' (printing for more than 5 minutes), ''out_of_attempts'' (new with '
    'print_attempts >= max_retries: no daemon will pick it up; kitchen_reset_ticket() it), '
    '''overdue'' (new and due for more than 1 minute: is a daemon running for its store and '
    'brand?). stuck_since: when the condition began (lease expiry, entering its status, or due time).';

CREATE VIEW public.kitchen_failed_tickets AS
SELECT t.id AS ticket_id,
       t.bill_id,
       b.bill_number,
       t.brand_id,
       t.store_id,
       t.printer_target AS station,
       t.ticket_type,
       t.is_reprint,
       coalesce(t.last_error_at, t.created_at) AS failed_at,
       t.error_code,
       t.error_message,
       t.print_attempts,
       t.max_retries,
       t.may_have_printed,
       t.printer_ip,
       last_log.action AS failed_by_action,
       last_log.actor AS failed_by,
       t.created_at
FROM public.kitchen_kitchenticket t
LEFT JOIN public.kitchen_pos_bill b ON b.id = t.bill_id
LEFT JOIN LATERAL (
    SELECT l.action, l.actor
    FROM public.kitchen_kitchenticketlog l
    WHERE l.ticket_id = t.id
    ORDER BY l."timestamp" DESC, l.id DESC
    LIMIT 1
) last_log ON true
WHERE t.status = 'failed';

COMMENT ON VIEW public.kitchen_failed_tickets IS
    'Tickets that failed for good and were not printed: a person must act (fix the printer, then '
    'kitchen_reset_ticket(ticket_id, actor), or kitchen_mark_printed() if the kitchen has it). '
    'failed_at = last_error_at; error_code/error_message = the last error; failed_by/failed_by_action = '
    'who failed it (printer_service: print_failed, or an admin: marked_failed). may_have_printed: part '
    'of it may be on paper. Filter on failed_at (WHERE failed_at > now() - interval ''1 day'').';

CREATE VIEW public.kitchen_station_queue AS
SELECT t.brand_id,
       t.store_id,
       t.printer_target::text AS station,
       count(*) FILTER (WHERE t.status = 'new') AS waiting,
       count(*) FILTER (WHERE t.status = 'new' AND t.next_attempt_at <= now()) AS due,
       count(*) FILTER (WHERE t.status = 'printing') AS printing,
       min(t.created_at) FILTER (WHERE t.status = 'new') AS oldest_waiting_since
FROM public.kitchen_kitchenticket t
WHERE t.status IN ('new', 'printing')
GROUP BY t.brand_id, t.store_id, t.printer_target;

COMMENT ON VIEW public.kitchen_station_queue IS
    'Queue depth per brand, store and station: waiting = tickets new (due = of those, due now; the '
    'rest wait for a retry backoff), printing = claimed by a daemon, oldest_waiting_since = creation '
    'of the oldest waiting ticket. Stations with nothing queued are not listed.';

CREATE VIEW public.kitchen_bill_status AS
SELECT b.id AS bill_id,
       b.bill_number,
       b.brand_id,
       b.store_id,
       b.created_at,
       s.ticket_count,
       s.new_count,
       s.printing_count,
       s.printed_count,
       s.failed_count,
       s.printed_count = s.ticket_count AS all_printed,
       CASE WHEN s.failed_count > 0 THEN 'failed'
            WHEN s.printed_count = s.ticket_count THEN 'printed'
            ELSE 'pending'
       END AS kitchen_status,
       s.first_sent_at,
       s.last_sent_at,
       s.last_printed_at
FROM public.kitchen_pos_bill b
CROSS JOIN LATERAL (
    SELECT count(*) AS ticket_count,
           count(*) FILTER (WHERE t.status = 'new') AS new_count,
           count(*) FILTER (WHERE t.status = 'printing') AS printing_count,
           count(*) FILTER (WHERE t.status = 'printed') AS printed_count,
           count(*) FILTER (WHERE t.status = 'failed') AS failed_count,
           min(t.created_at) AS first_sent_at,
           max(t.created_at) AS last_sent_at,
           max(t.printed_at) AS last_printed_at
    FROM public.kitchen_kitchenticket t
    WHERE t.bill_id = b.id
) s
WHERE s.ticket_count > 0;

COMMENT ON VIEW public.kitchen_bill_status IS
    'The spec''s BillKitchenStatus: per bill sent to the kitchen, how many of its tickets (reprints '
    'included) are new, printing, printed and failed; all_printed = everything sent has been printed; '
    'kitchen_status = ''failed'' (a ticket failed: someone must act), ''printed'' or ''pending''. '
    'created_at is the bill''s. Filter on bill_id (one bill, for a POS screen) or created_at.';

-- Daemons ------------------------------------------------------------------------------------------
CREATE VIEW public.kitchen_daemon_status AS
SELECT d.daemon_id, d.host, d.pid, d.version, d.store_id, d.brand_ids,
       CASE WHEN d.stopped_at IS NOT NULL THEN 'stopped'
            WHEN d.last_seen_at >= now() - make_interval(secs => greatest(3 * d.interval_s, 15))
                THEN 'alive'
            ELSE 'stale'
       END AS state,
       d.started_at, d.last_seen_at, now() - d.last_seen_at AS last_seen_ago, d.stopped_at,
       d.interval_s, d.tickets_printed,
       d.listening, d.not_listening_since,
       CASE WHEN d.listening IS FALSE AND d.stopped_at IS NULL
            THEN now() - d.not_listening_since END AS not_listening_for
FROM public.kitchen_daemon_heartbeat d;

COMMENT ON VIEW public.kitchen_daemon_status IS
    'Each daemon''s heartbeat with its state: ''alive'' (seen within 3 heartbeat intervals, at least '
    '15 s), ''stale'' (not seen since: it died, hangs, or cannot reach the database) or ''stopped'' '
    '(stopped cleanly); listening (its LISTEN connection is up and read: new tickets print at once; '
    'NULL = not said), not_listening_since and not_listening_for (while it is not listening and not '
    'stopped; as of its last beat, which comes within a second of a change).';

-- sql/schema/55_reports.sql =======================================================================

-- Reports over the views of 50_views.sql: tickets nothing will print, and the one-screen summary
-- of `kprintd status`. Their SQL reads the views, so they are made after them.

-- Tickets nothing will print --------------------------------------------------------------------
-- Why a route's tickets would not print ----------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_unserved_reason(p_brand_id uuid, p_store_id uuid, p_station text)
RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM public.kitchen_daemon_status d WHERE d.state = 'alive')
            THEN 'no_daemon'
        -- A daemon's scope as kitchen_due_routes() applies it: store NULL = every store (tickets
        -- without a store included), brand_ids empty = every brand.
        WHEN NOT EXISTS (SELECT 1 FROM public.kitchen_daemon_status d
                         WHERE d.state = 'alive'
                           AND (d.store_id IS NULL OR d.store_id = p_store_id)
                           AND (cardinality(d.brand_ids) = 0 OR p_brand_id = ANY (d.brand_ids)))
            THEN 'no_daemon_in_scope'
        -- Routing's own list, so the two cannot disagree. A printer in planned maintenance counts:
        -- its tickets are held on purpose and the daemon announces that (station_in_maintenance).
        WHEN NOT EXISTS (SELECT 1 FROM kprintd.kitchen_route_printers(p_brand_id, p_store_id, p_station))
            THEN 'no_printer'
    END
$$;

COMMENT ON FUNCTION kprintd.kitchen_unserved_reason(uuid, uuid, text) IS
    'Why the waiting tickets of this route (brand, store, station) would not print, or NULL when '
    'they will: ''no_daemon'' (no daemon is alive in kitchen_daemon_status), ''no_daemon_in_scope'' '
    '(no alive daemon''s scope covers the brand and store: a daemon with a store serves only that '
    'store, not tickets without one), ''no_printer'' (kitchen_route_printers() has no active printer '
    'for it). The first missing link is named.';

-- The tickets ------------------------------------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_unserved_tickets(p_grace interval DEFAULT interval '30 seconds')
RETURNS TABLE (
    ticket_id   bigint,
    bill_id     bigint,
    brand_id    uuid,
    store_id    uuid,
    station     text,
    created_at  timestamptz,
    reason      text
)
    LANGUAGE sql STABLE
BEGIN ATOMIC
    -- Waiting tickets are few even on a long history, and the partial index of the claim
    -- (idx_kitchenticket_due, status 'new') finds them. The reason is worked out once per route:
    -- MATERIALIZED keeps the planner from pushing "reason IS NOT NULL" below the DISTINCT, which
    -- would work it out once per ticket. A SQL-standard body binds its names when created (no
    -- search_path to pin) and stays inlinable.
    WITH waiting AS (
        SELECT t.id, t.bill_id, t.brand_id, t.store_id, t.printer_target::text AS station,
               t.created_at
        FROM public.kitchen_kitchenticket t
        WHERE t.status = 'new'
          AND t.print_attempts < t.max_retries
          AND t.created_at < now() - p_grace
    ), routes AS MATERIALIZED (
        SELECT r.brand_id, r.store_id, r.station,
               kprintd.kitchen_unserved_reason(r.brand_id, r.store_id, r.station) AS reason
        FROM (SELECT DISTINCT w.brand_id, w.store_id, w.station FROM waiting w) r
    )
    SELECT w.id, w.bill_id, w.brand_id, w.store_id, w.station, w.created_at, r.reason
    FROM waiting w
    JOIN routes r ON r.brand_id IS NOT DISTINCT FROM w.brand_id
                 AND r.store_id IS NOT DISTINCT FROM w.store_id
                 AND r.station = w.station
    WHERE r.reason IS NOT NULL
    ORDER BY w.created_at, w.id;
END;

COMMENT ON FUNCTION kprintd.kitchen_unserved_tickets(interval) IS
    'Every waiting ticket (new, attempts left) created more than p_grace ago (default 30 s) that '
    'nothing will print, oldest first, whatever the caller''s scope, with kitchen_unserved_reason() '
    'of its route: no_daemon, no_daemon_in_scope or no_printer. Tickets out of attempts are '
    'kitchen_stuck_tickets'' (out_of_attempts), not listed here.';

CREATE FUNCTION kprintd.kitchen_unserved_routes(p_grace interval DEFAULT interval '30 seconds')
RETURNS TABLE (
    brand_id          uuid,
    brand             text,
    store_id          uuid,
    station           text,
    reason            text,
    waiting           bigint,
    oldest_created_at timestamptz,
    oldest_ticket_id  bigint,
    message           text
)
    LANGUAGE sql STABLE AS $$
    SELECT g.brand_id, g.brand, g.store_id, g.station, g.reason, g.waiting, g.oldest_created_at,
           g.oldest_ticket_id,
           format('%s ticket(s) for %s of brand %s %s wait and %s', g.waiting, g.station,
                  coalesce(g.brand, g.brand_id::text, '?'),
                  coalesce('in store ' || g.store_id, 'without a store'),
                  CASE g.reason
                      WHEN 'no_daemon' THEN 'no kprintd daemon is running'
                      WHEN 'no_daemon_in_scope' THEN
                          'no running kprintd daemon serves them'
                          || CASE WHEN g.store_id IS NULL
                                  THEN ' (their bills have no store_id)' ELSE '' END
                      ELSE 'no active printer is configured for them'
                           || CASE WHEN g.store_id IS NULL
                                   THEN ' (only a printer with store_id NULL serves tickets '
                                        'without a store)' ELSE '' END
                  END)
    FROM (SELECT u.brand_id, br.name AS brand, u.store_id, u.station, u.reason,
                 count(*) AS waiting, min(u.created_at) AS oldest_created_at,
                 (array_agg(u.ticket_id ORDER BY u.created_at, u.ticket_id))[1] AS oldest_ticket_id
          FROM kprintd.kitchen_unserved_tickets(p_grace) u
          LEFT JOIN public.kitchen_pos_brand br ON br.id = u.brand_id
          GROUP BY u.brand_id, br.name, u.store_id, u.station, u.reason) g
    ORDER BY g.oldest_created_at, g.oldest_ticket_id
$$;

COMMENT ON FUNCTION kprintd.kitchen_unserved_routes(interval) IS
    'kitchen_unserved_tickets(p_grace) per route (brand, store, station): reason, waiting (how '
    'many), oldest_created_at and oldest_ticket_id, and message (the route, its count and its reason '
    'in words for a manager, as kprintd status and the ticket_unserved alert say it). Oldest first. '
    'kprintd status and the daemon call it with the default grace of 30 s.';

-- kprintd status: the one-screen summary --------------------------------------------------------
CREATE FUNCTION kprintd.kitchen_status_report(p_brand_ids uuid[] DEFAULT NULL, p_store_id uuid DEFAULT NULL)
RETURNS jsonb
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_all_brands  boolean := coalesce(cardinality(p_brand_ids), 0) = 0;
    v_printers    jsonb;
    v_queues      jsonb;
    v_failed      jsonb;
    v_failed_n    bigint;
    v_stuck       jsonb;
    v_stuck_n     bigint;
    v_daemons     jsonb;
    v_live        boolean;
    v_attention   jsonb;
    v_maintenance jsonb;
    v_alerts      jsonb;
    v_alerts_n    bigint;
    v_unserved    jsonb;
    v_unserved_n  bigint;
    v_deaf        jsonb;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'printer_id', s.printer_id, 'brand', br.name, 'brand_id', s.brand_id,
               'store_id', s.store_id, 'station', s.station, 'printer_name', s.printer_name,
               'address', s.address, 'priority', s.priority, 'state', s.state,
               'is_online', s.is_online, 'paper_status', s.paper_status,
               'response_time_ms', s.response_time_ms, 'error_code', s.error_code,
               'error_message', s.error_message, 'checked_at', s.checked_at,
               'last_print_at', s.last_print_at, 'last_error_at', s.last_error_at,
               'last_error_message', s.last_error_message)
               ORDER BY br.name, s.station, s.priority, s.printer_id), '[]')
      INTO v_printers
      FROM public.kitchen_printer_status s
      LEFT JOIN public.kitchen_pos_brand br ON br.id = s.brand_id
     WHERE s.is_active
       AND (v_all_brands OR s.brand_id = ANY (p_brand_ids))
       AND (p_store_id IS NULL OR s.store_id IS NULL OR s.store_id = p_store_id);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'station', q.station, 'brand', br.name, 'brand_id', q.brand_id,
               'store_id', q.store_id,
               'waiting', q.waiting, 'due', q.due, 'printing', q.printing,
               'oldest_waiting_since', q.oldest_waiting_since)
               ORDER BY br.name, q.station, q.store_id), '[]')
      INTO v_queues
      FROM public.kitchen_station_queue q
      LEFT JOIN public.kitchen_pos_brand br ON br.id = q.brand_id
     WHERE (v_all_brands OR q.brand_id = ANY (p_brand_ids))
       AND (p_store_id IS NULL OR q.store_id = p_store_id);

    SELECT count(*),
           coalesce(jsonb_agg(jsonb_build_object(
               'ticket_id', f.ticket_id, 'bill_number', f.bill_number, 'station', f.station,
               'failed_at', f.failed_at, 'error_code', f.error_code,
               'error_message', f.error_message)
               ORDER BY f.failed_at DESC, f.ticket_id DESC) FILTER (WHERE f.n <= 10), '[]')
      INTO v_failed_n, v_failed
      FROM (SELECT ft.*, row_number() OVER (ORDER BY ft.failed_at DESC, ft.ticket_id DESC) AS n
              FROM public.kitchen_failed_tickets ft
             WHERE ft.failed_at > now() - interval '24 hours'
               AND (v_all_brands OR ft.brand_id = ANY (p_brand_ids))
               AND (p_store_id IS NULL OR ft.store_id = p_store_id)) f;

    SELECT count(*),
           coalesce(jsonb_agg(jsonb_build_object(
               'ticket_id', st.ticket_id, 'bill_number', st.bill_number, 'station', st.station,
               'status', st.status, 'reason', st.reason, 'stuck_since', st.stuck_since,
               'error_message', st.error_message)
               ORDER BY st.stuck_since, st.ticket_id) FILTER (WHERE st.n <= 10), '[]')
      INTO v_stuck_n, v_stuck
      FROM (SELECT k.*, row_number() OVER (ORDER BY k.stuck_since, k.ticket_id) AS n
              FROM public.kitchen_stuck_tickets k
             WHERE (v_all_brands OR k.brand_id = ANY (p_brand_ids))
               AND (p_store_id IS NULL OR k.store_id = p_store_id)) st;

    -- Not filtered by this report's scope: an unserved ticket is outside every running daemon's
    -- scope (or has no printer), so no scoped report would ever show it. One row per route, and
    -- routes are few: all of them are listed.
    SELECT coalesce(sum(u.waiting), 0),
           coalesce(jsonb_agg(jsonb_build_object(
               'brand', u.brand, 'brand_id', u.brand_id, 'store_id', u.store_id,
               'station', u.station, 'reason', u.reason, 'waiting', u.waiting,
               'oldest_created_at', u.oldest_created_at, 'oldest_ticket_id', u.oldest_ticket_id,
               'message', u.message)
               ORDER BY u.oldest_created_at, u.oldest_ticket_id), '[]')
      INTO v_unserved_n, v_unserved
      FROM kprintd.kitchen_unserved_routes() u;

    -- Daemons whose scope overlaps this one; a daemon seen in the last day is shown even if gone.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'daemon_id', d.daemon_id, 'host', d.host, 'version', d.version, 'state', d.state,
               'started_at', d.started_at, 'last_seen_at', d.last_seen_at,
               'stopped_at', d.stopped_at, 'tickets_printed', d.tickets_printed,
               'store_id', d.store_id, 'brand_ids', d.brand_ids, 'listening', d.listening,
               'not_listening_since', d.not_listening_since)
               ORDER BY d.state <> 'alive', d.last_seen_at DESC), '[]'),
           coalesce(bool_or(d.state = 'alive'), false)
      INTO v_daemons, v_live
      FROM public.kitchen_daemon_status d
     WHERE (d.state = 'alive' OR d.last_seen_at > now() - interval '1 day')
       AND (d.store_id IS NULL OR p_store_id IS NULL OR d.store_id = p_store_id)
       AND (cardinality(d.brand_ids) = 0 OR v_all_brands OR d.brand_ids && p_brand_ids);

    -- Live daemons of this scope that have not been listening for more than 30 s: they still print,
    -- but a new ticket waits for their periodic sweep. Shorter gaps are a reconnect in progress.
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'kind', 'daemon_not_listening', 'daemon_id', d.daemon_id,
               'not_listening_since', d.not_listening_since,
               'message', format('kprintd daemon %s has not been listening for new tickets for %s s:'
                                 ' they print only when its periodic sweep finds them, not at once;'
                                 ' its log (journalctl -u kprintd) says why',
                                 d.daemon_id, floor(extract(epoch FROM d.not_listening_for))))
               ORDER BY d.not_listening_since, d.daemon_id), '[]')
      INTO v_deaf
      FROM public.kitchen_daemon_status d
     WHERE d.state = 'alive'
       AND d.listening IS FALSE
       AND d.not_listening_for > interval '30 seconds'
       AND (d.store_id IS NULL OR p_store_id IS NULL OR d.store_id = p_store_id)
       AND (cardinality(d.brand_ids) = 0 OR v_all_brands OR d.brand_ids && p_brand_ids);

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'printer_id', m.printer_id, 'brand', br.name, 'brand_id', m.brand_id,
               'store_id', m.store_id, 'station', m.station, 'printer_name', m.printer_name,
               'state', m.state, 'starts_at', m.starts_at, 'ends_at', m.ends_at,
               'reason', m.reason, 'station_keeps_printing', m.station_keeps_printing)
               ORDER BY m.starts_at, m.schedule_id), '[]')
      INTO v_maintenance
      FROM public.kitchen_printer_maintenance m
      LEFT JOIN public.kitchen_pos_brand br ON br.id = m.brand_id
      JOIN public.kitchen_stationprinter sp ON sp.id = m.printer_id
     WHERE m.state <> 'past'
       AND coalesce(sp.is_active, true)
       AND (v_all_brands OR m.brand_id = ANY (p_brand_ids))
       AND (p_store_id IS NULL OR m.store_id IS NULL OR m.store_id = p_store_id);

    -- Alerts carry their scope in the payload; compared as text, so an odd payload cannot fail
    -- the report.
    SELECT count(*),
           coalesce(jsonb_agg(r.alert ORDER BY r.id DESC) FILTER (WHERE r.n <= 10), '[]')
      INTO v_alerts_n, v_alerts
      FROM (SELECT a.id, a.alert, row_number() OVER (ORDER BY a.id DESC) AS n
              FROM public.kitchen_alertlog a
             WHERE a.sent
               AND a.raised_at > now() - interval '1 hour'
               AND (v_all_brands OR a.alert ->> 'brand_id' = ANY (p_brand_ids::text[]))
               AND (p_store_id IS NULL OR a.alert ->> 'store_id' IS NULL
                    OR a.alert ->> 'store_id' = p_store_id::text)) r;

    SELECT coalesce(jsonb_agg(a.item ORDER BY a.ord, a.sub), '[]')
      INTO v_attention
      FROM (
        SELECT 1 AS ord, 0::bigint AS sub, jsonb_build_object('kind', 'daemon', 'message',
                   'no kprintd daemon is running for these printers: nothing prints') AS item
         WHERE NOT v_live
        UNION ALL
        SELECT 1, l.n, l.e FROM jsonb_array_elements(v_deaf) WITH ORDINALITY AS l(e, n)
        UNION ALL
        SELECT 2, u.n, jsonb_build_object('kind', 'unserved_tickets', 'brand_id', u.e -> 'brand_id',
                   'store_id', u.e -> 'store_id', 'station', u.e -> 'station',
                   'reason', u.e -> 'reason', 'message', u.e ->> 'message')
          FROM jsonb_array_elements(v_unserved) WITH ORDINALITY AS u(e, n)
        UNION ALL
        SELECT 3, p.n, jsonb_build_object('kind', 'printer', 'printer_id', p.e -> 'printer_id',
                   'message',
                   format('printer %s (%s, %s) %s%s', p.e ->> 'printer_name', p.e ->> 'station',
                          p.e ->> 'address',
                          CASE p.e ->> 'state' WHEN 'offline' THEN 'is offline'
                                               WHEN 'cover_open' THEN 'has its cover open'
                                               WHEN 'paper_out' THEN 'is out of paper'
                                               ELSE 'reports an error' END,
                          CASE WHEN p.e ->> 'state' IN ('offline', 'error')
                               THEN coalesce(': ' || (p.e ->> 'error_message'), '') ELSE '' END))
          FROM jsonb_array_elements(v_printers) WITH ORDINALITY AS p(e, n)
         WHERE p.e ->> 'state' IN ('offline', 'cover_open', 'paper_out', 'error')
        UNION ALL
        SELECT 4, 0, jsonb_build_object('kind', 'failed_tickets', 'message',
                   format('%s ticket(s) failed in the last 24 h: SELECT * FROM kitchen_failed_tickets',
                          v_failed_n))
         WHERE v_failed_n > 0
        UNION ALL
        SELECT 5, 0, jsonb_build_object('kind', 'stuck_tickets', 'message',
                   format('%s ticket(s) stuck: SELECT * FROM kitchen_stuck_tickets', v_stuck_n))
         WHERE v_stuck_n > 0
      ) a;

    RETURN jsonb_build_object(
        'generated_at', now(),
        'scope', jsonb_build_object('brand_ids', coalesce(to_jsonb(p_brand_ids), '[]'),
                                    'store_id', p_store_id),
        'daemons', v_daemons,
        'printers', v_printers,
        'queues', v_queues,
        'failed_24h', v_failed_n,
        'failed_tickets', v_failed,
        'stuck_count', v_stuck_n,
        'stuck_tickets', v_stuck,
        'unserved_count', v_unserved_n,
        'unserved', v_unserved,
        'maintenance', v_maintenance,
        'alerts_1h', v_alerts_n,
        'recent_alerts', v_alerts,
        'attention', v_attention);
END;
$$;

COMMENT ON FUNCTION kprintd.kitchen_status_report(uuid[], uuid) IS
    'Summary for kprintd status, as JSON: {generated_at, scope, daemons (heartbeats of daemons whose '
    'scope overlaps, alive first, with listening and not_listening_since), printers (active printers '
    'in scope with their latest check, kitchen_printer_status), queues (kitchen_station_queue), '
    'failed_24h and failed_tickets (the 10 latest of kitchen_failed_tickets in 24 h), stuck_count and '
    'stuck_tickets (10 oldest of kitchen_stuck_tickets), unserved_count and unserved (tickets nothing '
    'will print, per route, from kitchen_unserved_routes(), whatever the scope), maintenance (active '
    'and upcoming windows of active printers in scope, kitchen_printer_maintenance), alerts_1h and '
    'recent_alerts (alerts sent in the last hour, the 10 latest, from kitchen_alertlog), attention: '
    '[{kind, message}] = what needs a person: no live daemon (kind daemon), a live daemon not listening '
    'for new tickets for more than 30 s (kind daemon_not_listening, with daemon_id and '
    'not_listening_since), an unserved route (kind unserved_tickets, with brand_id, store_id, station, '
    'reason), a printer offline / cover open / out of paper / in error, failed or stuck tickets}. '
    'Empty attention means all is well. Scope as for the daemon: p_brand_ids NULL/empty = every '
    'brand, p_store_id NULL = every store.';

-- sql/schema/60_roles_and_grants.sql ==============================================================

-- Roles: who may do what to the kitchen's tables, and who owns them; the grants by duty; the
-- search_path every function resolves names with.
--
-- Five NOLOGIN group roles, one per duty. A login gets a duty with one GRANT, e.g.
--   CREATE ROLE kprintd LOGIN PASSWORD '...' IN ROLE kprintd_daemon;   -- the daemon's login
--   GRANT kprintd_pos TO pos_app;                                      -- the POS's login
--
--   kprintd_owner    owns kprintd's objects and the audit log; nobody logs in as it. The SECURITY
--                    DEFINER functions (the log writers, the admin actions, kitchen_purge) run as it.
--   kprintd_daemon   `kprintd run`: claims and prints tickets, records outcomes, health, alerts.
--   kprintd_pos      the POS: kitchen_create_tickets(), or writing tickets, their lines and its own
--                    'created' log rows itself (the spec's Example 1); reads bill and ticket status.
--   kprintd_manager  admin actions (kitchen_reprint, kitchen_reset_ticket, kitchen_mark_printed,
--                    kitchen_mark_failed, kitchen_purge): EXECUTE only, no table rights.
--   kprintd_auditor  reads the views, the tickets and the logs; writes nothing.
--
-- The audit settings kprintd.action / kprintd.actor describe a status change only for the daemon
-- and managers (through the admin functions); anyone else's change is logged as manual_update by
-- who they are (kitchen_ticket_audit, in 30_triggers.sql). docs/security.md says what each role can and
-- cannot do, and what an owner or superuser still can.
--
-- Creating roles needs CREATEROLE (or a superuser): migrate as such a login, or have a DBA create
-- the five roles first; the statements below then only grant.
--


-- 1. The roles (cluster-wide: a second database on the server finds them there) --------------------
DO $roles$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['kprintd_owner', 'kprintd_daemon', 'kprintd_pos', 'kprintd_manager',
                                  'kprintd_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
        END IF;
    END LOOP;
END
$roles$;

-- 2. Ownership -------------------------------------------------------------------------------------
-- kprintd's objects go to kprintd_owner. A kitchen table the POS made (another role owns it) stays
-- the POS's, except the audit log: no login may own it, since an owner can disable its triggers. The
-- POS keeps reading and appending to it.
DO $owner$
DECLARE
    v_object record;
    v_owner  text;
BEGIN
    FOR v_object IN
        SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner
          FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'v', 'p')
           AND c.relname LIKE 'kitchen\_%'
    LOOP
        IF v_object.owner = 'kprintd_owner' THEN
            CONTINUE;
        ELSIF v_object.owner = current_user OR v_object.relname = 'kitchen_kitchenticketlog' THEN
            IF v_object.owner <> current_user THEN
                EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', v_object.relname, v_object.owner);
            END IF;
            EXECUTE format('ALTER %s %I OWNER TO kprintd_owner',
                           CASE v_object.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END,
                           v_object.relname);
        ELSE
            -- The POS's table: kprintd's functions and triggers work on it with the owner's grant.
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES, TRIGGER ON %I TO kprintd_owner',
                           v_object.relname);
        END IF;
    END LOOP;

    FOR v_object IN
        SELECT p.oid::regprocedure AS signature, p.prokind
          FROM pg_proc p
         WHERE p.pronamespace = 'kprintd'::regnamespace AND p.proname LIKE 'kitchen\_%'
           AND pg_get_userbyid(p.proowner) <> 'kprintd_owner'
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO kprintd_owner',
                       CASE v_object.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                       v_object.signature);
    END LOOP;

    -- The seam's views read the POS's tables with their owner's rights.
    FOREACH v_owner IN ARRAY ARRAY['pos_bill', 'pos_billitem', 'core_product', 'core_brand',
                                   'tables_table'] LOOP
        IF to_regclass(v_owner) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON %I TO kprintd_owner', v_owner);
        END IF;
    END LOOP;
END
$owner$;

-- The schema of kprintd's functions: only its owner creates in it; everyone may look up names in it
-- (a function's EXECUTE grant still decides who calls it).
ALTER SCHEMA kprintd OWNER TO kprintd_owner;
REVOKE CREATE ON SCHEMA kprintd FROM PUBLIC;
GRANT USAGE ON SCHEMA kprintd TO PUBLIC;

-- A POS or a DBA calls kitchen_create_tickets(), kitchen_reprint(), ... by their plain names: the
-- database's sessions find kprintd's schema after their own. Where the database already sets a
-- search_path, kprintd leaves it alone and says so.
DO $path$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_db_role_setting s
                WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND s.setrole = 0
                  AND EXISTS (SELECT 1 FROM unnest(s.setconfig) c WHERE c LIKE 'search\_path=%')) THEN
        RAISE NOTICE 'this database sets its own search_path: add kprintd to it to call kprintd''s '
                     'functions without the kprintd. prefix';
    ELSE
        EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, kprintd',
                       current_database());
    END IF;
END
$path$;

-- 3. What nobody gets by default ---------------------------------------------------------------------
-- Functions are executable by PUBLIC unless revoked: the ones that change the kitchen are revoked
-- and granted by duty below. Functions that only read (reports, routing, documents) stay public:
-- they run with the caller's rights, so what they show is bounded by the caller's SELECT grants.
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_create_tickets(bigint, bigint[], text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_reprint(bigint, text, bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_reset_ticket(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_mark_printed(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_mark_failed(bigint, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_ticket_list(integer, bigint[], uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_finish_print_jobs(text, jsonb, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_reclaim_expired_leases(uuid[], uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_record_health_checks(jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_prune_health_checks(integer, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint, boolean, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_raise_alert(text, text, text, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_install_required_fillers() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_log_created(public.kitchen_kitchenticket, text, jsonb, timestamptz) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_admin_lock_ticket(text, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kprintd.kitchen_admin_check_args(text, bigint, text) FROM PUBLIC;

-- 4. Grants by duty ----------------------------------------------------------------------------------
-- Any kitchen view or table may be read by the daemon and the auditor (and so the reports, which
-- read across them); writes are listed one by one.
DO $grants$
DECLARE
    v_relation text;
BEGIN
    FOR v_relation IN
        SELECT c.relname FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p')
           AND (c.relname LIKE 'kitchen\_%' OR c.relname = 'kprintd_schema_migrations')
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO kprintd_daemon, kprintd_auditor', v_relation);
    END LOOP;
END
$grants$;

-- The daemon's calls: claims and outcomes, health checks, heartbeat, alerts, retention.
GRANT EXECUTE ON FUNCTION kprintd.kitchen_claim_print_jobs(text, double precision, uuid, uuid, text, integer) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_finish_print_jobs(text, jsonb, jsonb) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_reclaim_expired_leases(uuid[], uuid) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_record_health_checks(jsonb) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_prune_health_checks(integer, integer) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_daemon_beat(text, text, integer, text, uuid, uuid[], double precision, timestamptz, bigint, boolean, timestamptz) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_daemon_stopped(text, bigint) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_raise_alert(text, text, text, jsonb) TO kprintd_daemon;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) TO kprintd_daemon;
-- The admin actions run with the owner's rights (SECURITY DEFINER): a manager needs EXECUTE, no
-- table rights.
GRANT EXECUTE ON FUNCTION kprintd.kitchen_reprint(bigint, text, bigint[]) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_reset_ticket(bigint, text) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_mark_printed(bigint, text) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_mark_failed(bigint, text, text) TO kprintd_manager;
GRANT EXECUTE ON FUNCTION kprintd.kitchen_purge(interval, text) TO kprintd_manager;
-- The ticket listing of `kprintd tickets` (SECURITY DEFINER).
GRANT EXECUTE ON FUNCTION kprintd.kitchen_ticket_list(integer, bigint[], uuid[], uuid) TO kprintd_manager, kprintd_auditor;
-- Send to kitchen.
GRANT EXECUTE ON FUNCTION kprintd.kitchen_create_tickets(bigint, bigint[], text) TO kprintd_pos;

-- The daemon: claims and outcomes (tickets, printer counters), health checks, heartbeat, alerts.
GRANT UPDATE ON public.kitchen_kitchenticket, public.kitchen_stationprinter TO kprintd_daemon;
-- Pruning picks the rows it deletes FOR UPDATE, which needs UPDATE.
GRANT INSERT, UPDATE, DELETE ON public.kitchen_printerhealthcheck TO kprintd_daemon;
GRANT INSERT, UPDATE, DELETE ON public.kitchen_daemon_heartbeat TO kprintd_daemon;
GRANT INSERT ON public.kitchen_alertlog TO kprintd_daemon;
-- The POS: tickets and lines it writes, its own 'created' rows, and what it shows on its screens.
GRANT SELECT, INSERT ON public.kitchen_kitchenticket, public.kitchen_kitchenticketitem TO kprintd_pos;
GRANT SELECT, INSERT ON public.kitchen_kitchenticketlog TO kprintd_pos;
GRANT SELECT ON public.kitchen_stationprinter, public.kitchen_bill_status, public.kitchen_billitem_status,
                public.kitchen_pos_bill, public.kitchen_pos_billitem TO kprintd_pos;
-- Where kprintd made the POS's reference tables (a fresh install, the demo), the POS gets them as
-- its own; a POS that made them keeps its own rights and kprintd grants nothing on them.
DO $pos_tables$
DECLARE
    v_table text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['core_brand', 'core_product', 'pos_bill', 'pos_billitem'] LOOP
        IF to_regclass('public.' || v_table) IS NOT NULL
           AND pg_get_userbyid((SELECT relowner FROM pg_class
                                 WHERE oid = to_regclass('public.' || v_table))) = current_user THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO kprintd_pos', v_table);
            IF pg_get_serial_sequence('public.' || v_table, 'id') IS NOT NULL THEN
                EXECUTE format('GRANT USAGE ON SEQUENCE %s TO kprintd_pos',
                               pg_get_serial_sequence('public.' || v_table, 'id'));
            END IF;
        END IF;
    END LOOP;
END
$pos_tables$;

-- Managers and auditors read the reports.
GRANT SELECT ON public.kitchen_kitchenticket, public.kitchen_bill_status, public.kitchen_failed_tickets,
                public.kitchen_stuck_tickets, public.kitchen_printer_status, public.kitchen_station_queue,
                public.kitchen_daemon_status TO kprintd_manager;

-- Ids of rows each writer inserts.
DO $sequences$
DECLARE
    v_grant record;
BEGIN
    FOR v_grant IN
        SELECT pg_get_serial_sequence(t.relname, 'id') AS sequence, t.grantee
          FROM (VALUES ('kitchen_kitchenticket', 'kprintd_pos'), ('kitchen_kitchenticketitem', 'kprintd_pos'),
                       ('kitchen_kitchenticketlog', 'kprintd_pos'),
                       ('kitchen_printerhealthcheck', 'kprintd_daemon'),
                       ('kitchen_alertlog', 'kprintd_daemon')) AS t(relname, grantee)
    LOOP
        IF v_grant.sequence IS NOT NULL THEN
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', v_grant.sequence, v_grant.grantee);
        END IF;
    END LOOP;
END
$sequences$;

-- 5. Every function resolves names the same way, whoever calls it ----------------------------------
-- Every name a function uses is qualified (kprintd.f(), public.t); its search_path holds only
-- pg_catalog, for the built-ins, and pg_temp, last: a caller's temporary table named like a kitchen
-- table is never found, and a function or operator in public never stands in for a built-in.
-- SQL-standard bodies (RETURN ..., BEGIN ATOMIC) bind their names when created and need no pinning,
-- and stay inlinable.
DO $pin$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = 'kprintd'::regnamespace AND p.proname LIKE 'kitchen\_%'
           AND p.prokind = 'f' AND p.prosqlbody IS NULL
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', v_function);
    END LOOP;
END
$pin$;

-- This file is applied: recorded so that `kprintd run` accepts the database however it was applied.
INSERT INTO public.kprintd_schema_migrations (version, filename) VALUES ('0001', '0001_baseline.sql');
