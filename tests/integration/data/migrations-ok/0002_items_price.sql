ALTER TABLE items ADD COLUMN price_minor bigint NOT NULL DEFAULT 0;
