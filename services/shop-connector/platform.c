/*
 * platform — the adapter registry and the parsing Shopify and Shopline share: both deliver
 * REST-shaped order, refund and fulfillment objects (Shopline's are modelled on Shopify's), so
 * one parser reads them and each adapter adds what differs (source field, pickup, GIDs).
 */
#include "platform.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_util.h"
#include "rawjson.h"

extern const struct platform_ops platform_shopify;
extern const struct platform_ops platform_shopline;

static const struct platform_ops *const platforms[] = {
    &platform_shopify,
    &platform_shopline,
};

const struct platform_ops *platform_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof(platforms) / sizeof(platforms[0]); i++) {
        if (strcmp(platforms[i]->name, name) == 0)
            return platforms[i];
    }
    return NULL;
}

Tillsync__V1__PlatformId *platform_id_new(struct arena *a, const char *id, const char *gid)
{
    Tillsync__V1__PlatformId *p = arena_alloc(a, sizeof(*p));
    *p = (Tillsync__V1__PlatformId)TILLSYNC__V1__PLATFORM_ID__INIT;
    p->id = arena_strdup(a, id);
    p->gid = arena_strdup(a, gid);
    return p;
}

Tillsync__V1__ShopOrder *order_new(const struct shop *shop, struct arena *a, const char *id,
                                   const char *gid)
{
    Tillsync__V1__ShopOrder *o = arena_alloc(a, sizeof(*o));
    *o = (Tillsync__V1__ShopOrder)TILLSYNC__V1__SHOP_ORDER__INIT;
    o->platform = shop->ops->platform;
    o->shop_id = arena_strdup(a, shop->domain);
    o->order = platform_id_new(a, id, gid);
    o->currency = arena_strdup(a, shop->currency);
    return o;
}

int money_new(struct arena *a, const char *text, const char *currency, Tillsync__V1__Money **out,
              char *err, size_t errlen)
{
    Tillsync__V1__Money *m = arena_alloc(a, sizeof(*m));
    *m = (Tillsync__V1__Money)TILLSYNC__V1__MONEY__INIT;
    m->currency = arena_strdup(a, currency);
    *out = m;
    if (!text || !*text)
        return 0;
    int64_t minor = 0;
    if (money_parse(text, currency, &minor, err, errlen) < 0)
        return -EINVAL;
    m->minor_units = minor;
    return 0;
}

/* Money field of o (a decimal string, or a number written as text in the raw JSON). */
static int money_field(struct arena *a, const json_t *o, const char *key, const char *currency,
                       Tillsync__V1__Money **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    char buf[64] = "";
    if (json_is_string(v)) {
        snprintf(buf, sizeof(buf), "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (v && !json_is_null(v)) {
        snprintf(err, errlen, "%s: expected a decimal string", key);
        return -EINVAL;
    }
    char e2[160];
    if (money_new(a, buf, currency, out, e2, sizeof(e2)) < 0) {
        snprintf(err, errlen, "%s: %s", key, e2);
        return -EINVAL;
    }
    return 0;
}

int time_field(const json_t *o, const char *key, int64_t *ms, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    *ms = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || clock_parse_rfc3339(json_string_value(v), ms) < 0) {
        snprintf(err, errlen, "%s: expected an RFC 3339 time", key);
        return -EINVAL;
    }
    return 0;
}

/* Arena copy of an id field; "" when absent. -EINVAL for a non-id type. */
static int id_field(struct arena *a, const json_t *o, const char *key, char **out, char *err,
                    size_t errlen)
{
    char buf[160];
    int rc = rawjson_get_id(o, key, buf, sizeof(buf));
    if (rc == -ENOENT) {
        *out = arena_strdup(a, "");
        return 0;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: expected an id (number or string)", key);
        return -EINVAL;
    }
    char tail[160];
    rawjson_gid_tail(buf, tail, sizeof(tail));
    *out = arena_strdup(a, tail);
    return 0;
}

static int restock_type(const char *s, Tillsync__V1__RestockType *out)
{
    if (strcmp(s, "return") == 0)
        *out = TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_RETURN;
    else if (strcmp(s, "cancel") == 0)
        *out = TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_CANCEL;
    else if (strcmp(s, "no_restock") == 0)
        *out = TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_NO_RESTOCK;
    else if (strcmp(s, "restocked") == 0 || strcmp(s, "legacy_restock") == 0)
        *out = TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_LEGACY_RESTOCK;
    else
        return -EINVAL;
    return 0;
}

/* A tax rate (a fraction: 0.2 = 20%) in parts per million: a JSON number or a decimal string
 * (Shopline writes either). 0 when absent, unreadable or beyond ±1000 (100,000%). */
static int64_t rate_ppm(const json_t *rate)
{
    double v = 0;
    if (json_is_number(rate)) {
        v = json_number_value(rate);
    } else if (json_is_string(rate)) {
        const char *s = json_string_value(rate);
        char *end = NULL;
        v = strtod(s, &end);
        if (end == s || *end != '\0')
            v = 0;
    }
    if (!isfinite(v) || v > 1000 || v < -1000)
        return 0;
    return (int64_t)llround(v * 1e6);
}

/* One order line (also a refund's or fulfillment's embedded line_item). */
static int line_parse(const json_t *l, const char *currency, struct arena *a,
                      Tillsync__V1__OrderLine **out, char *err, size_t errlen)
{
    Tillsync__V1__OrderLine *ln = arena_alloc(a, sizeof(*ln));
    *ln = (Tillsync__V1__OrderLine)TILLSYNC__V1__ORDER_LINE__INIT;
    char *variant, *item, *product;
    if (!json_is_object(l)) {
        snprintf(err, errlen, "line_items: expected objects");
        return -EINVAL;
    }
    if (id_field(a, l, "id", &ln->line_id, err, errlen) < 0 ||
        id_field(a, l, "variant_id", &variant, err, errlen) < 0 ||
        id_field(a, l, "inventory_item_id", &item, err, errlen) < 0 ||
        id_field(a, l, "product_id", &product, err, errlen) < 0)
        return -EINVAL;
    if (!*ln->line_id) {
        snprintf(err, errlen, "line_items[].id: missing");
        return -EINVAL;
    }
    ln->variant = platform_id_new(a, variant, "");
    ln->inventory_item = platform_id_new(a, item, "");
    ln->product = platform_id_new(a, product, "");
    ln->sku = arena_strdup(a, rawjson_str(l, "sku"));
    ln->title = arena_strdup(a, rawjson_str(l, "title"));
    const json_t *q = json_object_get(l, "quantity");
    if (!json_is_integer(q) || json_integer_value(q) < 0) {
        snprintf(err, errlen, "line_items[%s].quantity: expected a non-negative integer",
                 ln->line_id);
        return -EINVAL;
    }
    ln->quantity = json_integer_value(q);
    ln->requires_shipping = json_is_true(json_object_get(l, "requires_shipping"));
    if (money_field(a, l, "price", currency, &ln->unit_price, err, errlen) < 0)
        return -EINVAL;
    const json_t *taxes = json_object_get(l, "tax_lines");
    ln->n_tax_lines = json_array_size(taxes);
    ln->tax_lines = (Tillsync__V1__TaxLine **)arena_ptrs(a, ln->n_tax_lines);
    for (size_t i = 0; i < ln->n_tax_lines; i++) {
        const json_t *t = json_array_get(taxes, i);
        Tillsync__V1__TaxLine *tl = arena_alloc(a, sizeof(*tl));
        *tl = (Tillsync__V1__TaxLine)TILLSYNC__V1__TAX_LINE__INIT;
        tl->name = arena_strdup(a, rawjson_str(t, "title"));
        tl->code = arena_strdup(a, rawjson_str(t, "title"));
        tl->rate_ppm = rate_ppm(json_object_get(t, "rate"));
        if (money_field(a, t, "price", currency, &tl->amount, err, errlen) < 0)
            return -EINVAL;
        ln->tax_lines[i] = tl;
    }
    const json_t *discs = json_object_get(l, "discount_allocations");
    ln->n_discounts = json_array_size(discs);
    ln->discounts = (Tillsync__V1__Discount **)arena_ptrs(a, ln->n_discounts);
    for (size_t i = 0; i < ln->n_discounts; i++) {
        Tillsync__V1__Discount *d = arena_alloc(a, sizeof(*d));
        *d = (Tillsync__V1__Discount)TILLSYNC__V1__DISCOUNT__INIT;
        if (money_field(a, json_array_get(discs, i), "amount", currency, &d->amount, err, errlen) <
            0)
            return -EINVAL;
        ln->discounts[i] = d;
    }
    *out = ln;
    return 0;
}

int rest_product_parse(const struct shop *shop, const struct rest_dialect *d, const json_t *p,
                       struct arena *a, struct catalog_page *out, char *err, size_t errlen)
{
    char pid[160];
    if (rawjson_get_id(p, "id", pid, sizeof(pid)) < 0) {
        snprintf(err, errlen, "product id: missing");
        return -EINVAL;
    }
    int64_t updated = 0;
    if (time_field(p, "updated_at", &updated, err, errlen) < 0)
        return -EINVAL;
    const json_t *vs = json_object_get(p, "variants");
    size_t n = json_array_size(vs);
    Tillsync__V1__CatalogItem **items = (Tillsync__V1__CatalogItem **)arena_ptrs(a, out->n + n);
    if (out->n)
        memcpy(items, out->items, out->n * sizeof(*items));
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(vs, i);
        char vid[160], iid[160] = "", igid[256] = "";
        if (rawjson_get_id(v, "id", vid, sizeof(vid)) < 0) {
            snprintf(err, errlen, "variants[%zu].id: missing", i);
            return -EINVAL;
        }
        rawjson_get_id(v, "inventory_item_id", iid, sizeof(iid));
        if (d->gid && *iid)
            snprintf(igid, sizeof(igid), "%sInventoryItem/%s", d->gid_prefix, iid);
        Tillsync__V1__CatalogItem *it = arena_alloc(a, sizeof(*it));
        *it = (Tillsync__V1__CatalogItem)TILLSYNC__V1__CATALOG_ITEM__INIT;
        it->platform = shop->ops->platform;
        it->shop_id = arena_strdup(a, shop->domain);
        it->sku = arena_strdup(a, rawjson_str(v, "sku"));
        it->barcode = arena_strdup(a, rawjson_str(v, "barcode"));
        it->title = arena_strdup(a, rawjson_str(p, "title"));
        it->variant_title = arena_strdup(a, rawjson_str(v, "title"));
        it->product = platform_id_new(a, pid, d->gid ? rawjson_str(p, "admin_graphql_api_id") : "");
        it->variant = platform_id_new(a, vid, d->gid ? rawjson_str(v, "admin_graphql_api_id") : "");
        it->inventory_item = platform_id_new(a, iid, igid);
        if (money_new(a, rawjson_str(v, "price"), shop->currency, &it->price, err, errlen) < 0)
            return -EINVAL;
        it->requires_shipping = json_is_true(json_object_get(v, d->requires_shipping_field));
        it->tracked = d->tracked_is_string ? *rawjson_str(v, d->tracked_field) != '\0'
                                           : json_is_true(json_object_get(v, d->tracked_field));
        it->platform_updated_at_ms = updated;
        items[out->n++] = it;
    }
    out->items = items;
    return 0;
}

int rest_refund_parse(const struct shop *shop, const char *currency, const json_t *r,
                      struct arena *a, Tillsync__V1__Refund **out, int64_t *at_ms, char *err,
                      size_t errlen)
{
    (void)shop;
    Tillsync__V1__Refund *rf = arena_alloc(a, sizeof(*rf));
    *rf = (Tillsync__V1__Refund)TILLSYNC__V1__REFUND__INIT;
    if (!json_is_object(r) || id_field(a, r, "id", &rf->refund_id, err, errlen) < 0)
        return -EINVAL;
    if (!*rf->refund_id) {
        snprintf(err, errlen, "refund id: missing");
        return -EINVAL;
    }
    if (time_field(r, "created_at", at_ms, err, errlen) < 0)
        return -EINVAL;
    rf->note = arena_strdup(a, rawjson_str(r, "note"));
    const json_t *lines = json_object_get(r, "refund_line_items");
    rf->n_lines = json_array_size(lines);
    rf->lines = (Tillsync__V1__RefundLine **)arena_ptrs(a, rf->n_lines);
    int64_t total = 0;
    for (size_t i = 0; i < rf->n_lines; i++) {
        const json_t *x = json_array_get(lines, i);
        Tillsync__V1__RefundLine *rl = arena_alloc(a, sizeof(*rl));
        *rl = (Tillsync__V1__RefundLine)TILLSYNC__V1__REFUND_LINE__INIT;
        if (id_field(a, x, "line_item_id", &rl->line_id, err, errlen) < 0 ||
            id_field(a, x, "location_id", &rl->platform_location_id, err, errlen) < 0)
            return -EINVAL;
        rl->sku = arena_strdup(a, rawjson_str(json_object_get(x, "line_item"), "sku"));
        rl->location_id = arena_strdup(a, "");
        const json_t *q = json_object_get(x, "quantity");
        if (!json_is_integer(q) || json_integer_value(q) <= 0) {
            snprintf(err, errlen, "refund_line_items[%zu].quantity: expected a positive integer",
                     i);
            return -EINVAL;
        }
        rl->quantity = json_integer_value(q);
        const char *rt = rawjson_str(x, "restock_type");
        if (restock_type(rt, &rl->restock_type) < 0) {
            snprintf(err, errlen, "refund_line_items[%zu].restock_type: unknown \"%.40s\"", i, rt);
            return -EINVAL;
        }
        if (money_field(a, x, "subtotal", currency, &rl->subtotal, err, errlen) < 0 ||
            money_field(a, x, "total_tax", currency, &rl->tax, err, errlen) < 0)
            return -EINVAL;
        total += rl->subtotal->minor_units + rl->tax->minor_units;
        rf->lines[i] = rl;
    }
    money_new(a, NULL, currency, &rf->amount, err, errlen);
    rf->amount->minor_units = total;
    *out = rf;
    return 0;
}

int rest_fulfillment_parse(const json_t *f, struct arena *a, Tillsync__V1__Fulfillment **out,
                           int64_t *at_ms, char *err, size_t errlen)
{
    Tillsync__V1__Fulfillment *fu = arena_alloc(a, sizeof(*fu));
    *fu = (Tillsync__V1__Fulfillment)TILLSYNC__V1__FULFILLMENT__INIT;
    if (!json_is_object(f) || id_field(a, f, "id", &fu->fulfillment_id, err, errlen) < 0 ||
        id_field(a, f, "location_id", &fu->platform_location_id, err, errlen) < 0)
        return -EINVAL;
    if (!*fu->fulfillment_id) {
        snprintf(err, errlen, "fulfillment id: missing");
        return -EINVAL;
    }
    int64_t created = 0, updated = 0;
    if (time_field(f, "created_at", &created, err, errlen) < 0 ||
        time_field(f, "updated_at", &updated, err, errlen) < 0)
        return -EINVAL;
    *at_ms = updated ? updated : created;
    fu->location_id = arena_strdup(a, "");
    fu->status = arena_strdup(a, rawjson_str(f, "status"));
    fu->tracking_number = arena_strdup(a, rawjson_str(f, "tracking_number"));
    const json_t *lines = json_object_get(f, "line_items");
    fu->n_lines = json_array_size(lines);
    fu->lines = (Tillsync__V1__FulfillmentLine **)arena_ptrs(a, fu->n_lines);
    for (size_t i = 0; i < fu->n_lines; i++) {
        const json_t *x = json_array_get(lines, i);
        Tillsync__V1__FulfillmentLine *fl = arena_alloc(a, sizeof(*fl));
        *fl = (Tillsync__V1__FulfillmentLine)TILLSYNC__V1__FULFILLMENT_LINE__INIT;
        if (id_field(a, x, "id", &fl->line_id, err, errlen) < 0)
            return -EINVAL;
        fl->sku = arena_strdup(a, rawjson_str(x, "sku"));
        fl->quantity = rawjson_int(x, "quantity", 0);
        fu->lines[i] = fl;
    }
    *out = fu;
    return 0;
}

int rest_order_parse(const struct shop *shop, const struct rest_dialect *d, const json_t *o,
                     struct arena *a, struct order_doc *doc, char *err, size_t errlen)
{
    char id[160], gid[200] = "";
    if (rawjson_get_id(o, "id", id, sizeof(id)) < 0) {
        snprintf(err, errlen, "id: missing or not an id");
        return -EINVAL;
    }
    if (d->gid)
        snprintf(gid, sizeof(gid), "%s", rawjson_str(o, "admin_graphql_api_id"));
    Tillsync__V1__ShopOrder *ord = order_new(shop, a, id, gid);
    doc->kind = DOC_ORDER;
    doc->order = ord;
    const char *cur = rawjson_str(o, "currency");
    if (*cur)
        ord->currency = arena_strdup(a, cur);
    if (time_field(o, "updated_at", &doc->updated_at_ms, err, errlen) < 0 ||
        time_field(o, "cancelled_at", &doc->cancelled_at_ms, err, errlen) < 0)
        return -EINVAL;
    if (!doc->updated_at_ms) {
        snprintf(err, errlen, "updated_at: missing");
        return -EINVAL;
    }
    ord->platform_updated_at_ms = doc->updated_at_ms;
    ord->order_name = arena_strdup(a, rawjson_str(o, "name"));
    ord->source_name = arena_strdup(a, rawjson_str(o, d->source_field));
    ord->in_store_sale = strcmp(ord->source_name, "pos") == 0;
    ord->financial_status = arena_strdup(a, rawjson_str(o, "financial_status"));
    ord->fulfillment_status = arena_strdup(a, rawjson_str(o, "fulfillment_status"));
    ord->cancel_reason = arena_strdup(a, rawjson_str(o, "cancel_reason"));
    if (id_field(a, o, "location_id", &ord->platform_location_id, err, errlen) < 0)
        return -EINVAL;
    ord->location_id = arena_strdup(a, "");
    const char *fs = ord->financial_status;
    doc->paid = strcmp(fs, "paid") == 0 || strcmp(fs, "partially_refunded") == 0 ||
                strcmp(fs, "refunded") == 0;
    doc->cancelled = doc->cancelled_at_ms != 0;
    if (money_field(a, o, "subtotal_price", ord->currency, &ord->subtotal, err, errlen) < 0 ||
        money_field(a, o, "total_discounts", ord->currency, &ord->discount_total, err, errlen) <
            0 ||
        money_field(a, o, "total_tax", ord->currency, &ord->tax_total, err, errlen) < 0 ||
        money_field(a, o, "total_price", ord->currency, &ord->total, err, errlen) < 0)
        return -EINVAL;
    const json_t *c = json_object_get(o, "customer");
    if (json_is_object(c)) {
        Tillsync__V1__Customer *cu = arena_alloc(a, sizeof(*cu));
        *cu = (Tillsync__V1__Customer)TILLSYNC__V1__CUSTOMER__INIT;
        if (id_field(a, c, "id", &cu->customer_id, err, errlen) < 0)
            return -EINVAL;
        cu->email = arena_strdup(a, rawjson_str(c, "email"));
        cu->phone = arena_strdup(a, rawjson_str(c, "phone"));
        char name[256];
        snprintf(name, sizeof(name), "%s%s%s", rawjson_str(c, "first_name"),
                 *rawjson_str(c, "last_name") ? " " : "", rawjson_str(c, "last_name"));
        cu->name = arena_strdup(a, name);
        ord->customer = cu;
    }
    const json_t *lines = json_object_get(o, "line_items");
    if (!json_is_array(lines)) {
        snprintf(err, errlen, "line_items: expected an array");
        return -EINVAL;
    }
    ord->n_lines = json_array_size(lines);
    ord->lines = (Tillsync__V1__OrderLine **)arena_ptrs(a, ord->n_lines);
    for (size_t i = 0; i < ord->n_lines; i++) {
        if (line_parse(json_array_get(lines, i), ord->currency, a, &ord->lines[i], err, errlen) < 0)
            return -EINVAL;
    }
    const json_t *refunds = json_object_get(o, "refunds");
    doc->nrefunds = json_array_size(refunds);
    doc->refunds = (Tillsync__V1__Refund **)arena_ptrs(a, doc->nrefunds);
    doc->refund_at_ms = arena_alloc(a, (doc->nrefunds + 1) * sizeof(int64_t));
    for (size_t i = 0; i < doc->nrefunds; i++) {
        if (rest_refund_parse(shop, ord->currency, json_array_get(refunds, i), a, &doc->refunds[i],
                              &doc->refund_at_ms[i], err, errlen) < 0)
            return -EINVAL;
    }
    const json_t *fuls = json_object_get(o, "fulfillments");
    doc->nfulfillments = json_array_size(fuls);
    doc->fulfillments = (Tillsync__V1__Fulfillment **)arena_ptrs(a, doc->nfulfillments);
    doc->fulfillment_at_ms = arena_alloc(a, (doc->nfulfillments + 1) * sizeof(int64_t));
    for (size_t i = 0; i < doc->nfulfillments; i++) {
        if (rest_fulfillment_parse(json_array_get(fuls, i), a, &doc->fulfillments[i],
                                   &doc->fulfillment_at_ms[i], err, errlen) < 0)
            return -EINVAL;
    }
    return 0;
}

int platform_bucket(const struct shop *shop, const char *tenant,
                    const struct platform_budgets *budgets, struct ratelimit_bucket *b, char *key,
                    size_t keycap, char *err, size_t errlen)
{
    bool shopify = shop->ops->compare_and_set;

    b->capacity = shopify ? budgets->shopify_bucket : budgets->shopline_bucket;
    b->refill_per_s = shopify ? budgets->shopify_restore : budgets->shopline_rate;
    if (ratelimit_key(tenant, shop->domain, shop->ops->rate_api, key, keycap) < 0) {
        snprintf(err, errlen, "SHOPS_FILE: shop %s: bucket key too long", shop->key);
        return -EINVAL;
    }
    b->key = key;
    return 0;
}
