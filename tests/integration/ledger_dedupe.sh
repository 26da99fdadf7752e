#!/usr/bin/env bash
# inventory-ledger dedupe on the event id (store.c: lookup in applied_events, then COPY of the
# new ids): the same event several times inside ONE consumed batch is applied once (with and
# without ledger entries), and an event id that another writer (a replica) inserts concurrently
# makes the batch fail on the primary key, be retried, and then count as a duplicate — never
# applied twice. ~15 s.
set -euo pipefail
. "$TILLSYNC_SOURCE_DIR/tests/lib/svc.sh"
. "$TILLSYNC_SOURCE_DIR/tests/lib/ledger.sh"
trap ledger_teardown EXIT
ledger_setup ldd

metric() { curl -s "http://${SVC_ADDR[$1]}/metrics" | sed -n "s/^$2 //p"; }

# 1. duplicates inside one batch: everything is in the topics before the service starts and the
# batch window is long, so the first batch holds all of it
ledger_start L LEDGER_BATCH_WAIT_MS=3000
ledger_wait_migrated
ledger_catalog
svc_stop L 15
produce script <<'EV'
mov d1 received L1 M1 1000 - S1:10
mov d1 received L1 M1 1000 - S1:10
pos d2 sale L1 TX1 2000 - S1:3
mov d1 received L1 M1 1000 - S1:10
pos d2 sale L1 TX1 2000 - S1:3
pos d3 sale L1 TX2 2100 - @BAG:1:LC-BAG
pos d3 sale L1 TX2 2100 - @BAG:1:LC-BAG
mov d4 received L1 M\3 2200 - X\Y:4
EV
ledger_start L LEDGER_BATCH_WAIT_MS=3000
ledger_wait 4
ledger_check_sums
expect_bal S1 L1 7 0 0
# COPY's text format: a backslash in a field arrives as itself
expect_bal 'X\Y' L1 4 0 0
[ "$(lsql "SELECT source_ref FROM ledger_entries WHERE event_id = 'd4'")" = 'movement:M\3' ] ||
  fail "escaped source_ref: $(lsql "SELECT source_ref FROM ledger_entries WHERE event_id = 'd4'")"
[ "$(lsql "SELECT count(*) FROM ledger_entries WHERE event_id IN ('d1', 'd2')")" = 2 ] ||
  fail "in-batch duplicates wrote entries: $(lsql "SELECT string_agg(event_id || ':' || delta, ',') FROM ledger_entries")"
[ "$(lsql "SELECT count(DISTINCT recorded_at_ms) FROM ledger_entries")" = 1 ] ||
  fail "the events did not arrive in one batch (the test proves nothing)"
[ "$(lsql "SELECT count(*) FROM ledger_entries WHERE event_id = 'd3'")" = 0 ] || fail "non-stock line moved stock"
[ "$(metric L ledger_events_duplicate_total)" = 4 ] || fail "want 4 duplicates, got $(metric L ledger_events_duplicate_total)"
[ "$(metric L ledger_events_applied_total)" = 4 ] || fail "want 4 applied, got $(metric L ledger_events_applied_total)"

# 2. a concurrent writer of the same event id (as a replica would be): it holds the id
# uncommitted while the service's batch starts, then commits; the batch's COPY must wait for it,
# hit the key, and count the event as a duplicate (store.c's fallback) — never apply it
lock_log=$(mktemp)
psql "$LEDGER_DB_URL" -qAtX >"$lock_log" 2>&1 <<'SQL' &
BEGIN;
INSERT INTO applied_events (event_id) VALUES ('race1');
SELECT 'holding';
SELECT pg_sleep(5);
COMMIT;
SELECT 'committed ' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
SQL
holder=$!
for _ in $(seq 1 50); do grep -q holding "$lock_log" && break; sleep 0.1; done
grep -q holding "$lock_log" || fail "the concurrent writer did not start: $(cat "$lock_log")"
produce script <<'EV'
mov race1 received L1 M9 3000 - S1:100
mov after1 received L1 M10 3100 - S2:5
EV
wait "$holder" || fail "the concurrent writer failed: $(cat "$lock_log")"
committed=$(sed -n 's/^committed //p' "$lock_log")
rm -f "$lock_log"
ledger_wait 6
ledger_check_sums
expect_bal S1 L1 7 0 0
expect_bal S2 L1 5 0 0
[ "$(lsql "SELECT count(*) FROM ledger_entries WHERE event_id = 'race1'")" = 0 ] || fail "race1 applied twice"
# the batch holding race1 started before the writer committed: it had to wait for it
started=$(lsql "SELECT recorded_at_ms FROM ledger_entries WHERE event_id = 'after1'")
[ -n "$committed" ] && [ "$started" -lt "$committed" ] ||
  fail "the batch started after the concurrent writer committed ($started >= $committed): nothing proven"
[ "$(metric L ledger_events_duplicate_total)" = 5 ] || fail "want 5 duplicates, got $(metric L ledger_events_duplicate_total)"
svc_stop L 15
echo "ok: dedupe within a batch and against a concurrent writer"
