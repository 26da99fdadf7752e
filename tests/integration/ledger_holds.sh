#!/usr/bin/env bash
# inventory-ledger checkout and pickup holds (issue 4) against a real Redis (a private
# redis-server this test starts, stops and restarts, so the shared stack's Redis is untouched)
# and the stack's Postgres and Kafka: 200 clients racing for the last 10 units (exactly 10
# holds, 190 × 409, available never below 0 while sampled), expiry without a sweeper,
# extension, release, idempotent retry, confirmation by an order (by checkout id and by hold
# id) never counted twice while it happens, cancellation, click & collect through pickup, level
# publication of hold changes, bad input, a Redis outage (503, then recovery without
# restart), and SIGTERM while creates are in flight. Responses are checked against openapi.yaml.
set -euo pipefail
. "$TILLSYNC_SOURCE_DIR/tests/lib/svc.sh"
. "$TILLSYNC_SOURCE_DIR/tests/lib/ledger.sh"

RDIR=$(mktemp -d "${TMPDIR:-/tmp}/ledger-holds-redis.XXXXXX")
RPID=""
redis_up() {
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$RDIR" \
    >>"$RDIR/redis.log" 2>&1 &
  RPID=$!
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.05
  done
  fail "private redis-server did not start"
}
redis_down() {
  [ -n "$RPID" ] || return 0
  kill -KILL "$RPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true
  RPID=""
}
cleanup() { redis_down; ledger_teardown; rm -rf "$RDIR"; }
trap cleanup EXIT
for _ in $(seq 1 50); do
  RP=$((20000 + RANDOM % 20000))
  ss -ltn "sport = :$RP" 2>/dev/null | grep -q LISTEN || break
done
redis_up
ledger_setup hol

ledger_start L REDIS_URL="redis://127.0.0.1:$RP" REDIS_POOL_SIZE=16 HTTP_THREADS=16
A=http://${SVC_ADDR[L]}
OAS="$TILLSYNC_SOURCE_DIR/services/inventory-ledger/openapi.yaml"
VALIDATE="$TILLSYNC_SOURCE_DIR/tools/contracts/validate-response"
# check METHOD PATH STATUS BODYFILE: the response is what openapi.yaml says
check() {
  [ -x "$VALIDATE" ] || return 0
  "$VALIDATE" "$OAS" "$1" "$2" "$3" "$4" >/dev/null || fail "$1 $2 $3 off contract: $(cat "$4")"
}
T=$(mktemp -d)
# req METHOD PATH [BODY]: sets CODE and leaves the body in $T/body, validated against the contract
req() {
  local m=$1 p=$2 b=${3-}
  if [ -n "$b" ]; then
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$m" -H 'content-type: application/json' -d "$b" "$A$p")
  else
    CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$A$p")
  fi
  check "$m" "${p%%\?*}" "$CODE" "$T/body"
}
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$T/body" "$1"; }
avail() { # avail SKU location_id=X|channel_location_id=X → "base held available"
  req GET "/v1/availability/$1?$2"
  [ "$CODE" = 200 ] || fail "availability $1 $2: $CODE $(cat "$T/body")"
  jget '"%d %d %d" % (d["base"], d["held"], d["available"])'
}
wait_avail() { # wait_avail SKU SCOPE "base held available"
  local t0=$SECONDS got
  while :; do
    got=$(avail "$1" "$2")
    [ "$got" = "$3" ] && return 0
    [ $((SECONDS - t0)) -lt 30 ] || fail "availability $1 $2: want '$3', got '$got'"
    sleep 0.1
  done
}
lver() { lsql "SELECT coalesce(max(version), 0) FROM level_versions WHERE key = '$1'"; }
next_ver() { # next_ver KEY V SECONDS WHAT: wait for a publication of KEY after version V
  local t0=$SECONDS
  until [ "$(lver "$1")" -gt "$2" ]; do
    [ $((SECONDS - t0)) -lt "$3" ] || fail "$4 was never published"
    sleep 0.1
  done
}

for l in L2; do req PUT "/v1/locations/$l" '{"kind":"store"}'; done
req PUT /v1/locations/W1 '{"kind":"warehouse"}'
for s in A B C D; do req PUT "/v1/skus/$s" '{"requires_shipping":true}'; done
req PUT /v1/channel-locations/CH1 '{"platform":"shopify","shop_id":"shop.example","platform_location_id":"gid://shopify/Location/1","buffer":0,"locations":["W1"]}'
[ "$CODE" = 200 ] || fail "channel: $CODE"
produce script <<'EV'
mov r1 received W1 M1 1000 - A:10 C:100 D:20
mov r2 received L2 M2 1000 - B:5
EV
ledger_wait 2
wait_avail A channel_location_id=CH1 "10 0 10"
wait_avail B location_id=L2 "5 0 5"

# ---- bad input: 4xx, nothing held
bad() { req POST /v1/holds "$1"; case "$CODE" in 400|415|422) ;; *) fail "bad hold $1 answered $CODE";; esac; }
bad '{"idempotency_key":"b1","channel_location_id":"CH1","lines":[]}'
bad '{"idempotency_key":"b2","channel_location_id":"CH1","lines":[{"sku":"A","quantity":0}]}'
bad '{"idempotency_key":"b3","channel_location_id":"CH1","lines":[{"sku":"A","quantity":1.5}]}'
bad '{"idempotency_key":"b4","lines":[{"sku":"A","quantity":1}]}'
bad '{"idempotency_key":"b5","channel_location_id":"CH1","location_id":"L2","lines":[{"sku":"A","quantity":1}]}'
bad '{"channel_location_id":"CH1","lines":[{"sku":"A","quantity":1}]}'
bad '{"idempotency_key":"b6","channel_location_id":"CH1","ttl_seconds":0,"lines":[{"sku":"A","quantity":1}]}'
bad '{"idempotency_key":"b7","channel_location_id":"CH1","lines":[{"sku":"A","quantity":1},{"sku":"A","quantity":1}]}'
bad 'not json'
req GET /v1/holds/does-not-exist; [ "$CODE" = 404 ] || fail "unknown hold answered $CODE"
req POST /v1/holds/does-not-exist/release; [ "$CODE" = 404 ] || fail "release of unknown hold answered $CODE"
wait_avail A channel_location_id=CH1 "10 0 10"

# ---- contention: 200 concurrent clients race for the last 10 units of A at CH1
# (first the receipt's own level publication must be out, so a later version is the holds')
t0=$SECONDS
until [ "$(lsql "SELECT count(*) FROM level_outbox")" = 0 ]; do
  [ $((SECONDS - t0)) -lt 20 ] || fail "the receipt's level publication did not go out"
  sleep 0.2
done
v0=$(lver CH1/A)
seq 1 200 >"$T/clients"
( while [ ! -e "$T/race.done" ]; do
    curl -s "$A/v1/availability/A?channel_location_id=CH1" >>"$T/samples" && echo >>"$T/samples"
  done ) &
SAMPLER=$!
xargs -P 200 -I{} curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'content-type: application/json' \
  -d '{"idempotency_key":"race-{}","channel_location_id":"CH1","ttl_seconds":600,"lines":[{"sku":"A","quantity":1}]}' \
  "$A/v1/holds" <"$T/clients" >"$T/codes"
touch "$T/race.done"
wait "$SAMPLER"
ok=$(grep -c '^201$' "$T/codes" || true)
refused=$(grep -c '^409$' "$T/codes" || true)
[ "$ok" = 10 ] && [ "$refused" = 190 ] || fail "race: $ok created, $refused refused (codes: $(sort "$T/codes" | uniq -c | tr '\n' ' '))"
nsamples=$(grep -c available "$T/samples" || true)
python3 - "$T/samples" <<'PY' || fail "availability went below 0 or held above the figure during the race"
import json, sys
n = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    d = json.loads(line)
    assert d["available"] >= 0 and d["held"] <= d["base"] == 10, d
    n += 1
assert n > 0
PY
echo "race: 10 created, 190 refused, $nsamples availability samples all >= 0"
wait_avail A channel_location_id=CH1 "10 10 0"
req POST /v1/holds '{"idempotency_key":"late","channel_location_id":"CH1","lines":[{"sku":"A","quantity":1}]}'
[ "$CODE" = 409 ] || fail "hold past the last unit answered $CODE"
[ "$(jget 'd["lines"][0]["available"]')" = 0 ] || fail "409 does not say 0 available: $(cat "$T/body")"
grep -q '0 available, 1 requested' "$T/body" || fail "409 message unclear: $(cat "$T/body")"
# the held units flow to the channel figure and to inventory.levels.v1
t0=$SECONDS
until req GET /v1/stock/A && grep -q '"reserved":10,"in_transit":0,"safety_stock":0,"available":0,"channel_location_id":"CH1"' "$T/body"; do
  [ $((SECONDS - t0)) -lt 20 ] || fail "channel figure does not show the holds: $(cat "$T/body")"
  sleep 0.2
done
next_ver CH1/A "$v0" 20 "the level after the holds"

# ---- all-or-nothing across lines: one short line holds nothing
req POST /v1/holds '{"idempotency_key":"multi","channel_location_id":"CH1","lines":[{"sku":"C","quantity":5},{"sku":"A","quantity":1}]}'
[ "$CODE" = 409 ] || fail "multi-line hold with a short line answered $CODE"
[ "$(jget '[(l["sku"], l["available"], l["short"]) for l in d["lines"]]')" = "[('C', 100, False), ('A', 0, True)]" ] || fail "409 lines: $(cat "$T/body")"
wait_avail C channel_location_id=CH1 "100 0 100"

# ---- release gives the unit back; releasing twice is fine
hid=$(redis-cli -p "$RP" zrange 'ts:{test}:z:c:CH1:A' 0 0 | cut -d'|' -f1)
[ -n "$hid" ] || fail "no live hold line in Redis: $(redis-cli -p "$RP" keys "*" | head -30)"
req POST "/v1/holds/$hid/release"
[ "$CODE" = 200 ] && [ "$(jget 'd["state"]')" = released ] || fail "release: $CODE $(cat "$T/body")"
req POST "/v1/holds/$hid/release"; [ "$CODE" = 200 ] || fail "second release answered $CODE"
wait_avail A channel_location_id=CH1 "10 9 1"
req POST "/v1/holds/$hid/extend" '{"ttl_seconds":60}'; [ "$CODE" = 409 ] || fail "extending a released hold answered $CODE"

# ---- idempotent retry: same key and request → same hold, held once; same key, other request → 422
body='{"idempotency_key":"idem-1","location_id":"L2","ttl_seconds":600,"lines":[{"sku":"B","quantity":2}]}'
req POST /v1/holds "$body"; [ "$CODE" = 201 ] || fail "create: $CODE $(cat "$T/body")"
h1=$(jget 'd["hold_id"]')
req POST /v1/holds "$body"; [ "$CODE" = 200 ] && [ "$(jget 'd["hold_id"]')" = "$h1" ] || fail "retry: $CODE $(cat "$T/body")"
CODE=$(curl -s -o "$T/body" -w '%{http_code}' -X POST -H 'content-type: application/json' -H 'Idempotency-Key: idem-1' \
  -d '{"location_id":"L2","ttl_seconds":600,"lines":[{"sku":"B","quantity":2}]}' "$A/v1/holds")
[ "$CODE" = 200 ] && [ "$(jget 'd["hold_id"]')" = "$h1" ] || fail "retry with the header: $CODE $(cat "$T/body")"
req POST /v1/holds '{"idempotency_key":"idem-1","location_id":"L2","ttl_seconds":600,"lines":[{"sku":"B","quantity":3}]}'
[ "$CODE" = 422 ] || fail "key reused for another request answered $CODE"
wait_avail B location_id=L2 "5 2 3"
req POST "/v1/holds/$h1/release"; [ "$CODE" = 200 ] || fail "release idem-1"
wait_avail B location_id=L2 "5 0 5"

# ---- expiry: no sweeper, the hold stops counting when its time is up
# (a machine too slow to read the figure within the time-to-live retries with a longer one)
for ttl in 1 3 10; do
  req POST /v1/holds '{"idempotency_key":"exp-'"$ttl"'","channel_location_id":"CH1","ttl_seconds":'"$ttl"',"lines":[{"sku":"C","quantity":5}]}'
  [ "$CODE" = 201 ] || fail "create exp-$ttl: $CODE"
  he=$(jget 'd["hold_id"]')
  [ "$(avail C channel_location_id=CH1)" = "100 5 95" ] && break
  [ "$ttl" != 10 ] || fail "exp-$ttl not held"
  wait_avail C channel_location_id=CH1 "100 0 100"
done
sleep "$ttl.2"
[ "$(avail C channel_location_id=CH1)" = "100 0 100" ] || fail "expired hold still counts"
req GET "/v1/holds/$he"; [ "$(jget 'd["state"]')" = expired ] || fail "hold not reported expired: $(cat "$T/body")"
req POST "/v1/holds/$he/extend" '{"ttl_seconds":60}'; [ "$CODE" = 409 ] || fail "extending an expired hold answered $CODE"

# ---- expiries reach inventory.levels.v1 by themselves, each one: no event touches C meanwhile,
# and the figure is read only while nothing has expired. X (2 units) expires after t seconds, Y
# (1 unit) after 2t; each expiry must bring a new publication. The holds must still be as
# expected when each wait starts, else the machine was too slow for t and the round is repeated
# with a longer one (after the last, that is a failure).
too_slow() {
  [ "$t" != 20 ] || fail "the machine was too slow for the expiry publication check"
  wait_avail C channel_location_id=CH1 "100 0 100"
}
for t in 3 8 20; do
  v0=$(lver CH1/C)
  req POST /v1/holds '{"idempotency_key":"exp-x-'"$t"'","channel_location_id":"CH1","ttl_seconds":'"$t"',"lines":[{"sku":"C","quantity":2}]}'
  [ "$CODE" = 201 ] || fail "create exp-x-$t: $CODE $(cat "$T/body")"
  req POST /v1/holds '{"idempotency_key":"exp-y-'"$t"'","channel_location_id":"CH1","ttl_seconds":'"$((2 * t))"',"lines":[{"sku":"C","quantity":1}]}'
  [ "$CODE" = 201 ] || fail "create exp-y-$t: $CODE $(cat "$T/body")"
  next_ver CH1/C "$v0" 20 "the creation of exp-x-$t"
  sleep 1
  v1=$(lver CH1/C)
  [ "$(avail C channel_location_id=CH1)" = "100 3 97" ] || { too_slow; continue; }
  next_ver CH1/C "$v1" $((t + 20)) "the expiry of exp-x-$t"
  v2=$(lver CH1/C)
  [ "$(avail C channel_location_id=CH1)" = "100 1 99" ] || { too_slow; continue; }
  next_ver CH1/C "$v2" $((2 * t + 20)) "the expiry of exp-y-$t"
  break
done
wait_avail C channel_location_id=CH1 "100 0 100"

# ---- extension keeps a hold past its first expiry
# (a hold that expired before its extension arrived, on a slow machine, retries with a longer life)
for ttl in 1 3 10; do
  req POST /v1/holds '{"idempotency_key":"ext-'"$ttl"'","channel_location_id":"CH1","ttl_seconds":'"$ttl"',"lines":[{"sku":"C","quantity":4}]}'
  [ "$CODE" = 201 ] || fail "create ext-$ttl: $CODE"
  hx=$(jget 'd["hold_id"]')
  req POST "/v1/holds/$hx/extend" '{"ttl_seconds":30}'
  [ "$CODE" = 409 ] && [ "$ttl" != 10 ] && grep -q '"hold_not_live"' "$T/body" && continue
  [ "$CODE" = 200 ] && [ "$(jget 'd["ttl_seconds"]')" = 30 ] || fail "extend: $CODE $(cat "$T/body")"
  break
done
sleep "$ttl.3"
[ "$(avail C channel_location_id=CH1)" = "100 4 96" ] || fail "extended hold expired at its first expiry"
req GET "/v1/holds/$hx"; [ "$(jget 'd["state"]')" = held ] || fail "extended hold state: $(cat "$T/body")"
req POST "/v1/holds/$hx/release"

# ---- confirmation by the order (matched by checkout id): committed once, never hold + committed
req POST /v1/holds '{"idempotency_key":"ck-1","channel_location_id":"CH1","checkout_id":"CK1","ttl_seconds":600,"lines":[{"sku":"C","quantity":3}]}'
[ "$CODE" = 201 ] || fail "create ck-1: $CODE"
hc=$(jget 'd["hold_id"]')
wait_avail C channel_location_id=CH1 "100 3 97"
: >"$T/confirm"
( while [ ! -e "$T/confirm.done" ]; do
    curl -s "$A/v1/availability/C?channel_location_id=CH1" >>"$T/confirm"; echo >>"$T/confirm"
    curl -s "$A/v1/stock/C" >>"$T/confirm"; echo >>"$T/confirm"
  done ) &
SAMPLER=$!
echo "ord c1 created OC1 W1 5000 web - C:3 checkout=CK1" | produce script
ledger_wait 3
t0=$SECONDS
until req GET "/v1/holds/$hc" && [ "$(jget 'd["state"]')" = confirmed ]; do
  [ $((SECONDS - t0)) -lt 20 ] || fail "hold not confirmed by the order: $(cat "$T/body")"
  sleep 0.1
done
sleep 0.5
touch "$T/confirm.done"
wait "$SAMPLER"
expect_bal C W1 100 3 0
wait_avail C channel_location_id=CH1 "97 0 97"
python3 - "$T/confirm" <<'PY' || fail "the confirmed hold was counted twice (or not at all) while it turned into committed stock"
import json, sys
seen = set()
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    d = json.loads(line)
    if "base" in d:
        assert d["available"] == 97, d
        seen.add((d["base"], d["held"]))
    elif "channel_locations" in d:
        ch = [c for c in d["channel_locations"] if c["channel_location_id"] == "CH1"][0]
        assert ch["available"] == 97, ch
        assert ch["committed"] + ch["reserved"] == 3, ch
print("confirm samples (base, held):", sorted(seen))
PY
req POST "/v1/holds/$hc/release"; [ "$CODE" = 409 ] || fail "releasing a confirmed hold answered $CODE"

# ---- confirmation by hold id; cancellation (by cart token) releases a live hold
req POST /v1/holds '{"idempotency_key":"hid-1","channel_location_id":"CH1","ttl_seconds":600,"lines":[{"sku":"D","quantity":2}]}'
hh=$(jget 'd["hold_id"]')
req POST /v1/holds '{"idempotency_key":"cart-1","channel_location_id":"CH1","cart_token":"CART9","ttl_seconds":600,"lines":[{"sku":"D","quantity":5}]}'
hk=$(jget 'd["hold_id"]')
wait_avail D channel_location_id=CH1 "20 7 13"
produce script <<EV
ord d1 created OD1 W1 6000 web - D:2 hold=$hh
ord d2 cancelled OD2 W1 6100 web - cart=CART9
EV
ledger_wait 5
wait_avail D channel_location_id=CH1 "18 0 18"
req GET "/v1/holds/$hh"; [ "$(jget 'd["state"]')" = confirmed ] || fail "hold by id: $(cat "$T/body")"
req GET "/v1/holds/$hk"; [ "$(jget 'd["state"]')" = released ] || fail "cancelled hold: $(cat "$T/body")"
# the same order again (redelivered under a new event id) confirms nothing twice
echo "ord d3 created OD1 W1 6000 web - D:2 hold=$hh" | produce script
ledger_wait 6
sleep 0.5
[ "$(avail D channel_location_id=CH1)" = "16 0 16" ] || fail "a second order event changed the hold"

# ---- click & collect: hold at the pickup store, the order arrives, the customer picks up
req POST /v1/holds '{"idempotency_key":"cc-1","location_id":"L2","ttl_seconds":600,"lines":[{"sku":"B","quantity":2}]}'
[ "$CODE" = 201 ] || fail "pickup hold: $CODE $(cat "$T/body")"
hp=$(jget 'd["hold_id"]')
wait_avail B location_id=L2 "5 2 3"
req GET /v1/stock/B
grep -q '"location_id":"L2","kind":"store","on_hand":5,"committed":0,"reserved":2,"in_transit":0,"safety_stock":0,"available":3' "$T/body" || fail "pickup hold not in L2's figures: $(cat "$T/body")"
echo "ord p1 created OP1 L2 7000 pickup - B:2 hold=$hp" | produce script
ledger_wait 7
t0=$SECONDS
until req GET "/v1/holds/$hp" && [ "$(jget 'd["state"]')" = confirmed ]; do
  [ $((SECONDS - t0)) -lt 20 ] || fail "pickup hold not confirmed"
  sleep 0.1
done
expect_bal B L2 5 2 0
wait_avail B location_id=L2 "3 0 3"
req GET /v1/stock/B
grep -q '"location_id":"L2","kind":"store","on_hand":5,"committed":2,"reserved":0,"in_transit":0,"safety_stock":0,"available":3' "$T/body" || fail "L2 after the order: $(cat "$T/body")"
echo "ord p2 picked_up OP1 L2 7100 pickup - B:2" | produce script
ledger_wait 8
expect_bal B L2 3 0 0
wait_avail B location_id=L2 "3 0 3"
req GET "/v1/holds/$hp"; [ "$(jget 'd["state"]')" = confirmed ] || fail "pickup hold after pickup: $(cat "$T/body")"
ledger_check_sums

# ---- Redis outage: holds fail closed with 503, the ledger goes on, recovery without restart
redis_down
req POST /v1/holds '{"idempotency_key":"out-1","channel_location_id":"CH1","lines":[{"sku":"C","quantity":1}]}'
[ "$CODE" = 503 ] || fail "hold with Redis down answered $CODE"
grep -q 'fail closed' "$T/body" || fail "503 message unclear: $(cat "$T/body")"
req GET "/v1/holds/$hp"; [ "$CODE" = 503 ] || fail "read with Redis down answered $CODE"
# the ledger applies events meanwhile; level publication waits for Redis (it cannot know the holds)
echo "mov r3 received W1 M3 8000 - C:50" | produce script
t0=$SECONDS
until [ "$(applied)" = 9 ]; do
  [ $((SECONDS - t0)) -lt 30 ] || fail "event not applied while Redis is down"
  sleep 0.2
done
expect_bal C W1 150 3 0
redis_up
ledger_wait 9
t0=$SECONDS
while :; do
  req POST /v1/holds '{"idempotency_key":"out-2","channel_location_id":"CH1","lines":[{"sku":"C","quantity":1}]}'
  [ "$CODE" = 201 ] && break
  [ "$CODE" = 503 ] || fail "after Redis came back: $CODE $(cat "$T/body")"
  [ $((SECONDS - t0)) -lt 20 ] || fail "holds did not recover after Redis came back"
  sleep 0.2
done
wait_avail C channel_location_id=CH1 "147 1 146"
kill -0 "${SVC_PID[L]}" || fail "the service died"

# ---- SIGTERM while 32 clients create holds: creates wait for Redis with their connection
# suspended, and the service must answer them all and exit 0 (libmicrohttpd aborts when it
# stops with a connection suspended); every 201 it sent is a live hold afterwards (E has stock
# enough that none is refused)
req PUT /v1/skus/E '{"requires_shipping":true}'
echo "mov r4 received W1 M4 9000 - E:1000000" | produce script
ledger_wait 10
wait_avail E channel_location_id=CH1 "1000000 0 1000000"
python3 - "${SVC_ADDR[L]}" >"$T/term" <<'PY' &
import http.client, json, sys, threading, time
addr = sys.argv[1]
lock = threading.Lock()
created, sent = [], [0]
def client(c):
    conn, i = None, 0
    while True:
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection(addr, timeout=10)
            body = json.dumps({"idempotency_key": "term-%d-%d" % (c, i), "channel_location_id": "CH1",
                               "lines": [{"sku": "E", "quantity": 1}]})
            with lock:
                sent[0] += 1
            conn.request("POST", "/v1/holds", body, {"content-type": "application/json"})
            r = conn.getresponse()
            d = r.read()
            if r.status == 201:
                with lock:
                    created.append(json.loads(d)["hold_id"])
            elif r.status != 503:
                print("unexpected", r.status, d, file=sys.stderr)
                sys.exit(1)
        except (ConnectionError, OSError, http.client.HTTPException):
            return  # the service stopped listening
ts = [threading.Thread(target=client, args=(c,)) for c in range(32)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(len(created), sent[0])
PY
LOADPID=$!
sleep 1.5
svc_stop L 15
wait "$LOADPID" || fail "a create during SIGTERM got an unexpected answer"
read -r n201 nsent <"$T/term"
[ "$n201" -gt 0 ] || fail "no hold was created before SIGTERM"
ledger_start L REDIS_URL="redis://127.0.0.1:$RP"
A=http://${SVC_ADDR[L]}
held=$(avail E channel_location_id=CH1 | cut -d' ' -f2)
echo "SIGTERM under load: $n201 holds answered 201 of $nsent sent; $held live"
[ "$held" -ge "$n201" ] && [ "$held" -le "$nsent" ] ||
  fail "after SIGTERM: $held live holds, $n201 answered 201 ($nsent sent)"
svc_stop L
echo "ledger_holds: ok"
