-- pos-ingest: store API keys (hashed) and the idempotency claims of published facts.
CREATE TABLE IF NOT EXISTS pos_api_keys (
    id          bigserial PRIMARY KEY,
    key_sha256  text NOT NULL UNIQUE CHECK (key_sha256 ~ '^[0-9a-f]{64}$'),
    store_code  text,               -- NULL: any store (a WMS, ERP or head-office system)
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz         -- set to revoke (rotation); effective within the cache period
);

-- One row per fact (deterministic event id). claimed_at is a lease: a claim younger than the
-- lease is a publish in flight; published_at set = the broker acknowledged it.
CREATE TABLE IF NOT EXISTS pos_ingest_claims (
    event_id      uuid PRIMARY KEY,
    body_hash     text NOT NULL,
    claimed_at    timestamptz NOT NULL,
    published_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS pos_ingest_claims_published_at ON pos_ingest_claims (published_at);
