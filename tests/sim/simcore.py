"""Shop-platform simulator: Shopify (Admin GraphQL + webhooks + a loyalty-app stand-in) and
Shopline (REST Admin OpenAPI + Admin GraphQL points + webhooks), any number of shops in one
process, plus a control API under /_sim/ for tests and the demo.

Standard library only (Python 3.11). See README.md in this directory for the documented
behaviours each part follows and where they were read.
"""

import base64
import datetime
import hashlib
import heapq
import hmac
import json
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request


MAX_BODY = 8 * 1024 * 1024

# Shopify: 8 retries over ~4 hours with exponential backoff (changelog 2024-09-10).
SHOPIFY_RETRY_SCHEDULE = [60, 120, 240, 480, 960, 1920, 3840, 7680]
# Shopline: retried for up to ~48 hours (DESIGN.md); schedule is the simulator's choice.
SHOPLINE_RETRY_SCHEDULE = [10, 30, 60, 300, 600, 1800, 3600, 7200, 14400,
                           21600, 21600, 21600, 21600, 21600, 21600, 21600]

SHOPIFY_PLANS = {
    # restore rates from shopify.dev rate-limits page; bucket sizes are configurable
    # (20 x restore rate by default, see README).
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
    "enterprise": (40000.0, 2000.0),
}
SHOPIFY_MAX_QUERY_COST = 1000
SHOPIFY_REASONS = {
    "correction", "cycle_count_available", "damaged", "movement_canceled", "movement_created",
    "movement_received", "movement_updated", "other", "promotion", "quality_control",
    "received", "reservation_created", "reservation_deleted", "reservation_updated",
    "restock", "safety_stock", "shrinkage",
}
RESTOCK_TYPES = {"return", "cancel", "no_restock"}

SHOPIFY_ID_BASE = 2 ** 53 + 1        # odd and above 2^53: never exact in an IEEE double
SHOPLINE_ID_BASE = 18057039439794751459380283  # 26 digits, beyond 64 bits


# ----------------------------------------------------------------------------- helpers

def iso(ts, precision="ms"):
    """ISO 8601 UTC text of an epoch timestamp, at ms or s precision."""
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    if precision == "s":
        return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d+00:00" % (dt.microsecond // 1000)


def parse_time(text):
    """Epoch seconds of an ISO 8601 text (Z or offset), or None."""
    if not isinstance(text, str) or not text:
        return None
    t = text.strip().strip("'\"")
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.datetime.fromisoformat(t)
    except ValueError:
        try:
            dt = datetime.datetime.strptime(t[:10], "%Y-%m-%d")
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def money(x):
    return "%.2f" % (float(x) + 0.0)


def gid(kind, num):
    return "gid://shopify/%s/%d" % (kind, num)


def gid_num(value):
    """Numeric id from a Shopify GID or a plain number/text, or None."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    m = re.search(r"(\d+)(?:\?.*)?$", value)
    return int(m.group(1)) if m else None


def enc_cursor(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def dec_cursor(text):
    try:
        pad = "=" * (-len(text) % 4)
        return json.loads(base64.urlsafe_b64decode(text + pad))
    except (ValueError, TypeError):
        return None


def norm_email(e):
    return e.strip().lower() if isinstance(e, str) and e.strip() else None


def norm_phone(p):
    if not isinstance(p, str):
        return None
    digits = re.sub(r"\D", "", p)
    return digits or None


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class ApiError(Exception):
    """An HTTP error answer: status, JSON body, extra headers."""

    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


# ----------------------------------------------------------------------------- buckets

class CostBucket:
    """Shopify GraphQL leaky bucket: capacity points, restored continuously at rate/s."""

    def __init__(self, capacity, rate):
        self.lock = threading.Lock()
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.available = float(capacity)
        self.t = time.monotonic()

    def _refill(self):
        now = time.monotonic()
        self.available = min(self.capacity, self.available + (now - self.t) * self.rate)
        self.t = now

    def take(self, cost):
        with self.lock:
            self._refill()
            if self.available < cost:
                return False
            self.available -= cost
            return True

    def refund(self, points):
        with self.lock:
            self._refill()
            self.available = min(self.capacity, self.available + max(0.0, points))

    def status(self):
        with self.lock:
            self._refill()
            return {"maximumAvailable": self.capacity,
                    "currentlyAvailable": int(self.available),
                    "restoreRate": self.rate}

    def configure(self, capacity, rate):
        with self.lock:
            self._refill()
            self.capacity = float(capacity)
            self.rate = float(rate)
            self.available = min(self.available, self.capacity)


class RequestBucket:
    """Shopline REST leaky bucket: capacity requests, leaking at rate/s.

    mode "queue": an admitted request waits for its turn at the leak rate (the
    documented behaviour); mode "immediate": admitted requests run at once.
    Returns the delay to wait, or None when the bucket is full (answer 429)."""

    def __init__(self, capacity=40, rate=4.0, mode="queue"):
        self.lock = threading.Lock()
        self.capacity = capacity
        self.rate = float(rate)
        self.mode = mode
        self.next_free = 0.0
        self.level = 0.0
        self.t = time.monotonic()

    def admit(self):
        with self.lock:
            now = time.monotonic()
            if self.mode == "queue":
                backlog = max(0.0, self.next_free - now) * self.rate
                if backlog + 1 > self.capacity + 1e-9:
                    return None
                slot = max(now, self.next_free)
                self.next_free = slot + 1.0 / self.rate
                return slot - now
            self.level = max(0.0, self.level - (now - self.t) * self.rate)
            self.t = now
            if self.level + 1 > self.capacity + 1e-9:
                return None
            self.level += 1
            return 0.0


# ----------------------------------------------------------------------------- model

class Shop:
    """One simulated shop on one platform, with its catalogue, inventory, orders, members."""

    def __init__(self, sim, spec):
        self.platform = spec.get("platform", "shopify")
        if self.platform not in ("shopify", "shopline"):
            raise ValueError("platform must be shopify or shopline")
        self.domain = spec.get("domain") or ""
        if not self.domain:
            raise ValueError("domain is required")
        self.token = spec.get("token") or ("tok-" + self.domain)
        self.loyalty_token = spec.get("loyalty_token") or self.token
        self.webhook_url = spec.get("webhook_url")
        self.webhook_secret = spec.get("webhook_secret") or "secret"
        self.prev_secret = None
        self.rotation_until = 0.0
        self.topics = spec.get("topics")
        self.api_version = spec.get("api_version") or (
            "2024-10" if self.platform == "shopify" else "v20240301")
        self.currency = spec.get("currency", "EUR")
        self.taxes_included = bool(spec.get("taxes_included", True))
        self.hmac_encoding = spec.get("hmac_encoding", "base64")
        self.id_style = spec.get("id_style", "number")
        self.shop_id = str(spec.get("shop_id") or (1610418000000 + len(sim.shops)))
        self.merchant_id = str(spec.get("merchant_id") or (2000000000 + len(sim.shops)))
        plan = spec.get("plan", "standard")
        cap, rate = SHOPIFY_PLANS.get(plan, SHOPIFY_PLANS["standard"])
        cap = float(spec.get("bucket_size", cap))
        rate = float(spec.get("restore_rate", rate))
        self.bucket = CostBucket(cap, rate)
        self.throttle_http_status = int(spec.get("throttle_http_status", 200))
        self.rest_bucket = RequestBucket(int(spec.get("rest_bucket_size", 40)),
                                         float(spec.get("rest_rate", 4.0)),
                                         spec.get("rest_bucket_mode", "queue"))
        self.retry_after = spec.get("retry_after")
        self.timestamp_precision = spec.get("timestamp_precision", "ms")
        self.misbehaviour = {"duplicate": 0.0, "out_of_order": 0.0, "fail_first": 0.0,
                             "drop": 0.0}
        self.misbehaviour.update(spec.get("misbehaviour") or {})
        self.fail_first_mode = spec.get("fail_first_mode", "lost_response")
        self.ooo_delay = tuple(spec.get("out_of_order_delay", (0.05, 0.5)))
        self.dup_delay = tuple(spec.get("duplicate_delay", (0.0, 0.3)))
        self.webhook_timeout = float(spec.get("webhook_timeout", 5.0))
        self.loyalty = {"conflict_rate": 0.0, "order_window": 1.0, "write_window": 0.2}
        self.loyalty.update(spec.get("loyalty") or {})
        self.idempotency_ttl = float(spec.get("idempotency_ttl", 86400))
        self.locations = {}          # id -> {id, name}
        self.location_keys = {}      # name -> id
        self.products = {}           # id -> product
        self.variants = {}           # id -> variant
        self.items = {}              # inventory item id -> item
        self.sku_index = {}          # sku -> [variant id]
        self.orders = {}             # id -> order
        self.members = {}            # id -> member (loyalty app / Shopline customers)
        self.idem = {}               # key -> (fingerprint, result, time)
        self.counters = {}
        self.faults = {"5xx_until": 0.0, "5xx_status": 503, "throttle_until": 0.0}
        self.webhook_log = []        # delivery records, in trigger order
        self.bodies = {}             # webhook id -> (record, raw body) for resends
        self.order_seq = 1000
        self.adjust_seq = 0

    def public(self):
        return {"platform": self.platform, "domain": self.domain, "token": self.token,
                "webhook_url": self.webhook_url, "api_version": self.api_version,
                "hmac_encoding": self.hmac_encoding, "id_style": self.id_style,
                "shop_id": self.shop_id, "merchant_id": self.merchant_id,
                "bucket": self.bucket.status(), "misbehaviour": dict(self.misbehaviour),
                "loyalty": dict(self.loyalty), "fail_first_mode": self.fail_first_mode,
                "rest_bucket_mode": self.rest_bucket.mode, "retry_after": self.retry_after,
                "locations": [dict(v) for v in self.locations.values()]}


class Delivery:
    __slots__ = ("shop", "topic", "body", "webhook_id", "event_id", "triggered_at", "url",
                 "attempt", "fail_first", "record", "copy")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class Sim:
    """All simulator state; every mutation happens under self.lock."""

    def __init__(self, seed=1, time_factor=1.0, workers=8):
        self.lock = threading.RLock()
        self.seed = seed
        self.rng = random.Random(seed)
        self.side_rng = random.Random(seed + 7919)
        self.time_factor = float(time_factor)
        self.shops = {}
        self.started = time.time()
        self.next_sf = SHOPIFY_ID_BASE
        self.next_sl = SHOPLINE_ID_BASE
        self.deliverer = Deliverer(self, workers)

    # -- ids, time, counters
    def new_id(self, shop):
        with self.lock:
            if shop.platform == "shopify":
                v = self.next_sf
                self.next_sf += 2
            else:
                v = self.next_sl
                self.next_sl += 1
            return v

    def count(self, shop, name, n=1):
        with self.lock:
            shop.counters[name] = shop.counters.get(name, 0) + n

    def stamp(self, shop, prev=None):
        """A new updated_at strictly after prev at ms precision (ties possible at s)."""
        t = time.time()
        if prev is not None and shop.timestamp_precision == "ms" and t <= prev + 0.001:
            t = prev + 0.001
        return t

    def ts(self, shop, t):
        return iso(t, shop.timestamp_precision) if t is not None else None

    def sid(self, shop, v):
        """A Shopline id as JSON number (default) or string, per the shop's id_style."""
        if v is None:
            return None
        return v if shop.id_style == "number" else str(v)

    # -- shops
    def create_shop(self, spec):
        with self.lock:
            shop = Shop(self, spec)
            if shop.domain in self.shops:
                raise ApiError(409, {"error": "shop %s exists" % shop.domain})
            self.shops[shop.domain] = shop
            return shop

    def shop_by_token(self, token, host=None):
        if not token:
            return None
        with self.lock:
            found = [s for s in self.shops.values() if s.token == token]
            if len(found) > 1 and host:
                hn = host.split(":")[0]
                found = [s for s in found if s.domain == hn] or found
            return found[0] if found else None

    def configure_shop(self, shop, cfg):
        with self.lock:
            for k in ("webhook_url", "topics", "hmac_encoding", "id_style", "retry_after",
                      "fail_first_mode", "timestamp_precision", "throttle_http_status",
                      "api_version"):
                if k in cfg:
                    setattr(shop, k, cfg[k])
            if "webhook_secret" in cfg:
                window = float(cfg.get("rotation_window", 0))
                if window > 0:
                    shop.prev_secret = shop.webhook_secret
                    shop.rotation_until = time.monotonic() + window
                shop.webhook_secret = cfg["webhook_secret"]
            if "misbehaviour" in cfg:
                shop.misbehaviour.update(cfg["misbehaviour"])
            if "out_of_order_delay" in cfg:
                shop.ooo_delay = tuple(cfg["out_of_order_delay"])
            if "duplicate_delay" in cfg:
                shop.dup_delay = tuple(cfg["duplicate_delay"])
            if "webhook_timeout" in cfg:
                shop.webhook_timeout = float(cfg["webhook_timeout"])
            if "loyalty" in cfg:
                shop.loyalty.update(cfg["loyalty"])
            if "plan" in cfg or "bucket_size" in cfg or "restore_rate" in cfg:
                cap, rate = SHOPIFY_PLANS.get(cfg.get("plan", ""), (shop.bucket.capacity,
                                                                    shop.bucket.rate))
                shop.bucket.configure(float(cfg.get("bucket_size", cap)),
                                      float(cfg.get("restore_rate", rate)))
            if "rest_bucket_mode" in cfg:
                shop.rest_bucket.mode = cfg["rest_bucket_mode"]
            if "rest_rate" in cfg:
                shop.rest_bucket.rate = float(cfg["rest_rate"])
            if "rest_bucket_size" in cfg:
                shop.rest_bucket.capacity = int(cfg["rest_bucket_size"])

    # -- catalogue
    def location(self, shop, ref, default_first=True):
        """Location id from an id, GID, or name; the first location when ref is None."""
        if ref is None:
            if default_first and shop.locations:
                return next(iter(shop.locations))
            return None
        if isinstance(ref, str) and ref in shop.location_keys:
            return shop.location_keys[ref]
        num = gid_num(ref) if not isinstance(ref, int) else ref
        if num in shop.locations:
            return num
        raise ApiError(400, {"error": "unknown location %r" % (ref,)})

    def add_location(self, shop, spec):
        with self.lock:
            name = spec.get("name") or "Location %d" % (len(shop.locations) + 1)
            if name in shop.location_keys:
                return shop.location_keys[name]
            lid = self.new_id(shop)
            shop.locations[lid] = {"id": lid, "name": name}
            shop.location_keys[name] = lid
            for item in shop.items.values():
                if item["stock_all"]:
                    item["levels"].setdefault(lid, {"available": 0, "updated_at": time.time(),
                                                    "writer": "seed"})
            return lid

    def add_product(self, shop, spec, notify=False):
        with self.lock:
            pid = self.new_id(shop)
            now = time.time()
            product = {"id": pid, "title": spec.get("title") or "Product %d" % pid,
                       "handle": spec.get("handle"), "variants": [], "created_at": now,
                       "updated_at": now}
            for vs in spec.get("variants") or [{}]:
                vid = self.new_id(shop)
                iid = self.new_id(shop)
                sku = vs.get("sku")
                v = {"id": vid, "product_id": pid, "inventory_item_id": iid, "sku": sku,
                     "barcode": vs.get("barcode"), "price": money(vs.get("price", 10)),
                     "title": vs.get("title") or (sku or "Default Title"),
                     "requires_shipping": bool(vs.get("requires_shipping", True)),
                     "tracked": bool(vs.get("tracked", True)), "taxable": bool(vs.get("taxable", True))}
                shop.variants[vid] = v
                product["variants"].append(vid)
                stock_at = vs.get("locations")
                levels = {}
                for lid in shop.locations:
                    if stock_at is None or shop.locations[lid]["name"] in stock_at or lid in stock_at:
                        levels[lid] = {"available": 0, "updated_at": now, "writer": "seed"}
                shop.items[iid] = {"id": iid, "variant_id": vid, "sku": sku,
                                   "tracked": v["tracked"], "levels": levels,
                                   "stock_all": stock_at is None}
                if sku is not None:
                    shop.sku_index.setdefault(sku, []).append(vid)
                for lname, qty in (vs.get("inventory") or {}).items():
                    lid = self.location(shop, lname)
                    if lid in levels:
                        levels[lid]["available"] = int(qty)
            shop.products[pid] = product
            if notify:
                self.emit(shop, "products/update", self.render_product(shop, product),
                          resource=pid)
            return product

    def update_product(self, shop, pid, spec):
        with self.lock:
            product = shop.products.get(pid)
            if product is None:
                raise ApiError(404, {"error": "unknown product"})
            if "title" in spec:
                product["title"] = spec["title"]
            for vs in spec.get("variants") or []:
                v = shop.variants.get(gid_num(vs.get("id"))) if vs.get("id") else None
                if v is None and vs.get("sku_was"):
                    ids = shop.sku_index.get(vs["sku_was"]) or []
                    v = shop.variants.get(ids[0]) if ids else None
                if v is None:
                    continue
                if "sku" in vs and vs["sku"] != v["sku"]:
                    if v["sku"] in shop.sku_index:
                        shop.sku_index[v["sku"]] = [x for x in shop.sku_index[v["sku"]]
                                                    if x != v["id"]]
                    v["sku"] = vs["sku"]
                    shop.items[v["inventory_item_id"]]["sku"] = vs["sku"]
                    shop.sku_index.setdefault(vs["sku"], []).append(v["id"])
                for k in ("barcode", "requires_shipping", "tracked"):
                    if k in vs:
                        v[k] = vs[k]
                if "price" in vs:
                    v["price"] = money(vs["price"])
            product["updated_at"] = self.stamp(shop, product["updated_at"])
            self.emit(shop, "products/update", self.render_product(shop, product), resource=pid)
            return product

    def variant_by_sku(self, shop, sku):
        ids = shop.sku_index.get(sku) or []
        if not ids:
            raise ApiError(400, {"error": "unknown sku %r" % (sku,)})
        return shop.variants[ids[0]]

    def item_ref(self, shop, spec):
        if spec.get("inventory_item_id") is not None:
            iid = gid_num(spec["inventory_item_id"])
            if iid not in shop.items:
                raise ApiError(400, {"error": "unknown inventory item"})
            return shop.items[iid]
        v = self.variant_by_sku(shop, spec.get("sku"))
        return shop.items[v["inventory_item_id"]]

    def set_level(self, shop, item, lid, qty, writer):
        lvl = item["levels"].setdefault(lid, {"available": 0, "updated_at": 0, "writer": None})
        lvl["available"] = int(qty)
        lvl["updated_at"] = time.time()
        lvl["writer"] = writer
        return lvl

    def adjust_level(self, shop, item, lid, delta, writer):
        lvl = item["levels"].get(lid)
        if lvl is None:
            lvl = item["levels"].setdefault(lid, {"available": 0, "updated_at": 0,
                                                  "writer": None})
        if item["tracked"]:
            lvl["available"] += int(delta)
            lvl["updated_at"] = time.time()
            lvl["writer"] = writer

    # -- members
    def find_members(self, shop, email=None, phone=None):
        e, p = norm_email(email), norm_phone(phone)
        out = []
        for m in shop.members.values():
            if (e and norm_email(m.get("email")) == e) or (p and norm_phone(m.get("phone")) == p):
                out.append(m)
        return out

    def add_member(self, shop, spec):
        with self.lock:
            mid = self.new_id(shop)
            now = time.time()
            m = {"id": mid, "email": spec.get("email"), "phone": spec.get("phone"),
                 "first_name": spec.get("first_name"), "last_name": spec.get("last_name"),
                 "points": int(spec.get("points", 0)), "version": 1, "created_at": now,
                 "updated_at": now, "busy_until": 0.0, "last_write": 0.0, "history": []}
            shop.members[mid] = m
            return m

    def member_write(self, shop, m, delta, expected_version, reason, source):
        """Apply a points change or raise ApiError(409) on a (simulated) collision."""
        with self.lock:
            now = time.monotonic()
            cfg = shop.loyalty
            conflict = None
            if expected_version is not None and int(expected_version) != m["version"]:
                conflict = "VERSION_CONFLICT"
            elif now < m["busy_until"]:
                conflict = "CONCURRENT_UPDATE"
            elif m["last_write"] and now - m["last_write"] < float(cfg["write_window"]):
                conflict = "CONCURRENT_UPDATE"
            elif float(cfg["conflict_rate"]) > 0 and self.rng.random() < float(cfg["conflict_rate"]):
                m["version"] += 1      # another writer got there first
                conflict = "VERSION_CONFLICT"
            if conflict:
                self.count(shop, "loyalty.conflicts")
                raise ApiError(409, {"error": {
                    "code": conflict,
                    "message": ("member version changed" if conflict == "VERSION_CONFLICT"
                                else "member is being updated by another operation"),
                    "current_version": m["version"]}})
            m["points"] += int(delta)
            m["version"] += 1
            m["last_write"] = now
            m["updated_at"] = time.time()
            m["history"].append({"delta": int(delta), "reason": reason, "source": source,
                                 "at": m["updated_at"], "balance": m["points"]})
            self.count(shop, "loyalty.writes")
            return m

    # -- orders
    def create_order(self, shop, spec):
        with self.lock:
            source = spec.get("source", "web")
            if source not in ("web", "pos", "bopis"):
                raise ApiError(400, {"error": "source must be web, pos or bopis"})
            if not shop.locations:
                raise ApiError(400, {"error": "shop has no location"})
            lid = self.location(shop, spec.get("location"))
            oid = self.new_id(shop)
            shop.order_seq += 1
            now = self.stamp(shop)
            cust = spec.get("customer")
            customer = None
            if cust:
                customer = {"id": cust.get("id") or self.new_id(shop), "email": cust.get("email"),
                            "phone": cust.get("phone"), "first_name": cust.get("first_name"),
                            "last_name": cust.get("last_name")}
            lines = []
            for ls in spec.get("lines") or []:
                v = self.variant_by_sku(shop, ls.get("sku"))
                qty = int(ls.get("quantity", 1))
                price = money(ls.get("price", v["price"]))
                tax_lines = ls.get("tax_lines")
                if tax_lines is None and ls.get("tax_rate") is not None:
                    rate = float(ls["tax_rate"])
                    gross = float(price) * qty - float(ls.get("discount", 0))
                    tax = gross - gross / (1 + rate) if shop.taxes_included else gross * rate
                    tax_lines = [{"title": ls.get("tax_title", "VAT"), "rate": rate,
                                  "price": money(tax)}]
                discounts = []
                if ls.get("discount"):
                    discounts.append({"amount": money(ls["discount"]),
                                      "discount_application_index": 0})
                lines.append({"id": self.new_id(shop), "variant_id": v["id"],
                              "product_id": v["product_id"],
                              "inventory_item_id": v["inventory_item_id"], "sku": v["sku"],
                              "title": shop.products[v["product_id"]]["title"],
                              "quantity": qty, "price": price, "tax_lines": tax_lines or [],
                              "discount_allocations": discounts,
                              "requires_shipping": (False if source in ("pos", "bopis")
                                                    else v["requires_shipping"]),
                              "taxable": v["taxable"], "fulfilled": 0, "refunded": 0,
                              "gift_card": bool(ls.get("gift_card", False))})
            order = {"id": oid, "number": shop.order_seq, "name": "#%d" % shop.order_seq,
                     "created_at": now, "updated_at": now, "source": source,
                     "location_id": lid, "financial_status": spec.get("financial_status", "paid"),
                     "cancelled_at": None, "cancel_reason": None, "customer": customer,
                     "lines": lines, "fulfillments": [], "refunds": [],
                     "pickup": ("pending" if source == "bopis" else None),
                     "note": spec.get("note"), "tags": spec.get("tags", ""),
                     "fo_id": self.new_id(shop)}
            shop.orders[oid] = order
            for ln in lines:
                item = shop.items[ln["inventory_item_id"]]
                self.adjust_level(shop, item, lid, -ln["quantity"], "order")
            if customer:
                for m in self.find_members(shop, customer.get("email"), customer.get("phone")):
                    m["busy_until"] = time.monotonic() + float(shop.loyalty["order_window"])
                    m["version"] += 1
            if source == "pos":
                # POS sales are complete at the till: paid and fulfilled at the location
                for ln in lines:
                    ln["fulfilled"] = ln["quantity"]
                order["fulfillments"].append(self._fulfillment(shop, order, lid,
                                                               [(ln, ln["quantity"]) for ln in lines]))
            self.emit_order(shop, order, "orders/create")
            if order["financial_status"] == "paid":
                self.emit_order(shop, order, "orders/paid")
            if source == "pos":
                self.emit(shop, "fulfillments/create",
                          self.render_fulfillment(shop, order, order["fulfillments"][-1]),
                          resource=oid)
                self.emit_order(shop, order, "orders/fulfilled")
            return order

    def get_order(self, shop, oid):
        o = shop.orders.get(gid_num(oid) if not isinstance(oid, int) else oid)
        if o is None:
            raise ApiError(404, {"error": "unknown order"})
        return o

    def touch(self, shop, order):
        order["updated_at"] = self.stamp(shop, order["updated_at"])

    def _fulfillment(self, shop, order, lid, pairs):
        now = order["updated_at"]
        return {"id": self.new_id(shop), "location_id": lid, "status": "success",
                "created_at": now, "updated_at": now,
                "name": "%s.%d" % (order["name"], len(order["fulfillments"]) + 1),
                "lines": [(ln["id"], q) for ln, q in pairs]}

    def fulfil(self, shop, order, spec, topic_extra=None):
        with self.lock:
            if order["cancelled_at"]:
                raise ApiError(422, {"error": "order is cancelled"})
            lid = self.location(shop, spec.get("location")) if spec.get("location") else order["location_id"]
            wanted = {}
            for ls in spec.get("lines") or []:
                wanted[self._line(order, ls)["id"]] = int(ls.get("quantity", 0))
            pairs = []
            for ln in order["lines"]:
                left = ln["quantity"] - ln["fulfilled"] - ln["refunded"]
                q = min(left, wanted.get(ln["id"], left)) if wanted else left
                if q > 0:
                    ln["fulfilled"] += q
                    pairs.append((ln, q))
            if not pairs:
                raise ApiError(422, {"error": "nothing to fulfil"})
            self.touch(shop, order)
            f = self._fulfillment(shop, order, lid, pairs)
            order["fulfillments"].append(f)
            self.emit(shop, "fulfillments/create", self.render_fulfillment(shop, order, f),
                      resource=order["id"])
            full = all(ln["fulfilled"] + ln["refunded"] >= ln["quantity"] for ln in order["lines"])
            self.emit_order(shop, order, "orders/fulfilled" if full else "orders/partially_fulfilled")
            self.emit_order(shop, order, "orders/updated")
            return f

    def _line(self, order, ls):
        for ln in order["lines"]:
            if ls.get("line_item_id") is not None and gid_num(ls["line_item_id"]) == ln["id"]:
                return ln
            if ls.get("line_item_id") is None and ls.get("sku") is not None and ls["sku"] == ln["sku"]:
                return ln
        raise ApiError(400, {"error": "unknown line %r" % (ls,)})

    def cancel(self, shop, order, spec):
        with self.lock:
            if order["cancelled_at"]:
                raise ApiError(422, {"error": "already cancelled"})
            self.touch(shop, order)
            order["cancelled_at"] = order["updated_at"]
            order["cancel_reason"] = spec.get("reason", "customer")
            if spec.get("restock", True):
                for ln in order["lines"]:
                    q = ln["quantity"] - ln["fulfilled"] - ln["refunded"]
                    if q > 0:
                        self.adjust_level(shop, shop.items[ln["inventory_item_id"]],
                                          order["location_id"], q, "cancel")
            if spec.get("refund", False):
                order["financial_status"] = "refunded"
            self.emit_order(shop, order, "orders/cancelled")
            self.emit_order(shop, order, "orders/updated")
            return order

    def refund(self, shop, order, spec):
        with self.lock:
            rl = []
            for ls in spec.get("lines") or []:
                ln = self._line(order, ls)
                q = int(ls.get("quantity", 1))
                rt = ls.get("restock_type", "no_restock")
                if rt not in RESTOCK_TYPES:
                    raise ApiError(400, {"error": "restock_type must be return, cancel or no_restock"})
                if q <= 0 or q > ln["quantity"] - ln["refunded"]:
                    raise ApiError(422, {"error": "refund quantity exceeds line quantity"})
                lid = None
                if rt != "no_restock":
                    lid = (self.location(shop, ls.get("location")) if ls.get("location")
                           else order["location_id"])
                    self.adjust_level(shop, shop.items[ln["inventory_item_id"]], lid, q, "refund")
                ln["refunded"] += q
                unit = float(ln["price"])
                tax = sum(float(t["price"]) for t in ln["tax_lines"]) * q / max(1, ln["quantity"])
                rl.append({"id": self.new_id(shop), "line_item_id": ln["id"], "quantity": q,
                           "restock_type": rt, "location_id": lid,
                           "subtotal": money(unit * q), "total_tax": money(tax)})
            if not rl:
                raise ApiError(400, {"error": "refund needs lines"})
            self.touch(shop, order)
            r = {"id": self.new_id(shop), "created_at": order["updated_at"],
                 "note": spec.get("note"), "lines": rl}
            order["refunds"].append(r)
            all_refunded = all(ln["refunded"] >= ln["quantity"] for ln in order["lines"])
            order["financial_status"] = "refunded" if all_refunded else "partially_refunded"
            self.emit(shop, "refunds/create", self.render_refund(shop, order, r),
                      resource=order["id"])
            self.emit_order(shop, order, "orders/updated")
            return r

    def mark_paid(self, shop, order):
        with self.lock:
            order["financial_status"] = "paid"
            self.touch(shop, order)
            self.emit_order(shop, order, "orders/paid")
            self.emit_order(shop, order, "orders/updated")

    def ready_for_pickup(self, shop, order):
        with self.lock:
            if order["source"] != "bopis":
                raise ApiError(422, {"error": "not a pickup order"})
            order["pickup"] = "ready"
            self.touch(shop, order)
            if shop.platform == "shopify":
                payload = {"fulfillment_order": {
                    "id": gid("FulfillmentOrder", order["fo_id"]), "status": "in_progress",
                    "order_id": gid("Order", order["id"]),
                    "assigned_location_id": gid("Location", order["location_id"]),
                    "delivery_method": {"method_type": "pick_up"},
                    "prepared_for_pickup_at": self.ts(shop, order["updated_at"])}}
                self.emit(shop, "fulfillment_orders/line_items_prepared_for_pickup", payload,
                          resource=order["id"])
            self.emit_order(shop, order, "orders/updated")

    def picked_up(self, shop, order):
        with self.lock:
            if order["source"] != "bopis":
                raise ApiError(422, {"error": "not a pickup order"})
            order["pickup"] = "picked_up"
            return self.fulfil(shop, order, {})

    def update_order(self, shop, order, spec):
        with self.lock:
            for k in ("note", "tags"):
                if k in spec:
                    order[k] = spec[k]
            self.touch(shop, order)
            self.emit_order(shop, order, "orders/updated")

    # -- rendering: Shopify REST-style webhook payloads
    def render_product(self, shop, p):
        if shop.platform == "shopline":
            return self.sl_product(shop, p)
        vs = []
        for vid in p["variants"]:
            v = shop.variants[vid]
            vs.append({"id": v["id"], "admin_graphql_api_id": gid("ProductVariant", v["id"]),
                       "product_id": p["id"], "title": v["title"], "sku": v["sku"],
                       "barcode": v["barcode"], "price": v["price"],
                       "inventory_item_id": v["inventory_item_id"],
                       "inventory_management": "shopify" if v["tracked"] else None,
                       "requires_shipping": v["requires_shipping"], "taxable": v["taxable"],
                       "updated_at": self.ts(shop, p["updated_at"])})
        return {"id": p["id"], "admin_graphql_api_id": gid("Product", p["id"]),
                "title": p["title"], "status": "active",
                "created_at": self.ts(shop, p["created_at"]),
                "updated_at": self.ts(shop, p["updated_at"]), "variants": vs}

    def _money_set(self, shop, amount):
        m = {"amount": amount, "currency_code": shop.currency}
        return {"shop_money": m, "presentment_money": dict(m)}

    def sf_line(self, shop, ln, qty=None):
        return {"id": ln["id"], "admin_graphql_api_id": gid("LineItem", ln["id"]),
                "variant_id": ln["variant_id"], "product_id": ln["product_id"],
                "sku": ln["sku"], "title": ln["title"], "name": ln["title"],
                "quantity": ln["quantity"] if qty is None else qty,
                "current_quantity": ln["quantity"] - ln["refunded"],
                "fulfillable_quantity": max(0, ln["quantity"] - ln["fulfilled"] - ln["refunded"]),
                "fulfillment_status": ("fulfilled" if ln["fulfilled"] >= ln["quantity"]
                                       else ("partial" if ln["fulfilled"] else None)),
                "price": ln["price"], "price_set": self._money_set(shop, ln["price"]),
                "total_discount": "0.00", "requires_shipping": ln["requires_shipping"],
                "taxable": ln["taxable"], "gift_card": ln["gift_card"],
                "tax_lines": [{"title": t["title"], "rate": t["rate"], "price": t["price"],
                               "price_set": self._money_set(shop, t["price"])}
                              for t in ln["tax_lines"]],
                "discount_allocations": [{"amount": d["amount"],
                                          "amount_set": self._money_set(shop, d["amount"]),
                                          "discount_application_index": d["discount_application_index"]}
                                         for d in ln["discount_allocations"]]}

    def totals(self, order):
        sub = sum(float(ln["price"]) * ln["quantity"] for ln in order["lines"])
        disc = sum(float(d["amount"]) for ln in order["lines"] for d in ln["discount_allocations"])
        tax = sum(float(t["price"]) for ln in order["lines"] for t in ln["tax_lines"])
        return sub, disc, tax

    def fulfillment_status(self, order):
        if not any(ln["fulfilled"] for ln in order["lines"]):
            return None
        if all(ln["fulfilled"] + ln["refunded"] >= ln["quantity"] for ln in order["lines"]):
            return "fulfilled"
        return "partial"

    def render_order(self, shop, o):
        if shop.platform == "shopline":
            return self.sl_order(shop, o)
        sub, disc, tax = self.totals(o)
        total = sub - disc + (0 if shop.taxes_included else tax)
        c = o["customer"]
        loc = shop.locations.get(o["location_id"], {})
        return {
            "id": o["id"], "admin_graphql_api_id": gid("Order", o["id"]), "name": o["name"],
            "order_number": o["number"], "number": o["number"] - 1000,
            "email": c.get("email") if c else None, "phone": c.get("phone") if c else None,
            "created_at": self.ts(shop, o["created_at"]), "updated_at": self.ts(shop, o["updated_at"]),
            "processed_at": self.ts(shop, o["created_at"]),
            "cancelled_at": self.ts(shop, o["cancelled_at"]), "cancel_reason": o["cancel_reason"],
            "closed_at": None, "currency": shop.currency, "presentment_currency": shop.currency,
            "financial_status": o["financial_status"],
            "fulfillment_status": self.fulfillment_status(o),
            "source_name": "pos" if o["source"] == "pos" else "web",
            "location_id": o["location_id"] if o["source"] == "pos" else None,
            "test": False, "taxes_included": shop.taxes_included,
            "subtotal_price": money(sub - disc), "total_discounts": money(disc),
            "total_tax": money(tax), "total_price": money(total),
            "tags": o["tags"], "note": o["note"],
            "customer": ({"id": c["id"], "admin_graphql_api_id": gid("Customer", c["id"]),
                          "email": c.get("email"), "phone": c.get("phone"),
                          "first_name": c.get("first_name"), "last_name": c.get("last_name")}
                         if c else None),
            "line_items": [self.sf_line(shop, ln) for ln in o["lines"]],
            "shipping_lines": ([{"id": o["fo_id"], "code": loc.get("name"), "title": loc.get("name"),
                                 "source": "shopify", "price": "0.00",
                                 "discounted_price": "0.00", "tax_lines": []}]
                               if o["source"] == "bopis" else []),
            "fulfillments": [self.render_fulfillment(shop, o, f) for f in o["fulfillments"]],
            "refunds": [self.render_refund(shop, o, r) for r in o["refunds"]],
        }

    def render_fulfillment(self, shop, o, f):
        lines = {ln["id"]: ln for ln in o["lines"]}
        if shop.platform == "shopline":
            return {"id": self.sid(shop, f["id"]), "order_id": self.sid(shop, o["id"]),
                    "status": f["status"], "location_id": self.sid(shop, f["location_id"]),
                    "created_at": self.ts(shop, f["created_at"]),
                    "updated_at": self.ts(shop, f["updated_at"]),
                    "line_items": [self.sl_line(shop, lines[lid], q) for lid, q in f["lines"]]}
        return {"id": f["id"], "admin_graphql_api_id": gid("Fulfillment", f["id"]),
                "order_id": o["id"], "status": f["status"], "location_id": f["location_id"],
                "name": f["name"], "created_at": self.ts(shop, f["created_at"]),
                "updated_at": self.ts(shop, f["updated_at"]), "tracking_company": None,
                "shipment_status": None,
                "line_items": [self.sf_line(shop, lines[lid], q) for lid, q in f["lines"]]}

    def render_refund(self, shop, o, r):
        lines = {ln["id"]: ln for ln in o["lines"]}
        if shop.platform == "shopline":
            return {"id": self.sid(shop, r["id"]), "order_id": self.sid(shop, o["id"]),
                    "created_at": self.ts(shop, r["created_at"]), "note": r["note"],
                    "refund_line_items": [{"id": self.sid(shop, x["id"]),
                                           "line_item_id": self.sid(shop, x["line_item_id"]),
                                           "quantity": x["quantity"], "restock_type": x["restock_type"],
                                           "location_id": self.sid(shop, x["location_id"]),
                                           "subtotal": x["subtotal"], "total_tax": x["total_tax"],
                                           "line_item": self.sl_line(shop, lines[x["line_item_id"]])}
                                          for x in r["lines"]]}
        return {"id": r["id"], "admin_graphql_api_id": gid("Refund", r["id"]), "order_id": o["id"],
                "created_at": self.ts(shop, r["created_at"]),
                "processed_at": self.ts(shop, r["created_at"]), "note": r["note"],
                "restock": any(x["restock_type"] != "no_restock" for x in r["lines"]),
                "refund_line_items": [{"id": x["id"], "line_item_id": x["line_item_id"],
                                       "quantity": x["quantity"], "restock_type": x["restock_type"],
                                       "location_id": x["location_id"], "subtotal": x["subtotal"],
                                       "total_tax": x["total_tax"],
                                       "line_item": self.sf_line(shop, lines[x["line_item_id"]])}
                                      for x in r["lines"]],
                "transactions": [], "order_adjustments": []}

    # -- rendering: Shopline
    def sl_line(self, shop, ln, qty=None):
        return {"id": self.sid(shop, ln["id"]), "product_id": self.sid(shop, ln["product_id"]),
                "variant_id": self.sid(shop, ln["variant_id"]), "sku": ln["sku"],
                "title": ln["title"], "quantity": ln["quantity"] if qty is None else qty,
                "price": ln["price"], "requires_shipping": ln["requires_shipping"],
                "taxable": ln["taxable"], "gift_card": ln["gift_card"],
                "fulfillment_status": ("fulfilled" if ln["fulfilled"] >= ln["quantity"]
                                       else ("partial" if ln["fulfilled"] else None)),
                "tax_lines": [{"title": t["title"], "rate": t["rate"], "price": t["price"]}
                              for t in ln["tax_lines"]],
                "discount_allocations": [{"amount": d["amount"]} for d in ln["discount_allocations"]]}

    def sl_order(self, shop, o):
        sub, disc, tax = self.totals(o)
        c = o["customer"]
        return {"id": self.sid(shop, o["id"]), "name": o["name"], "order_number": str(o["number"]),
                "email": c.get("email") if c else None, "phone": c.get("phone") if c else None,
                "created_at": self.ts(shop, o["created_at"]), "updated_at": self.ts(shop, o["updated_at"]),
                "cancelled_at": self.ts(shop, o["cancelled_at"]), "cancel_reason": o["cancel_reason"],
                "currency": shop.currency, "financial_status": o["financial_status"],
                "fulfillment_status": self.fulfillment_status(o) or "unshipped",
                "order_source": "pos" if o["source"] == "pos" else "web",
                "location_id": self.sid(shop, o["location_id"]) if o["source"] in ("pos", "bopis") else None,
                "delivery_method": "pickup" if o["source"] == "bopis" else (
                    "in_store" if o["source"] == "pos" else "shipping"),
                "subtotal_price": money(sub - disc), "total_discounts": money(disc),
                "total_tax": money(tax),
                "total_price": money(sub - disc + (0 if shop.taxes_included else tax)),
                "customer": ({"id": self.sid(shop, c["id"]), "email": c.get("email"),
                              "phone": c.get("phone"), "first_name": c.get("first_name"),
                              "last_name": c.get("last_name")} if c else None),
                "line_items": [self.sl_line(shop, ln) for ln in o["lines"]],
                "fulfillments": [self.render_fulfillment(shop, o, f) for f in o["fulfillments"]],
                "refunds": [self.render_refund(shop, o, r) for r in o["refunds"]],
                "tags": o["tags"], "note": o["note"]}

    def sl_product(self, shop, p):
        vs = []
        for vid in p["variants"]:
            v = shop.variants[vid]
            item = shop.items[v["inventory_item_id"]]
            vs.append({"id": self.sid(shop, v["id"]), "product_id": self.sid(shop, p["id"]),
                       "title": v["title"], "sku": v["sku"], "barcode": v["barcode"],
                       "price": v["price"], "required_shipping": v["requires_shipping"],
                       "inventory_item_id": self.sid(shop, v["inventory_item_id"]),
                       "inventory_tracker": v["tracked"],
                       "inventory_quantity": sum(lv["available"] for lv in item["levels"].values()),
                       "taxable": v["taxable"]})
        return {"id": self.sid(shop, p["id"]), "title": p["title"], "status": "active",
                "created_at": self.ts(shop, p["created_at"]),
                "updated_at": self.ts(shop, p["updated_at"]), "variants": vs}

    # -- webhooks
    def emit_order(self, shop, order, topic):
        self.emit(shop, topic, self.render_order(shop, order), resource=order["id"])

    def emit(self, shop, topic, payload, resource=None):
        """Queue one event's webhook with the shop's misbehaviour applied (deterministic)."""
        with self.lock:
            self.count(shop, "webhooks.triggered")
            if shop.topics is not None and topic not in shop.topics:
                return None
            rng = self.rng
            mb = shop.misbehaviour
            drop = rng.random() < float(mb.get("drop", 0))
            dup = rng.random() < float(mb.get("duplicate", 0))
            ooo = rng.random() < float(mb.get("out_of_order", 0))
            fail = rng.random() < float(mb.get("fail_first", 0))
            ooo_d = rng.uniform(*shop.ooo_delay) if ooo else 0.0
            dup_d = rng.uniform(*shop.dup_delay) if dup else 0.0
            if shop.platform == "shopify":
                wid = "%08x-%04x-4%03x-a%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                         rng.getrandbits(12), rng.getrandbits(12),
                                                         rng.getrandbits(48))
                eid = "%08x-%04x-4%03x-b%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                         rng.getrandbits(12), rng.getrandbits(12),
                                                         rng.getrandbits(48))
            else:
                wid = "%024x" % rng.getrandbits(96)
                eid = wid
            body = dumps(payload)
            rec = {"webhook_id": wid, "event_id": eid, "topic": topic,
                   "resource_id": str(resource) if resource is not None else None,
                   "triggered_at": self.ts(shop, time.time()), "dropped": drop,
                   "duplicate": dup, "out_of_order": ooo, "fail_first": fail,
                   "attempts": 0, "delivered": 0, "status": "dropped" if drop else "pending",
                   "last_http_status": None}
            shop.webhook_log.append(rec)
            shop.bodies[wid] = (rec, body)
            if drop:
                self.count(shop, "webhooks.dropped")
                return rec
            if not shop.webhook_url:
                rec["status"] = "no_subscription"
                return rec
            d = Delivery(shop=shop.domain, topic=topic, body=body, webhook_id=wid, event_id=eid,
                         triggered_at=rec["triggered_at"], url=shop.webhook_url, attempt=0,
                         fail_first=fail, record=rec, copy=0)
            if ooo:
                self.count(shop, "webhooks.delayed")
            if fail:
                self.count(shop, "webhooks.failed_first")
            self.deliverer.schedule(d, ooo_d)
            if dup:
                self.count(shop, "webhooks.duplicated")
                d2 = Delivery(shop=shop.domain, topic=topic, body=body, webhook_id=wid,
                              event_id=eid, triggered_at=rec["triggered_at"], url=shop.webhook_url,
                              attempt=0, fail_first=False, record=rec, copy=1)
                self.deliverer.schedule(d2, ooo_d + dup_d)
            return rec

    def resend(self, shop, webhook_id):
        """Deliver a stored webhook again with the same ids and body (manual resend)."""
        with self.lock:
            stored = shop.bodies.get(webhook_id)
            if stored is None:
                raise ApiError(404, {"error": "unknown webhook id"})
            if not shop.webhook_url:
                raise ApiError(409, {"error": "shop has no webhook_url"})
            rec, body = stored
            self.count(shop, "webhooks.resent")
            d = Delivery(shop=shop.domain, topic=rec["topic"], body=body, webhook_id=webhook_id,
                         event_id=rec["event_id"], triggered_at=rec["triggered_at"],
                         url=shop.webhook_url, attempt=0, fail_first=False, record=rec, copy=2)
            self.deliverer.schedule(d, 0.0)
            return rec

    def signing_secret(self, shop):
        if shop.prev_secret and time.monotonic() < shop.rotation_until:
            if self.side_rng.random() < 0.5:
                return shop.prev_secret
        return shop.webhook_secret

    def sign(self, shop, body, secret):
        digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        if shop.platform == "shopline" and shop.hmac_encoding == "hex":
            return digest.hex()
        return base64.b64encode(digest).decode()

    def webhook_headers(self, shop, d, secret):
        sig = self.sign(shop, d.body, secret)
        if shop.platform == "shopify":
            return {"Content-Type": "application/json", "X-Shopify-Topic": d.topic,
                    "X-Shopify-Hmac-Sha256": sig, "X-Shopify-Shop-Domain": shop.domain,
                    "X-Shopify-API-Version": shop.api_version,
                    "X-Shopify-Webhook-Id": d.webhook_id, "X-Shopify-Event-Id": d.event_id,
                    "X-Shopify-Triggered-At": d.triggered_at}
        return {"Content-Type": "application/json", "X-Shopline-Topic": d.topic,
                "X-Shopline-Hmac-Sha256": sig, "X-Shopline-Shop-Domain": shop.domain,
                "X-Shopline-Shop-Id": shop.shop_id, "X-Shopline-Merchant-Id": shop.merchant_id,
                "X-Shopline-API-Version": shop.api_version, "X-Shopline-Webhook-Id": d.webhook_id}


class Deliverer:
    """Timed webhook sender: a heap of due deliveries served by worker threads."""

    def __init__(self, sim, workers):
        self.sim = sim
        self.cv = threading.Condition()
        self.heap = []
        self.seq = 0
        self.active = 0
        self.stopping = False
        self.threads = [threading.Thread(target=self.run, daemon=True, name="wh-%d" % i)
                        for i in range(max(1, workers))]
        for t in self.threads:
            t.start()

    def schedule(self, d, delay):
        with self.cv:
            self.seq += 1
            heapq.heappush(self.heap, (time.monotonic() + max(0.0, delay), self.seq, d))
            self.cv.notify()

    def pending(self):
        with self.cv:
            return len(self.heap) + self.active

    def wait_idle(self, timeout):
        end = time.monotonic() + timeout
        with self.cv:
            while self.heap or self.active:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 0.05))
            return True

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()

    def run(self):
        while True:
            with self.cv:
                while True:
                    if self.stopping:
                        return
                    now = time.monotonic()
                    if self.heap and self.heap[0][0] <= now:
                        _, _, d = heapq.heappop(self.heap)
                        self.active += 1
                        break
                    self.cv.wait(self.heap[0][0] - now if self.heap else None)
            try:
                self.attempt(d)
            finally:
                with self.cv:
                    self.active -= 1
                    self.cv.notify_all()

    def attempt(self, d):
        sim = self.sim
        shop = sim.shops.get(d.shop)
        if shop is None:
            return
        with sim.lock:
            secret = sim.signing_secret(shop)
            headers = sim.webhook_headers(shop, d, secret)
            timeout = shop.webhook_timeout
            mode = shop.fail_first_mode
            sim.count(shop, "webhooks.attempts")
            d.record["attempts"] += 1
        simulate_fail = d.attempt == 0 and d.fail_first
        status = None
        ok = False
        if not (simulate_fail and mode == "connect_error"):
            req = urllib.request.Request(d.url, data=d.body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    resp.read()
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            except (urllib.error.URLError, socket.timeout, OSError):
                status = None
            ok = status is not None and 200 <= status < 300
        if simulate_fail:
            ok = False
        with sim.lock:
            d.record["last_http_status"] = status
            if ok:
                d.record["delivered"] += 1
                d.record["status"] = "delivered"
                sim.count(shop, "webhooks.delivered")
                return
            sim.count(shop, "webhooks.failed_attempts")
            schedule = SHOPIFY_RETRY_SCHEDULE if shop.platform == "shopify" else SHOPLINE_RETRY_SCHEDULE
            if d.attempt < len(schedule):
                delay = schedule[d.attempt] * sim.time_factor
                d.attempt += 1
                sim.count(shop, "webhooks.retries")
                if d.record["status"] != "delivered":
                    d.record["status"] = "retrying"
                self.schedule(d, delay)
            else:
                if d.record["status"] != "delivered":
                    d.record["status"] = "failed"
                sim.count(shop, "webhooks.failed_final")
