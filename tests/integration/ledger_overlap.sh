#!/usr/bin/env bash
# inventory-ledger: batches in flight (app.c, store_begin()/store_commit(); LEDGER_IN_FLIGHT=3 here).
# Batches k+1 and k+2 dedupe and write their entries while batch k commits, but commit only after
# the batch before them did:
# 1. while k waits for a balance lock, k+1 and k+2 (other keys) stay uncommitted; when k's
#    connection is killed, both are rolled back too, and all three are applied once when
#    redelivered;
# 2. a count committed between k's early entries and its lock (as a replica's would be) makes k
#    derive its entries again: a sale made before the count gets its count correction.
# ~20 s.
set -euo pipefail
. "$TILLSYNC_SOURCE_DIR/tests/lib/svc.sh"
. "$TILLSYNC_SOURCE_DIR/tests/lib/ledger.sh"
# on the way out, end a lock holder still waiting for its fifo (it would keep the output open)
unhold() {
  [ -n "${hold_fifo:-}" ] && [ -p "$hold_fifo" ] && timeout 2 sh -c "echo ROLLBACK\; >'$hold_fifo'"
  rm -f "${hold_fifo:-}" "${hold_log:-}"
}
trap 'unhold || true; ledger_teardown' EXIT
ledger_setup ldo

metric() { curl -s "http://${SVC_ADDR[$1]}/metrics" | sed -n "s/^$2 //p"; }

# the pid of the service's backend waiting for a lock (empty while none does)
lock_waiter() {
  lsql "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
        AND wait_event_type = 'Lock' AND application_name <> 'psql'" | head -n1
}

# hold_lock SQL…: a psql session runs the statements in a transaction, says 'holding', then waits
# for $hold_fifo to say what to run before COMMIT
hold_lock() {
  hold_fifo=$(mktemp -u)
  hold_log=$(mktemp)
  mkfifo "$hold_fifo"
  { printf 'BEGIN;\n%s\n' "$1"; echo "SELECT 'holding';"; cat "$hold_fifo"; echo "COMMIT;"; } |
    psql "$LEDGER_DB_URL" -qAtX -v ON_ERROR_STOP=1 >"$hold_log" 2>&1 &
  holder=$!
  for _ in $(seq 1 50); do grep -q holding "$hold_log" && return 0; sleep 0.1; done
  fail "the lock holder did not start: $(cat "$hold_log")"
}

# release_lock [SQL]: run SQL in the holder's transaction, then COMMIT
release_lock() {
  echo "${1:-}" >"$hold_fifo"
  wait "$holder" || fail "the lock holder failed: $(cat "$hold_log")"
  rm -f "$hold_fifo" "$hold_log"
}

wait_lock_waiter() {
  for _ in $(seq 1 100); do [ -n "$(lock_waiter)" ] && return 0; sleep 0.1; done
  fail "no batch came to wait for the held balance lock"
}

# one event per batch: k1, k2 and k3 (one till, so one partition, in order) are batches k, k+1
# and k+2
ledger_start L LEDGER_BATCH_MAX=1 LEDGER_IN_FLIGHT=3 PG_POOL_SIZE=6
ledger_wait_migrated
ledger_catalog
produce script <<'EV'
mov o1 received L1 M1 1000 - S1:10
mov o2 received L1 M2 1000 - S2:10
mov o3 received L1 M3 1000 - S3:10
EV
ledger_wait 3

# 1. k blocks on S1's lock; k+1 and k+2 (S2 only) must not commit before k
hold_lock "SELECT 1 FROM balances WHERE sku = 'S1' AND location_id = 'L1' FOR UPDATE;"
produce script <<'EV'
pos k1 sale L1 TX1 2000 - S1:1
pos k2 sale L1 TX2 2000 - S2:2
pos k3 sale L1 TX2B 2000 - S2:1
EV
wait_lock_waiter
# k+1 and k+2 have begun: their entries are written (uncommitted), their transactions wait
began=0
for _ in $(seq 1 100); do
  began=$(lsql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
    AND state = 'idle in transaction' AND application_name <> 'psql' AND query LIKE '%COPY ledger_entries%'")
  [ "$began" -ge 2 ] && break
  sleep 0.1
done
[ "$began" -ge 2 ] || fail "batches k+1 and k+2 did not write their entries while batch k waited: $(lsql "SELECT string_agg(application_name || '/' || state || '/' || coalesce(wait_event_type, '-') || '/' || left(query, 60), E'\n') FROM pg_stat_activity WHERE datname = current_database()")"
sleep 1
[ "$(lsql "SELECT count(*) FROM applied_events WHERE event_id IN ('k2', 'k3')")" = 0 ] ||
  fail "batch k+1 or k+2 committed while batch k was still waiting for its lock"
# k's connection dies: k fails, k+1 and k+2 must be rolled back with it and all redelivered
k=$(lock_waiter)
lsql "SELECT pg_terminate_backend($k)" >/dev/null
sleep 1
[ "$(lsql "SELECT count(*) FROM applied_events WHERE event_id IN ('k2', 'k3')")" = 0 ] ||
  fail "batch k+1 or k+2 committed although batch k failed"
release_lock
ledger_wait 6
ledger_check_sums
expect_bal S1 L1 9 0 0
expect_bal S2 L1 7 0 0
[ "$(lsql "SELECT count(*) FROM ledger_entries WHERE event_id IN ('k1', 'k2', 'k3')")" = 3 ] ||
  fail "k1/k2/k3 entries: $(lsql "SELECT string_agg(event_id || ':' || delta, ',') FROM ledger_entries WHERE event_id IN ('k1', 'k2', 'k3')")"
[ "$(metric L ledger_batch_failures_total)" -ge 1 ] || fail "the killed batch was not counted as failed"

# 2. a sale made at 5000 reaches its lock after a count at 6000 committed: the count already saw
# the sale, so the sale's entry needs a count correction (store_commit() derives it again)
hold_lock "SELECT 1 FROM balances WHERE sku = 'S3' AND location_id = 'L1' FOR UPDATE;"
produce script <<'EV'
pos late1 sale L1 TX3 5000 - S3:3
EV
wait_lock_waiter
# the count, as a replica applies it: counted 8 as of 6000, Σ on_hand then was 10
release_lock "INSERT INTO applied_events VALUES ('count1');
INSERT INTO ledger_entries (tenant_id, sku, location_id, bucket, delta, reason, event_id, source_ref,
  occurred_at_ms, recorded_at_ms) VALUES ('test', 'S3', 'L1', 'on_hand', -2, 'cycle_count', 'count1',
  'movement:C1', 6000, 6000);
UPDATE balances SET on_hand = on_hand - 2, last_count_at_ms = 6000 WHERE sku = 'S3' AND location_id = 'L1';"
ledger_wait 8
ledger_check_sums
expect_bal S3 L1 8 0 0
[ "$(lsql "SELECT count(*) FROM ledger_entries WHERE event_id = 'late1' AND reason = 'count_correction' AND delta = 3 AND occurred_at_ms = 6000")" = 1 ] ||
  fail "late sale without its count correction: $(lsql "SELECT string_agg(reason || ':' || delta, ',') FROM ledger_entries WHERE event_id = 'late1'")"
svc_stop L 15
echo "ok: batches in flight commit in order, a failed one takes those after it along, a count in between is corrected"
