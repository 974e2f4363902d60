-- 0002 The kitchen printer schema of the spec (KITCHEN_PRINTER_DATABASE_SCHEMA.md, version 1.0).
--
-- Table names, column names, types, defaults and index names are the spec's, unchanged: POS systems
-- and DBAs query them directly. What this file adds is marked "kprintd:" and is either integrity
-- the spec only implied (CHECK constraints) or columns the daemon needs (multi-store scope, ticket
-- type, claiming leases, retry scheduling). Nothing of the spec is renamed or dropped.

-- 1. Station -> printer routing ------------------------------------------------------------------
CREATE TABLE kitchen_stationprinter (
    id                  BIGSERIAL PRIMARY KEY,
    brand_id            UUID NOT NULL REFERENCES core_brand(id),
    station_code        VARCHAR(50) NOT NULL,
    printer_name        VARCHAR(100) NOT NULL,
    printer_ip          INET NOT NULL,
    printer_port        INTEGER DEFAULT 9100,
    priority            INTEGER DEFAULT 1,
    is_active           BOOLEAN DEFAULT TRUE,

    paper_width_mm      INTEGER DEFAULT 80,
    chars_per_line      INTEGER DEFAULT 32,

    last_print_at       TIMESTAMP WITH TIME ZONE,
    last_error_at       TIMESTAMP WITH TIME ZONE,
    last_error_message  TEXT,
    total_prints        INTEGER DEFAULT 0,
    failed_prints       INTEGER DEFAULT 0,

    created_at          TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at          TIMESTAMP WITH TIME ZONE DEFAULT NOW(),

    -- kprintd: NULL means the printer serves every store of the brand.
    store_id            UUID NULL,

    CONSTRAINT kitchen_stationprinter_station_code_nonblank CHECK (btrim(station_code) <> ''),
    CONSTRAINT kitchen_stationprinter_printer_name_nonblank CHECK (btrim(printer_name) <> ''),
    CONSTRAINT kitchen_stationprinter_port_range CHECK (printer_port BETWEEN 1 AND 65535),
    CONSTRAINT kitchen_stationprinter_priority_positive CHECK (priority >= 1),
    CONSTRAINT kitchen_stationprinter_paper_width_sane CHECK (paper_width_mm BETWEEN 40 AND 120),
    CONSTRAINT kitchen_stationprinter_chars_per_line_sane CHECK (chars_per_line BETWEEN 16 AND 96),
    CONSTRAINT kitchen_stationprinter_counters_nonnegative
        CHECK (total_prints >= 0 AND failed_prints >= 0)
);

CREATE INDEX idx_station_code_active_priority
    ON kitchen_stationprinter(station_code, is_active, priority);
CREATE INDEX idx_brand_station
    ON kitchen_stationprinter(brand_id, station_code);

-- 2. Print jobs: one ticket per station per send ---------------------------------------------------
CREATE TABLE kitchen_kitchenticket (
    id                  BIGSERIAL PRIMARY KEY,
    bill_id             BIGINT NOT NULL REFERENCES pos_bill(id),
    printer_target      VARCHAR(50) NOT NULL,
    status              VARCHAR(20) NOT NULL,

    print_attempts      INTEGER DEFAULT 0,
    max_retries         INTEGER DEFAULT 3,

    printer_ip          INET,

    error_message       TEXT,
    last_error_at       TIMESTAMP WITH TIME ZONE,

    created_at          TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    printed_at          TIMESTAMP WITH TIME ZONE,

    is_reprint          BOOLEAN DEFAULT FALSE,
    original_ticket_id  BIGINT REFERENCES kitchen_kitchenticket(id),

    -- kprintd: what kind of ticket the cook holds.
    ticket_type         VARCHAR(20) NOT NULL DEFAULT 'order',
    -- kprintd: copied from the bill on insert, so scope filters and NOTIFY payloads need no join.
    brand_id            UUID NULL,
    store_id            UUID NULL,
    -- kprintd: machine-readable reason for the last failure ('no_printer', 'timeout', ...).
    error_code          VARCHAR(50),
    -- kprintd: claiming. A 'printing' ticket belongs to claimed_by until lease_expires_at.
    claimed_by          VARCHAR(200),
    lease_expires_at    TIMESTAMP WITH TIME ZONE,
    -- kprintd: retry scheduling. A 'new' ticket is due once next_attempt_at has passed.
    next_attempt_at     TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    -- kprintd: true once bytes of this ticket may have reached paper; any later print of it carries
    -- the RETRY banner so a possible duplicate is visible to the cook.
    may_have_printed    BOOLEAN NOT NULL DEFAULT FALSE,
    -- kprintd: the printer that printed it (printer_ip alone is ambiguous across ports).
    printer_id          BIGINT NULL REFERENCES kitchen_stationprinter(id),

    CONSTRAINT kitchen_kitchenticket_status_valid
        CHECK (status IN ('new', 'printing', 'printed', 'failed')),
    CONSTRAINT kitchen_kitchenticket_ticket_type_valid
        CHECK (ticket_type IN ('order', 'addition', 'void', 'checker')),
    CONSTRAINT kitchen_kitchenticket_printer_target_nonblank CHECK (btrim(printer_target) <> ''),
    CONSTRAINT kitchen_kitchenticket_attempts_nonnegative CHECK (print_attempts >= 0),
    CONSTRAINT kitchen_kitchenticket_max_retries_positive CHECK (max_retries >= 1),
    CONSTRAINT kitchen_kitchenticket_reprint_has_original
        CHECK (NOT is_reprint OR original_ticket_id IS NOT NULL),
    CONSTRAINT kitchen_kitchenticket_printed_has_time
        CHECK (status <> 'printed' OR printed_at IS NOT NULL)
);

CREATE INDEX idx_status_created ON kitchen_kitchenticket(status, created_at);
CREATE INDEX idx_bill_target ON kitchen_kitchenticket(bill_id, printer_target);
CREATE INDEX idx_target_status ON kitchen_kitchenticket(printer_target, status);
CREATE INDEX idx_created ON kitchen_kitchenticket(created_at);
-- kprintd: the daemon's claim query reads only due work; this keeps it small on a long history.
CREATE INDEX idx_kitchenticket_due
    ON kitchen_kitchenticket(next_attempt_at, created_at) WHERE status = 'new';
CREATE INDEX idx_kitchenticket_lease
    ON kitchen_kitchenticket(lease_expires_at) WHERE status = 'printing';
CREATE INDEX idx_kitchenticket_original
    ON kitchen_kitchenticket(original_ticket_id) WHERE original_ticket_id IS NOT NULL;

-- 3. Ticket <-> bill item ---------------------------------------------------------------------------
CREATE TABLE kitchen_kitchenticketitem (
    id                  BIGSERIAL PRIMARY KEY,
    kitchen_ticket_id   BIGINT NOT NULL REFERENCES kitchen_kitchenticket(id),
    bill_item_id        BIGINT NOT NULL REFERENCES pos_billitem(id),
    quantity            INTEGER NOT NULL,

    CONSTRAINT kitchen_kitchenticketitem_quantity_positive CHECK (quantity > 0)
);

CREATE INDEX idx_ticket_item ON kitchen_kitchenticketitem(kitchen_ticket_id, bill_item_id);
CREATE INDEX idx_kitchenticketitem_bill_item ON kitchen_kitchenticketitem(bill_item_id);

-- 4. Immutable audit trail (the trigger that keeps it immutable is in a later migration) ------------
CREATE TABLE kitchen_kitchenticketlog (
    id                  BIGSERIAL PRIMARY KEY,
    ticket_id           BIGINT NOT NULL REFERENCES kitchen_kitchenticket(id),
    timestamp           TIMESTAMP WITH TIME ZONE DEFAULT NOW(),

    old_status          VARCHAR(20),
    new_status          VARCHAR(20) NOT NULL,

    action              VARCHAR(50) NOT NULL,
    actor               VARCHAR(100) NOT NULL,

    printer_ip          INET,
    error_code          VARCHAR(50),
    error_message       TEXT,
    duration_ms         INTEGER,

    metadata            JSONB DEFAULT '{}'
);

CREATE INDEX idx_ticket_timestamp ON kitchen_kitchenticketlog(ticket_id, timestamp DESC);
CREATE INDEX idx_action_timestamp ON kitchen_kitchenticketlog(action, timestamp DESC);
CREATE INDEX idx_timestamp ON kitchen_kitchenticketlog(timestamp DESC);

-- 5. Printer health checks --------------------------------------------------------------------------
CREATE TABLE kitchen_printerhealthcheck (
    id                  BIGSERIAL PRIMARY KEY,
    printer_id          BIGINT NOT NULL REFERENCES kitchen_stationprinter(id),
    checked_at          TIMESTAMP WITH TIME ZONE DEFAULT NOW(),

    is_online           BOOLEAN NOT NULL,
    response_time_ms    INTEGER,

    paper_status        VARCHAR(20) DEFAULT 'unknown',

    error_code          VARCHAR(50),
    error_message       TEXT,

    temperature_ok      BOOLEAN,
    cutter_ok           BOOLEAN,

    CONSTRAINT kitchen_printerhealthcheck_paper_status_valid
        CHECK (paper_status IN ('ok', 'low', 'out', 'jam', 'unknown')),
    CONSTRAINT kitchen_printerhealthcheck_response_time_nonnegative CHECK (response_time_ms >= 0)
);

CREATE INDEX idx_printer_checked ON kitchen_printerhealthcheck(printer_id, checked_at DESC);
CREATE INDEX idx_checked ON kitchen_printerhealthcheck(checked_at DESC);
CREATE INDEX idx_online_checked ON kitchen_printerhealthcheck(is_online, checked_at DESC);

COMMENT ON TABLE kitchen_stationprinter IS
    'Station -> printer routing. Active printers of a station and brand are tried in priority order (1 = primary).';
COMMENT ON TABLE kitchen_kitchenticket IS
    'Print jobs: one ticket per station per send. Status flow: new -> printing -> printed | failed; failed -> new (retry); reprints are new rows with is_reprint.';
COMMENT ON TABLE kitchen_kitchenticketitem IS
    'The bill items (and quantities) printed on a ticket.';
COMMENT ON TABLE kitchen_kitchenticketlog IS
    'Immutable audit trail: one row per ticket creation and per status change, written by trigger.';
COMMENT ON TABLE kitchen_printerhealthcheck IS
    'One row per health check of a printer, written by the daemon.';
COMMENT ON COLUMN kitchen_kitchenticket.may_have_printed IS
    'True once bytes of this ticket may have reached paper; later prints carry a RETRY banner.';
COMMENT ON COLUMN kitchen_kitchenticket.next_attempt_at IS
    'A new ticket is due for printing once this time has passed (retry backoff).';
COMMENT ON COLUMN kitchen_kitchenticket.lease_expires_at IS
    'A printing ticket whose lease has expired is reclaimed and printed again with a RETRY banner.';
