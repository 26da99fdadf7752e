-- Every batch updates the balance row of each key it touches, and the publisher the version of
-- each level it sends. Leave half of each page free so the new version of a row fits on the
-- row's own page: the update is then HOT (no new index entry, the old version pruned on the
-- page) instead of spreading versions over new pages. Applies to pages written from now on;
-- an existing table takes it for all its pages after VACUUM FULL.
ALTER TABLE balances SET (fillfactor = 50);
ALTER TABLE level_versions SET (fillfactor = 50);
