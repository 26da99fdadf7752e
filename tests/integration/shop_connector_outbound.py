"""shop-connector outbound push, end to end against tests/sim/platform-sim (stdlib only).

Needs KAFKA_BROKERS, DATABASE_URL, REDIS_URL (the stack), TILLSYNC_BUILD_DIR, TILLSYNC_SOURCE_DIR;
kcat and psql on PATH. The ledger is stood in for by build/bin/shop_levels, which produces
InventoryLevelEvent records with the common producer. Each run has its own database, topic
prefix, consumer group, Redis bucket keys (tenant) and simulator.

The helpers (Harness) are shared with the benchmark tests/bench/shop_push.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SRC = os.environ.get("TILLSYNC_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("TILLSYNC_BUILD_DIR", os.path.join(SRC, "build"))


def log(*a):
    print("[shop-outbound]", *a, flush=True)


class Fail(Exception):
    pass


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def jcall(method, url, body=None):
    st, b = http(method, url, body)
    if st >= 300:
        raise Fail("%s %s -> %d %s" % (method, url, st, b[:300]))
    return json.loads(b) if b else None


class Harness:
    def __init__(self, name):
        self.run = "%s%d%d" % (name, os.getpid(), int(time.time()) % 100000)
        self.prefix = self.run + "."
        self.tenant = "t" + self.run
        self.tmp = tempfile.mkdtemp(prefix=name + ".")
        self.procs = []
        self.svcs = {}
        self.brokers = os.environ["KAFKA_BROKERS"]

    # ---- infrastructure
    def make_db(self):
        dburl = os.environ["DATABASE_URL"]
        base, _ = dburl.rsplit("/", 1)
        subprocess.run(["psql", dburl, "-qc", "CREATE DATABASE %s" % self.run], check=True,
                       stdout=subprocess.DEVNULL)
        self.db = base + "/" + self.run
        # more partitions than the auto-created default, so replicas share the work
        subprocess.run([os.path.join(SRC, "deploy/local/stack"), "kafka", "create-topic",
                        self.prefix + "inventory.levels.v1", "4"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_sim(self, time_factor="0.001"):
        pf = os.path.join(self.tmp, "sim.port")
        p = subprocess.Popen([os.path.join(SRC, "tests/sim/platform-sim"), "--port", "0",
                              "--port-file", pf, "--seed", "7", "--time-factor", time_factor],
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(self.tmp, "sim.log"), "w"))
        self.procs.append(p)
        for _ in range(100):
            if os.path.exists(pf) and open(pf).read().strip():
                self.sim = "http://127.0.0.1:%s" % open(pf).read().strip()
                return self.sim
            time.sleep(0.1)
        raise Fail("simulator did not start")

    def sim_shop(self, platform, domain, nskus, locations, **kw):
        """A shop with nskus products stocked at every location; returns its keys as
        (platform, domain, item id, location id, sku)."""
        spec = {"platform": platform, "domain": domain, "token": "tok-" + domain,
                "webhook_url": "", "webhook_secret": "s", "currency": "USD"}
        spec.update(kw)
        jcall("POST", self.sim + "/_sim/shops", spec)
        locs = []
        for name in locations:
            r = jcall("POST", "%s/_sim/shops/%s/locations" % (self.sim, domain), {"name": name})
            locs.append((name, str(r["id"])))
        keys = []
        prods = [{"title": "P%d" % i, "variants": [{"sku": "SKU-%05d" % i, "price": "5.00"}]}
                 for i in range(nskus)]
        for i in range(0, len(prods), 500):
            made = jcall("POST", "%s/_sim/shops/%s/catalog" % (self.sim, domain),
                         {"products": prods[i:i + 500]})
            for p in made["products"]:
                v = p["variants"][0]
                for _, lid in locs:
                    keys.append((platform, domain, v["inventory_item_id"], lid, v["sku"]))
        return keys, locs

    def shops_file(self, shops):
        path = os.path.join(self.tmp, "shops.json")
        doc = {"shops": [{"platform": pl, "domain": d, "api_base": self.sim,
                          "access_token": "tok-" + d, "webhook_secret": "s",
                          "api_version": "2025-01" if pl == "shopify" else "v20240301",
                          "locations": [{"id": lid, "name": n, "ledger": n} for n, lid in locs]}
                         for pl, d, locs in shops]}
        json.dump(doc, open(path, "w"))
        return path

    def start_svc(self, name, env_extra, wait_s=60):
        """Start shop-connector; wait_s: how long it may take to listen (it listens once the
        catalogue is synced, which takes from the shop's bucket at the configured plan)."""
        logf = os.path.join(self.tmp, name + ".log")
        skip = os.path.getsize(logf) if os.path.exists(logf) else 0
        env = dict(os.environ, TENANT_ID=self.tenant, HTTP_LISTEN="127.0.0.1:0",
                   TOPIC_PREFIX=self.prefix, DATABASE_URL=self.db, POLL_INTERVAL_MS="0",
                   KAFKA_SESSION_TIMEOUT_MS="6000", PUSH_GROUP_ID=self.run + "-push",
                   **env_extra)
        p = subprocess.Popen([os.path.join(BUILD, "bin/shop-connector")], env=env,
                             stdout=open(logf, "a"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        for _ in range(wait_s * 10):
            m = re.findall(r'"msg":"listening".*?"address":"([^"]*)"', open(logf).read()[skip:])
            if m:
                self.svcs[name] = (p, "http://" + m[-1])
                return p, "http://" + m[-1]
            if p.poll() is not None:
                raise Fail("%s exited at start:\n%s" % (name, open(logf).read()[-3000:]))
            time.sleep(0.1)
        raise Fail("%s did not listen" % name)

    def stop_svc(self, name, kill=False):
        p, _ = self.svcs.pop(name)
        if kill:
            p.kill()
            p.wait(10)
            return
        p.send_signal(signal.SIGTERM)
        if p.wait(30) != 0:
            raise Fail("%s exited %s after SIGTERM" % (name, p.returncode))

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()

    def dump_logs(self):
        for f in sorted(os.listdir(self.tmp)):
            if f.endswith(".log"):
                sys.stderr.write("---- %s\n%s\n" % (f, open(os.path.join(self.tmp, f)).read()[-4000:]))

    # ---- levels
    def keys_file(self, keys, name="keys.txt"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            for k in keys:
                f.write(" ".join(k) + "\n")
        return path

    def burst(self, keyfile, n, seconds, seed, base, wait=True):
        final = os.path.join(self.tmp, "final.%d" % base)
        env = dict(os.environ, TOPIC_PREFIX=self.prefix)
        p = subprocess.Popen([os.path.join(BUILD, "bin/shop_levels"), "burst", keyfile, str(n),
                              str(seconds), str(seed), str(base), final], env=env)
        if not wait:
            return p, final
        if p.wait() != 0:
            raise Fail("shop_levels burst failed")
        return self.read_final(final)

    @staticmethod
    def read_final(path):
        out = {}
        for line in open(path):
            item, loc, q = line.split()
            out[(item, loc)] = int(q)
        return out

    def script(self, lines):
        env = dict(os.environ, TOPIC_PREFIX=self.prefix)
        r = subprocess.run([os.path.join(BUILD, "bin/shop_levels"), "script"], env=env,
                           input="\n".join(lines) + "\n", text=True)
        if r.returncode != 0:
            raise Fail("shop_levels script failed")

    def level_sku_only(self, platform, shop, loc, sku, available, version):
        """One channel level record naming the SKU but no inventory item (the connector
        resolves it in the catalogue), hand-encoded protobuf, produced with kcat."""
        def varint(n):
            out = b""
            n &= (1 << 64) - 1
            while True:
                b = n & 0x7F
                n >>= 7
                if n:
                    out += bytes([b | 0x80])
                else:
                    return out + bytes([b])

        def text(field, v):
            v = v.encode()
            return varint(field << 3 | 2) + varint(len(v)) + v

        def num(field, v):
            return varint(field << 3) + varint(v)

        lv = (text(1, sku) + text(2, "%s-%s" % (platform, loc)) + num(3, 3)
              + num(4, 1 if platform == "shopify" else 2) + text(5, shop) + text(6, loc)
              + num(8, available) + num(14, available) + num(15, version)
              + num(16, int(time.time() * 1000)))
        path = os.path.join(self.tmp, "level-%d.bin" % version)
        with open(path, "wb") as f:
            f.write(varint(2 << 3 | 2) + varint(len(lv)) + lv)  # level = 2
        r = subprocess.run(["kcat", "-b", self.brokers, "-P", "-t",
                            self.prefix + "inventory.levels.v1", "-k",
                            "%s-%s/%s" % (platform, loc, sku), path], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise Fail("kcat produce failed: %s" % r.stderr)

    def platform_levels(self, domain):
        inv = jcall("GET", "%s/_sim/shops/%s/inventory" % (self.sim, domain))["levels"]
        return {(x["inventory_item_id"], x["location_id"]): x["available"] for x in inv}

    def wait_equal(self, domain, want, timeout):
        t0 = time.time()
        while True:
            got = self.platform_levels(domain)
            bad = [(k, v, got.get(k)) for k, v in want.items() if got.get(k) != v]
            if not bad:
                return time.time() - t0
            if time.time() - t0 > timeout:
                raise Fail("%s: %d of %d figures differ after %ds, e.g. %s"
                           % (domain, len(bad), len(want), timeout, bad[:3]))
            time.sleep(0.5)

    def counters(self, domain):
        return jcall("GET", "%s/_sim/shops/%s/counters" % (self.sim, domain))

    def reset_counters(self, domain):
        jcall("POST", "%s/_sim/shops/%s/counters" % (self.sim, domain), {})

    def consume(self, topic):
        """Every record of topic as (key, headers dict)."""
        out = subprocess.run(["kcat", "-b", self.brokers, "-C", "-t", self.prefix + topic, "-e",
                              "-q", "-f", "%k\t%h\n"], capture_output=True, text=True,
                             timeout=120)
        recs = []
        for line in out.stdout.splitlines():
            parts = line.split("\t")
            hdrs = {}
            if len(parts) > 1:
                for kv in parts[1].split(","):
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        hdrs[k] = v
            recs.append((parts[0], hdrs))
        return recs


def main():
    h = Harness("sco")
    try:
        body(h)
    except Fail as e:
        log("FAIL:", e)
        h.dump_logs()
        h.cleanup()
        sys.exit(1)
    h.cleanup()
    log("PASS")


def body(h):
    h.make_db()
    h.start_sim()
    sf, sl = "out-%s.myshopify.com" % h.run, "out-%s.myshopline.com" % h.run
    # Shopify: 100 points/s, bucket 1000 (configured the same in the connector)
    sf_keys, sf_locs = h.sim_shop("shopify", sf, 30, ["Warehouse", "Store A"],
                                  bucket_size=1000, restore_rate=100)
    # Shopline: 4 requests/s, bucket 40, 429 at once when full
    sl_keys, sl_locs = h.sim_shop("shopline", sl, 15, ["Warehouse", "Store A"],
                                  rest_bucket_mode="immediate")
    shops = h.shops_file([("shopify", sf, sf_locs), ("shopline", sl, sl_locs)])
    env = {"SHOPS_FILE": shops, "PUSH_WINDOW_MIN_MS": "100", "PUSH_WINDOW_MAX_MS": "1000",
           "PUSH_CAS_SETTLE_MS": "300", "DRIFT_INTERVAL_MS": "700", "DRIFT_GRACE_MS": "2000",
           "DRIFT_SAMPLE": "200", "SHOPIFY_BUCKET_POINTS": "1000", "SHOPIFY_RESTORE_PER_S": "100",
           "SHOPLINE_BUCKET_REQUESTS": "36", "SHOPLINE_RATE_PER_S": "4"}
    t0 = time.time()
    _, addr = h.start_svc("a", env)
    # the intake's catalogue sync at start does not go through the push bucket: start clean
    time.sleep(1.0)
    for d in (sf, sl):
        h.reset_counters(d)
    keys = sf_keys + sl_keys
    kf = h.keys_file(keys)

    # ---- 1. a burst: final platform figures equal the last published, without throttling
    final = h.burst(kf, 3000, 3, 1, 1000000)
    secs = h.wait_equal(sf, {k: v for k, v in final.items() if k in {(x[2], x[3]) for x in sf_keys}}, 60)
    h.wait_equal(sl, {k: v for k, v in final.items() if k in {(x[2], x[3]) for x in sl_keys}}, 60)
    csf, csl = h.counters(sf), h.counters(sl)
    if csf.get("shopify.graphql.throttled", 0) or csl.get("shopline.rest.throttled", 0):
        raise Fail("throttled during the burst: %s / %s" % (csf, csl))
    if csl.get("shopline.inventory_adjust", 0):
        raise Fail("adjust.json used")
    st = jcall("GET", addr + "/admin/push")
    log("burst of 3000 changes over %d keys on the platforms %.1fs after it ended; "
        "shopify mutations %s, shopline set.json %s" % (len(keys), secs,
        csf.get("shopify.inventorySetQuantities", csf.get("shopify.graphql.inventorySetQuantities")),
        csl.get("shopline.inventory_set")))
    for s in st["shops"]:
        if s["pending"] != 0:
            raise Fail("status says pending after convergence: %s" % s)
    status_path = os.path.join(h.tmp, "status.json")
    json.dump(st, open(status_path, "w"))
    r = subprocess.run([os.path.join(SRC, "tools/contracts/validate-response"),
                        os.path.join(SRC, "services/shop-connector/openapi.yaml"), "GET",
                        "/admin/push", "200", status_path], capture_output=True, text=True)
    if r.returncode != 0:
        raise Fail("GET /admin/push does not match openapi.yaml: %s %s" % (r.stdout, r.stderr))
    m = http("GET", addr + "/metrics")[1].decode()
    if 'shop_push_behind_seconds{shop="shopify/%s"}' % sf not in m:
        raise Fail("/metrics lacks the behind gauge")

    # ---- 2. compare-and-set conflict: a platform sale we have not seen, then a ledger figure
    pl, d, item, loc, sku = sf_keys[0]
    cur = final.get((item, loc), h.platform_levels(sf)[(item, loc)])
    sold = max(cur - 1, 0)
    jcall("POST", "%s/_sim/shops/%s/inventory" % (h.sim, sf),
          {"inventory_item_id": item, "location": loc, "available": sold})
    conflicts0 = h.counters(sf).get("shopify.cas_conflicts", 0)
    h.script(["shopify %s %s %s %s %d %d" % (sf, item, loc, sku, 37, 2000000)])
    h.wait_equal(sf, {(item, loc): 37}, 20)
    if h.counters(sf).get("shopify.cas_conflicts", 0) <= conflicts0:
        raise Fail("no compare-and-set conflict was seen")
    log("compare-and-set conflict (platform %d, we believed %d) resolved to the ledger's 37"
        % (sold, cur))

    # ---- 2b. records naming only the SKU: resolved in the synced catalogue (one batched
    # query), an unknown SKU is dead-lettered UNMAPPED
    pl, d, item3, loc3, sku3 = sf_keys[3]
    h.level_sku_only("shopify", sf, loc3, sku3, 23, 2000100)
    h.level_sku_only("shopify", sf, loc3, "NO-SUCH-SKU", 4, 2000101)
    h.wait_equal(sf, {(item3, loc3): 23}, 20)
    t1 = time.time()
    while not [x for x in h.consume("inventory.levels.v1.dlq")
               if x[1].get("dlq_error_code") == "UNMAPPED"]:
        if time.time() - t1 > 20:
            raise Fail("a level of an unknown SKU was not dead-lettered UNMAPPED")
        time.sleep(0.5)
    log("SKU-only levels: known SKU written to its item (23), unknown SKU dead-lettered")

    # ---- 3. a permanent rejection: unknown item → dead letter + PAYLOAD_REJECTED
    h.script(["shopify %s %s %s %s %d %d" % (sf, "999999999999", loc, "NOPE", 3, 2000001)])
    t1 = time.time()
    while True:
        dlq = [x for x in h.consume("inventory.levels.v1.dlq")
               if x[1].get("dlq_error_code") == "INVALID_INVENTORY_ITEM"]
        exc = [x for x in h.consume("recon.exceptions.v1") if x[0].startswith("push/")]
        if dlq and exc:
            break
        if time.time() - t1 > 20:
            raise Fail("rejected figure not dead-lettered / raised: dlq %s exc %s" % (dlq, exc))
        time.sleep(0.5)
    log("unknown item dead-lettered (INVALID_INVENTORY_ITEM) and raised")

    # ---- 4. drift: a merchant edit on the platform is found, corrected and cleared
    pl, d, item2, loc2, sku2 = sf_keys[5]
    want2 = h.platform_levels(sf)[(item2, loc2)]
    jcall("POST", "%s/_sim/shops/%s/inventory" % (h.sim, sf),
          {"inventory_item_id": item2, "location": loc2, "available": want2 + 50})
    h.wait_equal(sf, {(item2, loc2): want2}, 30)
    t1 = time.time()
    while True:
        ex = [x for x in h.consume("recon.exceptions.v1")
              if x[0] == "drift/shopify/%s/%s/%s" % (sf, item2, loc2)]
        if len(ex) >= 2:
            break
        if time.time() - t1 > 20:
            raise Fail("drift raised/cleared records: %s" % ex)
        time.sleep(0.5)
    log("drift of +50 raised STOCK_DRIFT, corrected to %d, then cleared" % want2)

    # ---- 5. kill -9 in the middle of a burst loses nothing
    p, fpath = h.burst(kf, 3000, 4, 2, 3000000, wait=False)
    time.sleep(1.5)
    h.stop_svc("a", kill=True)
    time.sleep(0.5)
    _, addr = h.start_svc("a", env)
    if p.wait() != 0:
        raise Fail("burst producer failed")
    final = h.read_final(fpath)
    secs = h.wait_equal(sf, {k: v for k, v in final.items() if k in {(x[2], x[3]) for x in sf_keys}}, 90)
    h.wait_equal(sl, {k: v for k, v in final.items() if k in {(x[2], x[3]) for x in sl_keys}}, 90)
    log("kill -9 mid-burst: all %d figures right %.1fs after the restart's burst ended"
        % (len(final), secs))

    # ---- 6. two replicas + a loyalty-style client on one Shopline bucket: no 429
    _, addr_b = h.start_svc("b", env)
    time.sleep(7)  # the group rebalance of the mock cluster
    h.reset_counters(sl)
    key = "tillsync:rl:%s:%s:rest" % (h.tenant, sl)
    client = subprocess.Popen([os.path.join(BUILD, "bin/shop_rl_client"),
                               "%s/admin/openapi/v20240301/locations.json" % h.sim,
                               "Authorization: Bearer tok-" + sl, key, "36", "4", "10"],
                              stdout=subprocess.PIPE, text=True)
    # the intake's missed-webhook poll (and any catalogue page) of both replicas runs during the
    # burst: its REST calls take from the same bucket, or the platform would answer 429
    polling = threading.Event()
    polls = []

    def poller():
        while not polling.is_set():
            for a in (addr, addr_b):
                try:
                    polls.append(jcall("POST", a + "/admin/poll", {}))
                except Exception as e:  # a 503 (no budget within the wait) is not a failure here
                    polls.append(str(e))
            polling.wait(1.0)
    pt = threading.Thread(target=poller)
    pt.start()
    t_start = time.time()
    try:
        final = h.burst(h.keys_file(sl_keys, "sl.txt"), 600, 3, 3, 5000000)
    finally:
        polling.set()
        pt.join()
    out, _ = client.communicate(timeout=60)
    h.wait_equal(sl, final, 90)
    elapsed = time.time() - t_start
    c = h.counters(sl)
    calls = c.get("shopline.rest.calls", 0)
    log("shared bucket: %s calls (%s order-list polls) in %.1fs (ceiling %d), throttled %s; "
        "client %s" % (calls, sum(v for k, v in c.items() if k.startswith("shopline.rest.GET") and "orders" in k),
           elapsed, 40 + 4 * elapsed,
                       c.get("shopline.rest.throttled", 0), out.strip()))
    if sum(1 for x in polls if isinstance(x, dict)) < 2:
        raise Fail("the polls during the burst did not run: %s" % polls[:4])
    if c.get("shopline.rest.throttled", 0) != 0 or "throttled=0" not in out:
        raise Fail("the shared bucket was exceeded: %s" % c)
    if calls > 40 + 4 * elapsed + 1:
        raise Fail("more calls than the bucket allows: %s in %.1fs" % (calls, elapsed))
    sa = jcall("GET", addr + "/admin/push")["shops"]
    sb = jcall("GET", addr_b + "/admin/push")["shops"]
    log("replica keys (a, b): %s, %s" % ([s["keys"] for s in sa], [s["keys"] for s in sb]))
    h.stop_svc("b")
    h.stop_svc("a")
    log("total %.0fs" % (time.time() - t0))


if __name__ == "__main__":
    main()
