#!/usr/bin/env python3
"""Self-tests of the platform simulator (unittest, standard library only).

Starts tests/sim/platform-sim as a subprocess on a free port, plus a tiny local webhook
receiver, and checks what a client of the real platforms relies on: signatures verified
the way a receiver does, compare-and-set conflicts, throttling, ids beyond 2^53 and
26-digit ids in the raw JSON text, retries after a 500, and misbehaviour rates with a
fixed seed. Run: python3 tests/sim/test_sim.py"""

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = os.path.join(HERE, "platform-sim")
SF_VERSION = "2024-10"
SL_VERSION = "v20240301"


class Receiver:
    """Local webhook endpoint recording raw deliveries; can fail chosen attempts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = []                # (headers dict lower-case, raw body, status answered)
        self.fail_first_per_id = False
        self.seen = set()
        recv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                wid = hdrs.get("x-shopify-webhook-id") or hdrs.get("x-shopline-webhook-id")
                status = 200
                with recv.lock:
                    if recv.fail_first_per_id and wid not in recv.seen:
                        status = 500
                    recv.seen.add(wid)
                    recv.got.append((hdrs, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def clear(self):
        with self.lock:
            self.got = []
            self.seen = set()
            self.fail_first_per_id = False

    def items(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def http(method, url, body=None, headers=None, raw=False):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, hdrs, text = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, dict(e.headers), e.read()
    if raw:
        return status, hdrs, text
    return status, hdrs, (json.loads(text) if text else None)


class SimTest(unittest.TestCase):
    proc = None
    base = None
    recv = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="simtest")
        port_file = os.path.join(cls.tmp, "port")
        cls.proc = subprocess.Popen([sys.executable, SIM, "--port", "0", "--port-file", port_file,
                                     "--seed", "42", "--time-factor", "0.001", "--workers", "16"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while not os.path.exists(port_file):
            if time.time() > deadline or cls.proc.poll() is not None:
                raise RuntimeError("simulator did not start")
            time.sleep(0.05)
        with open(port_file) as fh:
            cls.base = "http://127.0.0.1:%d" % int(fh.read())
        cls.recv = Receiver()

    @classmethod
    def tearDownClass(cls):
        cls.recv.close()
        cls.proc.terminate()
        try:
            cls.proc.wait(5)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()

    def setUp(self):
        self.recv.clear()
        self.ctl("POST", "/_sim/reset", {"seed": 42})

    # -- helpers
    def ctl(self, method, path, body=None, expect=None):
        st, _, obj = http(method, self.base + path, body)
        if expect is not None:
            self.assertEqual(st, expect, obj)
        elif st >= 400:
            self.fail("%s %s -> %d %s" % (method, path, st, obj))
        return obj

    def shop(self, platform, domain, **kw):
        spec = {"platform": platform, "domain": domain, "token": "tok-" + domain,
                "webhook_secret": "s3cret-" + domain, "locations": ["Store A", "Warehouse"]}
        spec.update(kw)
        self.ctl("POST", "/_sim/shops", spec)
        cat = self.ctl("POST", "/_sim/shops/%s/catalog" % domain, {"products": [
            {"title": "Tee", "variants": [{"sku": "TEE-S", "barcode": "4006381333931", "price": "19.90"},
                                          {"sku": "TEE-M", "price": "19.90", "requires_shipping": False}]},
            {"title": "Mug", "variants": [{"sku": "MUG", "price": "7.50", "tracked": False}]}],
            "inventory": [{"sku": "TEE-S", "location": "Store A", "available": 10},
                          {"sku": "TEE-S", "location": "Warehouse", "available": 5},
                          {"sku": "TEE-M", "location": "Store A", "available": 3}]})
        return cat

    def gql(self, domain, query, variables=None, token=None):
        return http("POST", self.base + "/admin/api/%s/graphql.json" % SF_VERSION,
                    {"query": query, "variables": variables or {}},
                    {"X-Shopify-Access-Token": token or "tok-" + domain})

    def sl(self, domain, method, path, body=None):
        return http(method, self.base + "/admin/openapi/%s/%s" % (SL_VERSION, path), body,
                    {"Authorization": "Bearer tok-" + domain})

    def level(self, domain, sku, location):
        inv = self.ctl("GET", "/_sim/shops/%s/inventory?sku=%s" % (domain, sku))["levels"]
        return next(x["available"] for x in inv if x["location"] == location)

    def wait_idle(self):
        r = self.ctl("GET", "/_sim/webhooks/wait?timeout=20")
        self.assertTrue(r["idle"], r)

    def iid(self, cat, sku):
        for p in cat["products"]:
            for v in p["variants"]:
                if v["sku"] == sku:
                    return v
        raise KeyError(sku)

    def loc_gid(self, domain, name):
        locs = self.ctl("GET", "/_sim/shops/%s/locations" % domain)["locations"]
        return next(x for x in locs if x["name"] == name)

    # -- signatures
    def test_shopify_webhook_signature_verifies_like_a_receiver(self):
        d = "sig.myshopify.com"
        self.shop("shopify", d, webhook_url=self.recv.url)
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-S", "quantity": 1}],
                                                       "customer": {"email": "A@x.io"}})
        self.wait_idle()
        got = self.recv.items()
        self.assertEqual(sorted(h["x-shopify-topic"] for h, _, _ in got), ["orders/create", "orders/paid"])
        for h, body, _ in got:
            for name in ("x-shopify-hmac-sha256", "x-shopify-shop-domain", "x-shopify-webhook-id",
                         "x-shopify-event-id", "x-shopify-triggered-at", "x-shopify-api-version"):
                self.assertIn(name, h)
            self.assertEqual(h["x-shopify-shop-domain"], d)
            self.assertEqual(h["x-shopify-api-version"], SF_VERSION)
            want = base64.b64encode(hmac.new(("s3cret-" + d).encode(), body, hashlib.sha256).digest())
            self.assertTrue(hmac.compare_digest(want, h["x-shopify-hmac-sha256"].encode()))
            # a one-byte change and a wrong secret must not verify
            bad = bytearray(body)
            bad[len(bad) // 2] ^= 1
            self.assertFalse(hmac.compare_digest(
                base64.b64encode(hmac.new(("s3cret-" + d).encode(), bytes(bad), hashlib.sha256).digest()),
                h["x-shopify-hmac-sha256"].encode()))
            self.assertFalse(hmac.compare_digest(
                base64.b64encode(hmac.new(b"wrong", body, hashlib.sha256).digest()),
                h["x-shopify-hmac-sha256"].encode()))

    def test_shopline_signature_hex_and_base64(self):
        for enc in ("hex", "base64"):
            self.recv.clear()
            d = "sl%s.myshopline.com" % enc
            self.shop("shopline", d, webhook_url=self.recv.url, hmac_encoding=enc)
            self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-S"}], "financial_status": "pending"})
            self.wait_idle()
            got = self.recv.items()
            self.assertEqual(len(got), 1)
            h, body, _ = got[0]
            self.assertEqual(h["x-shopline-topic"], "orders/create")
            for name in ("x-shopline-shop-domain", "x-shopline-shop-id", "x-shopline-merchant-id",
                         "x-shopline-api-version", "x-shopline-webhook-id"):
                self.assertIn(name, h)
            mac = hmac.new(("s3cret-" + d).encode(), body, hashlib.sha256).digest()
            want = mac.hex() if enc == "hex" else base64.b64encode(mac).decode()
            self.assertTrue(hmac.compare_digest(want, h["x-shopline-hmac-sha256"]))

    def test_secret_rotation_signs_with_old_or_new_then_new(self):
        d = "rot.myshopify.com"
        self.shop("shopify", d, webhook_url=self.recv.url)
        self.ctl("POST", "/_sim/shops/%s/config" % d, {"webhook_secret": "new", "rotation_window": 1.5})
        for _ in range(20):
            self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "MUG"}], "financial_status": "pending"})
        self.wait_idle()
        seen = set()
        for h, body, _ in self.recv.items():
            sig = h["x-shopify-hmac-sha256"]
            for name, sec in (("old", "s3cret-" + d), ("new", "new")):
                if hmac.compare_digest(base64.b64encode(hmac.new(sec.encode(), body, hashlib.sha256).digest()).decode(), sig):
                    seen.add(name)
        self.assertEqual(seen, {"old", "new"})
        time.sleep(1.6)
        self.recv.clear()
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "MUG"}], "financial_status": "pending"})
        self.wait_idle()
        h, body, _ = self.recv.items()[0]
        self.assertEqual(h["x-shopify-hmac-sha256"],
                         base64.b64encode(hmac.new(b"new", body, hashlib.sha256).digest()).decode())

    # -- ids in raw text
    def test_ids_exact_in_raw_json_text(self):
        d = "ids.myshopify.com"
        self.shop("shopify", d, webhook_url=self.recv.url)
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-S"}], "financial_status": "pending"})
        self.wait_idle()
        raw = self.recv.items()[0][1].decode()
        ids = [int(x) for x in re.findall(r'"id":(\d+)[,}]', raw)]
        self.assertTrue(ids)
        for i in ids:
            self.assertGreater(i, 2 ** 53)
            self.assertNotEqual(int(float(i)), i, "id must not survive a double round trip")
        self.assertIn('"admin_graphql_api_id":"gid://shopify/Order/', raw)

        sd = "ids.myshopline.com"
        self.shop("shopline", sd)
        st, _, text = http("GET", self.base + "/admin/openapi/%s/products/products.json" % SL_VERSION,
                           headers={"Authorization": "Bearer tok-" + sd}, raw=True)
        self.assertEqual(st, 200)
        text = text.decode()
        nums = re.findall(r'"(?:id|product_id|inventory_item_id)":(\d+)[,}]', text)
        self.assertTrue(nums)
        for n in nums:
            self.assertEqual(len(n), 26)
            self.assertGreater(int(n), 2 ** 64)
        # string style is available too
        self.ctl("POST", "/_sim/shops/%s/config" % sd, {"id_style": "string"})
        _, _, text = http("GET", self.base + "/admin/openapi/%s/products/products.json" % SL_VERSION,
                          headers={"Authorization": "Bearer tok-" + sd}, raw=True)
        self.assertRegex(text.decode(), r'"id":"\d{26}"')

    # -- compare-and-set, batching, idempotency
    def test_inventory_compare_and_set(self):
        d = "cas.myshopify.com"
        cat = self.shop("shopify", d)
        v = self.iid(cat, "TEE-S")
        loc = self.loc_gid(d, "Store A")["gid"]
        m = ("mutation s($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) "
             "{ inventoryAdjustmentGroup { id changes { name delta } } userErrors { field code message } } }")
        inp = {"name": "available", "reason": "correction", "referenceDocumentUri": "tillsync://x/1",
               "quantities": [{"inventoryItemId": v["inventory_item_gid"], "locationId": loc,
                               "quantity": 4, "compareQuantity": 9}]}
        st, _, r = self.gql(d, m, {"input": inp})
        self.assertEqual(st, 200)
        errs = r["data"]["inventorySetQuantities"]["userErrors"]
        self.assertEqual(errs[0]["code"], "COMPARE_QUANTITY_STALE")
        self.assertEqual(errs[0]["field"], ["input", "quantities", "0", "compareQuantity"])
        self.assertEqual(self.level(d, "TEE-S", "Store A"), 10)
        inp["quantities"][0]["compareQuantity"] = 10
        st, _, r = self.gql(d, m, {"input": inp})
        self.assertEqual(r["data"]["inventorySetQuantities"]["userErrors"], [])
        self.assertEqual(r["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"][0]["delta"], -6)
        self.assertEqual(self.level(d, "TEE-S", "Store A"), 4)
        self.assertEqual(r["extensions"]["cost"]["actualQueryCost"], 10)
        # a sale on the platform makes the next write stale
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"source": "pos", "location": "Store A",
                                                       "lines": [{"sku": "TEE-S", "quantity": 1}]})
        inp["quantities"][0].update(quantity=8, compareQuantity=4)
        _, _, r = self.gql(d, m, {"input": inp})
        self.assertEqual(r["data"]["inventorySetQuantities"]["userErrors"][0]["code"], "COMPARE_QUANTITY_STALE")
        self.assertEqual(self.level(d, "TEE-S", "Store A"), 3)
        # missing compareQuantity is refused; ignoreCompareQuantity opts out
        inp2 = dict(inp, quantities=[{"inventoryItemId": v["inventory_item_gid"], "locationId": loc, "quantity": 2}])
        _, _, r = self.gql(d, m, {"input": inp2})
        self.assertEqual(r["data"]["inventorySetQuantities"]["userErrors"][0]["code"], "COMPARE_QUANTITY_REQUIRED")
        # one bad quantity fails the whole batch: nothing changes
        other = self.iid(cat, "TEE-M")
        inp3 = dict(inp, quantities=[
            {"inventoryItemId": other["inventory_item_gid"], "locationId": loc, "quantity": 1, "compareQuantity": 3},
            {"inventoryItemId": v["inventory_item_gid"], "locationId": loc, "quantity": 1, "compareQuantity": 99}])
        _, _, r = self.gql(d, m, {"input": inp3})
        self.assertEqual(len(r["data"]["inventorySetQuantities"]["userErrors"]), 1)
        self.assertEqual(self.level(d, "TEE-M", "Store A"), 3)
        counters = self.ctl("GET", "/_sim/shops/%s/counters" % d)
        self.assertEqual(counters["shopify.cas_conflicts"], 3)

    def test_inventory_batch_limit_and_idempotency(self):
        d = "idem.myshopify.com"
        cat = self.shop("shopify", d)
        v = self.iid(cat, "TEE-S")
        loc = self.loc_gid(d, "Warehouse")["gid"]
        q = {"inventoryItemId": v["inventory_item_gid"], "locationId": loc, "quantity": 1, "compareQuantity": 5}
        big = {"name": "available", "reason": "correction", "quantities": [q] * 251}
        m = ("mutation s($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) "
             "@idempotent(key: \"%s\") { inventoryAdjustmentGroup { id } userErrors { code } } }")
        _, _, r = self.gql(d, m % "k0", {"input": big})
        self.assertEqual(r["errors"][0]["extensions"]["code"], "MAX_INPUT_SIZE_EXCEEDED")
        self.assertEqual(self.level(d, "TEE-S", "Warehouse"), 5)
        one = {"name": "available", "reason": "correction", "quantities": [q]}
        _, _, r1 = self.gql(d, m % "k1", {"input": one})
        _, _, r2 = self.gql(d, m % "k1", {"input": one})
        g1 = r1["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["id"]
        self.assertEqual(g1, r2["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["id"])
        self.assertEqual(r2["data"]["inventorySetQuantities"]["userErrors"], [])
        self.assertEqual(self.level(d, "TEE-S", "Warehouse"), 1)
        changed = {"name": "available", "reason": "correction", "quantities": [dict(q, quantity=2)]}
        _, _, r3 = self.gql(d, m % "k1", {"input": changed})
        self.assertEqual(r3["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
                         "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")
        c = self.ctl("GET", "/_sim/shops/%s/counters" % d)
        self.assertEqual(c["shopify.inventory_mutations_ok"], 1)

    # -- throttling
    def test_shopify_cost_throttling(self):
        d = "thr.myshopify.com"
        cat = self.shop("shopify", d, bucket_size=50, restore_rate=10)
        v = self.iid(cat, "TEE-M")
        loc = self.loc_gid(d, "Warehouse")["gid"]
        m = ("mutation s($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) "
             "{ userErrors { code } } }")
        inp = {"name": "available", "reason": "correction",
               "quantities": [{"inventoryItemId": v["inventory_item_gid"], "locationId": loc,
                               "quantity": 0, "ignoreCompareQuantity": True}], "ignoreCompareQuantity": True}
        results = [self.gql(d, m, {"input": inp}) for _ in range(6)]
        ok = [r for r in results if "data" in r[2]]
        thr = [r for r in results if r[2].get("errors") and r[2]["errors"][0]["message"] == "Throttled"]
        self.assertGreaterEqual(len(ok), 5)
        self.assertEqual(len(thr), 1)
        st, _, body = thr[0]
        self.assertEqual(st, 200)
        self.assertEqual(body["errors"][0]["extensions"]["code"], "THROTTLED")
        cost = body["extensions"]["cost"]
        self.assertIsNone(cost["actualQueryCost"])
        self.assertEqual(cost["requestedQueryCost"], 10)
        self.assertEqual(cost["throttleStatus"]["maximumAvailable"], 50.0)
        self.assertEqual(cost["throttleStatus"]["restoreRate"], 10.0)
        self.assertLess(cost["throttleStatus"]["currentlyAvailable"], 10)
        time.sleep(1.1)
        st, _, body = self.gql(d, m, {"input": inp})
        self.assertIn("data", body)
        c = self.ctl("GET", "/_sim/shops/%s/counters" % d)
        self.assertEqual(c["shopify.graphql.throttled"], 1)
        self.assertEqual(c["shopify.graphql.calls"], 7)
        # requested cost of a connection: 2 + first x node cost; refunds down to actual
        self.ctl("POST", "/_sim/shops/%s/config" % d, {"restore_rate": 1000})
        time.sleep(0.1)
        _, _, body = self.gql(d, "{ products(first: 3) { edges { node { id } } } }")
        self.assertEqual(body["extensions"]["cost"]["requestedQueryCost"], 5)
        self.assertEqual(body["extensions"]["cost"]["actualQueryCost"], 4)
        _, _, body = self.gql(d, "{ products(first: 250) { edges { node { id variants(first: 250) "
                                 "{ edges { node { id } } } } } } }")
        self.assertEqual(body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED")
        # forced throttling fault
        self.ctl("POST", "/_sim/shops/%s/faults" % d, {"kind": "throttle", "seconds": 0.3})
        _, _, body = self.gql(d, "{ shop { name } }")
        self.assertEqual(body["errors"][0]["extensions"]["code"], "THROTTLED")

    def test_shopline_rate_limit_429(self):
        d = "rl.myshopline.com"
        self.shop("shopline", d, rest_bucket_mode="immediate")
        codes = [self.sl(d, "GET", "locations.json")[0] for _ in range(45)]
        self.assertIn(429, codes)
        self.assertEqual(codes[:40], [200] * 40)
        st, hdrs, body = self.sl(d, "GET", "locations.json")
        self.assertEqual((st, body), (429, {"errors": "Too many request"}))
        self.assertNotIn("Retry-After", hdrs)
        self.ctl("POST", "/_sim/shops/%s/config" % d, {"retry_after": 2})
        st, hdrs, _ = self.sl(d, "GET", "locations.json")
        self.assertEqual(st, 429)
        self.assertEqual(hdrs.get("Retry-After"), "2")
        c = self.ctl("GET", "/_sim/shops/%s/counters" % d)
        self.assertGreaterEqual(c["shopline.rest.throttled"], 6)
        # queue mode (documented): admitted requests are paced at the leak rate
        q = "rlq.myshopline.com"
        self.shop("shopline", q, rest_rate=10)
        t0 = time.time()
        for _ in range(6):
            self.assertEqual(self.sl(q, "GET", "locations.json")[0], 200)
        self.assertGreaterEqual(time.time() - t0, 0.45)

    def test_shopline_inventory_and_orders(self):
        d = "inv.myshopline.com"
        cat = self.shop("shopline", d, rest_bucket_mode="immediate")
        v = self.iid(cat, "TEE-S")
        loc = self.loc_gid(d, "Store A")["id"]
        st, _, r = self.sl(d, "POST", "inventory_levels/set.json",
                           {"inventory_item_id": v["inventory_item_id"], "location_id": loc, "available": 42})
        self.assertEqual(st, 200, r)
        self.assertEqual(r["inventory_level"]["available"], 42)
        st, _, r = self.sl(d, "POST", "inventory_levels/adjust.json",
                           {"inventory_item_id": v["inventory_item_id"], "location_id": loc,
                            "available_adjustment": -2})
        self.assertEqual(r["inventory_level"]["available"], 40)
        st, _, r = self.sl(d, "GET", "inventory_levels.json?inventory_item_ids=%s" % v["inventory_item_id"])
        self.assertEqual(sorted(x["available"] for x in r["inventory_levels"]), [5, 40])
        st, _, r = self.sl(d, "POST", "inventory_levels/set.json", {"inventory_item_id": "1", "location_id": loc, "available": 1})
        self.assertEqual(st, 404)
        t0 = time.time()
        time.sleep(0.01)
        for _ in range(3):
            self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-M"}]})
        st, hdrs, r = self.sl(d, "GET", "orders.json?limit=2&updated_at_min=%s" %
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 1)))
        self.assertEqual(len(r["orders"]), 2)
        self.assertIn('rel="next"', hdrs.get("Link", ""))
        nxt = re.search(r"<([^>]+)>", hdrs["Link"]).group(1)
        nxt = nxt.split("/admin/openapi/", 1)[1]
        st, _, r2 = http("GET", self.base + "/admin/openapi/" + nxt, headers={"Authorization": "Bearer tok-" + d})
        self.assertEqual(len(r2["orders"]), 1)

    # -- webhook delivery behaviour
    def test_webhook_retry_after_500(self):
        d = "retry.myshopify.com"
        self.shop("shopify", d, webhook_url=self.recv.url)
        self.recv.fail_first_per_id = True
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-S"}], "financial_status": "pending"})
        self.wait_idle()
        got = self.recv.items()
        self.assertEqual([s for _, _, s in got], [500, 200])
        (h1, b1, _), (h2, b2, _) = got
        self.assertEqual(b1, b2)
        for k in ("x-shopify-webhook-id", "x-shopify-event-id", "x-shopify-triggered-at"):
            self.assertEqual(h1[k], h2[k])
        log = self.ctl("GET", "/_sim/shops/%s/webhooks" % d)["webhooks"]
        self.assertEqual(log[0]["status"], "delivered")
        self.assertEqual(log[0]["attempts"], 2)
        c = self.ctl("GET", "/_sim/shops/%s/counters" % d)
        self.assertEqual(c["webhooks.retries"], 1)

    def test_webhook_unreachable_is_retried_then_fails(self):
        d = "dead.myshopify.com"
        self.shop("shopify", d, webhook_url="http://127.0.0.1:9/nothing")
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "MUG"}], "financial_status": "pending"})
        self.wait_idle()
        log = self.ctl("GET", "/_sim/shops/%s/webhooks" % d)["webhooks"]
        self.assertEqual(log[0]["status"], "failed")
        self.assertEqual(log[0]["attempts"], 9)   # first attempt + 8 retries

    def test_misbehaviour_rates_and_determinism(self):
        d = "rates.myshopify.com"
        self.shop("shopify", d, webhook_url=self.recv.url, misbehaviour={
            "duplicate": 0.2, "out_of_order": 0.2, "drop": 0.05, "fail_first": 0.05},
            out_of_order_delay=[0.05, 0.3])
        self.ctl("POST", "/_sim/shops/%s/inventory" % d, {"sku": "MUG", "location": "Store A", "available": 0})
        n = 600
        for _ in range(n):
            self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "MUG"}]})
        self.wait_idle()
        log = self.ctl("GET", "/_sim/shops/%s/webhooks" % d)["webhooks"]
        events = len(log)
        self.assertEqual(events, 2 * n)
        frac = lambda k: sum(1 for r in log if r[k]) / events
        self.assertAlmostEqual(frac("dropped"), 0.05, delta=0.02)
        self.assertAlmostEqual(frac("duplicate"), 0.2, delta=0.04)
        self.assertAlmostEqual(frac("out_of_order"), 0.2, delta=0.04)
        self.assertAlmostEqual(frac("fail_first"), 0.05, delta=0.02)
        got = self.recv.items()
        delivered_ids = {h["x-shopify-event-id"] for h, _, _ in got}
        expected_ids = {r["event_id"] for r in log if not r["dropped"]}
        self.assertEqual(delivered_ids, expected_ids)
        dropped = [r for r in log if r["dropped"]]
        self.assertTrue(all(r["event_id"] not in delivered_ids for r in dropped))
        extra = sum(1 for r in log if not r["dropped"] and r["duplicate"]) + \
            sum(1 for r in log if not r["dropped"] and r["fail_first"])
        self.assertEqual(len(got), len(expected_ids) + extra)
        # out of order: some orders/paid arrive before their orders/create
        first_topic = {}
        for h, body, _ in got:
            oid = re.search(rb'"id":(\d+)', body).group(1)
            first_topic.setdefault(oid, h["x-shopify-topic"])
        self.assertGreater(sum(1 for t in first_topic.values() if t == "orders/paid"), 10)
        # polling finds the orders whose webhooks were dropped
        q = "query($c: String) { orders(first: 250, after: $c, query: \"updated_at:>2000-01-01T00:00:00Z\") " \
            "{ edges { node { id updatedAt } } pageInfo { hasNextPage endCursor } } }"
        seen, cursor = set(), None
        self.ctl("POST", "/_sim/shops/%s/config" % d, {"restore_rate": 100000, "bucket_size": 100000})
        while True:
            _, _, r = self.gql(d, q, {"c": cursor})
            conn = r["data"]["orders"]
            seen.update(e["node"]["id"] for e in conn["edges"])
            if not conn["pageInfo"]["hasNextPage"]:
                break
            cursor = conn["pageInfo"]["endCursor"]
        self.assertEqual(len(seen), n)
        # same seed, same sequence -> same fates
        fates1 = [(r["dropped"], r["duplicate"], r["out_of_order"], r["fail_first"]) for r in log]
        self.ctl("POST", "/_sim/reset", {"seed": 42})
        self.shop("shopify", d, misbehaviour={"duplicate": 0.2, "out_of_order": 0.2, "drop": 0.05,
                                               "fail_first": 0.05}, out_of_order_delay=[0.05, 0.3])
        self.ctl("POST", "/_sim/shops/%s/inventory" % d, {"sku": "MUG", "location": "Store A", "available": 0})
        for _ in range(n):
            self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "MUG"}]})
        log2 = self.ctl("GET", "/_sim/shops/%s/webhooks" % d)["webhooks"]
        self.assertEqual(fates1, [(r["dropped"], r["duplicate"], r["out_of_order"], r["fail_first"]) for r in log2])

    # -- order flows
    def test_pos_bopis_refund_flows(self):
        d = "flow.myshopify.com"
        self.shop("shopify", d, webhook_url=self.recv.url)
        pos = self.ctl("POST", "/_sim/shops/%s/orders" % d, {
            "source": "pos", "location": "Store A",
            "lines": [{"sku": "TEE-S", "quantity": 2, "tax_rate": 0.2, "discount": "1.00"}]})["order"]
        self.assertEqual(pos["source_name"], "pos")
        self.assertEqual(pos["location_id"], int(self.loc_gid(d, "Store A")["id"]))
        self.assertEqual(pos["line_items"][0]["tax_lines"][0]["rate"], 0.2)
        self.assertEqual(pos["line_items"][0]["discount_allocations"][0]["amount"], "1.00")
        self.assertEqual(self.level(d, "TEE-S", "Store A"), 8)
        bo = self.ctl("POST", "/_sim/shops/%s/orders" % d, {
            "source": "bopis", "location": "Warehouse", "lines": [{"sku": "TEE-S", "quantity": 1}],
            "customer": {"email": "b@x.io", "phone": "+44 7700 900123"}})
        self.assertEqual(self.level(d, "TEE-S", "Warehouse"), 4)
        self.ctl("POST", "/_sim/shops/%s/orders/%s/ready_for_pickup" % (d, bo["id"]))
        self.ctl("POST", "/_sim/shops/%s/orders/%s/picked_up" % (d, bo["id"]))
        web = self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-S", "quantity": 3}]})
        self.ctl("POST", "/_sim/shops/%s/orders/%s/fulfil" % (d, web["id"]), {"lines": [{"sku": "TEE-S", "quantity": 2}]})
        self.ctl("POST", "/_sim/shops/%s/orders/%s/refund" % (d, web["id"]), {"lines": [
            {"sku": "TEE-S", "quantity": 1, "restock_type": "return", "location": "Warehouse"},
            {"sku": "TEE-S", "quantity": 1, "restock_type": "cancel"},
            {"sku": "TEE-S", "quantity": 1, "restock_type": "no_restock"}]})
        self.assertEqual(self.level(d, "TEE-S", "Warehouse"), 5)
        self.assertEqual(self.level(d, "TEE-S", "Store A"), 8 - 3 + 1)
        bad = http("POST", self.base + "/_sim/shops/%s/orders/%s/refund" % (d, web["id"]),
                   {"lines": [{"sku": "TEE-S", "quantity": 1, "restock_type": "later"}]})
        self.assertEqual(bad[0], 400)
        self.wait_idle()
        topics = [h["x-shopify-topic"] for h, _, _ in self.recv.items()]
        for t in ("fulfillment_orders/line_items_prepared_for_pickup", "fulfillments/create",
                  "orders/fulfilled", "orders/partially_fulfilled", "refunds/create", "orders/updated"):
            self.assertIn(t, topics)
        refund = next(json.loads(b) for h, b, _ in self.recv.items() if h["x-shopify-topic"] == "refunds/create")
        self.assertEqual([x["restock_type"] for x in refund["refund_line_items"]], ["return", "cancel", "no_restock"])
        self.assertIsNone(refund["refund_line_items"][2]["location_id"])
        self.assertEqual(refund["refund_line_items"][0]["location_id"], int(self.loc_gid(d, "Warehouse")["id"]))
        # GraphQL read of the BOPIS order shows the pickup location and method
        _, _, r = self.gql(d, "query($id: ID!) { order(id: $id) { sourceName fulfillmentOrders(first: 5) "
                              "{ nodes { deliveryMethod { methodType } assignedLocation { location { id } } } } } }",
                           {"id": bo["gid"]})
        fo = r["data"]["order"]["fulfillmentOrders"]["nodes"][0]
        self.assertEqual(fo["deliveryMethod"]["methodType"], "PICK_UP")
        self.assertEqual(fo["assignedLocation"]["location"]["id"], self.loc_gid(d, "Warehouse")["gid"])

    # -- loyalty
    def test_loyalty_conflicts(self):
        d = "loy.myshopify.com"
        self.shop("shopify", d, loyalty={"order_window": 0.3, "write_window": 0.1})
        lb = self.base + "/apps/loyalty/api/"
        auth = {"Authorization": "Bearer tok-" + d}
        st, _, r = http("POST", lb + "members", {"email": "Jo@Example.com", "phone": "+44 7700 900123"}, auth)
        self.assertEqual(st, 201)
        mid = r["member"]["id"]
        st, _, r = http("GET", lb + "members?phone=%2B447700900123", headers=auth)
        self.assertEqual(len(r["members"]), 1)
        ver = r["members"][0]["version"]
        self.ctl("POST", "/_sim/shops/%s/orders" % d, {"lines": [{"sku": "TEE-S"}],
                                                       "customer": {"email": "jo@example.com"}})
        st, _, r = http("POST", lb + "members/%s/points" % mid, {"delta": 10, "expected_version": ver + 1}, auth)
        self.assertEqual((st, r["error"]["code"]), (409, "CONCURRENT_UPDATE"))
        time.sleep(0.35)
        st, _, r = http("POST", lb + "members/%s/points" % mid, {"delta": 10, "expected_version": ver}, auth)
        self.assertEqual((st, r["error"]["code"]), (409, "VERSION_CONFLICT"))
        cur = r["error"]["current_version"]
        st, _, r = http("POST", lb + "members/%s/points" % mid, {"delta": 10, "expected_version": cur}, auth)
        self.assertEqual(st, 200, r)
        self.assertEqual(r["member"]["points"], 10)
        st, _, r = http("POST", lb + "members/%s/points" % mid, {"delta": 5, "expected_version": cur + 1}, auth)
        self.assertEqual((st, r["error"]["code"]), (409, "CONCURRENT_UPDATE"))
        st, _, _ = http("GET", lb + "members/%s" % mid, headers={"Authorization": "Bearer nope"})
        self.assertEqual(st, 401)
        # Shopline pointsUpdate: "operation is too frequent" when writes collide
        s = "loy.myshopline.com"
        self.shop("shopline", s, loyalty={"order_window": 0.3, "write_window": 0.5})
        st, _, r = self.sl(s, "POST", "customers.json", {"customer": {"email": "k@x.io", "phone": "+85291234567"}})
        cid = r["customer"]["id"]
        m = ("mutation($i: PointsUpdateInput!) { pointsUpdate(input: $i) { userErrors { code message } } }")
        url = self.base + "/admin/graph/%s/graphql.json" % SL_VERSION
        hdr = {"Authorization": "Bearer tok-" + s}
        inp = {"customerId": str(cid), "points": 7, "pointsUpdateType": "INCREASE"}
        _, _, r = http("POST", url, {"query": m, "variables": {"i": inp}}, hdr)
        self.assertEqual(r["data"]["pointsUpdate"]["userErrors"], [])
        _, _, r = http("POST", url, {"query": m, "variables": {"i": inp}}, hdr)
        self.assertEqual(r["data"]["pointsUpdate"]["userErrors"][0]["message"], "operation is too frequent")
        _, _, r = http("POST", url, {"query": "query($c: ID!) { pointsInfo(customerId: $c) { pointsBalance } }",
                                     "variables": {"c": str(cid)}}, hdr)
        self.assertEqual(r["data"]["pointsInfo"]["pointsBalance"], 7)
        st, _, r = self.sl(s, "GET", "customers/search.json?query=phone:%2B85291234567")
        self.assertEqual(len(r["customers"]), 1)
        # customers/v2/search.json: a fuzzy query_param, newest first, paged with page_info
        self.sl(s, "POST", "customers.json", {"customer": {"email": "K2@x.io", "phone": "+852912345670"}})
        self.sl(s, "POST", "customers.json", {"customer": {"email": "z@x.io", "first_name": "Kay"}})
        st, _, r = self.sl(s, "GET", "customers/v2/search.json?query_param=%2B85291234567")
        self.assertEqual(st, 200, r)
        self.assertEqual([c["phone"] for c in r["customers"]], ["+852912345670", "+85291234567"])
        st, _, r = self.sl(s, "GET", "customers/v2/search.json?query_param=k&limit=2")
        self.assertEqual(len(r["customers"]), 2)
        st, hdr, r = self.sl(s, "GET", "customers/v2/search.json?query_param=k&limit=2")
        pi = re.search(r"page_info=([^&>]+)", hdr.get("Link", ""))
        self.assertTrue(pi, hdr)
        st, hdr, r = self.sl(s, "GET", "customers/v2/search.json?limit=2&page_info=" + pi.group(1))
        self.assertEqual([c["email"] for c in r["customers"]], ["k@x.io"])
        self.assertNotIn("Link", hdr)
        st, _, r = self.sl(s, "GET", "customers/v2/search.json?query=customer_id:%s" % cid)
        self.assertEqual([c["email"] for c in r["customers"]], ["k@x.io"])

    # -- faults and auth
    def test_faults_and_auth(self):
        d = "fault.myshopify.com"
        self.shop("shopify", d)
        st, _, body = self.gql(d, "{ shop { name } }", token="bad")
        self.assertEqual(st, 401)
        self.ctl("POST", "/_sim/shops/%s/faults" % d, {"kind": "5xx", "seconds": 0.4, "status": 502})
        st, _, _ = self.gql(d, "{ shop { name } }")
        self.assertEqual(st, 502)
        time.sleep(0.45)
        st, _, body = self.gql(d, "{ shop { myshopifyDomain } }")
        self.assertEqual((st, body["data"]["shop"]["myshopifyDomain"]), (200, d))
        st, _, body = self.gql(d, "{ shop { name ")
        self.assertIn("errors", body)
        st, _, body = self.gql(d, "{ nosuchfield { id } }")
        self.assertEqual(body["errors"][0]["extensions"]["code"], "undefinedField")


if __name__ == "__main__":
    unittest.main(verbosity=2)
