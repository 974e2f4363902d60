-- 0001 POS reference tables.
--
-- kprintd reads the POS's own tables. A deployment next to an existing POS (the Django POS named
-- them core_brand, core_product, pos_bill, pos_billitem) keeps its tables: every statement here is
-- "IF NOT EXISTS", so this file only fills in what a fresh install lacks. The columns below are the
-- ones kprintd reads; an existing POS table must have at least these (see README, "Existing POS").
--
-- Apply with kprintd migrate, or by hand: psql -v ON_ERROR_STOP=1 --single-transaction -f <file>

CREATE TABLE IF NOT EXISTS core_brand (
    id      UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name    TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS core_product (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    brand_id        UUID REFERENCES core_brand(id),
    name            TEXT NOT NULL,
    printer_target  VARCHAR(50) DEFAULT 'kitchen'
);

CREATE TABLE IF NOT EXISTS pos_bill (
    id              BIGSERIAL PRIMARY KEY,
    brand_id        UUID NOT NULL REFERENCES core_brand(id),
    store_id        UUID NULL,
    bill_number     VARCHAR(50) NOT NULL,
    bill_type       VARCHAR(20) DEFAULT 'dine_in',
    table_number    VARCHAR(20) NULL,
    queue_number    INTEGER NULL,
    customer_name   TEXT NULL,
    created_at      TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS pos_billitem (
    id              BIGSERIAL PRIMARY KEY,
    bill_id         BIGINT NOT NULL REFERENCES pos_bill(id),
    product_id      UUID NOT NULL REFERENCES core_product(id),
    quantity        INTEGER NOT NULL,
    notes           TEXT DEFAULT '',
    modifiers       JSONB DEFAULT '[]',
    printer_target  VARCHAR(50) NULL,
    is_void         BOOLEAN DEFAULT FALSE,
    created_at      TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_pos_billitem_bill ON pos_billitem(bill_id);
