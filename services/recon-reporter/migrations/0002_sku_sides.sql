-- recon-reporter: which side knows each SKU, for the check "SKU known on one side only"
-- (sku_one_side_only). Both tables are written by ingest in the batch's transaction, and only
-- for an event seen for the first time, so a redelivery changes nothing.

-- The online side: each catalog.items.v1 record key ("<platform>/<shop_id>/<variant id>") as
-- its newest record says. A deleted variant (deleted = true, or a tombstone) keeps its row with
-- deleted = true, so "formerly listed in" can be shown.
CREATE TABLE recon_catalog_items (
    record_key   text PRIMARY KEY,
    platform     text    NOT NULL,             -- "shopify", "shopline"
    shop_id      text    NOT NULL,             -- the shop's domain
    variant_id   text    NOT NULL DEFAULT '',
    sku          text    NOT NULL DEFAULT '',  -- '' for a variant without a SKU
    tracked      boolean NOT NULL DEFAULT false,
    deleted      boolean NOT NULL DEFAULT false,
    platform_updated_at_ms bigint NOT NULL DEFAULT 0,
    listed_since timestamptz,                  -- when recon-reporter first saw this variant list
                                               -- its current SKU; NULL when deleted or no SKU
    deleted_at   timestamptz,
    event_id     text    NOT NULL,             -- the record that set the row
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_catalog_items_sku ON recon_catalog_items (sku);

-- The till side: per SKU, store and location, when till sales/returns (source 'pos'), stock
-- movements (source 'stock') or platform POS sales such as Shopify POS (source 'platform_pos')
-- named it. Times are the events' occurred-at (the till's own time).
-- A movement not sent by a till has store_code ''; it counts as the till side only when its
-- location is one a till transaction named (a store's location), never at a warehouse.
CREATE TABLE recon_sku_sightings (
    sku           text   NOT NULL,
    store_code    text   NOT NULL,
    location_id   text   NOT NULL,
    source        text   NOT NULL CHECK (source IN ('pos', 'stock', 'platform_pos')),
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    last_event_id text   NOT NULL,
    lines         bigint NOT NULL DEFAULT 1,   -- transaction / movement lines naming the SKU
    PRIMARY KEY (sku, store_code, location_id, source)
);
CREATE INDEX recon_sku_sightings_location ON recon_sku_sightings (location_id)
    WHERE store_code <> '';
