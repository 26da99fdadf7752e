/* catalog — see catalog.h. Items are stored as the JSON the HTTP API serves, keyed by the
 * record key; a second object maps SKU -> key for lookups. */
#include "catalog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_util.h"
#include "tillsync/v1/catalog.pb-c.h"

struct catalog {
    pthread_rwlock_t lock;
    json_t *by_key; /* record key -> item JSON */
    json_t *by_sku; /* sku -> record key (the latest item seen with that SKU) */
};

struct catalog *catalog_new(void)
{
    struct catalog *c = calloc(1, sizeof(*c));

    if (!c)
        abort(); /* OOM policy */
    pthread_rwlock_init(&c->lock, NULL);
    c->by_key = json_object();
    c->by_sku = json_object();
    if (!c->by_key || !c->by_sku)
        abort();
    return c;
}

void catalog_free(struct catalog *c)
{
    if (!c)
        return;
    json_decref(c->by_key);
    json_decref(c->by_sku);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

static json_t *money_json(const Tillsync__V1__Money *m)
{
    char text[48];

    if (!m)
        return json_null();
    money_format(m->minor_units, m->currency, text, sizeof(text));
    return json_pack("{s:s, s:I, s:s}", "amount", text, "minor_units", (json_int_t)m->minor_units,
                     "currency", m->currency ? m->currency : "");
}

static const char *platform_name(Tillsync__V1__Platform p)
{
    switch (p) {
    case TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY:
        return "shopify";
    case TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE:
        return "shopline";
    default:
        return "unknown";
    }
}

static json_t *item_json(const char *key, const Tillsync__V1__CatalogItem *it)
{
    char upd[32] = "", pc[32] = "";

    if (it->platform_updated_at_ms > 0)
        clock_format_rfc3339(it->platform_updated_at_ms, upd, sizeof(upd));
    if (it->price_changed_at_ms > 0)
        clock_format_rfc3339(it->price_changed_at_ms, pc, sizeof(pc));
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:b, s:s, s:s, s:s, "
        "s:I, s:I}",
        "key", key, "sku", it->sku, "barcode", it->barcode, "title", it->title, "variant_title",
        it->variant_title, "platform", platform_name(it->platform), "shop_id", it->shop_id,
        "variant_id", it->variant ? it->variant->id : "", "price", money_json(it->price),
        "compare_at_price", money_json(it->compare_at_price), "requires_shipping",
        (int)it->requires_shipping, "ledger_code", it->ledger_code, "updated_at", upd,
        "price_changed_at", pc, "updated_at_ms", (json_int_t)it->platform_updated_at_ms,
        "price_changed_at_ms", (json_int_t)it->price_changed_at_ms);
}

/* Drop key; its SKU entry goes too when it points at this key. Caller holds the write lock. */
static void remove_key(struct catalog *c, const char *key)
{
    json_t *old = json_object_get(c->by_key, key);
    const char *sku = json_string_value(json_object_get(old, "sku"));
    const char *owner = sku ? json_string_value(json_object_get(c->by_sku, sku)) : NULL;

    if (owner && strcmp(owner, key) == 0)
        json_object_del(c->by_sku, sku);
    if (old)
        json_object_del(c->by_key, key);
}

int catalog_apply(struct catalog *c, const void *key, size_t keylen, const void *payload,
                  size_t len, char *err, size_t errlen)
{
    Tillsync__V1__CatalogItemEvent *ev = NULL;
    char k[512];
    json_t *j = NULL;

    if (!key || keylen == 0 || keylen >= sizeof(k) || memchr(key, '\0', keylen)) {
        snprintf(err, errlen, "catalogue record without a usable key");
        return -EINVAL;
    }
    memcpy(k, key, keylen);
    k[keylen] = '\0';
    if (len > 0) {
        ev = tillsync__v1__catalog_item_event__unpack(NULL, len, payload);
        if (!ev || !ev->item) {
            snprintf(err, errlen, "catalogue record %s does not decode as CatalogItemEvent", k);
            tillsync__v1__catalog_item_event__free_unpacked(ev, NULL);
            return -EINVAL;
        }
        if (!ev->item->deleted && ev->item->sku && *ev->item->sku)
            j = item_json(k, ev->item);
    }
    pthread_rwlock_wrlock(&c->lock);
    remove_key(c, k);
    if (j) {
        json_object_set_new(c->by_sku, ev->item->sku, json_string(k));
        json_object_set_new(c->by_key, k, j);
    }
    pthread_rwlock_unlock(&c->lock);
    tillsync__v1__catalog_item_event__free_unpacked(ev, NULL);
    return 0;
}

bool catalog_sku_lookup(void *opaque, const char *sku, bool *requires_shipping)
{
    struct catalog *c = opaque;
    const char *key;
    json_t *item;
    bool found = false;

    pthread_rwlock_rdlock(&c->lock);
    key = json_string_value(json_object_get(c->by_sku, sku));
    item = key ? json_object_get(c->by_key, key) : NULL;
    if (item) {
        found = true;
        *requires_shipping = json_is_true(json_object_get(item, "requires_shipping"));
    }
    pthread_rwlock_unlock(&c->lock);
    return found;
}

static int by_sku_then_key(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int r = strcmp(json_string_value(json_object_get(x, "sku")),
                   json_string_value(json_object_get(y, "sku")));

    return r ? r
             : strcmp(json_string_value(json_object_get(x, "key")),
                      json_string_value(json_object_get(y, "key")));
}

json_t *catalog_list(struct catalog *c, int64_t since_ms, bool price_changes_only, size_t limit,
                     bool *more)
{
    json_t *out = json_array(), **sel = NULL, *item;
    const char *key;
    size_t n = 0, cap = 0;

    *more = false;
    pthread_rwlock_rdlock(&c->lock);
    json_object_foreach(c->by_key, key, item)
    {
        int64_t pc = json_integer_value(json_object_get(item, "price_changed_at_ms"));
        int64_t up = json_integer_value(json_object_get(item, "updated_at_ms"));
        bool hit = price_changes_only ? pc >= since_ms : (pc >= since_ms || up >= since_ms);

        (void)key;
        if (!hit)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            sel = realloc(sel, cap * sizeof(*sel));
            if (!sel)
                abort();
        }
        sel[n++] = json_deep_copy(item); /* copies: readers never share refcounts */
    }
    pthread_rwlock_unlock(&c->lock);
    if (n)
        qsort(sel, n, sizeof(*sel), by_sku_then_key);
    for (size_t i = 0; i < n; i++) {
        if (i < limit)
            json_array_append_new(out, sel[i]);
        else
            json_decref(sel[i]);
    }
    *more = n > limit;
    free(sel);
    return out;
}

size_t catalog_size(struct catalog *c)
{
    size_t n;

    pthread_rwlock_rdlock(&c->lock);
    n = json_object_size(c->by_key);
    pthread_rwlock_unlock(&c->lock);
    return n;
}
