/* mapping — see mapping.h. Backed by jansson objects (hash tables), read-only after load. */
#include "mapping.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_util.h"

struct mapping {
    json_t *stores;    /* store code -> location id (string) */
    json_t *locations; /* location id -> true */
    json_t *non_stock; /* code -> {"ledger_code": s, "needs_no_shipping": b} */
};

static struct mapping *mapping_alloc(void)
{
    struct mapping *m = calloc(1, sizeof(*m));

    if (!m)
        abort(); /* OOM policy: abort (STYLE.md) */
    m->stores = json_object();
    m->locations = json_object();
    m->non_stock = json_object();
    if (!m->stores || !m->locations || !m->non_stock)
        abort();
    return m;
}

struct mapping *mapping_empty(void)
{
    return mapping_alloc();
}

static int load_stores(struct mapping *m, json_t *stores, char *err, size_t errlen)
{
    const char *code;
    json_t *v;

    if (!json_is_object(stores)) {
        snprintf(err, errlen, "stores: must be an object");
        return -EINVAL;
    }
    json_object_foreach(stores, code, v)
    {
        const char *loc = NULL;
        char why[256];

        if (!json_is_object(v) ||
            json_get_string(v, "location_id", true, &loc, why, sizeof(why)) != 0 || !*loc) {
            snprintf(err, errlen, "stores.%s.location_id: missing or not a non-empty string", code);
            return -EINVAL;
        }
        json_object_set_new(m->stores, code, json_string(loc));
        json_object_set_new(m->locations, loc, json_true());
    }
    return 0;
}

static int load_non_stock(struct mapping *m, json_t *codes, char *err, size_t errlen)
{
    const char *code;
    json_t *v;

    if (!json_is_object(codes)) {
        snprintf(err, errlen, "non_stock: must be an object");
        return -EINVAL;
    }
    json_object_foreach(codes, code, v)
    {
        const char *ledger = NULL;
        bool nns = true;
        char why[256];

        if (!json_is_object(v) ||
            json_get_string(v, "ledger_code", true, &ledger, why, sizeof(why)) != 0 || !*ledger) {
            snprintf(err, errlen, "non_stock.%s.ledger_code: missing or not a non-empty string",
                     code);
            return -EINVAL;
        }
        if (json_get_bool(v, "needs_no_shipping", false, &nns, why, sizeof(why)) == -EINVAL) {
            snprintf(err, errlen, "non_stock.%s.%s", code, why);
            return -EINVAL;
        }
        json_object_set_new(
            m->non_stock, code,
            json_pack("{s:s, s:b}", "ledger_code", ledger, "needs_no_shipping", (int)nns));
    }
    return 0;
}

struct mapping *mapping_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct mapping *m = NULL;
    json_t *root, *v;
    size_t i;

    root = json_parse_object(text, len, err, errlen);
    if (!root)
        return NULL;
    m = mapping_alloc();
    v = json_object_get(root, "stores");
    if (v && load_stores(m, v, err, errlen) != 0)
        goto fail;
    v = json_object_get(root, "non_stock");
    if (v && load_non_stock(m, v, err, errlen) != 0)
        goto fail;
    v = json_object_get(root, "locations");
    if (v && !json_is_array(v)) {
        snprintf(err, errlen, "locations: must be an array of location ids");
        goto fail;
    }
    for (i = 0; v && i < json_array_size(v); i++) {
        const char *loc = json_string_value(json_array_get(v, i));

        if (!loc || !*loc) {
            snprintf(err, errlen, "locations[%zu]: must be a non-empty string", i);
            goto fail;
        }
        json_object_set_new(m->locations, loc, json_true());
    }
    json_decref(root);
    return m;
fail:
    json_decref(root);
    mapping_free(m);
    return NULL;
}

struct mapping *mapping_load(const char *path, char *err, size_t errlen)
{
    struct mapping *m = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    char why[400];

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t n;

        if (len + 4096 > cap) {
            char *nb = realloc(buf, cap + 65536);

            if (!nb)
                abort();
            buf = nb;
            cap += 65536;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    m = mapping_parse(buf, len, why, sizeof(why));
    if (!m)
        snprintf(err, errlen, "%s: %s", path, why);
    free(buf);
    return m;
}

const char *mapping_store_location(const struct mapping *m, const char *store_code)
{
    return json_string_value(json_object_get(m->stores, store_code));
}

bool mapping_location_known(const struct mapping *m, const char *location_id)
{
    return json_object_get(m->locations, location_id) != NULL;
}

int mapping_non_stock(const struct mapping *m, const char *code, const char **ledger_code,
                      bool *needs_no_shipping)
{
    json_t *v = json_object_get(m->non_stock, code);

    if (!v)
        return -ENOENT;
    *ledger_code = json_string_value(json_object_get(v, "ledger_code"));
    *needs_no_shipping = json_is_true(json_object_get(v, "needs_no_shipping"));
    return 0;
}

void mapping_free(struct mapping *m)
{
    if (!m)
        return;
    json_decref(m->stores);
    json_decref(m->locations);
    json_decref(m->non_stock);
    free(m);
}
