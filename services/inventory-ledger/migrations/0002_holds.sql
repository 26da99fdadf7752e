-- Checkout and pickup holds (issue 4). The holds themselves live in Redis; Postgres keeps what
-- the ledger learnt from order events about them, in the same transaction as the ledger
-- entries, and which keys' figures Redis must be told about. See services/inventory-ledger/holds.h.

-- An order event that confirms (created) or releases (cancelled) a hold, matched by hold id,
-- checkout id or cart token. Written by the batch that applied the event; `synced` once the
-- Redis figures reflecting the event were written together with the hold's consumption.
CREATE TABLE hold_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    event_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('confirm', 'release')),
    hold_id text NOT NULL DEFAULT '',
    checkout_id text NOT NULL DEFAULT '',
    cart_token text NOT NULL DEFAULT '',
    at_ms bigint NOT NULL,
    synced boolean NOT NULL DEFAULT false,
    xact xid8 NOT NULL DEFAULT pg_current_xact_id(), -- the applying batch's transaction
    UNIQUE (tenant_id, event_id, kind)
);
CREATE INDEX hold_events_pending ON hold_events (tenant_id, id) WHERE NOT synced;
CREATE INDEX hold_events_recent ON hold_events (tenant_id, at_ms);

-- (sku, location) pairs whose available-to-sell before holds must be written to Redis: a copy
-- of every level_outbox row (trigger below), drained by the holds sync, not by the publisher.
CREATE TABLE holds_sync_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    skus text[] NOT NULL,
    locations text[] NOT NULL
);

CREATE FUNCTION holds_sync_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO holds_sync_outbox (tenant_id, skus, locations)
    VALUES (NEW.tenant_id, NEW.skus, NEW.locations);
    RETURN NULL;
END
$$;

CREATE TRIGGER level_outbox_holds_sync AFTER INSERT ON level_outbox
    FOR EACH ROW EXECUTE FUNCTION holds_sync_note();

-- The hold references ("h:<hold id>", "k:<checkout id>", "t:<cart token>", newline separated)
-- confirmed by order events of the last 10 minutes whose transaction is visible in snapshot
-- snap: a reader that computed figures in that snapshot and takes holds from Redis subtracts
-- none of these, since those figures' `committed` already counts them.
CREATE FUNCTION holds_confirmed_in(t text, snap pg_snapshot) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(DISTINCT r, E'\n'), '') FROM (
        SELECT unnest(ARRAY['h:' || hold_id, 'k:' || checkout_id, 't:' || cart_token]) AS r
        FROM hold_events
        WHERE tenant_id = t AND kind = 'confirm'
          AND at_ms > (extract(epoch FROM now()) * 1000)::bigint - 600000
          AND pg_visible_in_snapshot(xact, snap)) x
    WHERE r NOT IN ('h:', 'k:', 't:')
$$;
