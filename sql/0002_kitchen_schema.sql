-- 0002 The kitchen printer schema of the spec (KITCHEN_PRINTER_DATABASE_SCHEMA.md, version 1.0),
-- created where it is missing and adopted where a POS created it already.
--
-- Table names, column names, defaults and index names are the spec's, unchanged: POS systems and
-- DBAs query them directly. What this file adds is marked "kprintd:" and is either integrity the
-- spec only implied (CHECK constraints) or columns the daemon needs (multi-store scope, ticket
-- type, claiming leases, retry scheduling). Nothing of the spec is renamed or dropped.
--
-- Each table is made column by column, so the same statements fit a fresh database and one where
-- the POS's ORM made the spec's tables long ago: an existing table keeps every column it has, the
-- ones kprintd knows must be of a type it can use (else the migration stops with one line naming
-- table, column, the type found and the types kprintd takes), and the missing ones are added, each
-- with a database default. A column is never dropped, renamed or retyped. A CHECK that rows the POS
-- wrote before already break is still added, enforced for new rows only (NOT VALID).
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

-- Helpers of this migration only (pg_temp: gone with the session) ---------------------------------
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
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_port', 'INTEGER DEFAULT 9100', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'priority', 'INTEGER DEFAULT 1', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'is_active', 'BOOLEAN DEFAULT TRUE', 'boolean');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'paper_width_mm', 'INTEGER DEFAULT 80', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'chars_per_line', 'INTEGER DEFAULT 32', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'last_print_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'last_error_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'last_error_message', 'TEXT', 'text', 'character varying');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'total_prints', 'INTEGER DEFAULT 0', 'integer', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'failed_prints', 'INTEGER DEFAULT 0', 'integer', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'created_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'updated_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
-- kprintd: NULL means the printer serves every store of the brand.
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'store_id', 'UUID NULL', 'uuid');
-- kprintd: the columns a Django POS's printer admin shows; kprintd keeps them for it.
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_brand', $$VARCHAR(20) NOT NULL DEFAULT 'generic'$$, 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'printer_type', $$VARCHAR(20) NOT NULL DEFAULT 'thermal'$$, 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_stationprinter', 'timeout_seconds', 'INTEGER NOT NULL DEFAULT 5', 'integer', 'smallint', 'bigint');

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
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'print_attempts', 'INTEGER DEFAULT 0', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'max_retries', 'INTEGER DEFAULT 3', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'printer_ip', 'INET', 'inet', 'character varying', 'text');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'error_message', 'TEXT', 'text', 'character varying');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'last_error_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'created_at', 'TIMESTAMP WITH TIME ZONE DEFAULT NOW()', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'printed_at', 'TIMESTAMP WITH TIME ZONE', 'timestamp with time zone', 'timestamp without time zone');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'is_reprint', 'BOOLEAN DEFAULT FALSE', 'boolean');
SELECT pg_temp.kitchen_column('kitchen_kitchenticket', 'original_ticket_id', 'BIGINT REFERENCES kitchen_kitchenticket(id)', 'bigint', 'integer');
-- kprintd: what kind of ticket the cook holds. A writer that leaves it out gets it from the
-- ticket's station and bill (sql/0003); rows the POS wrote before are orders, or checker tickets.
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
-- A ticket a POS's earlier printer service left 'printing' may be on paper already: it prints again
-- with the RETRY banner once kprintd runs (its lease is over), never silently twice.
UPDATE public.kitchen_kitchenticket SET may_have_printed = true, lease_expires_at = now()
 WHERE status = 'printing' AND lease_expires_at IS NULL;

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

-- 3. Ticket <-> bill item ---------------------------------------------------------------------------
SELECT pg_temp.kitchen_table('kitchen_kitchenticketitem');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketitem', 'kitchen_ticket_id', 'BIGINT NOT NULL REFERENCES kitchen_kitchenticket(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketitem', 'bill_item_id', 'BIGINT NOT NULL REFERENCES pos_billitem(id)', 'bigint', 'integer');
SELECT pg_temp.kitchen_column('kitchen_kitchenticketitem', 'quantity', 'INTEGER NOT NULL', 'integer', 'smallint', 'bigint');
SELECT pg_temp.kitchen_check('kitchen_kitchenticketitem', 'kitchen_kitchenticketitem_quantity_positive', 'quantity > 0');

CREATE INDEX IF NOT EXISTS idx_ticket_item ON public.kitchen_kitchenticketitem(kitchen_ticket_id, bill_item_id);
CREATE INDEX IF NOT EXISTS idx_kitchenticketitem_bill_item ON public.kitchen_kitchenticketitem(bill_item_id);

-- 4. Immutable audit trail (the trigger that keeps it immutable is in a later migration) ------------
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

-- The printer address kprintd connects to, as text: an inet's host part, or a POS's varchar as
-- written (an address or a host name).
CREATE FUNCTION kprintd.kitchen_printer_host(p_address text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN NULLIF(btrim(regexp_replace(p_address, '/(32|128)$', '')), '');

COMMENT ON FUNCTION kprintd.kitchen_printer_host(text) IS
    'The host kprintd connects to for a printer_ip value of any type (call it with printer_ip::text): '
    'an inet''s address without its /32 or /128 mask, or a varchar''s address or host name, trimmed.';

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
