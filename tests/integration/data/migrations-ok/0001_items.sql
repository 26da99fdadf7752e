-- slow on purpose: concurrent migrate_apply calls must queue on the advisory lock
SELECT pg_sleep(0.3);
CREATE TABLE items (sku text PRIMARY KEY, name text NOT NULL);
