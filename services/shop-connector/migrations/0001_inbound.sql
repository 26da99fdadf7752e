-- shop-connector inbound state: webhook dedupe, per-order applied facts, pause queue,
-- dead letters, poll checkpoints, and the SKU mapping from the platform catalogues.
CREATE TABLE IF NOT EXISTS shop_state (
    shop_key text PRIMARY KEY,              -- "<platform>/<domain>"
    paused boolean NOT NULL DEFAULT false,
    poll_checkpoint_ms bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook_seen (
    shop_key text NOT NULL,
    dedupe_id text NOT NULL,                -- event id (Shopify) or webhook id
    topic text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_key, dedupe_id)
);

CREATE TABLE IF NOT EXISTS shop_order (
    shop_key text NOT NULL,
    order_id text NOT NULL,                 -- platform id text, exact
    applied_updated_at_ms bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (shop_key, order_id)
);

CREATE TABLE IF NOT EXISTS order_fact (
    shop_key text NOT NULL,
    order_id text NOT NULL,
    fact text NOT NULL,                     -- "created", "paid", "refund:<id>", ...
    event_id text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_key, order_id, fact)
);

CREATE TABLE IF NOT EXISTS paused_webhook (
    id bigserial PRIMARY KEY,
    shop_key text NOT NULL,
    topic text NOT NULL,
    dedupe_id text NOT NULL,
    body text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dead_letter (
    id bigserial PRIMARY KEY,
    shop_key text NOT NULL,
    topic text NOT NULL,
    dedupe_id text NOT NULL,
    body text NOT NULL,
    reason text NOT NULL,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);

CREATE TABLE IF NOT EXISTS catalog_variant (
    shop_key text NOT NULL,
    variant_id text NOT NULL,
    sku text NOT NULL,
    inventory_item_id text NOT NULL,
    product_id text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_key, variant_id)
);
CREATE INDEX IF NOT EXISTS catalog_variant_sku ON catalog_variant (shop_key, sku);
