-- shop-connector outbound: what was confirmed on each platform, per (shop, inventory item,
-- platform location). The newest ledger figure itself is recomputed from the compacted
-- inventory.levels.v1 topic at start; this table says which of those are already written, so a
-- restart rewrites only what was not confirmed, comparing against the figure last written.
CREATE TABLE IF NOT EXISTS push_level (
    shop_key text NOT NULL,                 -- "<platform>/<domain>"
    item_id text NOT NULL,                  -- platform inventory item id, exact text
    location_id text NOT NULL,              -- platform location id, exact text
    version bigint NOT NULL,                -- ledger version confirmed (or rejected)
    quantity bigint NOT NULL,               -- figure written
    rejected boolean NOT NULL DEFAULT false,-- refused for good (dead-lettered)
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_key, item_id, location_id)
);
