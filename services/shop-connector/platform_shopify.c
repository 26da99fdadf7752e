/*
 * platform_shopify — Shopify: webhooks with X-Shopify-* headers (base64 HMAC-SHA256 of the raw
 * body), REST-shaped payloads whose ids exceed 2^53, and the Admin GraphQL API for the
 * catalogue and the missed-webhook poll. Polled GraphQL orders are rewritten into the REST
 * shape the webhooks carry (shopify_gql_to_rest), so one parser serves both and dead-lettered
 * polled orders replay like webhooks.
 *
 * Pickup (BOPIS): a REST order names its pickup store in shipping_lines[0] (code/title = the
 * location's name, matched against SHOPS_FILE's location names); a polled order has it in
 * fulfillmentOrders.deliveryMethod PICK_UP + assignedLocation. "Ready for pickup" is the
 * fulfillment_orders/line_items_prepared_for_pickup webhook, or a polled pick-up fulfillment
 * order IN_PROGRESS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hmac.h"
#include "platform.h"
#include "platform_http.h"
#include "rawjson.h"

static const struct rest_dialect shopify_dialect = {
    .source_field = "source_name",
    .gid = true,
    .gid_prefix = "gid://shopify/",
    .requires_shipping_field = "requires_shipping",
    .tracked_field = "inventory_management",
    .tracked_is_string = true,
};

static bool shopify_verify(const struct shop *shop, const char *body, size_t len,
                           const char *signature)
{
    return hmac_verify(shop->webhook_secret, shop->previous_webhook_secret, body, len, signature);
}

static bool shopify_is_product_topic(const char *topic)
{
    return strcmp(topic, "products/create") == 0 || strcmp(topic, "products/update") == 0;
}

/* Pickup store of a REST order: shipping line named after a configured location, or the
 * tillsync_pickup_location_id a polled order carries. */
static void shopify_pickup(const struct shop *shop, const json_t *root, struct arena *a,
                           struct order_doc *doc)
{
    Tillsync__V1__ShopOrder *o = doc->order;
    const char *polled = rawjson_str(root, "tillsync_pickup_location_id");
    if (*polled) {
        o->pickup = true;
        o->platform_location_id = arena_strdup(a, polled);
    } else {
        const json_t *sl = json_array_get(json_object_get(root, "shipping_lines"), 0);
        const struct shop_location *loc = shop_location_by_name(shop, rawjson_str(sl, "code"));
        if (!loc)
            loc = shop_location_by_name(shop, rawjson_str(sl, "title"));
        if (loc) {
            o->pickup = true;
            o->platform_location_id = arena_strdup(a, loc->platform_id);
        }
    }
    doc->ready_for_pickup = json_is_true(json_object_get(root, "tillsync_ready_for_pickup"));
}

static int shopify_parse_order(const struct shop *shop, const char *topic, const json_t *root,
                               struct arena *a, struct order_doc *doc, char *err, size_t errlen)
{
    char oid[200], tail[200];
    memset(doc, 0, sizeof(*doc));
    if (strncmp(topic, "orders/", 7) == 0 || strcmp(topic, PLATFORM_TOPIC_POLLED) == 0) {
        if (rest_order_parse(shop, &shopify_dialect, root, a, doc, err, errlen) < 0)
            return -EINVAL;
        shopify_pickup(shop, root, a, doc);
        return 0;
    }
    if (strcmp(topic, "refunds/create") == 0 || strcmp(topic, "fulfillments/create") == 0 ||
        strcmp(topic, "fulfillments/update") == 0) {
        if (rawjson_get_id(root, "order_id", oid, sizeof(oid)) < 0) {
            snprintf(err, errlen, "order_id: missing");
            return -EINVAL;
        }
        char gid[256];
        snprintf(gid, sizeof(gid), "gid://shopify/Order/%s", oid);
        doc->order = order_new(shop, a, oid, gid);
        if (topic[0] == 'r') {
            doc->kind = DOC_REFUND;
            doc->nrefunds = 1;
            doc->refunds = (Tillsync__V1__Refund **)arena_ptrs(a, 1);
            doc->refund_at_ms = arena_alloc(a, sizeof(int64_t));
            if (rest_refund_parse(shop, shop->currency, root, a, &doc->refunds[0],
                                  &doc->refund_at_ms[0], err, errlen) < 0)
                return -EINVAL;
            doc->updated_at_ms = doc->refund_at_ms[0];
        } else {
            doc->kind = DOC_FULFILLMENT;
            doc->nfulfillments = 1;
            doc->fulfillments = (Tillsync__V1__Fulfillment **)arena_ptrs(a, 1);
            doc->fulfillment_at_ms = arena_alloc(a, sizeof(int64_t));
            if (rest_fulfillment_parse(root, a, &doc->fulfillments[0], &doc->fulfillment_at_ms[0],
                                       err, errlen) < 0)
                return -EINVAL;
            doc->updated_at_ms = doc->fulfillment_at_ms[0];
        }
        return 0;
    }
    if (strcmp(topic, "fulfillment_orders/line_items_prepared_for_pickup") == 0) {
        const json_t *fo = json_object_get(root, "fulfillment_order");
        if (rawjson_get_id(fo, "order_id", oid, sizeof(oid)) < 0) {
            snprintf(err, errlen, "fulfillment_order.order_id: missing");
            return -EINVAL;
        }
        rawjson_gid_tail(oid, tail, sizeof(tail));
        char gid[256];
        snprintf(gid, sizeof(gid), "gid://shopify/Order/%s", tail);
        doc->kind = DOC_READY;
        doc->order = order_new(shop, a, tail, gid);
        doc->ready_for_pickup = true;
        doc->order->pickup = true;
        char loc[200];
        if (rawjson_get_id(fo, "assigned_location_id", loc, sizeof(loc)) == 0) {
            rawjson_gid_tail(loc, tail, sizeof(tail));
            doc->order->platform_location_id = arena_strdup(a, tail);
        }
        if (time_field(fo, "prepared_for_pickup_at", &doc->updated_at_ms, err, errlen) < 0)
            return -EINVAL;
        return 0;
    }
    doc->kind = DOC_IGNORED;
    return 0;
}

static int shopify_parse_product(const struct shop *shop, const json_t *p, struct arena *a,
                                 struct catalog_page *out, char *err, size_t errlen)
{
    return rest_product_parse(shop, &shopify_dialect, p, a, out, err, errlen);
}

/* The shop's shared budget after an answer: what the platform says is left, and the points the
 * query really cost (actualQueryCost; the platform refunds the rest of the requested cost) as
 * the estimate for the next call of the same query. */
static void shopify_budget_note(const struct shop *shop, const json_t *root, long *cost_hint)
{
    const json_t *cost = json_object_get(json_object_get(root, "extensions"), "cost");
    const json_t *act = json_object_get(cost, "actualQueryCost");
    const json_t *ca =
        json_object_get(json_object_get(cost, "throttleStatus"), "currentlyAvailable");
    if (json_is_number(act) && json_number_value(act) > 0)
        __atomic_store_n(cost_hint, (long)json_number_value(act), __ATOMIC_RELAXED);
    if (shop->rate && json_is_number(ca))
        shop->rate->correct(shop->rate->ctx, shop, (long)json_number_value(ca));
}

/*
 * One GraphQL call; retries while throttled. *data gets the answer's "data" (new ref). Each
 * attempt first takes *cost_hint points from the shop's shared budget (what the query last
 * cost).
 */
static int shopify_graphql(const struct shop *shop, const char *query, json_t *variables,
                           long *cost_hint, json_t **data, char *err, size_t errlen)
{
    char url[1024], tok[1024];
    snprintf(url, sizeof(url), "%s/admin/api/%s/graphql.json", shop->api_base, shop->api_version);
    snprintf(tok, sizeof(tok), "X-Shopify-Access-Token: %s", shop->access_token);
    const char *hdrs[] = {tok, "Content-Type: application/json", NULL};
    json_t *req = json_pack("{s:s, s:O}", "query", query, "variables", variables);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    int rc = -EIO;
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (int attempt = 0; attempt < 30; attempt++) {
        struct http_answer ans;
        if (shop->rate &&
            !shop->rate->take(shop->rate->ctx, shop, __atomic_load_n(cost_hint, __ATOMIC_RELAXED),
                              err, errlen)) {
            rc = -EAGAIN;
            break;
        }
        if (platform_http_call("POST", url, hdrs, body, &ans, err, errlen) < 0)
            break;
        json_t *root = ans.status == 200 ? rawjson_parse(ans.body, ans.len, err, errlen) : NULL;
        if (!root) {
            if (ans.status != 200)
                snprintf(err, errlen, "GraphQL: HTTP %ld", ans.status);
            platform_http_release(&ans);
            if (ans.status == 429 || ans.status >= 500) {
                struct timespec ts = {0, 300 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            break;
        }
        platform_http_release(&ans);
        shopify_budget_note(shop, root, cost_hint);
        const json_t *errs = json_object_get(root, "errors");
        if (json_array_size(errs) > 0) {
            const char *code =
                rawjson_str(json_object_get(json_array_get(errs, 0), "extensions"), "code");
            if (strcmp(code, "THROTTLED") == 0) {
                json_decref(root);
                struct timespec ts = {0, 300 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            snprintf(err, errlen, "GraphQL: %s", rawjson_str(json_array_get(errs, 0), "message"));
            json_decref(root);
            break;
        }
        *data = json_incref(json_object_get(root, "data"));
        json_decref(root);
        rc = *data ? 0 : -EIO;
        if (rc < 0)
            snprintf(err, errlen, "GraphQL: no data");
        break;
    }
    free(body);
    return rc;
}

/* What each query last cost (actualQueryCost); before the first answer, 200 points (a full page
 * of either). Not the requested cost (532 and 922 points): the platform refunds the difference
 * at once, and taking the requested cost from a 1,000-point bucket that the push keeps busy
 * would starve the poll. A page that needs more than the platform has left is THROTTLED and
 * retried here after taking again. */
static long catalog_cost = 200, orders_cost = 200;

static const char catalog_query[] =
    "query($after: String) { products(first: 10, after: $after) { pageInfo { hasNextPage "
    "endCursor } nodes { id legacyResourceId title updatedAt variants(first: 25) { nodes { id "
    "legacyResourceId title sku barcode price inventoryItem { id legacyResourceId tracked "
    "requiresShipping } } } } } }";

static int shopify_list_catalog(const struct shop *shop, struct arena *a, struct catalog_page *out,
                                char *err, size_t errlen)
{
    json_t *vars = json_object();
    int rc = 0;
    for (;;) {
        json_t *data = NULL;
        if ((rc = shopify_graphql(shop, catalog_query, vars, &catalog_cost, &data, err, errlen)) <
            0)
            break;
        const json_t *conn = json_object_get(data, "products");
        const json_t *nodes = json_object_get(conn, "nodes");
        for (size_t i = 0; i < json_array_size(nodes); i++) {
            const json_t *p = json_array_get(nodes, i);
            /* rewrite into the REST product shape parse_product reads */
            json_t *rp = json_pack("{s:s, s:s, s:s, s:s, s:[]}", "id",
                                   rawjson_str(p, "legacyResourceId"), "admin_graphql_api_id",
                                   rawjson_str(p, "id"), "title", rawjson_str(p, "title"),
                                   "updated_at", rawjson_str(p, "updatedAt"), "variants");
            const json_t *vn = json_object_get(json_object_get(p, "variants"), "nodes");
            for (size_t j = 0; rp && j < json_array_size(vn); j++) {
                const json_t *v = json_array_get(vn, j);
                const json_t *ii = json_object_get(v, "inventoryItem");
                json_array_append_new(
                    json_object_get(rp, "variants"),
                    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s?}", "id",
                              rawjson_str(v, "legacyResourceId"), "admin_graphql_api_id",
                              rawjson_str(v, "id"), "title", rawjson_str(v, "title"), "sku",
                              rawjson_str(v, "sku"), "barcode", rawjson_str(v, "barcode"), "price",
                              rawjson_str(v, "price"), "inventory_item_id",
                              rawjson_str(ii, "legacyResourceId"), "requires_shipping",
                              json_is_true(json_object_get(ii, "requiresShipping")),
                              "inventory_management",
                              json_is_true(json_object_get(ii, "tracked")) ? "shopify" : NULL));
            }
            rc = rp ? shopify_parse_product(shop, rp, a, out, err, errlen) : -ENOMEM;
            json_decref(rp);
            if (rc < 0)
                break;
        }
        const json_t *pi = json_object_get(conn, "pageInfo");
        bool more = json_is_true(json_object_get(pi, "hasNextPage"));
        if (rc == 0 && more)
            json_object_set_new(vars, "after", json_string(rawjson_str(pi, "endCursor")));
        json_decref(data);
        if (rc < 0 || !more)
            break;
    }
    json_decref(vars);
    return rc;
}

static const char orders_query[] =
    "query($after: String, $q: String) { orders(first: 5, after: $after, sortKey: UPDATED_AT, "
    "query: $q) { pageInfo { hasNextPage endCursor } nodes { id legacyResourceId name createdAt "
    "updatedAt cancelledAt cancelReason sourceName displayFinancialStatus currencyCode "
    "physicalLocation { id } totalPriceSet { shopMoney { amount } } customer { id email phone "
    "firstName lastName } lineItems(first: 10) { nodes { id sku name quantity requiresShipping "
    "variant { id } product { id } originalUnitPriceSet { shopMoney { amount } } taxLines { title "
    "rate priceSet { shopMoney { amount } } } discountAllocations { allocatedAmountSet { "
    "shopMoney { amount } } } } } refunds { id createdAt note refundLineItems(first: 10) { nodes "
    "{ lineItem { id sku } quantity restockType location { id } } } } fulfillments { id createdAt "
    "status location { id } fulfillmentLineItems(first: 10) { nodes { lineItem { id sku } "
    "quantity } } } fulfillmentOrders(first: 2) { nodes { status deliveryMethod { methodType } "
    "assignedLocation { location { id } } } } } } }";

static const char *gid_num(const json_t *o, const char *key, char *buf, size_t cap)
{
    rawjson_gid_tail(rawjson_str(o, key), buf, cap);
    return buf;
}

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p && *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return d;
}

static const char *money_amount(const json_t *set)
{
    return rawjson_str(json_object_get(set, "shopMoney"), "amount");
}

/* A GraphQL order node in the REST webhook shape (new reference). */
static json_t *shopify_gql_to_rest(const json_t *n)
{
    char b1[160], b2[160], b3[160];
    char *fin = lower_dup(rawjson_str(n, "displayFinancialStatus"));
    char *reason = lower_dup(rawjson_str(n, "cancelReason"));
    const json_t *pl = json_object_get(n, "physicalLocation");
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:o, s:[], s:[], s:[]}", "id",
        rawjson_str(n, "legacyResourceId"), "admin_graphql_api_id", rawjson_str(n, "id"), "name",
        rawjson_str(n, "name"), "created_at", rawjson_str(n, "createdAt"), "updated_at",
        rawjson_str(n, "updatedAt"), "cancelled_at",
        *rawjson_str(n, "cancelledAt") ? json_string(rawjson_str(n, "cancelledAt")) : json_null(),
        "cancel_reason", reason ? reason : "", "source_name", rawjson_str(n, "sourceName"),
        "financial_status", fin ? fin : "", "currency", rawjson_str(n, "currencyCode"),
        "total_price", money_amount(json_object_get(n, "totalPriceSet")), "location_id",
        json_is_object(pl) ? json_string(gid_num(pl, "id", b1, sizeof(b1))) : json_null(),
        "line_items", "refunds", "fulfillments");
    free(fin);
    free(reason);
    if (!o)
        return NULL;
    const json_t *c = json_object_get(n, "customer");
    if (json_is_object(c))
        json_object_set_new(
            o, "customer",
            json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", gid_num(c, "id", b1, sizeof(b1)), "email",
                      rawjson_str(c, "email"), "phone", rawjson_str(c, "phone"), "first_name",
                      rawjson_str(c, "firstName"), "last_name", rawjson_str(c, "lastName")));
    const json_t *lines = json_object_get(json_object_get(n, "lineItems"), "nodes");
    for (size_t i = 0; i < json_array_size(lines); i++) {
        const json_t *l = json_array_get(lines, i);
        json_t *taxes = json_array(), *discs = json_array();
        const json_t *tl = json_object_get(l, "taxLines");
        for (size_t j = 0; j < json_array_size(tl); j++) {
            const json_t *t = json_array_get(tl, j);
            json_array_append_new(taxes,
                                  json_pack("{s:s, s:O, s:s}", "title", rawjson_str(t, "title"),
                                            "rate", json_object_get(t, "rate"), "price",
                                            money_amount(json_object_get(t, "priceSet"))));
        }
        const json_t *dl = json_object_get(l, "discountAllocations");
        for (size_t j = 0; j < json_array_size(dl); j++)
            json_array_append_new(discs,
                                  json_pack("{s:s}", "amount",
                                            money_amount(json_object_get(json_array_get(dl, j),
                                                                         "allocatedAmountSet"))));
        json_array_append_new(
            json_object_get(o, "line_items"),
            json_pack("{s:s, s:s, s:s, s:O, s:b, s:s, s:s, s:s, s:o, s:o}", "id",
                      gid_num(l, "id", b1, sizeof(b1)), "sku", rawjson_str(l, "sku"), "title",
                      rawjson_str(l, "name"), "quantity", json_object_get(l, "quantity"),
                      "requires_shipping", json_is_true(json_object_get(l, "requiresShipping")),
                      "variant_id", gid_num(json_object_get(l, "variant"), "id", b2, sizeof(b2)),
                      "product_id", gid_num(json_object_get(l, "product"), "id", b3, sizeof(b3)),
                      "price", money_amount(json_object_get(l, "originalUnitPriceSet")),
                      "tax_lines", taxes, "discount_allocations", discs));
    }
    const json_t *refs = json_object_get(n, "refunds");
    for (size_t i = 0; i < json_array_size(refs); i++) {
        const json_t *r = json_array_get(refs, i);
        json_t *rl = json_array();
        const json_t *rn = json_object_get(json_object_get(r, "refundLineItems"), "nodes");
        for (size_t j = 0; j < json_array_size(rn); j++) {
            const json_t *x = json_array_get(rn, j);
            const json_t *li = json_object_get(x, "lineItem");
            const json_t *loc = json_object_get(x, "location");
            char *rt = lower_dup(rawjson_str(x, "restockType"));
            json_array_append_new(
                rl, json_pack("{s:s, s:O, s:s, s:o, s:{s:s}}", "line_item_id",
                              gid_num(li, "id", b1, sizeof(b1)), "quantity",
                              json_object_get(x, "quantity"), "restock_type", rt ? rt : "",
                              "location_id",
                              json_is_object(loc) ? json_string(gid_num(loc, "id", b2, sizeof(b2)))
                                                  : json_null(),
                              "line_item", "sku", rawjson_str(li, "sku")));
            free(rt);
        }
        json_array_append_new(json_object_get(o, "refunds"),
                              json_pack("{s:s, s:s, s:s, s:o}", "id",
                                        gid_num(r, "id", b1, sizeof(b1)), "created_at",
                                        rawjson_str(r, "createdAt"), "note", rawjson_str(r, "note"),
                                        "refund_line_items", rl));
    }
    const json_t *fuls = json_object_get(n, "fulfillments");
    for (size_t i = 0; i < json_array_size(fuls); i++) {
        const json_t *f = json_array_get(fuls, i);
        json_t *fl = json_array();
        const json_t *fn = json_object_get(json_object_get(f, "fulfillmentLineItems"), "nodes");
        for (size_t j = 0; j < json_array_size(fn); j++) {
            const json_t *x = json_array_get(fn, j);
            const json_t *li = json_object_get(x, "lineItem");
            json_array_append_new(
                fl, json_pack("{s:s, s:s, s:O}", "id", gid_num(li, "id", b1, sizeof(b1)), "sku",
                              rawjson_str(li, "sku"), "quantity", json_object_get(x, "quantity")));
        }
        char *st = lower_dup(rawjson_str(f, "status"));
        json_array_append_new(
            json_object_get(o, "fulfillments"),
            json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", gid_num(f, "id", b1, sizeof(b1)),
                      "created_at", rawjson_str(f, "createdAt"), "status", st ? st : "",
                      "location_id", gid_num(json_object_get(f, "location"), "id", b2, sizeof(b2)),
                      "line_items", fl));
        free(st);
    }
    const json_t *fos = json_object_get(json_object_get(n, "fulfillmentOrders"), "nodes");
    for (size_t i = 0; i < json_array_size(fos); i++) {
        const json_t *fo = json_array_get(fos, i);
        const char *mt = rawjson_str(json_object_get(fo, "deliveryMethod"), "methodType");
        if (strcmp(mt, "PICK_UP") != 0)
            continue;
        const json_t *loc = json_object_get(json_object_get(fo, "assignedLocation"), "location");
        json_object_set_new(o, "tillsync_pickup_location_id",
                            json_string(gid_num(loc, "id", b1, sizeof(b1))));
        const char *st = rawjson_str(fo, "status");
        if (strcmp(st, "IN_PROGRESS") == 0 || strcmp(st, "CLOSED") == 0)
            json_object_set_new(o, "tillsync_ready_for_pickup", json_true());
    }
    return o;
}

static int shopify_list_orders_since(const struct shop *shop, int64_t since_ms,
                                     platform_order_cb cb, void *opaque, int64_t *max_updated_ms,
                                     char *err, size_t errlen)
{
    char ts[32], q[64];
    clock_format_rfc3339(since_ms, ts, sizeof(ts));
    snprintf(q, sizeof(q), "updated_at:>='%s'", ts);
    json_t *vars = json_pack("{s:s}", "q", q);
    int rc = 0;
    while (vars) {
        json_t *data = NULL;
        if ((rc = shopify_graphql(shop, orders_query, vars, &orders_cost, &data, err, errlen)) < 0)
            break;
        const json_t *conn = json_object_get(data, "orders");
        const json_t *nodes = json_object_get(conn, "nodes");
        for (size_t i = 0; rc == 0 && i < json_array_size(nodes); i++) {
            json_t *o = shopify_gql_to_rest(json_array_get(nodes, i));
            int64_t up = 0;
            char e2[64];
            if (o && time_field(o, "updated_at", &up, e2, sizeof(e2)) == 0 && up > *max_updated_ms)
                *max_updated_ms = up;
            char *raw = o ? json_dumps(o, JSON_COMPACT) : NULL;
            rc = raw ? cb(opaque, raw, strlen(raw)) : -ENOMEM;
            if (rc < 0)
                snprintf(err, errlen, "poll stopped by the intake");
            free(raw);
            json_decref(o);
        }
        const json_t *pi = json_object_get(conn, "pageInfo");
        bool more = json_is_true(json_object_get(pi, "hasNextPage"));
        if (rc == 0 && more)
            json_object_set_new(vars, "after", json_string(rawjson_str(pi, "endCursor")));
        json_decref(data);
        if (rc < 0 || !more)
            break;
    }
    json_decref(vars);
    return rc;
}

/* ---- outbound: inventorySetQuantities with compare-and-set, and level reads ---- */

static const char set_mutation[] =
    "mutation($input: InventorySetQuantitiesInput!, $key: String!) { "
    "inventorySetQuantities(input: $input) @idempotent(key: $key) { "
    "inventoryAdjustmentGroup { id } userErrors { field code message } } }";

static const char read_query[] =
    "query($ids: [ID!]!) { nodes(ids: $ids) { ... on InventoryItem { id inventoryLevels(first: "
    "10) { nodes { location { id } quantities(names: [\"available\"]) { name quantity } } } } } }";

/* One raw GraphQL call (no retry): 0 with *root, -EAGAIN throttled, -EIO transient. */
static int shopify_gql_once(const struct shop *shop, const char *query, json_t *variables,
                            json_t **root, struct platform_budget *budget, char *err, size_t errlen)
{
    char url[1024], tok[1024];
    snprintf(url, sizeof(url), "%s/admin/api/%s/graphql.json", shop->api_base, shop->api_version);
    snprintf(tok, sizeof(tok), "X-Shopify-Access-Token: %s", shop->access_token);
    const char *hdrs[] = {tok, "Content-Type: application/json", NULL};
    budget->available = -1;
    budget->retry_after_ms = -1;
    *root = NULL;
    json_t *req = json_pack("{s:s, s:O}", "query", query, "variables", variables);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct http_answer ans;
    int rc = platform_http_call("POST", url, hdrs, body, &ans, err, errlen);
    free(body);
    if (rc < 0)
        return -EIO;
    budget->retry_after_ms = ans.retry_after_ms;
    json_t *r = rawjson_parse(ans.body, ans.len, err, errlen);
    long status = ans.status;
    platform_http_release(&ans);
    const json_t *ts = json_object_get(json_object_get(json_object_get(r, "extensions"), "cost"),
                                       "throttleStatus");
    const json_t *ca = json_object_get(ts, "currentlyAvailable");
    if (json_is_number(ca))
        budget->available = (long)json_number_value(ca);
    const json_t *errs = json_object_get(r, "errors");
    const char *code = rawjson_str(json_object_get(json_array_get(errs, 0), "extensions"), "code");
    if (status == 429 || strcmp(code, "THROTTLED") == 0) {
        snprintf(err, errlen, "GraphQL: throttled");
        json_decref(r);
        return -EAGAIN;
    }
    if (status != 200 || !r) {
        if (status != 200)
            snprintf(err, errlen, "GraphQL: HTTP %ld", status);
        json_decref(r);
        return -EIO;
    }
    if (json_array_size(errs) > 0 && !json_is_object(json_object_get(r, "data"))) {
        snprintf(err, errlen, "GraphQL: %s %s", code,
                 rawjson_str(json_array_get(errs, 0), "message"));
        json_decref(r);
        return -EIO;
    }
    *root = r;
    return 0;
}

/* Index i of a userErrors field path ["input", "quantities", "i", ...], or -1. */
static long user_error_index(const json_t *field)
{
    if (json_array_size(field) < 3)
        return -1;
    const json_t *q = json_array_get(field, 1);
    const json_t *i = json_array_get(field, 2);
    if (!json_is_string(q) || strcmp(json_string_value(q), "quantities") != 0)
        return -1;
    if (json_is_integer(i))
        return (long)json_integer_value(i);
    if (!json_is_string(i))
        return -1;
    char *end = NULL;
    long v = strtol(json_string_value(i), &end, 10);
    return end && *end == '\0' ? v : -1;
}

static int shopify_set_levels(const struct shop *shop, struct level_write *w, size_t n,
                              const char *idem_key, struct platform_budget *budget, char *err,
                              size_t errlen)
{
    json_t *qs = json_array();
    for (size_t i = 0; i < n; i++) {
        char item[256], loc[256];
        snprintf(item, sizeof(item), "gid://shopify/InventoryItem/%s", w[i].item_id);
        snprintf(loc, sizeof(loc), "gid://shopify/Location/%s", w[i].location_id);
        json_array_append_new(qs,
                              json_pack("{s:s, s:s, s:I, s:I}", "inventoryItemId", item,
                                        "locationId", loc, "quantity", (json_int_t)w[i].quantity,
                                        "compareQuantity", (json_int_t)w[i].compare));
        w[i].outcome = LEVEL_NOT_APPLIED;
        w[i].reason[0] = '\0';
    }
    json_t *vars = json_pack("{s:{s:s, s:s, s:s, s:o}, s:s}", "input", "name", "available",
                             "reason", "correction", "referenceDocumentUri",
                             "tillsync://inventory-levels", "quantities", qs, "key", idem_key);
    if (!vars) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    json_t *root = NULL;
    int rc = shopify_gql_once(shop, set_mutation, vars, &root, budget, err, errlen);
    json_decref(vars);
    if (rc < 0)
        return rc;
    const json_t *res = json_object_get(json_object_get(root, "data"), "inventorySetQuantities");
    const json_t *ues = json_object_get(res, "userErrors");
    if (!json_is_object(res)) {
        snprintf(err, errlen, "GraphQL: inventorySetQuantities missing in the answer");
        json_decref(root);
        return -EIO;
    }
    if (json_array_size(ues) == 0) {
        for (size_t i = 0; i < n; i++)
            w[i].outcome = LEVEL_OK;
        json_decref(root);
        return 0;
    }
    /* The mutation is atomic: one error and nothing was written. */
    for (size_t e = 0; e < json_array_size(ues); e++) {
        const json_t *ue = json_array_get(ues, e);
        const char *code = rawjson_str(ue, "code");
        long i = user_error_index(json_object_get(ue, "field"));
        bool stale = strcmp(code, "COMPARE_QUANTITY_STALE") == 0 ||
                     strcmp(code, "CHANGE_FROM_QUANTITY_STALE") == 0 ||
                     strncmp(code, "IDEMPOTENCY_", 12) == 0;
        for (size_t k = 0; k < n; k++) {
            if (i >= 0 && (size_t)i != k)
                continue;
            /* an error without a quantity index (bad input name, idempotency) applies to all:
             * re-reading changes the compare figures and so the key */
            w[k].outcome = stale ? LEVEL_STALE : LEVEL_REJECTED;
            snprintf(w[k].reason, sizeof(w[k].reason), "%s: %s", code, rawjson_str(ue, "message"));
        }
    }
    json_decref(root);
    return 0;
}

static long shopify_read_cost(size_t n)
{
    /* nodes(ids) with a 10-level connection: requested cost 1 + 2 + 10 x 3 = 33 points; the
     * platform's throttleStatus corrects our view afterwards */
    (void)n;
    return 40;
}

static int shopify_read_levels(const struct shop *shop, struct level_read *r, size_t n,
                               struct platform_budget *budget, char *err, size_t errlen)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < n; i++) {
        char gid[256];
        snprintf(gid, sizeof(gid), "gid://shopify/InventoryItem/%s", r[i].item_id);
        json_array_append_new(ids, json_string(gid));
        r[i].found = false;
        r[i].available = 0;
    }
    json_t *vars = json_pack("{s:o}", "ids", ids);
    json_t *root = NULL;
    int rc = vars ? shopify_gql_once(shop, read_query, vars, &root, budget, err, errlen) : -ENOMEM;
    json_decref(vars);
    if (rc < 0)
        return rc;
    const json_t *nodes = json_object_get(json_object_get(root, "data"), "nodes");
    for (size_t k = 0; k < json_array_size(nodes); k++) {
        const json_t *it = json_array_get(nodes, k);
        char item[200], loc[200];
        if (rawjson_gid_tail(rawjson_str(it, "id"), item, sizeof(item)) < 0)
            continue;
        const json_t *lv = json_object_get(json_object_get(it, "inventoryLevels"), "nodes");
        for (size_t j = 0; j < json_array_size(lv); j++) {
            const json_t *l = json_array_get(lv, j);
            if (rawjson_gid_tail(rawjson_str(json_object_get(l, "location"), "id"), loc,
                                 sizeof(loc)) < 0)
                continue;
            const json_t *q = json_array_get(json_object_get(l, "quantities"), 0);
            const json_t *qv = json_object_get(q, "quantity");
            for (size_t i = 0; i < n; i++) {
                if (strcmp(r[i].item_id, item) == 0 && strcmp(r[i].location_id, loc) == 0 &&
                    json_is_integer(qv)) {
                    r[i].found = true;
                    r[i].available = (int64_t)json_integer_value(qv);
                }
            }
        }
    }
    json_decref(root);
    return 0;
}

const struct platform_ops platform_shopify = {
    .name = "shopify",
    .platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY,
    .source_system = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPIFY,
    .default_api_version = "2025-01",
    .hdr_signature = "X-Shopify-Hmac-Sha256",
    .hdr_topic = "X-Shopify-Topic",
    .hdr_domain = "X-Shopify-Shop-Domain",
    .hdr_webhook_id = "X-Shopify-Webhook-Id",
    .hdr_event_id = "X-Shopify-Event-Id",
    .ready_is_separate = true,
    .verify = shopify_verify,
    .parse_order = shopify_parse_order,
    .is_product_topic = shopify_is_product_topic,
    .parse_product = shopify_parse_product,
    .list_catalog = shopify_list_catalog,
    .list_orders_since = shopify_list_orders_since,
    .rate_api = "graphql",
    .write_cost = 10,
    .max_write_batch = 250,
    .max_read_batch = 250,
    .compare_and_set = true,
    .read_cost = shopify_read_cost,
    .set_levels = shopify_set_levels,
    .read_levels = shopify_read_levels,
};
