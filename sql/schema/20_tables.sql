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
