/* rules — parsing and arithmetic of points rules (see rules.h). */
#include "rules.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "clock.h"
#include "json_util.h"

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void rules_release(struct rules *r)
{
    if (!r)
        return;
    strv_free(r->non_stock_codes, r->n_non_stock_codes);
    strv_free(r->ledger_codes, r->n_ledger_codes);
    strv_free(r->gift_card_codes, r->n_gift_card_codes);
    free(r->multipliers);
    memset(r, 0, sizeof *r);
}

/* Array of strings at obj[key] (absent = empty). */
static int strv_get(const json_t *obj, const char *key, const char *where, char ***out, size_t *n,
                    char *err, size_t errlen)
{
    json_t *a = json_object_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a)) {
        snprintf(err, errlen, "%s.%s: must be an array of strings", where, key);
        return -EINVAL;
    }
    size_t cnt = json_array_size(a);
    if (cnt == 0)
        return 0;
    char **v = calloc(cnt, sizeof *v);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < cnt; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s || !*s || !(v[i] = strdup(s))) {
            strv_free(v, i + (v[i] != NULL));
            snprintf(err, errlen, "%s.%s[%zu]: must be a non-empty string", where, key, i);
            return -EINVAL;
        }
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* "YYYY-MM-DD" (a whole UTC day; end = true gives the day after) or RFC 3339. */
static int date_parse(const char *s, bool end, int64_t *ms)
{
    char buf[40];
    if (strlen(s) == 10) {
        snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
        if (clock_parse_rfc3339(buf, ms))
            return -EINVAL;
        if (end)
            *ms += 86400000;
        return 0;
    }
    return clock_parse_rfc3339(s, ms) ? -EINVAL : 0;
}

static int set_parse(const json_t *o, const char *where, struct rules *r, char *err, size_t errlen)
{
    char e2[200];
    const char *s = NULL;
    int64_t v = 0;
    int rc;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: must be an object", where);
        return -EINVAL;
    }
#define FIELD_FAIL()                                                                               \
    do {                                                                                           \
        snprintf(err, errlen, "%s.%s", where, e2);                                                 \
        return -EINVAL;                                                                            \
    } while (0)
    if ((rc = json_get_string(o, "rule_id", false, &s, e2, sizeof e2)) == -EINVAL)
        FIELD_FAIL();
    snprintf(r->rule_id, sizeof r->rule_id, "%s", rc == 0 ? s : "default");
    v = 1;
    if (json_get_int(o, "points_per_unit", true, 0, 1000000, &v, e2, sizeof e2) == -EINVAL)
        FIELD_FAIL();
    r->points_per_unit = (long)v;
    v = 100;
    if (json_get_int(o, "unit_minor", false, 1, 1000000000, &v, e2, sizeof e2) == -EINVAL)
        FIELD_FAIL();
    r->unit_minor = (long)v;
    s = "net_before_tax";
    if (json_get_string(o, "basis", false, &s, e2, sizeof e2) == -EINVAL)
        FIELD_FAIL();
    if (strcmp(s, "net_before_tax") == 0) {
        r->after_tax = false;
    } else if (strcmp(s, "net_after_tax") == 0) {
        r->after_tax = true;
    } else {
        snprintf(err, errlen, "%s.basis: must be net_before_tax or net_after_tax", where);
        return -EINVAL;
    }
    s = "paid";
    if (json_get_string(o, "trigger", false, &s, e2, sizeof e2) == -EINVAL)
        FIELD_FAIL();
    if (strcmp(s, "paid") == 0) {
        r->trigger = RULES_TRIGGER_PAID;
    } else if (strcmp(s, "fulfilled") == 0) {
        r->trigger = RULES_TRIGGER_FULFILLED;
    } else {
        snprintf(err, errlen, "%s.trigger: must be paid or fulfilled", where);
        return -EINVAL;
    }
    json_t *ex = json_object_get(o, "exclude");
    if (ex && !json_is_object(ex)) {
        snprintf(err, errlen, "%s.exclude: must be an object", where);
        return -EINVAL;
    }
    if (ex) {
        char w[96];
        snprintf(w, sizeof w, "%s.exclude", where);
        if (json_get_bool(ex, "all_non_stock", false, &r->exclude_all_non_stock, e2, sizeof e2) ==
                -EINVAL ||
            json_get_bool(ex, "gift_cards", false, &r->exclude_gift_cards, e2, sizeof e2) ==
                -EINVAL) {
            snprintf(err, errlen, "%s.%s", w, e2);
            return -EINVAL;
        }
        if ((rc = strv_get(ex, "non_stock_codes", w, &r->non_stock_codes, &r->n_non_stock_codes,
                           err, errlen)) ||
            (rc = strv_get(ex, "ledger_codes", w, &r->ledger_codes, &r->n_ledger_codes, err,
                           errlen)) ||
            (rc = strv_get(ex, "gift_card_codes", w, &r->gift_card_codes, &r->n_gift_card_codes,
                           err, errlen)))
            return rc;
    }
    json_t *m = json_object_get(o, "multipliers");
    if (m && !json_is_array(m)) {
        snprintf(err, errlen, "%s.multipliers: must be an array", where);
        return -EINVAL;
    }
    size_t nm = m ? json_array_size(m) : 0;
    if (nm) {
        r->multipliers = calloc(nm, sizeof *r->multipliers);
        if (!r->multipliers)
            return -ENOMEM;
    }
    for (size_t i = 0; i < nm; i++) {
        json_t *it = json_array_get(m, i);
        struct rules_multiplier *x = &r->multipliers[i];
        const char *from = NULL, *to = NULL;
        int64_t pct = 0;
        char w[96];
        snprintf(w, sizeof w, "%s.multipliers[%zu]", where, i);
        if (!json_is_object(it)) {
            snprintf(err, errlen, "%s: must be an object", w);
            return -EINVAL;
        }
        if (json_get_string(it, "from", true, &from, e2, sizeof e2) ||
            json_get_string(it, "to", true, &to, e2, sizeof e2) ||
            json_get_int(it, "percent", true, 0, 100000, &pct, e2, sizeof e2)) {
            snprintf(err, errlen, "%s.%s", w, e2);
            return -EINVAL;
        }
        if (date_parse(from, false, &x->from_ms) || date_parse(to, true, &x->to_ms) ||
            x->from_ms >= x->to_ms) {
            snprintf(err, errlen, "%s: from/to must be dates (YYYY-MM-DD or RFC 3339), from < to",
                     w);
            return -EINVAL;
        }
        x->percent = (long)pct;
        r->n_multipliers = i + 1;
    }
#undef FIELD_FAIL
    return 0;
}

int rules_parse(const char *json, size_t len, const char *tenant, struct rules *out, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *root = json_parse_object(json, len, err, errlen);
    if (!root)
        return -EINVAL;
    int rc;
    json_t *tenants = json_object_get(root, "tenants");
    if (tenants) {
        char where[128];
        json_t *set = tenant ? json_object_get(tenants, tenant) : NULL;
        snprintf(where, sizeof where, "tenants.%s", set ? tenant : "*");
        if (!set)
            set = json_object_get(tenants, "*");
        if (!json_is_object(tenants) || !set) {
            snprintf(err, errlen, "tenants: no rules for tenant %s and no \"*\" entry",
                     tenant ? tenant : "(none)");
            rc = -EINVAL;
        } else {
            rc = set_parse(set, where, out, err, errlen);
        }
    } else {
        rc = set_parse(root, "rules", out, err, errlen);
    }
    json_decref(root);
    if (rc)
        rules_release(out);
    return rc;
}

int rules_load_file(const char *path, const char *tenant, struct rules *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return e == ENOENT ? -ENOENT : -EIO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (8u << 20)) {
                snprintf(err, errlen, "%s: larger than 8 MiB", path);
                rc = -EINVAL;
                goto out;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = -ENOMEM;
                goto out;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -EIO;
        goto out;
    }
    buf[len] = '\0';
    rc = rules_parse(buf, len, tenant, out, err, errlen);
out:
    free(buf);
    fclose(f);
    return rc;
}

static bool strv_has(char **v, size_t n, const char *s)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(v[i], s) == 0)
            return true;
    return false;
}

bool rules_line_excluded(const struct rules *r, const char *non_stock_code, const char *ledger_code)
{
    bool non_stock = non_stock_code && *non_stock_code;
    if (non_stock && r->exclude_all_non_stock)
        return true;
    if (strv_has(r->non_stock_codes, r->n_non_stock_codes, non_stock_code) ||
        strv_has(r->ledger_codes, r->n_ledger_codes, ledger_code))
        return true;
    if (r->exclude_gift_cards &&
        (strv_has(r->gift_card_codes, r->n_gift_card_codes, non_stock_code) ||
         strv_has(r->gift_card_codes, r->n_gift_card_codes, ledger_code)))
        return true;
    return false;
}

long rules_multiplier_at(const struct rules *r, int64_t at_ms)
{
    long best = 100;
    bool any = false;
    for (size_t i = 0; i < r->n_multipliers; i++) {
        const struct rules_multiplier *m = &r->multipliers[i];
        if (at_ms >= m->from_ms && at_ms < m->to_ms && (!any || m->percent > best)) {
            best = m->percent;
            any = true;
        }
    }
    return best;
}

int64_t rules_points(const struct rules *r, int64_t qualifying_minor, int64_t at_ms)
{
    __int128 q = qualifying_minor < 0 ? -(__int128)qualifying_minor : qualifying_minor;
    __int128 p =
        q * r->points_per_unit * rules_multiplier_at(r, at_ms) / ((__int128)r->unit_minor * 100);
    if (p > INT64_MAX)
        p = INT64_MAX;
    return qualifying_minor < 0 ? -(int64_t)p : (int64_t)p;
}

static int64_t taken_back(int64_t points, int64_t qualifying, int64_t refunded)
{
    if (refunded <= 0 || qualifying <= 0 || points <= 0)
        return 0;
    if (refunded >= qualifying)
        return points;
    return (int64_t)((__int128)points * refunded / qualifying);
}

int64_t rules_reversal_points(int64_t award_points, int64_t award_qualifying,
                              int64_t refunded_before, int64_t refund_now)
{
    if (refund_now < 0)
        refund_now = 0;
    if (refunded_before < 0)
        refunded_before = 0;
    int64_t after =
        refunded_before > INT64_MAX - refund_now ? INT64_MAX : refunded_before + refund_now;
    return taken_back(award_points, award_qualifying, after) -
           taken_back(award_points, award_qualifying, refunded_before);
}
