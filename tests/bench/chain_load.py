#!/usr/bin/env python3
"""chain_load — till sales at a steady rate against a running suite, each timed from the till's
request to the platform figure updated (used by tests/bench/chain; Python 3 stdlib only).

  chain_load.py --work DIR --pos URL --sim URL [--rate 10] [--seconds 60]

DIR is a storeday work directory (tests/sim/storeday prepare + seed done, services running).
Sale i sells one unit of a (store, SKU) pair no other sale of the run touches, so the Shopify
level of that store and SKU changes exactly once because of it: the latency is the time from
sending the sale to the simulator showing the level one lower. Prints one JSON line:
{"sent", "seconds", "rate", "p50_ms", "p99_ms", "max_ms", "lost"}.
"""
import argparse
import json
import os
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone


def http(method, url, body=None, headers=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def level(sim, shop, loc_id, sku):
    st, b = http("GET", "%s/_sim/shops/%s/inventory?sku=%s" % (sim, shop, sku))
    if st != 200:
        return None
    for lv in b["levels"]:
        if lv["location_id"] == loc_id:
            return lv["available"]
    return None


def pct(v, p):
    if not v:
        return 0.0
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--pos", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=60, help="longest wait for one figure")
    a = ap.parse_args()
    c = json.load(open(os.path.join(a.work, "chain.json")))
    shop = next(s for s in c["shops"] if s["platform"] == "shopify")
    pairs = [(st, sku) for sku in c["skus"] for st in c["stores"]]
    n = min(len(pairs), int(a.rate * a.seconds))
    lat, lost, lock = [], [], threading.Lock()

    def one(i, st, sku):
        loc = shop["locations"][st]
        before = level(a.sim, shop["domain"], loc, sku)
        price = c["prices"][sku]
        txn = {"transaction_id": "BENCH-%s-%06d" % (c["tag"], i), "store_code": st,
               "till_id": "T9", "kind": "sale", "currency": "EUR",
               "occurred_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"),
               "lines": [{"line_id": "L1", "sku": sku, "quantity": 1, "unit_price": price}],
               "total": price, "tenders": [{"type": "card", "amount": price}]}
        t0 = time.time()
        for _ in range(20):
            status, _ = http("POST", a.pos.rstrip("/") + "/v1/transactions", txn,
                             {"Authorization": "Bearer " + c["keys"][st]})
            if status in (200, 202):
                break
            time.sleep(0.2)
        else:
            with lock:
                lost.append(i)
            return
        while time.time() - t0 < a.timeout:
            now = level(a.sim, shop["domain"], loc, sku)
            if before is not None and now is not None and now <= before - 1:
                with lock:
                    lat.append((time.time() - t0) * 1000.0)
                return
            time.sleep(0.02)
        with lock:
            lost.append(i)

    threads, start = [], time.time()
    for i in range(n):
        due = start + i / a.rate
        time.sleep(max(0.0, due - time.time()))
        st, sku = pairs[i]
        t = threading.Thread(target=one, args=(i, st, sku), daemon=True)
        t.start()
        threads.append(t)
    sent_for = time.time() - start
    for t in threads:
        t.join()
    print(json.dumps({"sent": n, "seconds": round(sent_for, 1),
                      "rate": round(n / sent_for, 1) if sent_for > 0 else 0.0,
                      "p50_ms": round(pct(lat, 50)), "p99_ms": round(pct(lat, 99)),
                      "max_ms": round(max(lat) if lat else 0), "lost": len(lost)}))
    return 0 if not lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
