# Shell helpers for the inventory-ledger integration tests (source after tests/lib/svc.sh).
# Each test gets its own database (LEDGER_DB_URL) and topic prefix (TOPIC_PREFIX).

ledger_setup() {
  local tag=$1
  LEDGER_DB="ledger_${tag}_$$_$RANDOM"
  psql "$DATABASE_URL" -qXc "CREATE DATABASE $LEDGER_DB" || fail "create database"
  LEDGER_DB_URL="${DATABASE_URL%/*}/$LEDGER_DB"
  export TOPIC_PREFIX="${tag}$$x$RANDOM."
  local t
  for t in pos.transactions.v1 stock.movements.v1 shop.orders.v1 inventory.levels.v1 \
      recon.exceptions.v1 pos.transactions.v1.dlq stock.movements.v1.dlq shop.orders.v1.dlq; do
    "$TILLSYNC_SOURCE_DIR/deploy/local/stack" kafka create-topic "$TOPIC_PREFIX$t" 6 >/dev/null ||
      fail "create topic $t"
  done
}

ledger_teardown() {
  svc_stop_all
  psql "$DATABASE_URL" -qXc "DROP DATABASE IF EXISTS $LEDGER_DB WITH (FORCE)" >/dev/null 2>&1 || true
}

# ledger_start NAME [VAR=value…]: an inventory-ledger replica on the test's database/prefix,
# logging to $SVC_LOG_DIR/NAME.log; its pid and address land in SVC_PID/SVC_ADDR[NAME].
ledger_start() {
  local name=$1; shift
  local log="$SVC_LOG_DIR/$name.log"
  : >"$log"
  env TENANT_ID=test HTTP_LISTEN=127.0.0.1:0 DATABASE_URL="$LEDGER_DB_URL" \
    TOPIC_PREFIX="$TOPIC_PREFIX" KAFKA_SESSION_TIMEOUT_MS=6000 LEDGER_BATCH_WAIT_MS=20 \
    PUBLISH_INTERVAL_MS=50 "$@" "$TILLSYNC_BUILD_DIR/bin/inventory-ledger" >>"$log" 2>&1 &
  SVC_PID[$name]=$!
  local addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*"msg":"listening".*"address":"\([^"]*\)".*/\1/p' "$log" | tail -n1)
    [ -n "$addr" ] && break
    kill -0 "${SVC_PID[$name]}" 2>/dev/null || { cat "$log" >&2; fail "$name exited at start"; }
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log" >&2; fail "$name did not log its address"; }
  SVC_ADDR[$name]=$addr
}

# ledger_kill NAME: SIGKILL, no questions asked.
ledger_kill() {
  kill -KILL "${SVC_PID[$1]}" 2>/dev/null || true
  wait "${SVC_PID[$1]}" 2>/dev/null || true
  unset "SVC_PID[$1]"
}

lsql() { psql "$LEDGER_DB_URL" -qAtX -c "$1"; }

produce() { "$TILLSYNC_BUILD_DIR/bin/ledger_events" "$@" 2>/dev/null || fail "produce events"; }

# ledger_wait N [seconds]: until N events are applied and the level outbox is drained.
ledger_wait() {
  local n=$1 max=${2:-60} t0=$SECONDS got
  while :; do
    got=$(lsql "SELECT (SELECT count(*) FROM applied_events) || ' ' || (SELECT count(*) FROM level_outbox) || ' ' || (SELECT count(*) FROM exception_outbox)" 2>/dev/null || echo "0 0 0")
    [ "$got" = "$n 0 0" ] && return 0
    [ $((SECONDS - t0)) -gt "$max" ] && fail "waited ${max}s for $n events: applied/outbox/exceptions = $got"
    sleep 0.2
  done
}

# Every balance equals the sum of its ledger entries, per bucket.
ledger_check_sums() {
  local bad
  bad=$(lsql "SELECT count(*) FROM balances b FULL JOIN (
      SELECT tenant_id, sku, location_id,
        coalesce(sum(delta) FILTER (WHERE bucket = 'on_hand'), 0) AS oh,
        coalesce(sum(delta) FILTER (WHERE bucket = 'committed'), 0) AS co,
        coalesce(sum(delta) FILTER (WHERE bucket = 'in_transit'), 0) AS it
      FROM ledger_entries GROUP BY 1, 2, 3) l USING (tenant_id, sku, location_id)
    WHERE coalesce(b.on_hand, 0) <> coalesce(l.oh, 0) OR coalesce(b.committed, 0) <> coalesce(l.co, 0)
       OR coalesce(b.in_transit, 0) <> coalesce(l.it, 0)")
  [ "$bad" = 0 ] || fail "$bad balances differ from the sum of the ledger"
}

# expect_bal SKU LOC ON_HAND COMMITTED IN_TRANSIT
expect_bal() {
  local got
  got=$(lsql "SELECT on_hand || ' ' || committed || ' ' || in_transit FROM balances WHERE sku = '$1' AND location_id = '$2'")
  [ "$got" = "$3 $4 $5" ] || fail "balance $1@$2: want '$3 $4 $5', got '$got'"
}

# The balances must equal an expectation file of "sku loc on_hand committed in_transit" lines.
ledger_check_expect() {
  local file=$1 got
  got=$(lsql "SELECT sku || ' ' || location_id || ' ' || on_hand || ' ' || committed || ' ' || in_transit
              FROM balances WHERE on_hand <> 0 OR committed <> 0 OR in_transit <> 0" | sort)
  diff <(sort "$file") <(echo "$got") >/dev/null || {
    diff <(sort "$file") <(echo "$got") | head -20 >&2
    fail "balances differ from the expected ones"
  }
}

http_json() { # METHOD URL [BODY] → prints "STATUS BODY"
  local m=$1 u=$2 b=${3-}
  if [ -n "$b" ]; then
    curl -s -o /tmp/ledger_http.$$ -w '%{http_code}' -X "$m" -H 'content-type: application/json' -d "$b" "$u"
  else
    curl -s -o /tmp/ledger_http.$$ -w '%{http_code}' -X "$m" "$u"
  fi
  printf ' '; cat /tmp/ledger_http.$$; rm -f /tmp/ledger_http.$$
}

# ledger_catalog: register locations L0..L3 and SKUs S0..S49 (the generator's) directly.
ledger_catalog() {
  lsql "INSERT INTO locations SELECT 'test', 'L' || g, 'store', '' FROM generate_series(0, 7) g ON CONFLICT DO NOTHING" >/dev/null
  lsql "INSERT INTO skus SELECT 'test', 'S' || g, true, 0 FROM generate_series(0, 49) g ON CONFLICT DO NOTHING" >/dev/null
}

# ledger_wait_migrated: the schema exists (the first replica applied the migrations).
ledger_wait_migrated() {
  local t0=$SECONDS
  until lsql "SELECT 1 FROM balances LIMIT 1" >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt 30 ] || fail "schema not migrated"
    sleep 0.2
  done
}

# Sum expectation files of ledger_events gen into one (sku loc on_hand committed in_transit).
ledger_sum_expect() {
  cat "$@" | awk '{k=$1" "$2; a[k]+=$3; b[k]+=$4; c[k]+=$5} END {for (k in a) if (a[k] || b[k] || c[k]) print k, a[k], b[k], c[k]}'
}

applied() { lsql "SELECT count(*) FROM applied_events" 2>/dev/null || echo 0; }
