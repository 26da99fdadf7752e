"""HTTP front of the platform simulator: Shopify Admin GraphQL, Shopline REST Admin
OpenAPI and Admin GraphQL (points), the Shopify loyalty-app stand-in, and the /_sim/
control API. Standard library only."""

import json
import math
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gql
from simcore import (ApiError, SHOPIFY_MAX_QUERY_COST, SHOPIFY_REASONS, MAX_BODY, Sim,
                     dec_cursor, dumps, enc_cursor, gid, gid_num, iso, parse_time)

SHOPIFY_GQL_RE = re.compile(r"^/admin/api/(\d{4}-\d{2}|unstable)/graphql\.json$")
SHOPLINE_REST_RE = re.compile(r"^/admin/openapi/(v\d{8}|unstable)/(.+)$")
SHOPLINE_GQL_RE = re.compile(r"^/admin/graph/(v\d{8}|unstable)/graphql\.json$")
LOYALTY_RE = re.compile(r"^/apps/loyalty/api/(.*)$")


def _conn(items, cursor_of, has_next, node_key="node"):
    edges = [{"cursor": cursor_of(it), node_key: it} for it in items]
    return {"edges": edges, "nodes": list(items),
            "pageInfo": {"hasNextPage": has_next, "hasPreviousPage": False,
                         "startCursor": edges[0]["cursor"] if edges else None,
                         "endCursor": edges[-1]["cursor"] if edges else None}}


def _page(items, key, first, after):
    """Cursor pagination over items sorted by key(item); returns (page, has_next)."""
    items = sorted(items, key=key)
    if after:
        last = dec_cursor(after)
        if not isinstance(last, list):
            raise gql.GqlError("Invalid cursor for current pagination sort.")
        items = [it for it in items if key(it) > tuple(last)]
    first = max(0, min(int(first or 0), 250))
    return items[:first], len(items) > first


def _search_terms(q):
    """Shopify search syntax subset: field:value, field:>value, field:>=value ... (AND)."""
    out = []
    for m in re.finditer(r"(\w+):\s*(>=|<=|>|<)?\s*('[^']*'|\"[^\"]*\"|[^\s)]+)", q or ""):
        out.append((m.group(1), m.group(2) or "=", m.group(3).strip("'\"")))
    return out


def _cmp(a, op, b):
    return {"=": a == b, ">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op]


def project(fields, value):
    """Keep only the selected fields (by alias) of a resolved value, like a GraphQL server."""
    if value is None or not fields:
        return value
    if isinstance(value, list):
        return [project(fields, v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for f in fields:
        if f.name == "__typename":
            out[f.key] = value.get("__typename")
            continue
        out[f.key] = project(f.selections, value.get(f.name))
    return out


class ShopifyGraphQL:
    """Resolves the Admin GraphQL subset tillsync calls, with cost-based throttling."""

    def __init__(self, sim):
        self.sim = sim

    def handle(self, shop, body):
        sim = self.sim
        sim.count(shop, "shopify.graphql.calls")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            raise ApiError(400, {"errors": {"query": "Required parameter missing or invalid"}})
        if not isinstance(req, dict):
            raise ApiError(400, {"errors": {"query": "Required parameter missing or invalid"}})
        variables = req.get("variables") or {}
        try:
            op, roots = gql.parse(req.get("query"))
        except gql.GqlError as e:
            return 200, {"errors": [{"message": str(e), "extensions": {"code": "syntaxError"}}]}
        for f in roots:
            sim.count(shop, "shopify.graphql." + f.name)
        if op == "mutation":
            requested = 10 * len(roots)
        else:
            requested = gql.requested_cost(roots, variables)
        if requested > SHOPIFY_MAX_QUERY_COST:
            return 200, {"errors": [{
                "message": "Query cost is %d, which exceeds the single query max cost limit (%d)."
                           % (requested, SHOPIFY_MAX_QUERY_COST),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                               "maxCost": SHOPIFY_MAX_QUERY_COST}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": shop.bucket.status()}}}
        forced = time.monotonic() < shop.faults["throttle_until"]
        if forced or not shop.bucket.take(requested):
            sim.count(shop, "shopify.graphql.throttled")
            return shop.throttle_http_status, {
                "errors": [{"message": "Throttled",
                            "extensions": {"code": "THROTTLED",
                                           "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": shop.bucket.status()}}}
        data = {}
        errors = []
        with sim.lock:
            for f in roots:
                fn = getattr(self, "q_" + f.name, None) if op == "query" else getattr(self, "m_" + f.name, None)
                if fn is None:
                    errors.append({"message": "Field '%s' doesn't exist on type '%s'"
                                              % (f.name, "Mutation" if op == "mutation" else "QueryRoot"),
                                   "extensions": {"code": "undefinedField", "fieldName": f.name}})
                    continue
                try:
                    data[f.key] = project(f.selections, fn(shop, f, variables))
                except gql.GqlError as e:
                    data[f.key] = None
                    errors.append({"message": str(e), "path": [f.key],
                                   "extensions": {"code": "BAD_REQUEST"}})
                except _TopError as e:
                    data[f.key] = None
                    errors.append(e.err)
        if errors and not data:
            shop.bucket.refund(requested)
            return 200, {"errors": errors}
        actual = requested if op == "mutation" else gql.actual_cost(roots, data, variables)
        shop.bucket.refund(requested - actual)
        sim.count(shop, "shopify.graphql.points_actual", actual)
        out = {"data": data, "extensions": {"cost": {"requestedQueryCost": requested,
                                                      "actualQueryCost": actual,
                                                      "throttleStatus": shop.bucket.status()}}}
        if errors:
            out["errors"] = errors
        return 200, out

    # -- nodes
    def variant_node(self, shop, v):
        item = shop.items[v["inventory_item_id"]]
        return {"id": gid("ProductVariant", v["id"]), "legacyResourceId": str(v["id"]),
                "title": v["title"], "sku": v["sku"], "barcode": v["barcode"], "price": v["price"],
                "taxable": v["taxable"],
                "product": {"id": gid("Product", v["product_id"])},
                "inventoryItem": {"id": gid("InventoryItem", item["id"]),
                                  "legacyResourceId": str(item["id"]), "sku": item["sku"],
                                  "tracked": item["tracked"],
                                  "requiresShipping": v["requires_shipping"]}}

    def product_node(self, shop, p, vfirst):
        vs = [self.variant_node(shop, shop.variants[vid]) for vid in p["variants"]]
        page = vs[:vfirst]
        return {"id": gid("Product", p["id"]), "legacyResourceId": str(p["id"]),
                "title": p["title"], "handle": p["handle"], "status": "ACTIVE",
                "updatedAt": self.sim.ts(shop, p["updated_at"]),
                "variants": _conn(page, lambda n: enc_cursor([gid_num(n["id"])]),
                                  len(vs) > len(page))}

    def level_node(self, shop, item, lid, lvl):
        loc = shop.locations[lid]
        q = lvl["available"]
        return {"id": "gid://shopify/InventoryLevel/%d?inventory_item_id=%d" % (lid, item["id"]),
                "location": {"id": gid("Location", lid), "name": loc["name"]},
                "item": {"id": gid("InventoryItem", item["id"])},
                "available": q,
                "quantities": [{"name": "available", "quantity": q},
                               {"name": "on_hand", "quantity": q}],
                "updatedAt": iso(lvl["updated_at"], "s")}

    def item_node(self, shop, item):
        v = shop.variants[item["variant_id"]]
        levels = [self.level_node(shop, item, lid, lvl) for lid, lvl in item["levels"].items()]
        return {"id": gid("InventoryItem", item["id"]), "legacyResourceId": str(item["id"]),
                "sku": item["sku"], "tracked": item["tracked"],
                "requiresShipping": v["requires_shipping"],
                "variant": {"id": gid("ProductVariant", v["id"]), "sku": v["sku"]},
                "inventoryLevels": _conn(levels, lambda n: enc_cursor([gid_num(n["location"]["id"])]),
                                         False)}

    def order_node(self, shop, o):
        sim = self.sim
        sub, disc, tax = sim.totals(o)
        c = o["customer"]
        ts = lambda t: sim.ts(shop, t)
        lines = []
        for ln in o["lines"]:
            lines.append({"id": gid("LineItem", ln["id"]), "sku": ln["sku"], "name": ln["title"],
                          "quantity": ln["quantity"], "currentQuantity": ln["quantity"] - ln["refunded"],
                          "requiresShipping": ln["requires_shipping"], "taxable": ln["taxable"],
                          "variant": {"id": gid("ProductVariant", ln["variant_id"])},
                          "product": {"id": gid("Product", ln["product_id"])},
                          "originalUnitPriceSet": {"shopMoney": {"amount": ln["price"],
                                                                 "currencyCode": shop.currency}},
                          "taxLines": [{"title": t["title"], "rate": t["rate"],
                                        "priceSet": {"shopMoney": {"amount": t["price"],
                                                                   "currencyCode": shop.currency}}}
                                       for t in ln["tax_lines"]],
                          "discountAllocations": [{"allocatedAmountSet": {"shopMoney": {
                              "amount": d["amount"], "currencyCode": shop.currency}}}
                              for d in ln["discount_allocations"]]})
        lmap = {ln["id"]: ln for ln in o["lines"]}
        refunds = [{"id": gid("Refund", r["id"]), "createdAt": ts(r["created_at"]), "note": r["note"],
                    "refundLineItems": _conn([{"lineItem": {"id": gid("LineItem", x["line_item_id"]),
                                                            "sku": lmap[x["line_item_id"]]["sku"]},
                                               "quantity": x["quantity"],
                                               "restockType": x["restock_type"].upper(),
                                               "location": ({"id": gid("Location", x["location_id"])}
                                                            if x["location_id"] else None)}
                                              for x in r["lines"]], lambda n: None, False)}
                   for r in o["refunds"]]
        fuls = [{"id": gid("Fulfillment", f["id"]), "createdAt": ts(f["created_at"]),
                 "status": f["status"].upper(), "location": {"id": gid("Location", f["location_id"])},
                 "fulfillmentLineItems": _conn([{"lineItem": {"id": gid("LineItem", lid),
                                                              "sku": lmap[lid]["sku"]},
                                                 "quantity": q} for lid, q in f["lines"]],
                                               lambda n: None, False)}
                for f in o["fulfillments"]]
        fo_status = "CLOSED" if sim.fulfillment_status(o) == "fulfilled" else (
            "IN_PROGRESS" if o["pickup"] == "ready" else "OPEN")
        fos = [{"id": gid("FulfillmentOrder", o["fo_id"]), "status": fo_status,
                "assignedLocation": {"location": {"id": gid("Location", o["location_id"])}},
                "deliveryMethod": {"methodType": {"bopis": "PICK_UP", "pos": "RETAIL"}.get(o["source"], "SHIPPING")}}]
        fs = sim.fulfillment_status(o)
        return {"id": gid("Order", o["id"]), "legacyResourceId": str(o["id"]), "name": o["name"],
                "createdAt": ts(o["created_at"]), "updatedAt": ts(o["updated_at"]),
                "processedAt": ts(o["created_at"]), "cancelledAt": ts(o["cancelled_at"]),
                "cancelReason": o["cancel_reason"].upper() if o["cancel_reason"] else None,
                "sourceName": "pos" if o["source"] == "pos" else "web",
                "email": c.get("email") if c else None, "phone": c.get("phone") if c else None,
                "displayFinancialStatus": o["financial_status"].upper(),
                "displayFulfillmentStatus": {"fulfilled": "FULFILLED", "partial": "PARTIALLY_FULFILLED"}.get(fs, "UNFULFILLED"),
                "physicalLocation": ({"id": gid("Location", o["location_id"])}
                                     if o["source"] == "pos" else None),
                "retailLocation": ({"id": gid("Location", o["location_id"])}
                                   if o["source"] == "pos" else None),
                "currencyCode": shop.currency, "taxesIncluded": shop.taxes_included,
                "totalPriceSet": {"shopMoney": {"amount": "%.2f" % (sub - disc + (0 if shop.taxes_included else tax)),
                                                "currencyCode": shop.currency}},
                "customer": ({"id": gid("Customer", c["id"]), "email": c.get("email"),
                              "phone": c.get("phone"), "firstName": c.get("first_name"),
                              "lastName": c.get("last_name")} if c else None),
                "lineItems": _conn(lines, lambda n: enc_cursor([gid_num(n["id"])]), False),
                "refunds": refunds, "fulfillments": fuls,
                "fulfillmentOrders": _conn(fos, lambda n: None, False)}

    # -- queries
    def q_shop(self, shop, f, v):
        return {"id": "gid://shopify/Shop/1", "name": shop.domain.split(".")[0],
                "myshopifyDomain": shop.domain, "currencyCode": shop.currency}

    def _vfirst(self, f, v):
        for s in gql._node_fields(f):
            if s.name == "variants":
                return int(gql.arg(s, "first", v, 250))
        return 250

    def q_products(self, shop, f, v):
        terms = _search_terms(gql.arg(f, "query", v, ""))
        prods = list(shop.products.values())
        for field, op, val in terms:
            if field == "updated_at":
                t = parse_time(val)
                prods = [p for p in prods if t is not None and _cmp(p["updated_at"], op, t)]
            elif field == "sku":
                prods = [p for p in prods if any(shop.variants[x]["sku"] == val for x in p["variants"])]
        page, more = _page(prods, lambda p: (p["id"],), gql.arg(f, "first", v, gql.arg(f, "last", v, 0)),
                           gql.arg(f, "after", v))
        vfirst = self._vfirst(f, v)
        nodes = [self.product_node(shop, p, vfirst) for p in page]
        return _conn(nodes, lambda n: enc_cursor([gid_num(n["id"])]), more)

    def q_product(self, shop, f, v):
        p = shop.products.get(gid_num(gql.arg(f, "id", v)))
        return self.product_node(shop, p, 250) if p else None

    def q_productVariants(self, shop, f, v):
        terms = _search_terms(gql.arg(f, "query", v, ""))
        vs = list(shop.variants.values())
        for field, op, val in terms:
            if field == "sku":
                vs = [x for x in vs if x["sku"] == val]
        page, more = _page(vs, lambda x: (x["id"],), gql.arg(f, "first", v, 0), gql.arg(f, "after", v))
        return _conn([self.variant_node(shop, x) for x in page],
                     lambda n: enc_cursor([gid_num(n["id"])]), more)

    def q_locations(self, shop, f, v):
        locs = list(shop.locations.values())
        page, more = _page(locs, lambda x: (x["id"],), gql.arg(f, "first", v, 0), gql.arg(f, "after", v))
        nodes = [{"id": gid("Location", x["id"]), "legacyResourceId": str(x["id"]),
                  "name": x["name"], "isActive": True, "fulfillsOnlineOrders": True} for x in page]
        return _conn(nodes, lambda n: enc_cursor([gid_num(n["id"])]), more)

    def q_location(self, shop, f, v):
        x = shop.locations.get(gid_num(gql.arg(f, "id", v)))
        return {"id": gid("Location", x["id"]), "name": x["name"], "isActive": True} if x else None

    def q_inventoryItem(self, shop, f, v):
        item = shop.items.get(gid_num(gql.arg(f, "id", v)))
        return self.item_node(shop, item) if item else None

    def q_inventoryItems(self, shop, f, v):
        items = list(shop.items.values())
        for field, op, val in _search_terms(gql.arg(f, "query", v, "")):
            if field == "sku":
                items = [x for x in items if x["sku"] == val]
            elif field == "id":
                items = [x for x in items if str(x["id"]) == val]
        page, more = _page(items, lambda x: (x["id"],), gql.arg(f, "first", v, 0), gql.arg(f, "after", v))
        return _conn([self.item_node(shop, x) for x in page],
                     lambda n: enc_cursor([gid_num(n["id"])]), more)

    def q_nodes(self, shop, f, v):
        out = []
        for i in gql.arg(f, "ids", v, []):
            n = gid_num(i)
            if isinstance(i, str) and "/InventoryItem/" in i and n in shop.items:
                out.append(self.item_node(shop, shop.items[n]))
            elif isinstance(i, str) and "/Order/" in i and n in shop.orders:
                out.append(self.order_node(shop, shop.orders[n]))
            else:
                out.append(None)
        return out

    def q_orders(self, shop, f, v):
        orders = list(shop.orders.values())
        for field, op, val in _search_terms(gql.arg(f, "query", v, "")):
            if field in ("updated_at", "created_at"):
                t = parse_time(val)
                if t is None:
                    continue
                if shop.timestamp_precision == "s":
                    t = math.floor(t)
                    key = lambda o, fld=field: math.floor(o[fld])
                else:
                    key = lambda o, fld=field: round(o[fld], 3)
                orders = [o for o in orders if _cmp(key(o), op, round(t, 3))]
            elif field == "source_name":
                orders = [o for o in orders if ("pos" if o["source"] == "pos" else "web") == val]
        sort = gql.arg(f, "sortKey", v, "ID")
        if sort == "UPDATED_AT":
            key = lambda o: (round(o["updated_at"], 3), o["id"])
        elif sort in ("CREATED_AT", "PROCESSED_AT"):
            key = lambda o: (round(o["created_at"], 3), o["id"])
        else:
            key = lambda o: (o["id"],)
        if gql.arg(f, "reverse", v, False):
            rkey = key
            key = lambda o: tuple(-x for x in rkey(o))
        page, more = _page(orders, key, gql.arg(f, "first", v, 0), gql.arg(f, "after", v))
        return _conn([self.order_node(shop, o) for o in page],
                     lambda n, k=key: enc_cursor(list(k(shop.orders[gid_num(n["id"])]))), more)

    def q_order(self, shop, f, v):
        o = shop.orders.get(gid_num(gql.arg(f, "id", v)))
        return self.order_node(shop, o) if o else None

    # -- mutations
    def m_inventorySetQuantities(self, shop, f, v):
        sim = self.sim
        inp = gql.arg(f, "input", v)
        if not isinstance(inp, dict):
            raise _TopError({"message": "Variable $input of type InventorySetQuantitiesInput! was "
                                        "provided invalid value", "extensions": {"code": "INVALID_VARIABLE"}})
        qs = inp.get("quantities") or []
        if len(qs) > 250:
            raise _TopError({"message": "The input array size of %d is greater than the maximum "
                                        "allowed of 250." % len(qs),
                             "locations": [], "path": [f.key, "input", "quantities"],
                             "extensions": {"code": "MAX_INPUT_SIZE_EXCEEDED"}})
        key = gql.directive_arg(f, "idempotent", "key", v)
        fp = json.dumps(inp, sort_keys=True)
        now = time.time()
        if key is not None:
            rec = shop.idem.get(key)
            if rec and now - rec[2] < shop.idempotency_ttl:
                sim.count(shop, "shopify.idempotent_replays")
                if rec[0] != fp:
                    return {"inventoryAdjustmentGroup": None, "userErrors": [{
                        "field": ["input"], "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                        "message": "The same idempotency key cannot be used with different "
                                   "operation parameters."}]}
                if rec[1]["userErrors"]:
                    return {"inventoryAdjustmentGroup": None, "userErrors": [{
                        "field": ["input"], "code": "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
                        "message": "A previous request with this idempotency key failed. "
                                   "Retry with a new idempotency key."}]}
                return rec[1]
        errs = []
        name = inp.get("name")
        if name not in ("available", "on_hand"):
            errs.append({"field": ["input", "name"], "code": "INVALID_NAME",
                         "message": "The quantity name must be either 'available' or 'on_hand'."})
        reason = inp.get("reason")
        if reason not in SHOPIFY_REASONS:
            errs.append({"field": ["input", "reason"], "code": "INVALID_REASON",
                         "message": "The specified reason is invalid."})
        ref = inp.get("referenceDocumentUri")
        if ref is not None and (not isinstance(ref, str) or not re.match(r"^[a-zA-Z][\w+.-]*:", ref)):
            errs.append({"field": ["input", "referenceDocumentUri"], "code": "INVALID_REFERENCE_DOCUMENT",
                         "message": "The specified reference document is invalid."})
        ignore = bool(inp.get("ignoreCompareQuantity"))
        plan = []
        seen = set()
        for i, q in enumerate(qs):
            path = ["input", "quantities", str(i)]
            iid = gid_num(q.get("inventoryItemId"))
            lid = gid_num(q.get("locationId"))
            item = shop.items.get(iid)
            if item is None:
                errs.append({"field": path + ["inventoryItemId"], "code": "INVALID_INVENTORY_ITEM",
                             "message": "The specified inventory item could not be found."})
                continue
            if lid not in shop.locations:
                errs.append({"field": path + ["locationId"], "code": "INVALID_LOCATION",
                             "message": "The specified location could not be found."})
                continue
            if lid not in item["levels"]:
                errs.append({"field": path + ["locationId"], "code": "ITEM_NOT_STOCKED_AT_LOCATION",
                             "message": "The specified inventory item is not stocked at the location."})
                continue
            if (iid, lid) in seen:
                errs.append({"field": path, "code": "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR",
                             "message": "The combination of inventoryItemId and locationId must be "
                                        "unique."})
                continue
            seen.add((iid, lid))
            qty = q.get("quantity")
            if not isinstance(qty, int) or isinstance(qty, bool):
                errs.append({"field": path + ["quantity"], "code": "INVALID_QUANTITY_NEGATIVE",
                             "message": "The quantity can't be negative."})
                continue
            if qty < 0:
                errs.append({"field": path + ["quantity"], "code": "INVALID_QUANTITY_NEGATIVE",
                             "message": "The quantity can't be negative."})
                continue
            if qty > 1000000000:
                errs.append({"field": path + ["quantity"], "code": "INVALID_QUANTITY_TOO_HIGH",
                             "message": "The total quantity can't be higher than 1,000,000,000."})
                continue
            current = item["levels"][lid]["available"]
            if "changeFromQuantity" in q:
                cmpq, cname, ccode = q["changeFromQuantity"], "changeFromQuantity", "CHANGE_FROM_QUANTITY_STALE"
            else:
                cmpq, cname, ccode = q.get("compareQuantity"), "compareQuantity", "COMPARE_QUANTITY_STALE"
            if cmpq is None and not ignore and "changeFromQuantity" not in q:
                errs.append({"field": path + ["compareQuantity"], "code": "COMPARE_QUANTITY_REQUIRED",
                             "message": "The compareQuantity argument must be given to each quantity "
                                        "or ignored using ignoreCompareQuantity."})
                continue
            if cmpq is not None and not ignore and cmpq != current:
                sim.count(shop, "shopify.cas_conflicts")
                errs.append({"field": path + [cname], "code": ccode,
                             "message": "The %s argument no longer matches the persisted quantity."
                                        % cname})
                continue
            plan.append((item, lid, qty, current))
        if errs:
            result = {"inventoryAdjustmentGroup": None, "userErrors": errs}
        else:
            shop.adjust_seq += 1
            changes = []
            for item, lid, qty, current in plan:
                sim.set_level(shop, item, lid, qty, "api")
                changes.append({"name": name, "delta": qty - current, "quantityAfterChange": qty,
                                "item": {"id": gid("InventoryItem", item["id"]), "sku": item["sku"]},
                                "location": {"id": gid("Location", lid),
                                             "name": shop.locations[lid]["name"]}})
            sim.count(shop, "shopify.inventory_quantities_set", len(plan))
            sim.count(shop, "shopify.inventory_mutations_ok")
            result = {"inventoryAdjustmentGroup": {
                "id": gid("InventoryAdjustmentGroup", sim.new_id(shop)),
                "createdAt": iso(now, "s"), "reason": reason,
                "referenceDocumentUri": ref, "changes": changes}, "userErrors": []}
        if key is not None:
            shop.idem[key] = (fp, result, now)
        return result


class _TopError(Exception):
    def __init__(self, err):
        super().__init__(err.get("message"))
        self.err = err


class ShoplineRest:
    """Shopline REST Admin OpenAPI subset, with its per-app-and-store leaky bucket."""

    def __init__(self, sim):
        self.sim = sim

    def handle(self, shop, method, version, rest, query, body, host):
        sim = self.sim
        sim.count(shop, "shopline.rest.calls")
        forced = time.monotonic() < shop.faults["throttle_until"]
        delay = None if forced else shop.rest_bucket.admit()
        if delay is None:
            sim.count(shop, "shopline.rest.throttled")
            hdr = {}
            if shop.retry_after is not None:
                hdr["Retry-After"] = str(int(math.ceil(float(shop.retry_after))))
            raise ApiError(429, {"errors": "Too many request"}, hdr)
        if delay > 0:
            time.sleep(delay)
        route = re.sub(r"/\d+(?=/|\.json)", "/{id}", "/" + rest)
        sim.count(shop, "shopline.rest.%s %s" % (method, route))
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        data = None
        if method in ("POST", "PUT"):
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(400, {"errors": "Invalid JSON body"})
        base = "https://%s/admin/openapi/%s/" % (host or shop.domain, version)
        with sim.lock:
            if method == "GET" and rest in ("products/products.json", "products.json"):
                return self.products(shop, q, base + rest)
            if method == "GET" and rest == "orders.json":
                return self.orders(shop, q, base + rest)
            m = re.match(r"^orders/(\d+)\.json$", rest)
            if method == "GET" and m:
                o = shop.orders.get(int(m.group(1)))
                if o is None:
                    raise ApiError(404, {"errors": "Not Found"})
                return 200, {"order": sim.sl_order(shop, o)}, {}
            if method == "POST" and rest == "inventory_levels/set.json":
                return self.inv_write(shop, data, absolute=True)
            if method == "POST" and rest == "inventory_levels/adjust.json":
                return self.inv_write(shop, data, absolute=False)
            if method == "GET" and rest == "inventory_levels.json":
                return self.inv_read(shop, q)
            if method == "GET" and rest in ("locations.json", "locations/list.json"):
                return 200, {"locations": [{"id": sim.sid(shop, x["id"]), "name": x["name"],
                                            "active": True} for x in shop.locations.values()]}, {}
            if method == "POST" and rest == "customers/query_user_by_email.json":
                ms = sim.find_members(shop, email=(data or {}).get("email"))
                if not ms:
                    raise ApiError(404, {"errors": "Not Found"})
                return 200, {"customer": self.customer(shop, ms[0])}, {}
            if method == "GET" and rest == "customers/v2/search.json":
                return self.customer_search(shop, q, base + rest)
            if method == "GET" and rest == "customers/search.json":  # older, Shopify-like form
                terms = dict((k, val) for k, _, val in _search_terms(q.get("query", "")))
                ms = sim.find_members(shop, terms.get("email"), terms.get("phone"))
                return 200, {"customers": [self.customer(shop, m) for m in ms]}, {}
            if method == "POST" and rest == "customers.json":
                c = (data or {}).get("customer") or {}
                m = sim.add_member(shop, c)
                return 201, {"customer": self.customer(shop, m)}, {}
        raise ApiError(404, {"errors": "Not Found"})

    def customer_search(self, shop, q, url):
        """customers/v2/search.json: query_param is a fuzzy term over phone, email and name
        (contained, case-insensitive; a phone-like term also by its digits); query takes
        `customer_id:<id>` (other documented fields are ignored); newest first, limit <= 250,
        page_info carries the query."""
        try:
            limit = max(1, min(int(q.get("limit", 50)), 250))
        except ValueError:
            raise ApiError(400, {"errors": "Invalid limit"})
        cond = {"term": (q.get("query_param") or "").strip().lower(),
                "cid": dict(p.split(":", 1) for p in (q.get("query") or "").split(";")
                            if ":" in p).get("customer_id"), "after": None}
        if q.get("page_info"):
            cond = dec_cursor(q["page_info"])
            if not isinstance(cond, dict) or "term" not in cond:
                raise ApiError(400, {"errors": "Invalid page_info"})
        term = cond["term"]
        tdig = re.sub(r"\D", "", term) if re.fullmatch(r"[\d\s+().-]+", term or "x") else ""

        def hit(m):
            if cond["cid"] and str(m["id"]) != str(cond["cid"]).strip():
                return False
            if not term:
                return True
            name = "%s %s" % (m.get("first_name") or "", m.get("last_name") or "")
            if any(term in (x or "").lower() for x in (m.get("email"), m.get("phone"), name)):
                return True
            return len(tdig) >= 5 and tdig in re.sub(r"\D", "", m.get("phone") or "")
        ms = sorted((m for m in shop.members.values() if hit(m)), key=lambda m: -m["id"])
        if cond["after"] is not None:
            ms = [m for m in ms if m["id"] < cond["after"]]
        page = ms[:limit]
        hdr = {}
        if len(ms) > limit:
            nxt = dict(cond, after=page[-1]["id"])
            hdr["Link"] = self._link(url, {"limit": str(limit)}, enc_cursor(nxt))
        return 200, {"customers": [self.customer(shop, m) for m in page]}, hdr

    def customer(self, shop, m):
        return {"id": self.sim.sid(shop, m["id"]), "email": m["email"], "phone": m["phone"],
                "first_name": m["first_name"], "last_name": m["last_name"],
                "created_at": self.sim.ts(shop, m["created_at"]),
                "updated_at": self.sim.ts(shop, m["updated_at"])}

    def _link(self, url, q, cursor):
        params = {k: v for k, v in q.items() if k not in ("page_info",)}
        params["page_info"] = cursor
        return '<%s?%s>; rel="next"' % (url, urllib.parse.urlencode(params))

    def products(self, shop, q, url):
        limit = max(1, min(int(q.get("limit", 50)), 250))
        prods = sorted(shop.products.values(), key=lambda p: p["id"])
        if q.get("page_info"):
            last = dec_cursor(q["page_info"])
            if not isinstance(last, int):
                raise ApiError(400, {"errors": "Invalid page_info"})
            prods = [p for p in prods if p["id"] > last]
        elif q.get("since_id"):
            prods = [p for p in prods if p["id"] > int(q["since_id"])]
        page = prods[:limit]
        hdr = {}
        if len(prods) > limit:
            hdr["Link"] = self._link(url, q, enc_cursor(page[-1]["id"]))
        return 200, {"products": [self.sim.sl_product(shop, p) for p in page]}, hdr

    def orders(self, shop, q, url):
        sim = self.sim
        limit = max(1, min(int(q.get("limit", 50)), 250))
        orders = list(shop.orders.values())
        for k, fld, op in (("updated_at_min", "updated_at", ">="), ("updated_at_max", "updated_at", "<="),
                           ("created_at_min", "created_at", ">="), ("created_at_max", "created_at", "<=")):
            if q.get(k):
                t = parse_time(q[k])
                if t is None:
                    raise ApiError(400, {"errors": "Invalid %s" % k})
                orders = [o for o in orders if _cmp(round(o[fld], 3), op, round(t, 3))]
        status = q.get("status", "any")
        if status == "open":
            orders = [o for o in orders if not o["cancelled_at"]]
        elif status == "cancelled":
            orders = [o for o in orders if o["cancelled_at"]]
        orders.sort(key=lambda o: o["id"])
        if q.get("page_info"):
            last = dec_cursor(q["page_info"])
            if not isinstance(last, int):
                raise ApiError(400, {"errors": "Invalid page_info"})
            orders = [o for o in orders if o["id"] > last]
        page = orders[:limit]
        hdr = {}
        if len(orders) > limit:
            hdr["Link"] = self._link(url, q, enc_cursor(page[-1]["id"]))
        return 200, {"orders": [sim.sl_order(shop, o) for o in page]}, hdr

    def _level(self, shop, item, lid):
        lvl = item["levels"][lid]
        return {"inventory_item_id": self.sim.sid(shop, item["id"]),
                "location_id": self.sim.sid(shop, lid),
                "variant_id": self.sim.sid(shop, item["variant_id"]),
                "available": lvl["available"], "updated_at": iso(lvl["updated_at"], "s")}

    def inv_write(self, shop, data, absolute):
        sim = self.sim
        if not isinstance(data, dict):
            raise ApiError(400, {"errors": "Invalid JSON body"})
        iid = data.get("inventory_item_id")
        lid = data.get("location_id")
        field = "available" if absolute else "available_adjustment"
        qty = data.get(field)
        if iid is None or lid is None or qty is None:
            raise ApiError(400, {"errors": "inventory_item_id, location_id and %s are required" % field})
        try:
            iid, lid, qty = int(str(iid)), int(str(lid)), int(qty)
        except (TypeError, ValueError):
            raise ApiError(400, {"errors": "Invalid parameter"})
        item = shop.items.get(iid)
        if item is None:
            raise ApiError(404, {"errors": "Inventory item not found"})
        if lid not in shop.locations:
            raise ApiError(404, {"errors": "Location not found"})
        if lid not in item["levels"]:
            raise ApiError(422, {"errors": "Inventory item is not stocked at the location"})
        if absolute:
            sim.set_level(shop, item, lid, qty, "api")
            sim.count(shop, "shopline.inventory_set")
        else:
            item["levels"][lid]["available"] += qty
            item["levels"][lid]["updated_at"] = time.time()
            item["levels"][lid]["writer"] = "api"
            sim.count(shop, "shopline.inventory_adjust")
        return 200, {"inventory_level": self._level(shop, item, lid)}, {}

    def inv_read(self, shop, q):
        raw = q.get("inventory_item_ids", "")
        ids = [x for x in raw.split(",") if x.strip()]
        if not ids:
            raise ApiError(400, {"errors": "inventory_item_ids is required"})
        if len(ids) > 50:
            raise ApiError(400, {"errors": "inventory_item_ids supports at most 50 ids"})
        locs = [x for x in q.get("location_ids", "").split(",") if x.strip()]
        if len(locs) > 10:
            raise ApiError(400, {"errors": "location_ids supports at most 10 ids"})
        out = []
        for i in ids:
            item = shop.items.get(int(i)) if i.strip().isdigit() else None
            if item is None:
                continue
            for lid in item["levels"]:
                if locs and str(lid) not in locs:
                    continue
                out.append(self._level(shop, item, lid))
        return 200, {"inventory_levels": out}, {}


class ShoplineGraphQL:
    """Shopline Admin GraphQL subset: pointsUpdate and a points balance read."""

    def __init__(self, sim):
        self.sim = sim

    def handle(self, shop, body):
        sim = self.sim
        sim.count(shop, "shopline.graphql.calls")
        try:
            req = json.loads(body or b"{}")
            op, roots = gql.parse(req.get("query"))
        except (ValueError, AttributeError, gql.GqlError) as e:
            return 200, {"errors": [{"message": str(e)}]}
        variables = req.get("variables") or {}
        data = {}
        errors = []
        for f in roots:
            sim.count(shop, "shopline.graphql." + f.name)
            if op == "mutation" and f.name == "pointsUpdate":
                data[f.key] = self.points_update(shop, f, variables)
            elif op == "query" and f.name == "pointsInfo":
                with sim.lock:
                    m = shop.members.get(gid_num(gql.arg(f, "customerId", variables)))
                data[f.key] = ({"pointName": "Points", "pointsBalance": m["points"]} if m else None)
            else:
                errors.append({"message": "Field '%s' doesn't exist" % f.name})
        out = {"data": data}
        if errors:
            out["errors"] = errors
        return 200, out

    def points_update(self, shop, f, v):
        sim = self.sim
        inp = gql.arg(f, "input", v) or {}
        cid = gid_num(inp.get("customerId"))
        with sim.lock:
            m = shop.members.get(cid)
            if m is None:
                return {"userErrors": [{"code": "CUSTOMER_NOT_FOUND", "field": ["customerId"],
                                        "message": "customer not found"}]}
            pts = inp.get("points")
            kind = inp.get("pointsUpdateType")
            way = inp.get("pointsUpdateWay", "MODIFY_EXISTING")
            if not isinstance(pts, int) or pts < 0 or kind not in ("INCREASE", "DECREASE"):
                return {"userErrors": [{"code": "INVALID_PARAMETER", "field": ["points"],
                                        "message": "invalid points or pointsUpdateType"}]}
            if way == "SPECIFIC_NUMBER":
                delta = pts - m["points"]
            else:
                delta = pts if kind == "INCREASE" else -pts
            try:
                sim.member_write(shop, m, delta, None, inp.get("remark"), "shopline")
            except ApiError:
                sim.count(shop, "shopline.points_too_frequent")
                return {"userErrors": [{"code": "OPERATION_TOO_FREQUENT", "field": None,
                                        "message": "operation is too frequent"}]}
            return {"userErrors": []}


class LoyaltyApp:
    """Stand-in for a third-party Shopify loyalty app's REST API (not a Shopify API)."""

    def __init__(self, sim):
        self.sim = sim

    def member(self, shop, m):
        return {"id": str(m["id"]), "email": m["email"], "phone": m["phone"],
                "first_name": m["first_name"], "last_name": m["last_name"],
                "points": m["points"], "version": m["version"],
                "updated_at": self.sim.ts(shop, m["updated_at"])}

    def handle(self, shop, method, rest, query, body):
        sim = self.sim
        sim.count(shop, "loyalty.calls")
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        data = {}
        if method == "POST":
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(400, {"error": {"code": "BAD_REQUEST", "message": "invalid JSON"}})
        with sim.lock:
            if rest == "members" and method == "GET":
                if not q.get("email") and not q.get("phone"):
                    raise ApiError(400, {"error": {"code": "BAD_REQUEST", "message": "email or phone required"}})
                ms = sim.find_members(shop, q.get("email"), q.get("phone"))
                return 200, {"members": [self.member(shop, m) for m in ms]}, {}
            if rest == "members" and method == "POST":
                m = sim.add_member(shop, data)
                return 201, {"member": self.member(shop, m)}, {}
            mm = re.match(r"^members/(\d+)(/points)?$", rest)
            if mm:
                m = shop.members.get(int(mm.group(1)))
                if m is None:
                    raise ApiError(404, {"error": {"code": "NOT_FOUND", "message": "member not found"}})
                if not mm.group(2) and method == "GET":
                    return 200, {"member": self.member(shop, m)}, {}
                if mm.group(2) and method == "POST":
                    delta = data.get("delta")
                    if not isinstance(delta, int) or isinstance(delta, bool):
                        raise ApiError(400, {"error": {"code": "BAD_REQUEST", "message": "delta must be an integer"}})
                    sim.member_write(shop, m, delta, data.get("expected_version"),
                                     data.get("reason"), "loyalty")
                    return 200, {"member": self.member(shop, m)}, {}
        raise ApiError(404, {"error": {"code": "NOT_FOUND", "message": "no such endpoint"}})


class Control:
    """The /_sim/ control API for tests and the demo."""

    def __init__(self, sim):
        self.sim = sim

    def shop(self, domain):
        s = self.sim.shops.get(domain)
        if s is None:
            raise ApiError(404, {"error": "unknown shop %s" % domain})
        return s

    def inventory(self, shop):
        out = []
        for item in shop.items.values():
            for lid, lvl in item["levels"].items():
                out.append({"sku": item["sku"], "inventory_item_id": str(item["id"]),
                            "location_id": str(lid), "location": shop.locations[lid]["name"],
                            "available": lvl["available"], "tracked": item["tracked"],
                            "writer": lvl["writer"], "updated_at": iso(lvl["updated_at"])})
        return out

    def ids(self, shop, product):
        out = []
        for vid in product["variants"]:
            v = shop.variants[vid]
            out.append({"sku": v["sku"], "variant_id": str(v["id"]),
                        "inventory_item_id": str(v["inventory_item_id"]),
                        "variant_gid": gid("ProductVariant", v["id"]),
                        "inventory_item_gid": gid("InventoryItem", v["inventory_item_id"])})
        return {"product_id": str(product["id"]), "variants": out}

    def counters(self, shop):
        c = dict(shop.counters)
        c["bucket"] = shop.bucket.status()
        c["webhooks.pending"] = sum(1 for r in shop.webhook_log
                                    if r["status"] in ("pending", "retrying"))
        return c

    def handle(self, method, path, query, body):
        sim = self.sim
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        data = {}
        if method == "POST" and body:
            try:
                data = json.loads(body)
            except ValueError:
                raise ApiError(400, {"error": "invalid JSON"})
            if not isinstance(data, dict):
                raise ApiError(400, {"error": "body must be a JSON object"})
        parts = [p for p in path.split("/") if p][1:]   # drop "_sim"
        if parts == ["health"]:
            return 200, {"ok": True, "shops": len(sim.shops), "seed": sim.seed,
                         "time_factor": sim.time_factor}
        if parts == ["reset"] and method == "POST":
            with sim.lock:
                sim.shops.clear()
                sim.seed = int(data.get("seed", sim.seed))
                sim.rng.seed(sim.seed)
                sim.side_rng.seed(sim.seed + 7919)
                if "time_factor" in data:
                    sim.time_factor = float(data["time_factor"])
            return 200, {"ok": True}
        if parts == ["seed"] and method == "POST":
            with sim.lock:
                sim.seed = int(data.get("seed", 1))
                sim.rng.seed(sim.seed)
            return 200, {"ok": True}
        if parts == ["time_factor"] and method == "POST":
            sim.time_factor = float(data.get("time_factor", 1.0))
            return 200, {"ok": True}
        if parts == ["counters"]:
            if method == "POST":
                with sim.lock:
                    for s in sim.shops.values():
                        s.counters.clear()
                return 200, {"ok": True}
            with sim.lock:
                return 200, {d: self.counters(s) for d, s in sim.shops.items()}
        if parts == ["webhooks", "wait"]:
            ok = sim.deliverer.wait_idle(float(q.get("timeout", data.get("timeout", 10))))
            return 200, {"idle": ok, "pending": sim.deliverer.pending()}
        if parts == ["shops"]:
            if method == "POST":
                try:
                    s = sim.create_shop(data)
                except ValueError as e:
                    raise ApiError(400, {"error": str(e)})
                for loc in data.get("locations") or []:
                    sim.add_location(s, loc if isinstance(loc, dict) else {"name": loc})
                return 201, s.public()
            with sim.lock:
                return 200, {"shops": [s.public() for s in sim.shops.values()]}
        if len(parts) >= 2 and parts[0] == "shops":
            shop = self.shop(parts[1])
            rest = parts[2:]
            return self.shop_route(shop, method, rest, q, data)
        raise ApiError(404, {"error": "no such control endpoint"})

    def shop_route(self, shop, method, rest, q, data):
        sim = self.sim
        if not rest:
            return 200, shop.public()
        head = rest[0]
        if head == "config" and method == "POST":
            sim.configure_shop(shop, data)
            return 200, shop.public()
        if head == "locations":
            if method == "POST":
                lid = sim.add_location(shop, data)
                return 201, {"id": str(lid), "gid": gid("Location", lid), "name": data.get("name")}
            return 200, {"locations": [{"id": str(x["id"]), "gid": gid("Location", x["id"]),
                                        "name": x["name"]} for x in shop.locations.values()]}
        if head == "products":
            if method == "POST" and len(rest) == 1:
                p = sim.add_product(shop, data, notify=bool(data.get("notify", False)))
                return 201, self.ids(shop, p)
            if method == "POST" and len(rest) == 2:
                p = sim.update_product(shop, gid_num(rest[1]) or int(rest[1]), data)
                return 200, self.ids(shop, p)
            with sim.lock:
                return 200, {"products": [self.ids(shop, p) for p in shop.products.values()]}
        if head == "catalog" and method == "POST":
            with sim.lock:
                for loc in data.get("locations") or []:
                    sim.add_location(shop, loc if isinstance(loc, dict) else {"name": loc})
                made = [self.ids(shop, sim.add_product(shop, p)) for p in data.get("products") or []]
                for lv in data.get("inventory") or []:
                    item = sim.item_ref(shop, lv)
                    sim.set_level(shop, item, sim.location(shop, lv.get("location")),
                                  int(lv.get("available", 0)), "control")
            return 201, {"products": made}
        if head == "inventory":
            if method == "POST":
                with sim.lock:
                    entries = data.get("levels") or [data]
                    for lv in entries:
                        item = sim.item_ref(shop, lv)
                        lid = sim.location(shop, lv.get("location"))
                        if "delta" in lv:
                            sim.adjust_level(shop, item, lid, int(lv["delta"]), "control")
                        else:
                            sim.set_level(shop, item, lid, int(lv.get("available", 0)), "control")
                return 200, {"ok": True}
            with sim.lock:
                inv = self.inventory(shop)
            if q.get("sku"):
                inv = [x for x in inv if x["sku"] == q["sku"]]
            return 200, {"levels": inv}
        if head == "orders":
            if len(rest) == 1:
                if method == "POST":
                    o = sim.create_order(shop, data)
                    return 201, {"id": str(o["id"]), "gid": gid("Order", o["id"]), "name": o["name"],
                                 "order": sim.render_order(shop, o)}
                with sim.lock:
                    return 200, {"orders": [sim.render_order(shop, o) for o in shop.orders.values()]}
            order = sim.get_order(shop, rest[1])
            action = rest[2] if len(rest) > 2 else None
            if action is None:
                with sim.lock:
                    return 200, {"order": sim.render_order(shop, order)}
            if method != "POST":
                raise ApiError(405, {"error": "POST required"})
            if action == "cancel":
                sim.cancel(shop, order, data)
            elif action == "refund":
                r = sim.refund(shop, order, data)
                return 200, {"refund_id": str(r["id"]), "order": sim.render_order(shop, order)}
            elif action in ("fulfil", "fulfill"):
                sim.fulfil(shop, order, data)
            elif action == "pay":
                sim.mark_paid(shop, order)
            elif action == "ready_for_pickup":
                sim.ready_for_pickup(shop, order)
            elif action == "picked_up":
                sim.picked_up(shop, order)
            elif action == "update":
                sim.update_order(shop, order, data)
            else:
                raise ApiError(404, {"error": "unknown order action"})
            with sim.lock:
                return 200, {"order": sim.render_order(shop, order)}
        if head == "members":
            if method == "POST" and len(rest) == 1:
                m = sim.add_member(shop, data)
                return 201, {"id": str(m["id"]), "version": m["version"], "points": m["points"]}
            with sim.lock:
                ms = [{"id": str(m["id"]), "email": m["email"], "phone": m["phone"],
                       "points": m["points"], "version": m["version"], "history": m["history"]}
                      for m in shop.members.values()]
            return 200, {"members": ms}
        if head == "counters":
            with sim.lock:
                if method == "POST":
                    shop.counters.clear()
                    return 200, {"ok": True}
                return 200, self.counters(shop)
        if head == "faults" and method == "POST":
            kind = data.get("kind")
            secs = float(data.get("seconds", 0))
            with sim.lock:
                if kind == "5xx":
                    shop.faults["5xx_until"] = time.monotonic() + secs
                    shop.faults["5xx_status"] = int(data.get("status", 503))
                elif kind == "throttle":
                    shop.faults["throttle_until"] = time.monotonic() + secs
                elif kind == "clear":
                    shop.faults["5xx_until"] = shop.faults["throttle_until"] = 0.0
                else:
                    raise ApiError(400, {"error": "kind must be 5xx, throttle or clear"})
            return 200, {"ok": True}
        if head == "webhooks":
            if len(rest) == 2 and rest[1] == "resend" and method == "POST":
                rec = sim.resend(shop, data.get("webhook_id"))
                return 200, {"webhook_id": rec["webhook_id"]}
            with sim.lock:
                log = [dict(r) for r in shop.webhook_log]
            if q.get("topic"):
                log = [r for r in log if r["topic"] == q["topic"]]
            return 200, {"webhooks": log}
        raise ApiError(404, {"error": "no such shop endpoint"})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "platform-sim/1"

    def log_message(self, fmt, *args):
        if getattr(self.server, "verbose", False):
            BaseHTTPRequestHandler.log_message(self, fmt, *args)

    def send_json(self, status, obj, headers=None):
        raw = dumps(obj)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def read_body(self):
        n = self.headers.get("Content-Length")
        if n is None:
            return b""
        try:
            n = int(n)
        except ValueError:
            raise ApiError(400, {"errors": "bad Content-Length"})
        if n < 0 or n > MAX_BODY:
            raise ApiError(413, {"errors": "request too large"})
        return self.rfile.read(n)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def fault(self, shop):
        if time.monotonic() < shop.faults["5xx_until"]:
            self.server.sim.count(shop, "faults.5xx")
            raise ApiError(shop.faults["5xx_status"], {"errors": "Service Unavailable"})

    def dispatch(self, method):
        sim = self.server.sim
        apis = self.server.apis
        try:
            body = self.read_body()
            url = urllib.parse.urlsplit(self.path)
            path, query = url.path, url.query
            host = self.headers.get("Host")
            if path.startswith("/_sim/"):
                status, obj = apis["control"].handle(method, path, query, body)
                return self.send_json(status, obj)
            m = SHOPIFY_GQL_RE.match(path)
            if m:
                shop = sim.shop_by_token(self.headers.get("X-Shopify-Access-Token"), host)
                if shop is None or shop.platform != "shopify":
                    raise ApiError(401, {"errors": "[API] Invalid API key or access token "
                                                   "(unrecognized login or wrong password)"})
                if method != "POST":
                    raise ApiError(405, {"errors": "Method not allowed"})
                self.fault(shop)
                status, obj = apis["shopify"].handle(shop, body)
                return self.send_json(status, obj)
            auth = self.headers.get("Authorization") or ""
            bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            m = SHOPLINE_REST_RE.match(path)
            if m:
                shop = sim.shop_by_token(bearer, host)
                if shop is None or shop.platform != "shopline":
                    raise ApiError(401, {"errors": "Unauthorized"})
                self.fault(shop)
                status, obj, hdr = apis["shopline"].handle(shop, method, m.group(1), m.group(2),
                                                           query, body, host)
                hdr = dict(hdr)
                hdr["traceId"] = "%016x" % sim.side_rng.getrandbits(64)
                return self.send_json(status, obj, hdr)
            m = SHOPLINE_GQL_RE.match(path)
            if m:
                shop = sim.shop_by_token(bearer, host)
                if shop is None or shop.platform != "shopline":
                    raise ApiError(401, {"errors": "Unauthorized"})
                self.fault(shop)
                status, obj = apis["shopline_gql"].handle(shop, body)
                return self.send_json(status, obj)
            m = LOYALTY_RE.match(path)
            if m:
                token = bearer or self.headers.get("X-Loyalty-Api-Key")
                with sim.lock:
                    found = [s for s in sim.shops.values()
                             if s.platform == "shopify" and s.loyalty_token == token]
                if not token or not found:
                    raise ApiError(401, {"error": {"code": "UNAUTHORIZED", "message": "bad api key"}})
                shop = found[0]
                if len(found) > 1 and host:
                    shop = next((s for s in found if s.domain == host.split(":")[0]), found[0])
                self.fault(shop)
                status, obj, hdr = apis["loyalty"].handle(shop, method, m.group(1), query, body)
                return self.send_json(status, obj, hdr)
            raise ApiError(404, {"errors": "Not Found"})
        except ApiError as e:
            self.send_json(e.status, e.body, e.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # keep serving; report the bug to the caller
            self.send_json(500, {"errors": "simulator error: %s: %s" % (type(e).__name__, e)})


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def make_server(host="127.0.0.1", port=0, seed=1, time_factor=1.0, workers=8, verbose=False):
    """Build (server, sim); call server.serve_forever() (blocking) to run it."""
    sim = Sim(seed=seed, time_factor=time_factor, workers=workers)
    srv = SimServer((host, port), Handler)
    srv.sim = sim
    srv.verbose = verbose
    srv.apis = {"control": Control(sim), "shopify": ShopifyGraphQL(sim),
                "shopline": ShoplineRest(sim), "shopline_gql": ShoplineGraphQL(sim),
                "loyalty": LoyaltyApp(sim)}
    return srv, sim


def start_in_thread(**kw):
    """Start a server on a background thread; returns (server, sim, port)."""
    srv, sim = make_server(**kw)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    return srv, sim, srv.server_address[1]
