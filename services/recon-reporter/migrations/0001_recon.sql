-- recon-reporter: the exception store, the events it consumed, and the reconciliation facts.
-- Every table is recon_-prefixed: the database may be shared with the other services.

-- Consumed Kafka offsets, written in the same transaction as the effects (exactly-once in effect).
CREATE TABLE recon_offsets (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- Every event seen, once (event_id is the dedupe key). Dead-letter records get the id
-- "dlq/<topic>/<partition>/<offset>" since they repeat their original's ce_id.
CREATE TABLE recon_events (
    event_id       text PRIMARY KEY,
    topic          text   NOT NULL,          -- base name, without the tenant prefix
    partition      int    NOT NULL,
    kafka_offset   bigint NOT NULL,
    ce_type        text   NOT NULL DEFAULT '',
    tenant_id      text   NOT NULL DEFAULT '',
    occurred_at    timestamptz,
    recorded_at    timestamptz,
    correlation_id text   NOT NULL DEFAULT '',
    summary        text   NOT NULL DEFAULT '',
    refs           jsonb  NOT NULL DEFAULT '{}',
    seen_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recon_events_topic_seen ON recon_events (topic, seen_at);

-- One row per problem (dedupe_key); count and first/last seen record its sightings.
CREATE TABLE recon_exceptions (
    id               bigserial PRIMARY KEY,
    dedupe_key       text NOT NULL UNIQUE,
    type             text NOT NULL,
    owner            text NOT NULL,
    severity         text NOT NULL,
    status           text NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'acknowledged', 'resolved')),
    summary          text NOT NULL DEFAULT '',
    explanation      text NOT NULL DEFAULT '',
    suggested_action text NOT NULL DEFAULT '',
    topic            text NOT NULL DEFAULT '',
    store_code       text NOT NULL DEFAULT '',
    refs             jsonb NOT NULL DEFAULT '{}',
    details          jsonb NOT NULL DEFAULT '{}',
    count            int  NOT NULL DEFAULT 1,
    first_seen       timestamptz NOT NULL,
    last_seen        timestamptz NOT NULL,
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    resolved_by      text,
    resolved_at      timestamptz,
    resolution       text,                   -- 'manual' or 'cleared' (condition cleared)
    note             text
);
CREATE INDEX recon_exceptions_status ON recon_exceptions (status, owner, type);

-- The events behind an exception: its sightings, the clearing event, and related events.
CREATE TABLE recon_exception_events (
    exception_id bigint NOT NULL REFERENCES recon_exceptions (id),
    event_id     text   NOT NULL,
    role         text   NOT NULL,            -- 'sighting', 'related', 'cleared'
    PRIMARY KEY (exception_id, event_id, role)
);

-- Reconciliation figures: one row per contribution of one event to one figure, so every
-- figure is the sum of its rows and traceable to their event ids.
CREATE TABLE recon_facts (
    id            bigserial PRIMARY KEY,
    event_id      text   NOT NULL,
    business_date date   NOT NULL,
    store_code    text   NOT NULL,
    channel       text   NOT NULL,
    metric        text   NOT NULL,
    key           text   NOT NULL DEFAULT '',
    currency      text   NOT NULL DEFAULT '',
    amount        bigint NOT NULL DEFAULT 0,  -- minor units
    quantity      bigint NOT NULL DEFAULT 0,
    till_id       text   NOT NULL DEFAULT '',
    source_ref    text   NOT NULL DEFAULT ''  -- POS transaction id / platform order id
);
CREATE INDEX recon_facts_day ON recon_facts (business_date, store_code, channel, metric);
CREATE INDEX recon_facts_source ON recon_facts (source_ref);

-- Declared takings per till and day (the newest declaration wins).
CREATE TABLE recon_takings (
    store_code    text NOT NULL,
    till_id       text NOT NULL,
    business_date date NOT NULL,
    currency      text NOT NULL,
    cash          bigint NOT NULL,
    card          bigint NOT NULL,
    other         bigint NOT NULL,
    declared_by   text NOT NULL DEFAULT '',
    event_id      text NOT NULL,
    PRIMARY KEY (store_code, till_id, business_date)
);

-- Online orders, for the payout check.
CREATE TABLE recon_orders (
    platform      text NOT NULL,
    shop_id       text NOT NULL,
    order_id      text NOT NULL,
    event_id      text NOT NULL,
    currency      text NOT NULL,
    total         bigint NOT NULL,
    refunded      bigint NOT NULL DEFAULT 0,
    cancelled     boolean NOT NULL DEFAULT false,
    business_date date NOT NULL,
    PRIMARY KEY (platform, shop_id, order_id)
);

-- Payout lines imported from a platform payout CSV.
CREATE TABLE recon_payout_lines (
    payout_id  text   NOT NULL,
    line_no    int    NOT NULL,
    order_id   text   NOT NULL,
    kind       text   NOT NULL CHECK (kind IN ('charge', 'refund', 'fee', 'adjustment')),
    amount     bigint NOT NULL,
    currency   text   NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, line_no)
);

-- Facts that must show an effect on stock (an inventory.levels.v1 record) before a deadline.
CREATE TABLE recon_pending (
    kind               text NOT NULL,     -- 'pos' (transaction id) or 'order' (platform order id)
    ref                text NOT NULL,
    event_id           text NOT NULL,
    store_code         text NOT NULL DEFAULT '',
    seen_at            timestamptz NOT NULL DEFAULT now(),
    reflected_at       timestamptz,
    reflected_event_id text,
    cancelled          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (kind, ref)
);
CREATE INDEX recon_pending_open ON recon_pending (seen_at) WHERE reflected_at IS NULL;

-- The newest level per location and SKU (from inventory.levels.v1).
CREATE TABLE recon_levels (
    location_id text   NOT NULL,
    sku         text   NOT NULL,
    on_hand     bigint NOT NULL,
    available   bigint NOT NULL,
    version     bigint NOT NULL,
    event_id    text   NOT NULL,
    PRIMARY KEY (location_id, sku)
);

-- High watermarks per partition, refreshed by the checker, for consumer lag.
CREATE TABLE recon_watermarks (
    topic      text   NOT NULL,
    partition  int    NOT NULL,
    high       bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- What recon-reporter's own checks currently flag: one row per dedupe key, so a check raises an
-- exception once per change of its finding (fingerprint) and clears it when the finding is gone.
CREATE TABLE recon_check_state (
    dedupe_key  text PRIMARY KEY,
    check_name  text   NOT NULL,
    fingerprint text   NOT NULL,
    run_id      bigint NOT NULL,
    flagged_at  timestamptz NOT NULL DEFAULT now()
);
