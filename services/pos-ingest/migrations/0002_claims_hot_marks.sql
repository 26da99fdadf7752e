-- The index on published_at served no query (claims are only ever looked up by event id) and
-- made marking a fact published a non-HOT update: two index insertions per fact on the till's
-- path. Without it, and with room left on each page, the mark is a HOT update.
DROP INDEX IF EXISTS pos_ingest_claims_published_at;
ALTER TABLE pos_ingest_claims SET (fillfactor = 80);
