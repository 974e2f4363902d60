-- 0010 Print templates (the spec's Phase 2 "PrintTemplate"): layout options per brand and station.
--
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

    CONSTRAINT kitchen_printtemplate_copies_range CHECK (copies BETWEEN 1 AND 5),
    CONSTRAINT kitchen_printtemplate_cut_mode_valid CHECK (cut_mode IN ('full', 'partial')),
    CONSTRAINT kitchen_printtemplate_one_per_scope UNIQUE NULLS NOT DISTINCT (brand_id, station_code)
);

COMMENT ON TABLE public.kitchen_printtemplate IS
    'Ticket layout per brand and station (NULL = any). The most specific row wins; no row = defaults '
    '(no buzzer, 1 copy, large item font, CP437, partial cut).';
