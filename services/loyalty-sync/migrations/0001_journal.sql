-- loyalty-sync journal: what was applied to which member, so replays never double a change
-- (the platforms have no idempotency key for points).

-- One award per source (a till sale "pos:<transaction id>" or an order "order:<order id>").
-- Reversals of the source are proportional to it: refunded_minor grows with each one.
CREATE TABLE loyalty_award (
    source_key text PRIMARY KEY,
    member_id text,                       -- NULL: nobody to credit (anonymous sale)
    qualifying_minor bigint NOT NULL,
    currency text NOT NULL DEFAULT '',
    points bigint NOT NULL,
    refunded_minor bigint NOT NULL DEFAULT 0,
    occurred_at_ms bigint NOT NULL,
    rule_id text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per award or reversal, keyed by its deterministic idempotency key.
CREATE TABLE loyalty_change (
    idem_key text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('award', 'reversal', 'unlinked')),
    state text NOT NULL CHECK (state IN ('in_flight', 'applied', 'noop', 'failed', 'waiting',
                                         'ambiguous')),
    source_key text NOT NULL,
    member_id text,
    points bigint NOT NULL DEFAULT 0,
    balance_after bigint,
    expected_version bigint,              -- member version read before an in-flight write
    amount_minor bigint NOT NULL DEFAULT 0, -- qualifying (award) / refunded (reversal); -1 = all
    currency text NOT NULL DEFAULT '',
    occurred_at_ms bigint NOT NULL DEFAULT 0,
    source_event_id text NOT NULL DEFAULT '',
    loyalty_id text NOT NULL DEFAULT '',
    email text NOT NULL DEFAULT '',
    phone text NOT NULL DEFAULT '',
    customer_name text NOT NULL DEFAULT '',
    failure_reason text NOT NULL DEFAULT '',
    attempts integer NOT NULL DEFAULT 0,
    published boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loyalty_change_open ON loyalty_change (state)
    WHERE state IN ('in_flight', 'failed', 'waiting', 'ambiguous') OR NOT published;
CREATE INDEX loyalty_change_source ON loyalty_change (source_key);
