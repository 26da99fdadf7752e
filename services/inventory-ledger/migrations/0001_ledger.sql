-- inventory-ledger schema (DESIGN.md "Inventory model"). Times are Unix milliseconds (UTC).

CREATE TABLE skus (
    tenant_id text NOT NULL,
    sku text NOT NULL,
    requires_shipping boolean NOT NULL DEFAULT true,
    created_at_ms bigint NOT NULL,
    PRIMARY KEY (tenant_id, sku)
);

-- Physical ledger locations: stores and warehouses.
CREATE TABLE locations (
    tenant_id text NOT NULL,
    location_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('store', 'warehouse')),
    name text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, location_id)
);

-- A platform's location (Shopify/Shopline) with its buffer; mapped to ledger locations below.
CREATE TABLE channel_locations (
    tenant_id text NOT NULL,
    channel_location_id text NOT NULL,
    platform text NOT NULL CHECK (platform IN ('shopify', 'shopline')),
    shop_id text NOT NULL DEFAULT '',
    platform_location_id text NOT NULL DEFAULT '',
    buffer bigint NOT NULL DEFAULT 0 CHECK (buffer >= 0),
    PRIMARY KEY (tenant_id, channel_location_id)
);

CREATE TABLE channel_location_members (
    tenant_id text NOT NULL,
    channel_location_id text NOT NULL,
    location_id text NOT NULL,
    PRIMARY KEY (tenant_id, channel_location_id, location_id),
    FOREIGN KEY (tenant_id, channel_location_id)
        REFERENCES channel_locations (tenant_id, channel_location_id) ON DELETE CASCADE
);
CREATE INDEX channel_location_members_by_location
    ON channel_location_members (tenant_id, location_id);

CREATE TABLE safety_stock (
    tenant_id text NOT NULL,
    sku text NOT NULL,
    location_id text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (tenant_id, sku, location_id)
);

-- The append-only ledger. bucket: which figure the delta moves. source_ref names the business
-- fact ("pos:<store>/<till>/<tx>", "movement:<id>", "order:<platform>/<shop>/<order>"),
-- line_ref the line, fulfilment or refund inside it.
CREATE TABLE ledger_entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    sku text NOT NULL,
    location_id text NOT NULL,
    bucket text NOT NULL CHECK (bucket IN ('on_hand', 'committed', 'in_transit')),
    delta bigint NOT NULL,
    reason text NOT NULL,
    event_id text NOT NULL,
    source_ref text NOT NULL,
    line_ref text NOT NULL DEFAULT '',
    occurred_at_ms bigint NOT NULL,
    recorded_at_ms bigint NOT NULL
);
CREATE INDEX ledger_entries_by_key ON ledger_entries (tenant_id, sku, location_id, occurred_at_ms);
CREATE INDEX ledger_entries_by_source ON ledger_entries (tenant_id, source_ref);

-- Derived from the ledger: always equal to its sums per (sku, location, bucket).
-- last_count_at_ms: occurred-at of the newest cycle count or snapshot applied.
CREATE TABLE balances (
    tenant_id text NOT NULL,
    sku text NOT NULL,
    location_id text NOT NULL,
    on_hand bigint NOT NULL DEFAULT 0,
    committed bigint NOT NULL DEFAULT 0,
    in_transit bigint NOT NULL DEFAULT 0,
    last_count_at_ms bigint NOT NULL DEFAULT 0,
    updated_at_ms bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, sku, location_id)
);

-- Every event applied (the dedupe key), whether or not it moved stock.
CREATE TABLE applied_events (
    event_id text PRIMARY KEY
);

-- Consumer positions, written in the same transaction as the effects they cover.
CREATE TABLE consumer_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);

-- Outbox of level publications: one row per batch (or admin change) naming the changed
-- (skus[i], locations[i]) pairs; the publisher sends the current figures of each location and of
-- every channel location it belongs to, then deletes the rows it read.
CREATE TABLE level_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    skus text[] NOT NULL,
    locations text[] NOT NULL
);

-- Version per published key ("<location>/<sku>"), strictly increasing.
CREATE TABLE level_versions (
    tenant_id text NOT NULL,
    key text NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Outbox of exceptions for recon.exceptions.v1, written with the batch that found them.
CREATE TABLE exception_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    type integer NOT NULL,
    dedupe_key text NOT NULL,
    summary text NOT NULL,
    event_id text NOT NULL DEFAULT '',
    topic text NOT NULL DEFAULT '',
    sku text NOT NULL DEFAULT '',
    location_id text NOT NULL DEFAULT '',
    created_at_ms bigint NOT NULL
);
