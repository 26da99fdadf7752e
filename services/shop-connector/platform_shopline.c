/*
 * platform_shopline — Shopline: REST Admin OpenAPI (/admin/openapi/vYYYYMMDD/..., Bearer
 * token) and webhooks with X-Shopline-* headers. Signatures are HMAC-SHA256 of the raw body,
 * hex (SDK) or base64 (docs): hmac_verify accepts both. Ids have 26 digits: rawjson keeps them
 * as text. Pickup orders say delivery_method "pickup" with the store in location_id.
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

static const struct rest_dialect shopline_dialect = {
    .source_field = "order_source",
    .gid = false,
    .gid_prefix = "",
    .requires_shipping_field = "required_shipping",
    .tracked_field = "inventory_tracker",
    .tracked_is_string = false,
};

static bool shopline_verify(const struct shop *shop, const char *body, size_t len,
                            const char *signature)
{
    return hmac_verify(shop->webhook_secret, shop->previous_webhook_secret, body, len, signature);
}

static bool shopline_is_product_topic(const char *topic)
{
    return strcmp(topic, "products/create") == 0 || strcmp(topic, "products/update") == 0;
}

static int shopline_parse_order(const struct shop *shop, const char *topic, const json_t *root,
                                struct arena *a, struct order_doc *doc, char *err, size_t errlen)
{
    memset(doc, 0, sizeof(*doc));
    if (strncmp(topic, "orders/", 7) == 0 || strcmp(topic, PLATFORM_TOPIC_POLLED) == 0) {
        if (rest_order_parse(shop, &shopline_dialect, root, a, doc, err, errlen) < 0)
            return -EINVAL;
        Tillsync__V1__ShopOrder *o = doc->order;
        if (strcmp(rawjson_str(root, "delivery_method"), "pickup") == 0)
            o->pickup = true;
        return 0;
    }
    if (strcmp(topic, "refunds/create") == 0) {
        char oid[160];
        if (rawjson_get_id(root, "order_id", oid, sizeof(oid)) < 0) {
            snprintf(err, errlen, "order_id: missing");
            return -EINVAL;
        }
        doc->kind = DOC_REFUND;
        doc->order = order_new(shop, a, oid, "");
        doc->nrefunds = 1;
        doc->refunds = (Tillsync__V1__Refund **)arena_ptrs(a, 1);
        doc->refund_at_ms = arena_alloc(a, sizeof(int64_t));
        if (rest_refund_parse(shop, shop->currency, root, a, &doc->refunds[0],
                              &doc->refund_at_ms[0], err, errlen) < 0)
            return -EINVAL;
        doc->updated_at_ms = doc->refund_at_ms[0];
        return 0;
    }
    if (strcmp(topic, "fulfillments/create") == 0 || strcmp(topic, "fulfillments/update") == 0) {
        char oid[160];
        if (rawjson_get_id(root, "order_id", oid, sizeof(oid)) < 0) {
            snprintf(err, errlen, "order_id: missing");
            return -EINVAL;
        }
        doc->kind = DOC_FULFILLMENT;
        doc->order = order_new(shop, a, oid, "");
        doc->nfulfillments = 1;
        doc->fulfillments = (Tillsync__V1__Fulfillment **)arena_ptrs(a, 1);
        doc->fulfillment_at_ms = arena_alloc(a, sizeof(int64_t));
        if (rest_fulfillment_parse(root, a, &doc->fulfillments[0], &doc->fulfillment_at_ms[0], err,
                                   errlen) < 0)
            return -EINVAL;
        doc->updated_at_ms = doc->fulfillment_at_ms[0];
        return 0;
    }
    doc->kind = DOC_IGNORED;
    return 0;
}

static int shopline_parse_product(const struct shop *shop, const json_t *p, struct arena *a,
                                  struct catalog_page *out, char *err, size_t errlen)
{
    return rest_product_parse(shop, &shopline_dialect, p, a, out, err, errlen);
}

/* GET url with the Bearer token; parses the JSON answer into *root. */
static int shopline_get(const struct shop *shop, const char *url, json_t **root, char *next,
                        size_t nextcap, char *err, size_t errlen)
{
    char auth[1024];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", shop->access_token);
    const char *hdrs[] = {auth, "Accept: application/json", NULL};
    struct http_answer ans;
    for (int attempt = 0;; attempt++) {
        /* one request from the shop's shared REST budget */
        if (shop->rate && !shop->rate->take(shop->rate->ctx, shop, 1, err, errlen))
            return -EAGAIN;
        if (platform_http_call("GET", url, hdrs, NULL, &ans, err, errlen) < 0)
            return -EIO;
        if (ans.status == 429 && attempt < 20) {
            platform_http_release(&ans);
            struct timespec ts = {0, 250 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        break;
    }
    int rc = 0;
    if (ans.status != 200) {
        snprintf(err, errlen, "GET %s: HTTP %ld", url, ans.status);
        rc = -EIO;
        goto out;
    }
    *root = rawjson_parse(ans.body, ans.len, err, errlen);
    if (!*root) {
        rc = -EIO;
        goto out;
    }
    /* The Link header's absolute URL may not match api_base (proxies, TLS offload): keep only
     * its page_info cursor and rebuild the next URL on the address we were given. */
    next[0] = '\0';
    const char *pi = strstr(ans.next_url, "page_info=");
    if (pi) {
        size_t pl = strcspn(pi, "&");
        const char *qm = strchr(url, '?');
        size_t base = qm ? (size_t)(qm - url) : strlen(url);
        snprintf(next, nextcap, "%.*s?limit=250&%.*s", (int)base, url, (int)pl, pi);
    }
out:
    platform_http_release(&ans);
    return rc;
}

static int shopline_list_catalog(const struct shop *shop, struct arena *a, struct catalog_page *out,
                                 char *err, size_t errlen)
{
    char url[2048];
    snprintf(url, sizeof(url), "%s/admin/openapi/%s/products/products.json?limit=250",
             shop->api_base, shop->api_version);
    while (*url) {
        json_t *root = NULL;
        char next[2048] = "";
        if (shopline_get(shop, url, &root, next, sizeof(next), err, errlen) < 0)
            return -EIO;
        const json_t *ps = json_object_get(root, "products");
        for (size_t i = 0; i < json_array_size(ps); i++) {
            if (shopline_parse_product(shop, json_array_get(ps, i), a, out, err, errlen) < 0) {
                json_decref(root);
                return -EINVAL;
            }
        }
        json_decref(root);
        snprintf(url, sizeof(url), "%s", next);
    }
    return 0;
}

static int shopline_list_orders_since(const struct shop *shop, int64_t since_ms,
                                      platform_order_cb cb, void *opaque, int64_t *max_updated_ms,
                                      char *err, size_t errlen)
{
    char url[2048], ts[32];
    clock_format_rfc3339(since_ms, ts, sizeof(ts));
    snprintf(url, sizeof(url),
             "%s/admin/openapi/%s/orders.json?limit=250&status=any&updated_at_min=%s",
             shop->api_base, shop->api_version, ts);
    while (*url) {
        json_t *root = NULL;
        char next[2048] = "";
        if (shopline_get(shop, url, &root, next, sizeof(next), err, errlen) < 0)
            return -EIO;
        const json_t *os = json_object_get(root, "orders");
        for (size_t i = 0; i < json_array_size(os); i++) {
            const json_t *o = json_array_get(os, i);
            int64_t up = 0;
            char e2[64];
            if (time_field(o, "updated_at", &up, e2, sizeof(e2)) == 0 && up > *max_updated_ms)
                *max_updated_ms = up;
            char *raw = json_dumps(o, JSON_COMPACT);
            int rc = raw ? cb(opaque, raw, strlen(raw)) : -ENOMEM;
            free(raw);
            if (rc < 0) {
                json_decref(root);
                snprintf(err, errlen, "poll stopped by the intake");
                return rc;
            }
        }
        json_decref(root);
        snprintf(url, sizeof(url), "%s", next);
    }
    return 0;
}

/* ---- outbound: inventory_levels/set.json (absolute; never adjust.json) and reads ---- */

static void shopline_budget(const struct http_answer *ans, struct platform_budget *budget)
{
    budget->available = ans->status == 429 ? 0 : -1;
    budget->retry_after_ms = ans->retry_after_ms;
}

static int shopline_set_levels(const struct shop *shop, struct level_write *w, size_t n,
                               const char *idem_key, struct platform_budget *budget, char *err,
                               size_t errlen)
{
    (void)idem_key; /* Shopline has none: the absolute figure makes a retry harmless */
    budget->available = -1;
    budget->retry_after_ms = -1;
    if (n != 1) {
        snprintf(err, errlen, "shopline: one level per call");
        return -EINVAL;
    }
    char url[1024], auth[1024], body[512];
    snprintf(url, sizeof(url), "%s/admin/openapi/%s/inventory_levels/set.json", shop->api_base,
             shop->api_version);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", shop->access_token);
    const char *hdrs[] = {auth, "Content-Type: application/json", "Accept: application/json", NULL};
    /* ids travel as strings: 26 digits exceed every integer type */
    snprintf(body, sizeof(body),
             "{\"inventory_item_id\":\"%s\",\"location_id\":\"%s\",\"available\":%lld}",
             w[0].item_id, w[0].location_id, (long long)w[0].quantity);
    w[0].outcome = LEVEL_NOT_APPLIED;
    w[0].reason[0] = '\0';
    struct http_answer ans;
    if (platform_http_call("POST", url, hdrs, body, &ans, err, errlen) < 0)
        return -EIO;
    shopline_budget(&ans, budget);
    int rc = 0;
    if (ans.status == 429) {
        snprintf(err, errlen, "shopline: 429 throttled");
        rc = -EAGAIN;
    } else if (ans.status >= 500 || ans.status == 408) {
        snprintf(err, errlen, "shopline: HTTP %ld", ans.status);
        rc = -EIO;
    } else if (ans.status == 200) {
        w[0].outcome = LEVEL_OK;
    } else {
        /* 400/404/422: unknown item or location, not stocked there: refused for good */
        json_t *r = rawjson_parse(ans.body, ans.len, err, errlen);
        const char *msg = rawjson_str(r, "errors");
        w[0].outcome = LEVEL_REJECTED;
        snprintf(w[0].reason, sizeof(w[0].reason), "HTTP_%ld: %s", ans.status,
                 *msg ? msg : "rejected");
        json_decref(r);
    }
    platform_http_release(&ans);
    return rc;
}

static long shopline_read_cost(size_t n)
{
    (void)n;
    return 1;
}

static int shopline_read_levels(const struct shop *shop, struct level_read *r, size_t n,
                                struct platform_budget *budget, char *err, size_t errlen)
{
    budget->available = -1;
    budget->retry_after_ms = -1;
    /* ≤ 50 item ids and ≤ 10 location ids per call: list the distinct ones */
    size_t cap = 256 + n * 40;
    char *items = calloc(1, cap), *locs = calloc(1, cap), *url = calloc(1, 2 * cap + 2048);
    size_t nloc = 0;
    int rc = 0;
    if (!items || !locs || !url) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        r[i].found = false;
        bool dup_i = false, dup_l = false;
        for (size_t j = 0; j < i; j++) {
            dup_i |= strcmp(r[j].item_id, r[i].item_id) == 0;
            dup_l |= strcmp(r[j].location_id, r[i].location_id) == 0;
        }
        size_t l = strlen(items);
        if (!dup_i)
            snprintf(items + l, cap - l, "%s%s", l ? "," : "", r[i].item_id);
        l = strlen(locs);
        if (!dup_l) {
            snprintf(locs + l, cap - l, "%s%s", l ? "," : "", r[i].location_id);
            nloc++;
        }
    }
    snprintf(url, 2 * cap + 2048,
             "%s/admin/openapi/%s/inventory_levels.json?inventory_item_ids=%s%s%s", shop->api_base,
             shop->api_version, items, nloc <= 10 ? "&location_ids=" : "", nloc <= 10 ? locs : "");
    char auth[1024];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", shop->access_token);
    const char *hdrs[] = {auth, "Accept: application/json", NULL};
    struct http_answer ans;
    if (platform_http_call("GET", url, hdrs, NULL, &ans, err, errlen) < 0) {
        rc = -EIO;
        goto out;
    }
    shopline_budget(&ans, budget);
    if (ans.status != 200) {
        snprintf(err, errlen, "shopline: inventory_levels.json HTTP %ld", ans.status);
        rc = ans.status == 429 ? -EAGAIN : -EIO;
        platform_http_release(&ans);
        goto out;
    }
    json_t *root = rawjson_parse(ans.body, ans.len, err, errlen);
    platform_http_release(&ans);
    if (!root) {
        rc = -EIO;
        goto out;
    }
    const json_t *lv = json_object_get(root, "inventory_levels");
    for (size_t k = 0; k < json_array_size(lv); k++) {
        const json_t *l = json_array_get(lv, k);
        char item[200], loc[200];
        if (rawjson_get_id(l, "inventory_item_id", item, sizeof(item)) < 0 ||
            rawjson_get_id(l, "location_id", loc, sizeof(loc)) < 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(r[i].item_id, item) == 0 && strcmp(r[i].location_id, loc) == 0) {
                r[i].found = true;
                r[i].available = rawjson_int(l, "available", 0);
            }
        }
    }
    json_decref(root);
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(items);
    free(locs);
    free(url);
    return rc;
}

const struct platform_ops platform_shopline = {
    .name = "shopline",
    .platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE,
    .source_system = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPLINE,
    .default_api_version = "v20240301",
    .hdr_signature = "X-Shopline-Hmac-Sha256",
    .hdr_topic = "X-Shopline-Topic",
    .hdr_domain = "X-Shopline-Shop-Domain",
    .hdr_webhook_id = "X-Shopline-Webhook-Id",
    .hdr_event_id = NULL,
    .verify = shopline_verify,
    .parse_order = shopline_parse_order,
    .is_product_topic = shopline_is_product_topic,
    .parse_product = shopline_parse_product,
    .list_catalog = shopline_list_catalog,
    .list_orders_since = shopline_list_orders_since,
    .rate_api = "rest",
    .write_cost = 1,
    .max_write_batch = 1, /* inventory_levels/set.json takes one item and location */
    .max_read_batch = 50, /* inventory_levels.json: at most 50 item ids */
    .compare_and_set = false,
    .read_cost = shopline_read_cost,
    .set_levels = shopline_set_levels,
    .read_levels = shopline_read_levels,
};
