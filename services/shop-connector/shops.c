/* shops — see shops.h. */
#include "shops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "json_util.h"
#include "platform.h"
#include "rawjson.h"

/* Read a whole (small) file; trailing CR/LF trimmed. NULL on failure. */
static char *file_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    return buf;
}

/* A secret given inline as NAME, by environment as NAME_env (VAR or VAR_FILE), or by file as
 * NAME_file. *out is malloc'd ("" when absent and optional). */
static int secret_get(const json_t *o, const char *name, int required, int idx, char **out,
                      char *err, size_t errlen)
{
    char k[96];
    const char *v = rawjson_str(o, name);
    *out = NULL;
    if (*v) {
        *out = strdup(v);
        return *out ? 0 : -ENOMEM;
    }
    snprintf(k, sizeof(k), "%s_env", name);
    v = rawjson_str(o, k);
    if (*v) {
        const char *e = getenv(v);
        if (e && *e) {
            *out = strdup(e);
            return *out ? 0 : -ENOMEM;
        }
        char fk[160];
        snprintf(fk, sizeof(fk), "%s_FILE", v);
        e = getenv(fk);
        if (e && *e) {
            *out = file_read(e);
            if (!*out) {
                snprintf(err, errlen, "shops[%d].%s: cannot read %s", idx, k, fk);
                return -EINVAL;
            }
            return 0;
        }
        snprintf(err, errlen, "shops[%d].%s: neither %s nor %s is set", idx, k, v, fk);
        return -EINVAL;
    }
    snprintf(k, sizeof(k), "%s_file", name);
    v = rawjson_str(o, k);
    if (*v) {
        *out = file_read(v);
        if (!*out) {
            snprintf(err, errlen, "shops[%d].%s: cannot read the file", idx, k);
            return -EINVAL;
        }
        return 0;
    }
    if (required) {
        snprintf(err, errlen, "shops[%d].%s: missing (give %s, %s_env or %s_file)", idx, name, name,
                 name, name);
        return -EINVAL;
    }
    *out = strdup("");
    return *out ? 0 : -ENOMEM;
}

static int str_field(const json_t *o, const char *name, const char *def, int idx, char **out,
                     char *err, size_t errlen)
{
    const char *v = rawjson_str(o, name);
    if (!*v)
        v = def;
    if (!v) {
        snprintf(err, errlen, "shops[%d].%s: missing", idx, name);
        return -EINVAL;
    }
    *out = strdup(v);
    return *out ? 0 : -ENOMEM;
}

/* The tax_codes array of shop object o (absent = none). Returns 0 or -EINVAL / -ENOMEM. */
static int tax_codes_parse(struct shop *s, const json_t *o, int idx, char *err, size_t errlen)
{
    const json_t *arr = json_object_get(o, "tax_codes");
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "shops[%d].tax_codes: must be an array", idx);
        return -EINVAL;
    }
    s->ntax_codes = json_array_size(arr);
    s->tax_codes = calloc(s->ntax_codes ? s->ntax_codes : 1, sizeof(*s->tax_codes));
    if (!s->tax_codes) {
        s->ntax_codes = 0;
        return -ENOMEM;
    }
    for (size_t j = 0; j < s->ntax_codes; j++) {
        const json_t *t = json_array_get(arr, j);
        struct shop_tax_code *tc = &s->tax_codes[j];
        const json_t *rate = json_object_get(t, "rate");
        tc->rate_ppm = -1;
        if (!json_is_object(t) || !*rawjson_str(t, "code")) {
            snprintf(err, errlen, "shops[%d].tax_codes[%zu]: needs \"code\"", idx, j);
            return -EINVAL;
        }
        if (rate && !json_is_null(rate)) {
            if (!json_is_number(rate) || json_number_value(rate) < 0 ||
                json_number_value(rate) > 1000) {
                snprintf(err, errlen,
                         "shops[%d].tax_codes[%zu].rate: must be a fraction (0.2 for 20%%)", idx,
                         j);
                return -EINVAL;
            }
            tc->rate_ppm = (int64_t)llround(json_number_value(rate) * 1e6);
        }
        if (!*rawjson_str(t, "title") && tc->rate_ppm < 0) {
            snprintf(err, errlen, "shops[%d].tax_codes[%zu]: needs \"title\" or \"rate\"", idx, j);
            return -EINVAL;
        }
        tc->title = strdup(rawjson_str(t, "title"));
        tc->code = strdup(rawjson_str(t, "code"));
        if (!tc->title || !tc->code)
            return -ENOMEM;
    }
    return 0;
}

int shops_parse(struct shop_set *set, const char *text, size_t len, char *err, size_t errlen)
{
    char perr[200];
    int rc = -EINVAL;
    json_t *root = rawjson_parse(text, len, perr, sizeof(perr));
    if (!root) {
        snprintf(err, errlen, "SHOPS_FILE: %s", perr);
        return -EINVAL;
    }
    json_t *arr = json_object_get(root, "shops");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        snprintf(err, errlen, "SHOPS_FILE: \"shops\" must be a non-empty array");
        goto out;
    }
    set->n = json_array_size(arr);
    set->shops = calloc(set->n, sizeof(*set->shops));
    if (!set->shops) {
        set->n = 0;
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < set->n; i++) {
        const json_t *o = json_array_get(arr, i);
        struct shop *s = &set->shops[i];
        int idx = (int)i;
        if (!json_is_object(o)) {
            snprintf(err, errlen, "shops[%d]: must be an object", idx);
            goto out;
        }
        if ((rc = str_field(o, "platform", NULL, idx, &s->platform, err, errlen)) < 0 ||
            (rc = str_field(o, "domain", NULL, idx, &s->domain, err, errlen)) < 0 ||
            (rc = str_field(o, "api_base", NULL, idx, &s->api_base, err, errlen)) < 0 ||
            (rc = str_field(o, "currency", "USD", idx, &s->currency, err, errlen)) < 0)
            goto out;
        s->ops = platform_find(s->platform);
        if (!s->ops) {
            snprintf(err, errlen, "shops[%d].platform: unknown platform \"%s\"", idx, s->platform);
            rc = -EINVAL;
            goto out;
        }
        if ((rc = str_field(o, "api_version", s->ops->default_api_version, idx, &s->api_version,
                            err, errlen)) < 0 ||
            (rc = secret_get(o, "access_token", 1, idx, &s->access_token, err, errlen)) < 0 ||
            (rc = secret_get(o, "webhook_secret", 1, idx, &s->webhook_secret, err, errlen)) < 0 ||
            (rc = secret_get(o, "previous_webhook_secret", 0, idx, &s->previous_webhook_secret, err,
                             errlen)) < 0)
            goto out;
        size_t kl = strlen(s->platform) + strlen(s->domain) + 2;
        s->key = malloc(kl);
        if (!s->key) {
            rc = -ENOMEM;
            goto out;
        }
        snprintf(s->key, kl, "%s/%s", s->platform, s->domain);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(set->shops[j].key, s->key) == 0) {
                snprintf(err, errlen, "shops[%d]: %s is configured twice", idx, s->key);
                rc = -EINVAL;
                goto out;
            }
        }
        const json_t *locs = json_object_get(o, "locations");
        if (locs && !json_is_array(locs)) {
            snprintf(err, errlen, "shops[%d].locations: must be an array", idx);
            rc = -EINVAL;
            goto out;
        }
        s->nlocations = json_array_size(locs);
        s->locations = calloc(s->nlocations ? s->nlocations : 1, sizeof(*s->locations));
        if (!s->locations) {
            s->nlocations = 0;
            rc = -ENOMEM;
            goto out;
        }
        for (size_t j = 0; j < s->nlocations; j++) {
            const json_t *l = json_array_get(locs, j);
            char id[128];
            struct shop_location *sl = &s->locations[j];
            if (rawjson_get_id(l, "id", id, sizeof(id)) < 0 || !*rawjson_str(l, "ledger")) {
                snprintf(err, errlen, "shops[%d].locations[%zu]: needs \"id\" and \"ledger\"", idx,
                         j);
                rc = -EINVAL;
                goto out;
            }
            char tail[128];
            rawjson_gid_tail(id, tail, sizeof(tail));
            sl->platform_id = strdup(tail);
            sl->name = strdup(rawjson_str(l, "name"));
            sl->ledger = strdup(rawjson_str(l, "ledger"));
            if (!sl->platform_id || !sl->name || !sl->ledger) {
                rc = -ENOMEM;
                goto out;
            }
        }
        if ((rc = tax_codes_parse(s, o, idx, err, errlen)) < 0)
            goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int shops_load_file(struct shop_set *set, const char *path, char *err, size_t errlen)
{
    char *text = file_read(path);
    if (!text) {
        snprintf(err, errlen, "SHOPS_FILE: cannot read %s: %s", path, strerror(errno));
        return -EINVAL;
    }
    int rc = shops_parse(set, text, strlen(text), err, errlen);
    free(text);
    return rc;
}

void shops_release(struct shop_set *set)
{
    for (size_t i = 0; set->shops && i < set->n; i++) {
        struct shop *s = &set->shops[i];
        free(s->platform);
        free(s->domain);
        free(s->key);
        free(s->api_base);
        free(s->api_version);
        free(s->currency);
        free(s->access_token);
        free(s->webhook_secret);
        free(s->previous_webhook_secret);
        for (size_t j = 0; s->locations && j < s->nlocations; j++) {
            free(s->locations[j].platform_id);
            free(s->locations[j].name);
            free(s->locations[j].ledger);
        }
        free(s->locations);
        for (size_t j = 0; s->tax_codes && j < s->ntax_codes; j++) {
            free(s->tax_codes[j].title);
            free(s->tax_codes[j].code);
        }
        free(s->tax_codes);
    }
    free(set->shops);
    set->shops = NULL;
    set->n = 0;
}

struct shop *shops_find(const struct shop_set *set, const char *platform, const char *domain)
{
    for (size_t i = 0; platform && domain && i < set->n; i++) {
        if (strcmp(set->shops[i].platform, platform) == 0 &&
            strcasecmp(set->shops[i].domain, domain) == 0)
            return &set->shops[i];
    }
    return NULL;
}

const char *shop_location_ledger(const struct shop *shop, const char *platform_id)
{
    for (size_t i = 0; platform_id && i < shop->nlocations; i++) {
        if (strcmp(shop->locations[i].platform_id, platform_id) == 0)
            return shop->locations[i].ledger;
    }
    return NULL;
}

const struct shop_location *shop_location_by_name(const struct shop *shop, const char *name)
{
    for (size_t i = 0; name && *name && i < shop->nlocations; i++) {
        if (strcasecmp(shop->locations[i].name, name) == 0)
            return &shop->locations[i];
    }
    return NULL;
}

const char *shop_tax_code(const struct shop *shop, const char *title, int64_t rate_ppm)
{
    for (size_t i = 0; title && i < shop->ntax_codes; i++) {
        const struct shop_tax_code *tc = &shop->tax_codes[i];
        if ((!*tc->title || strcasecmp(tc->title, title) == 0) &&
            (tc->rate_ppm < 0 || tc->rate_ppm == rate_ppm))
            return tc->code;
    }
    return NULL;
}
