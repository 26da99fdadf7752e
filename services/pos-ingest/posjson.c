/*
 * posjson — see posjson.h.
 *
 * Status policy: a body that is not JSON is the caller's 400 (json_parse_object); anything in a
 * well-formed body that is missing, of the wrong type or out of range is 422 with the field's
 * path; an API key used for another store's data is 403. Unknown fields are rejected (422), so
 * a misspelt "quantiy" is never silently dropped.
 *
 * Money rules (integer minor units, never floats): a line's net amount is
 * quantity × unit_price − sign(quantity) × Σ discounts; subtotal = Σ net; tax_total = Σ tax;
 * total = subtotal + Σ tax not included in prices; Σ tenders = total. Amounts a till sends for
 * these are checked against the computed figures; the computed ones are published.
 */
#include "posjson.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_util.h"
#include "textbuf.h"
#include "utf8.h"
#include "uuid.h"

#define MAX_LINES    1000
#define MAX_SUBITEMS 50
#define MAX_ID_LEN   128
#define MAX_TEXT_LEN 512
#define MAX_QUANTITY 1000000
#define MIN_TIME_MS  946684800000LL /* 2000-01-01: older is a broken till clock */

struct pos_arena_block {
    struct pos_arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK 16384 /* an item's usual block: 20 sale lines take ≈ 6.8 KB of it */

/*
 * Blocks of ARENA_BLOCK given back by pos_item_release() wait here for the next items, up to
 * pool.max of them. A batch takes and gives back one per item, thousands at a time: kept here
 * they stay faulted in, where malloc would hand whole heaps back to the kernel after each batch
 * and fault them in again for the next (≈ a quarter of a batch's CPU, README "Memory"). Under
 * AddressSanitizer a waiting block is poisoned, so a use after release is still caught.
 */
static struct {
    pthread_mutex_t lock;
    struct pos_arena_block *free;
    size_t n, max;
} pool = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POOL_POISON(b)   ASAN_POISON_MEMORY_REGION((b)->data, ARENA_BLOCK)
#define POOL_UNPOISON(b) ASAN_UNPOISON_MEMORY_REGION((b)->data, ARENA_BLOCK)
#else
#define POOL_POISON(b)   ((void)(b))
#define POOL_UNPOISON(b) ((void)(b))
#endif

void posjson_pool_limit(size_t bytes)
{
    struct pos_arena_block *drop = NULL;

    pthread_mutex_lock(&pool.lock);
    pool.max = bytes / (sizeof(struct pos_arena_block) + ARENA_BLOCK);
    while (pool.n > pool.max) {
        struct pos_arena_block *b = pool.free;

        pool.free = b->next;
        pool.n--;
        b->next = drop;
        drop = b;
    }
    pthread_mutex_unlock(&pool.lock);
    while (drop) {
        struct pos_arena_block *next = drop->next;

        free(drop);
        drop = next;
    }
}

size_t posjson_pool_kept(void)
{
    size_t n;

    pthread_mutex_lock(&pool.lock);
    n = pool.n;
    pthread_mutex_unlock(&pool.lock);
    return n * (sizeof(struct pos_arena_block) + ARENA_BLOCK);
}

static struct pos_arena_block *block_new(size_t cap)
{
    struct pos_arena_block *b = NULL;

    if (cap == ARENA_BLOCK) {
        pthread_mutex_lock(&pool.lock);
        b = pool.free;
        if (b) {
            pool.free = b->next;
            pool.n--;
        }
        pthread_mutex_unlock(&pool.lock);
        if (b)
            POOL_UNPOISON(b);
    }
    if (!b) {
        b = malloc(sizeof(*b) + cap);
        if (!b)
            abort(); /* OOM policy: abort (STYLE.md) */
    }
    b->used = 0;
    b->cap = cap;
    return b;
}

static void block_free(struct pos_arena_block *b)
{
    if (b->cap == ARENA_BLOCK) {
        pthread_mutex_lock(&pool.lock);
        if (pool.n < pool.max) {
            b->next = pool.free;
            pool.free = b;
            pool.n++;
            POOL_POISON(b);
            b = NULL;
        }
        pthread_mutex_unlock(&pool.lock);
    }
    free(b);
}

/* "<prefix><name>[<idx>]." into out, cut short like snprintf: the path of the fields of an
 * array element, formatted for every line of every item. */
static void index_path(char *out, size_t cap, const char *prefix, const char *name, size_t idx)
{
    char digits[24];

    text_uint(digits, idx);
    text_join(out, cap, (const char *const[]){prefix, name, "[", digits, "].", NULL});
}

static void *arena_alloc(struct pos_item *it, size_t n)
{
    struct pos_arena_block *b = it->arena;
    void *p;

    n = (n + 15) & ~(size_t)15;
    if (!b || b->cap - b->used < n) {
        b = block_new(n > ARENA_BLOCK ? n : ARENA_BLOCK);
        b->next = it->arena;
        it->arena = b;
    }
    p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strdup(struct pos_item *it, const char *s)
{
    size_t n = strlen(s);
    char *p = arena_alloc(it, n + 1);

    memcpy(p, s, n + 1);
    return p;
}

void pos_item_release(struct pos_item *it)
{
    struct pos_arena_block *b = it->arena;

    while (b) {
        struct pos_arena_block *next = b->next;

        block_free(b);
        b = next;
    }
    memset(it, 0, sizeof(*it));
}

/* Per-call state. */
struct pj {
    const struct posjson_ctx *ctx;
    struct pos_item *it;
    struct posjson_error *e;
};

static int fail(struct pj *p, int status, const char *code, const char *path, const char *key,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(struct pj *p, int status, const char *code, const char *path, const char *key,
                const char *fmt, ...)
{
    char what[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    p->e->status = status;
    snprintf(p->e->code, sizeof(p->e->code), "%s", code);
    snprintf(p->e->field, sizeof(p->e->field), "%s%s", path, key ? key : "");
    if (p->e->field[0])
        snprintf(p->e->message, sizeof(p->e->message), "%s: %s", p->e->field, what);
    else
        snprintf(p->e->message, sizeof(p->e->message), "%s", what);
    return -EINVAL;
}

/* A json_util getter failed with err "<key>: <problem>": report it under the full path. */
static int fail_getter(struct pj *p, const char *path, const char *key, const char *err)
{
    const char *problem = err;
    size_t klen = strlen(key);

    if (strncmp(err, key, klen) == 0 && err[klen] == ':')
        problem = err + klen + 1 + (err[klen + 1] == ' ');
    if (strstr(problem, "required") || strstr(problem, "missing"))
        return fail(p, 422, "missing_field", path, key, "missing (required)");
    return fail(p, 422, "invalid_field", path, key, "%s", problem);
}

static int check_keys(struct pj *p, const json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;

        (void)v;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok)
            return fail(p, 422, "unknown_field", path, key, "unknown field");
    }
    return 0;
}

/* String field: copied into the arena; no control characters; 1..maxlen bytes when present.
 * Absent (or null) and optional: *out = "" and 0. */
static int get_str(struct pj *p, const json_t *obj, const char *path, const char *key,
                   bool required, size_t maxlen, char **out)
{
    const char *s = NULL;
    char err[256];
    int rc = json_get_string(obj, key, required, &s, err, sizeof(err));
    size_t n;

    *out = "";
    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return fail_getter(p, path, key, err);
    n = strlen(s);
    if (n != json_string_length(json_object_get(obj, key)))
        return fail(p, 422, "invalid_field", path, key, "must not contain NUL characters");
    if (n == 0) {
        if (!required)
            return 0;
        return fail(p, 422, "missing_field", path, key, "must not be empty");
    }
    if (n > maxlen)
        return fail(p, 422, "invalid_field", path, key, "longer than %zu bytes", maxlen);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(p, 422, "invalid_field", path, key, "must not contain control characters");
    }
    *out = arena_strdup(p->it, s);
    return 0;
}

/* An identifier: like get_str but no '/' either (ids are joined with '/' into keys). */
static int get_id(struct pj *p, const json_t *obj, const char *path, const char *key, bool required,
                  char **out)
{
    int rc = get_str(p, obj, path, key, required, MAX_ID_LEN, out);

    if (rc == 0 && strchr(*out, '/'))
        return fail(p, 422, "invalid_field", path, key, "must not contain '/'");
    return rc;
}

static int get_int(struct pj *p, const json_t *obj, const char *path, const char *key,
                   bool required, int64_t min, int64_t max, int64_t *out)
{
    char err[256];
    int rc = json_get_int(obj, key, required, min, max, out, err, sizeof(err));

    if (rc == -ENOENT)
        return rc;
    return rc == 0 ? 0 : fail_getter(p, path, key, err);
}

static int get_bool(struct pj *p, const json_t *obj, const char *path, const char *key, bool def,
                    bool *out)
{
    char err[256];
    int rc = json_get_bool(obj, key, false, out, err, sizeof(err));

    if (rc == -ENOENT) {
        *out = def;
        return 0;
    }
    return rc == 0 ? 0 : fail_getter(p, path, key, err);
}

/* Money in the item's currency; -ENOENT when optional and absent. Bounded to ±10^13 minor units
 * so sums of up to MAX_LINES lines cannot overflow. */
static int get_money(struct pj *p, const json_t *obj, const char *path, const char *key,
                     bool required, const char *currency, int64_t *out)
{
    char err[256];
    int rc = json_get_money(obj, key, required, currency, out, err, sizeof(err));

    if (rc == -ENOENT)
        return rc;
    if (rc != 0)
        return fail_getter(p, path, key, err);
    if (*out > 10000000000000LL || *out < -10000000000000LL)
        return fail(p, 422, "invalid_field", path, key, "amount out of range");
    return 0;
}

static Tillsync__V1__Money *money_new(struct pj *p, int64_t minor, const char *currency)
{
    Tillsync__V1__Money *m = arena_alloc(p->it, sizeof(*m));

    tillsync__v1__money__init(m);
    m->minor_units = minor;
    m->currency = (char *)currency;
    return m;
}

/* RFC 3339 time, not before 2000 and not more than max_future_ms ahead. */
static int get_time(struct pj *p, const json_t *obj, const char *path, const char *key,
                    bool required, int64_t *out)
{
    char *s;
    int rc = get_str(p, obj, path, key, required, 64, &s);

    if (rc != 0)
        return rc;
    if (!*s)
        return -ENOENT;
    if (clock_parse_rfc3339(s, out) != 0)
        return fail(p, 422, "invalid_field", path, key,
                    "\"%s\" is not an RFC 3339 date-time such as 2026-11-24T10:15:00Z", s);
    if (*out < MIN_TIME_MS)
        return fail(p, 422, "invalid_field", path, key, "before the year 2000");
    if (*out > p->ctx->now_ms + p->ctx->max_future_ms)
        return fail(p, 422, "time_in_future", path, key, "%lld s in the future",
                    (long long)((*out - p->ctx->now_ms) / 1000));
    return 0;
}

static int get_date(struct pj *p, const json_t *obj, const char *path, const char *key,
                    bool required, char **out)
{
    char probe[40];
    int64_t ms;
    int rc = get_str(p, obj, path, key, required, 10, out);

    if (rc != 0 || !**out)
        return rc;
    snprintf(probe, sizeof(probe), "%sT00:00:00Z", *out);
    if (strlen(*out) != 10 || clock_parse_rfc3339(probe, &ms) != 0)
        return fail(p, 422, "invalid_field", path, key, "\"%s\" is not a date YYYY-MM-DD", *out);
    return 0;
}

static int get_currency(struct pj *p, const json_t *obj, char **out)
{
    int rc = get_str(p, obj, "", "currency", true, 3, out);

    if (rc != 0)
        return rc;
    for (int i = 0; i < 3; i++) {
        if ((*out)[i] < 'A' || (*out)[i] > 'Z')
            return fail(p, 422, "invalid_field", "", "currency",
                        "\"%s\" is not an ISO 4217 code (three capital letters)", *out);
    }
    return 0;
}

/* An optional array field of at most max elements; *arr NULL when absent. */
static int get_array(struct pj *p, const json_t *obj, const char *path, const char *key,
                     bool required, size_t min, size_t max, json_t **arr)
{
    json_t *v = json_object_get(obj, key);

    *arr = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return fail(p, 422, "missing_field", path, key, "missing");
        return 0;
    }
    if (!json_is_array(v))
        return fail(p, 422, "invalid_field", path, key, "must be an array");
    if (json_array_size(v) < min)
        return fail(p, 422, "missing_field", path, key, "needs at least %zu element(s)", min);
    if (json_array_size(v) > max)
        return fail(p, 422, "too_many", path, key, "more than %zu elements", max);
    *arr = v;
    return 0;
}

static int get_object(struct pj *p, const json_t *obj, const char *path, const char *key,
                      json_t **out)
{
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return fail(p, 422, "invalid_field", path, key, "must be an object");
    *out = v;
    return 0;
}

static int enum_of(struct pj *p, const char *path, const char *key, const char *value,
                   const char *const *names, int *out)
{
    char list[256] = "";
    size_t used = 0;

    for (int i = 1; names[i]; i++) {
        if (strcmp(names[i], value) == 0) {
            *out = i;
            return 0;
        }
    }
    for (int i = 1; names[i] && used < sizeof(list); i++)
        used +=
            (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i > 1 ? ", " : "", names[i]);
    return fail(p, 422, "invalid_field", path, key, "\"%s\" is not one of %s", value, list);
}

static void body_hash(const json_t *obj, struct pos_item *it)
{
    /* a parsed body is valid UTF-8 throughout: only OpenSSL running out of memory fails here
     * (OOM policy: abort, STYLE.md) */
    if (json_sha256_hex(obj, it->body_hash) != 0)
        abort();
}

static void push_str(struct pj *p, const char ***arr, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*arr)[i], s) == 0)
            return;
    }
    if ((*n & (*n - 1)) == 0) { /* grow at powers of two: 0, 1, 2, 4, ... */
        const char **na = arena_alloc(p->it, sizeof(*na) * (*n ? *n * 2 : 1));

        if (*n)
            memcpy(na, *arr, sizeof(*na) * *n);
        *arr = na;
    }
    (*arr)[(*n)++] = s;
}

/* The store a request is for: must be mapped and, for a store-bound key, the key's own. */
static int check_store(struct pj *p, const char *store, const char **location)
{
    *location = mapping_store_location(p->ctx->mapping, store);
    if (p->ctx->auth_store && strcmp(p->ctx->auth_store, store) != 0)
        return fail(p, 403, "store_forbidden", "", "store_code",
                    "the API key belongs to store \"%s\", not \"%s\"", p->ctx->auth_store, store);
    if (!*location)
        return fail(p, 422, "unknown_store", "", "store_code", "unknown store \"%s\"", store);
    return 0;
}

/* ---- transactions ---------------------------------------------------------------------- */

static const char *const kind_names[] = {"", "sale", "return", "exchange", "void", NULL};
static const char *const tender_names[] = {"",      "cash", "card", "gift_card", "store_credit",
                                           "other", NULL};

static int parse_discounts(struct pj *p, const json_t *line, const char *path, const char *cur,
                           Tillsync__V1__TransactionLine *l, int64_t *sum)
{
    static const char *const keys[] = {"code", "description", "amount", NULL};
    json_t *arr;
    char sub[200];
    int rc = get_array(p, line, path, "discounts", false, 0, MAX_SUBITEMS, &arr);

    *sum = 0;
    if (rc != 0 || !arr)
        return rc;
    l->n_discounts = json_array_size(arr);
    l->discounts = arena_alloc(p->it, sizeof(*l->discounts) * l->n_discounts);
    for (size_t i = 0; i < l->n_discounts; i++) {
        json_t *d = json_array_get(arr, i);
        Tillsync__V1__Discount *dc = arena_alloc(p->it, sizeof(*dc));
        int64_t amount;

        index_path(sub, sizeof(sub), path, "discounts", i);
        if (!json_is_object(d))
            return fail(p, 422, "invalid_field", sub, NULL, "must be an object");
        tillsync__v1__discount__init(dc);
        if (check_keys(p, d, sub, keys) ||
            get_str(p, d, sub, "code", false, MAX_ID_LEN, &dc->code) ||
            get_str(p, d, sub, "description", false, MAX_TEXT_LEN, &dc->description) ||
            get_money(p, d, sub, "amount", true, cur, &amount))
            return -EINVAL;
        if (amount < 0)
            return fail(p, 422, "invalid_field", sub, "amount",
                        "must not be negative (a discount reduces the line)");
        dc->amount = money_new(p, amount, cur);
        *sum += amount;
        l->discounts[i] = dc;
    }
    return 0;
}

static int parse_taxes(struct pj *p, const json_t *line, const char *path, const char *cur,
                       Tillsync__V1__TransactionLine *l, int64_t *sum, int64_t *excluded)
{
    static const char *const keys[] = {"code", "name", "rate_ppm", "amount", "included_in_price",
                                       NULL};
    json_t *arr;
    char sub[200];
    int rc = get_array(p, line, path, "tax_lines", false, 0, MAX_SUBITEMS, &arr);

    *sum = *excluded = 0;
    if (rc != 0 || !arr)
        return rc;
    l->n_tax_lines = json_array_size(arr);
    l->tax_lines = arena_alloc(p->it, sizeof(*l->tax_lines) * l->n_tax_lines);
    for (size_t i = 0; i < l->n_tax_lines; i++) {
        json_t *t = json_array_get(arr, i);
        Tillsync__V1__TaxLine *tl = arena_alloc(p->it, sizeof(*tl));
        int64_t amount, rate = 0;
        bool incl;

        index_path(sub, sizeof(sub), path, "tax_lines", i);
        if (!json_is_object(t))
            return fail(p, 422, "invalid_field", sub, NULL, "must be an object");
        tillsync__v1__tax_line__init(tl);
        if (check_keys(p, t, sub, keys) ||
            get_str(p, t, sub, "code", true, MAX_ID_LEN, &tl->code) ||
            get_str(p, t, sub, "name", false, MAX_TEXT_LEN, &tl->name) ||
            get_money(p, t, sub, "amount", true, cur, &amount) ||
            get_bool(p, t, sub, "included_in_price", false, &incl))
            return -EINVAL;
        rc = get_int(p, t, sub, "rate_ppm", false, 0, 1000000, &rate);
        if (rc == -EINVAL)
            return rc;
        tl->rate_ppm = rate;
        tl->included_in_price = incl;
        tl->amount = money_new(p, amount, cur);
        *sum += amount;
        if (!incl)
            *excluded += amount;
        l->tax_lines[i] = tl;
    }
    return 0;
}

/* One line; adds its net, discount and tax figures to the running totals. */
static int parse_line(struct pj *p, const json_t *line, size_t idx, int kind, const char *cur,
                      Tillsync__V1__TransactionLine *l, int64_t tot[4])
{
    static const char *const keys[] = {"line_id",    "sku",       "non_stock_code",   "quantity",
                                       "unit_price", "discounts", "tax_lines",        "net_amount",
                                       "restock",    "reason",    "original_line_id", NULL};
    char path[64];
    int64_t qty, price, disc, tax, tax_excl, net, given;
    bool restock;
    int rc;

    index_path(path, sizeof(path), "", "lines", idx);
    if (!json_is_object(line))
        return fail(p, 422, "invalid_field", "lines", NULL, "element %zu must be an object", idx);
    tillsync__v1__transaction_line__init(l);
    if (check_keys(p, line, path, keys) || get_id(p, line, path, "line_id", false, &l->line_id) ||
        get_str(p, line, path, "sku", false, MAX_ID_LEN, &l->sku) ||
        get_str(p, line, path, "non_stock_code", false, MAX_ID_LEN, &l->non_stock_code) ||
        get_str(p, line, path, "reason", false, MAX_TEXT_LEN, &l->reason) ||
        get_id(p, line, path, "original_line_id", false, &l->original_line_id))
        return -EINVAL;
    if (!*l->line_id) {
        char n[24];

        text_uint(n, idx + 1);
        l->line_id = arena_strdup(p->it, n);
    }
    if (!*l->sku == !*l->non_stock_code)
        return fail(p, 422, *l->sku ? "invalid_field" : "missing_field", path, "sku",
                    "exactly one of sku and non_stock_code must be given");
    if (get_int(p, line, path, "quantity", true, -MAX_QUANTITY, MAX_QUANTITY, &qty) ||
        get_money(p, line, path, "unit_price", true, cur, &price))
        return -EINVAL;
    if (qty == 0)
        return fail(p, 422, "invalid_field", path, "quantity", "must not be 0");
    if (kind == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE && qty < 0)
        return fail(p, 422, "invalid_field", path, "quantity",
                    "must be positive in a sale (use kind \"exchange\" or \"return\")");
    if (kind == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_RETURN && qty > 0)
        return fail(p, 422, "invalid_field", path, "quantity",
                    "must be negative in a return (goods coming back)");
    if (price < 0)
        return fail(p, 422, "invalid_field", path, "unit_price", "must not be negative");
    if (parse_discounts(p, line, path, cur, l, &disc) ||
        parse_taxes(p, line, path, cur, l, &tax, &tax_excl))
        return -EINVAL;
    net = qty * price - (qty > 0 ? disc : -disc); /* bounded: |qty| ≤ 1e6, |price| ≤ 1e13 */
    if ((qty > 0 && net < 0) || (qty < 0 && net > 0))
        return fail(p, 422, "money_mismatch", path, "discounts", "exceed the line amount");
    rc = get_money(p, line, path, "net_amount", false, cur, &given);
    if (rc == -EINVAL)
        return rc;
    if (rc == 0 && given != net)
        return fail(p, 422, "money_mismatch", path, "net_amount",
                    "%lld does not equal quantity × unit_price − discounts = %lld",
                    (long long)given, (long long)net);
    if (get_bool(p, line, path, "restock", qty < 0, &restock))
        return -EINVAL;
    l->quantity = qty;
    l->unit_price = money_new(p, price, cur);
    l->net_amount = money_new(p, net, cur);
    l->restock = restock && qty < 0 && *l->sku;
    if (*l->sku) {
        bool ship = true;

        l->sku_known = !p->ctx->sku_lookup || p->ctx->sku_lookup(p->ctx->sku_opaque, l->sku, &ship);
        l->requires_shipping = l->sku_known ? ship : true;
        if (!l->sku_known)
            push_str(p, &p->it->unknown_skus, &p->it->n_unknown_skus, l->sku);
    } else {
        const char *ledger = NULL;
        bool nns = false;

        l->sku_known = true;
        if (mapping_non_stock(p->ctx->mapping, l->non_stock_code, &ledger, &nns) == 0) {
            l->ledger_code = (char *)ledger;
            l->requires_shipping = !nns;
        } else {
            push_str(p, &p->it->unmapped_codes, &p->it->n_unmapped_codes, l->non_stock_code);
        }
    }
    tot[0] += net;
    tot[1] += disc;
    tot[2] += tax;
    tot[3] += tax_excl;
    return 0;
}

static int parse_tenders(struct pj *p, const json_t *obj, const char *cur,
                         Tillsync__V1__PosTransaction *t, int64_t *sum, bool required)
{
    static const char *const keys[] = {"type", "amount", "reference", "card_brand", NULL};
    json_t *arr;
    char path[48];

    *sum = 0;
    if (get_array(p, obj, "", "tenders", required, required ? 1 : 0, MAX_SUBITEMS, &arr))
        return -EINVAL;
    t->n_tenders = arr ? json_array_size(arr) : 0;
    t->tenders = arena_alloc(p->it, sizeof(*t->tenders) * (t->n_tenders + 1));
    for (size_t i = 0; i < t->n_tenders; i++) {
        json_t *o = json_array_get(arr, i);
        Tillsync__V1__Tender *td = arena_alloc(p->it, sizeof(*td));
        char *type;
        int64_t amount;
        int ti;

        index_path(path, sizeof(path), "", "tenders", i);
        if (!json_is_object(o))
            return fail(p, 422, "invalid_field", "tenders", NULL, "element %zu must be an object",
                        i);
        tillsync__v1__tender__init(td);
        if (check_keys(p, o, path, keys) || get_str(p, o, path, "type", true, 32, &type) ||
            enum_of(p, path, "type", type, tender_names, &ti) ||
            get_money(p, o, path, "amount", true, cur, &amount) ||
            get_str(p, o, path, "reference", false, MAX_ID_LEN, &td->reference) ||
            get_str(p, o, path, "card_brand", false, 32, &td->card_brand))
            return -EINVAL;
        td->type = (Tillsync__V1__TenderType)ti;
        td->amount = money_new(p, amount, cur);
        *sum += amount;
        t->tenders[i] = td;
    }
    return 0;
}

static int parse_customer(struct pj *p, const json_t *obj, Tillsync__V1__PosTransaction *t)
{
    static const char *const keys[] = {"customer_id", "loyalty_id", "email", "phone", "name", NULL};
    Tillsync__V1__Customer *c;
    json_t *o;

    if (get_object(p, obj, "", "customer", &o) || !o)
        return o ? 0 : (p->e->status ? -EINVAL : 0);
    c = arena_alloc(p->it, sizeof(*c));
    tillsync__v1__customer__init(c);
    if (check_keys(p, o, "customer.", keys) ||
        get_str(p, o, "customer.", "customer_id", false, MAX_ID_LEN, &c->customer_id) ||
        get_str(p, o, "customer.", "loyalty_id", false, MAX_ID_LEN, &c->loyalty_id) ||
        get_str(p, o, "customer.", "email", false, 254, &c->email) ||
        get_str(p, o, "customer.", "phone", false, 32, &c->phone) ||
        get_str(p, o, "customer.", "name", false, MAX_TEXT_LEN, &c->name))
        return -EINVAL;
    if (*c->email && (!strchr(c->email, '@') || strchr(c->email, ' ')))
        return fail(p, 422, "invalid_field", "customer.", "email", "is not an e-mail address");
    for (const char *s = c->phone; *s; s++) {
        if (!strchr("0123456789+-() ", *s))
            return fail(p, 422, "invalid_field", "customer.", "phone",
                        "may hold only digits, spaces and + - ( )");
    }
    if (!*c->customer_id && !*c->loyalty_id && !*c->email && !*c->phone)
        return fail(p, 422, "missing_field", "customer.", "loyalty_id",
                    "a customer needs a loyalty_id, customer_id, email or phone");
    t->customer = c;
    return 0;
}

/* A given total must equal the computed one. */
static int check_total(struct pj *p, const json_t *obj, const char *key, const char *cur,
                       int64_t computed, bool required, const char *how)
{
    int64_t given;
    int rc = get_money(p, obj, "", key, required, cur, &given);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    if (given != computed)
        return fail(p, 422, "money_mismatch", "", key, "%lld does not add up: %s = %lld",
                    (long long)given, how, (long long)computed);
    return 0;
}

static void date_of(int64_t ms, char out[11])
{
    char ts[32];

    clock_format_rfc3339(ms, ts, sizeof(ts));
    memcpy(out, ts, 10);
    out[10] = '\0';
}

int posjson_transaction(const json_t *obj, const struct posjson_ctx *ctx, struct pos_item *out,
                        struct posjson_error *e)
{
    static const char *const keys[] = {"transaction_id",
                                       "store_code",
                                       "till_id",
                                       "kind",
                                       "occurred_at",
                                       "business_date",
                                       "currency",
                                       "cashier_id",
                                       "lines",
                                       "tenders",
                                       "customer",
                                       "subtotal",
                                       "discount_total",
                                       "tax_total",
                                       "total",
                                       "original_transaction_id",
                                       "original_platform_order_id",
                                       "voided_transaction_id",
                                       "uploaded_late",
                                       NULL};
    struct pj p = {ctx, out, e};
    Tillsync__V1__PosTransaction *t;
    int64_t tot[4] = {0, 0, 0, 0}, tender_sum, total;
    const char *location;
    char *kind, name[600];
    json_t *lines;
    bool late;
    int k;

    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    t = arena_alloc(out, sizeof(*t));
    tillsync__v1__pos_transaction__init(t);
    if (check_keys(&p, obj, "", keys) ||
        get_id(&p, obj, "", "transaction_id", true, &t->transaction_id) ||
        get_id(&p, obj, "", "store_code", true, &t->store_code) ||
        get_id(&p, obj, "", "till_id", true, &t->till_id) ||
        check_store(&p, t->store_code, &location) ||
        get_str(&p, obj, "", "kind", true, 16, &kind) ||
        enum_of(&p, "", "kind", kind, kind_names, &k) || get_currency(&p, obj, &t->currency))
        goto fail;
    t->kind = (Tillsync__V1__TransactionKind)k;
    t->location_id = (char *)location;
    if (get_time(&p, obj, "", "occurred_at", true, &out->occurred_at_ms) != 0)
        goto fail;
    if (get_date(&p, obj, "", "business_date", false, &t->business_date) ||
        get_id(&p, obj, "", "cashier_id", false, &t->cashier_id) ||
        get_id(&p, obj, "", "original_transaction_id", false, &t->original_transaction_id) ||
        get_str(&p, obj, "", "original_platform_order_id", false, MAX_ID_LEN,
                &t->original_platform_order_id) ||
        get_id(&p, obj, "", "voided_transaction_id", false, &t->voided_transaction_id) ||
        get_bool(&p, obj, "", "uploaded_late", ctx->uploaded_late, &late))
        goto fail;
    if (!*t->business_date) {
        t->business_date = arena_alloc(out, 11);
        date_of(out->occurred_at_ms, t->business_date);
    }
    t->uploaded_late = late || ctx->uploaded_late;
    if (k == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID) {
        if (!*t->voided_transaction_id) {
            fail(&p, 422, "missing_field", "", "voided_transaction_id", "a void needs it");
            goto fail;
        }
        if (strcmp(t->voided_transaction_id, t->transaction_id) == 0) {
            fail(&p, 422, "invalid_field", "", "voided_transaction_id",
                 "a transaction cannot void itself");
            goto fail;
        }
    } else if (*t->voided_transaction_id) {
        fail(&p, 422, "invalid_field", "", "voided_transaction_id", "only a void may name one");
        goto fail;
    }
    if (get_array(&p, obj, "", "lines", k != TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID,
                  k != TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID, MAX_LINES, &lines))
        goto fail;
    t->n_lines = lines ? json_array_size(lines) : 0;
    t->lines = arena_alloc(out, sizeof(*t->lines) * (t->n_lines + 1));
    for (size_t i = 0; i < t->n_lines; i++) {
        t->lines[i] = arena_alloc(out, sizeof(*t->lines[i]));
        if (parse_line(&p, json_array_get(lines, i), i, k, t->currency, t->lines[i], tot))
            goto fail;
    }
    if (k == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_EXCHANGE) {
        bool out_ = false, in_ = false;

        for (size_t i = 0; i < t->n_lines; i++) {
            out_ = out_ || t->lines[i]->quantity > 0;
            in_ = in_ || t->lines[i]->quantity < 0;
        }
        if (!out_ || !in_) {
            fail(&p, 422, "invalid_field", "", "lines",
                 "an exchange needs a returned line (negative quantity) and a sold one");
            goto fail;
        }
    }
    total = tot[0] + tot[3];
    if (check_total(&p, obj, "subtotal", t->currency, tot[0], false, "Σ line net amounts") ||
        check_total(&p, obj, "discount_total", t->currency, tot[1], false, "Σ line discounts") ||
        check_total(&p, obj, "tax_total", t->currency, tot[2], false, "Σ tax lines") ||
        check_total(&p, obj, "total", t->currency, total,
                    k != TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID,
                    "subtotal + tax not included in prices") ||
        parse_tenders(&p, obj, t->currency, t, &tender_sum,
                      k != TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID && total != 0))
        goto fail;
    if (t->n_tenders && tender_sum != total) {
        fail(&p, 422, "money_mismatch", "", "tenders",
             "Σ tender amounts %lld does not equal the total %lld", (long long)tender_sum,
             (long long)total);
        goto fail;
    }
    if (parse_customer(&p, obj, t))
        goto fail;
    t->subtotal = money_new(&p, tot[0], t->currency);
    t->discount_total = money_new(&p, tot[1], t->currency);
    t->tax_total = money_new(&p, tot[2], t->currency);
    t->total = money_new(&p, total, t->currency);
    out->kind = POS_ITEM_TRANSACTION;
    out->transaction = t;
    out->source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    snprintf(name, sizeof(name), "%s/%s", t->store_code, t->till_id);
    out->source_name = arena_strdup(out, name);
    snprintf(out->key, sizeof(out->key), "%s/%s", t->store_code, t->till_id);
    snprintf(name, sizeof(name), "pos/%s/%s/%s/%s", ctx->tenant_id, t->store_code, t->till_id,
             t->transaction_id);
    uuid_from_name(name, out->event_id);
    body_hash(obj, out);
    return 0;
fail:
    pos_item_release(out);
    return -EINVAL;
}

/* ---- stock movements ------------------------------------------------------------------- */

static const char *const movement_names[] = {
    "",       "received",  "transfer_out", "transfer_in", "cycle_count",
    "damage", "shrinkage", "snapshot",     "adjustment",  NULL};
static const char *const source_names[] = {"", "pos", "wms", "erp", NULL};

static int parse_movement_line(struct pj *p, const json_t *o, size_t idx, int kind,
                               Tillsync__V1__MovementLine *l)
{
    static const char *const keys[] = {"line_id",          "sku",         "quantity",
                                       "counted_quantity", "reason_code", NULL};
    bool counted = kind == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_CYCLE_COUNT ||
                   kind == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SNAPSHOT;
    char path[64];
    int64_t v;
    bool ship;

    index_path(path, sizeof(path), "", "lines", idx);
    if (!json_is_object(o))
        return fail(p, 422, "invalid_field", "lines", NULL, "element %zu must be an object", idx);
    tillsync__v1__movement_line__init(l);
    if (check_keys(p, o, path, keys) || get_id(p, o, path, "line_id", false, &l->line_id) ||
        get_str(p, o, path, "sku", true, MAX_ID_LEN, &l->sku) ||
        get_str(p, o, path, "reason_code", false, MAX_ID_LEN, &l->reason_code))
        return -EINVAL;
    if (!*l->line_id) {
        char n[24];

        text_uint(n, idx + 1);
        l->line_id = arena_strdup(p->it, n);
    }
    if (counted) {
        if (json_object_get(o, "quantity"))
            return fail(p, 422, "invalid_field", path, "quantity",
                        "a count or snapshot gives counted_quantity, not quantity");
        if (get_int(p, o, path, "counted_quantity", true, 0, MAX_QUANTITY * 100LL, &v))
            return -EINVAL;
        l->counted_quantity = v;
    } else {
        bool signed_ = kind == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_ADJUSTMENT;

        if (json_object_get(o, "counted_quantity"))
            return fail(p, 422, "invalid_field", path, "counted_quantity",
                        "only a cycle_count or snapshot gives counted_quantity");
        if (get_int(p, o, path, "quantity", true, signed_ ? -MAX_QUANTITY : 0, MAX_QUANTITY, &v))
            return -EINVAL;
        if (v == 0)
            return fail(p, 422, "invalid_field", path, "quantity", "must not be 0");
        l->quantity = v;
    }
    l->sku_known = !p->ctx->sku_lookup || p->ctx->sku_lookup(p->ctx->sku_opaque, l->sku, &ship);
    if (!l->sku_known)
        push_str(p, &p->it->unknown_skus, &p->it->n_unknown_skus, l->sku);
    return 0;
}

int posjson_movement(const json_t *obj, const struct posjson_ctx *ctx, struct pos_item *out,
                     struct posjson_error *e)
{
    static const char *const keys[] = {"movement_id",
                                       "kind",
                                       "location_id",
                                       "store_code",
                                       "counterpart_location_id",
                                       "transfer_id",
                                       "lines",
                                       "reason",
                                       "source_reference",
                                       "occurred_at",
                                       "source",
                                       "source_name",
                                       "uploaded_late",
                                       NULL};
    struct pj p = {ctx, out, e};
    Tillsync__V1__StockMovement *m;
    char *kind, *source, *source_name, name[600];
    json_t *lines;
    bool late;
    int k, src = 1;

    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    m = arena_alloc(out, sizeof(*m));
    tillsync__v1__stock_movement__init(m);
    if (check_keys(&p, obj, "", keys) ||
        get_id(&p, obj, "", "movement_id", true, &m->movement_id) ||
        get_str(&p, obj, "", "kind", true, 16, &kind) ||
        enum_of(&p, "", "kind", kind, movement_names, &k) ||
        get_id(&p, obj, "", "store_code", false, &m->store_code) ||
        get_id(&p, obj, "", "location_id", false, &m->location_id) ||
        get_id(&p, obj, "", "counterpart_location_id", false, &m->counterpart_location_id) ||
        get_id(&p, obj, "", "transfer_id", false, &m->transfer_id) ||
        get_str(&p, obj, "", "reason", false, MAX_TEXT_LEN, &m->reason) ||
        get_str(&p, obj, "", "source_reference", false, MAX_ID_LEN, &m->source_reference) ||
        get_str(&p, obj, "", "source", false, 8, &source) ||
        (*source && enum_of(&p, "", "source", source, source_names, &src)) ||
        get_str(&p, obj, "", "source_name", false, MAX_ID_LEN, &source_name) ||
        get_bool(&p, obj, "", "uploaded_late", ctx->uploaded_late, &late))
        goto fail;
    m->kind = (Tillsync__V1__MovementKind)k;
    m->uploaded_late = late || ctx->uploaded_late;
    if (*m->store_code) {
        const char *loc;

        if (check_store(&p, m->store_code, &loc))
            goto fail;
        if (*m->location_id && strcmp(m->location_id, loc) != 0) {
            fail(&p, 422, "invalid_field", "", "location_id",
                 "\"%s\" is not the location of store \"%s\" (%s)", m->location_id, m->store_code,
                 loc);
            goto fail;
        }
        m->location_id = (char *)loc;
    } else if (!*m->location_id) {
        fail(&p, 422, "missing_field", "", "location_id", "give location_id or store_code");
        goto fail;
    } else if (ctx->auth_store) {
        fail(&p, 403, "store_forbidden", "", "location_id",
             "a store's API key may only send movements with its store_code");
        goto fail;
    } else if (!mapping_location_known(ctx->mapping, m->location_id)) {
        fail(&p, 422, "unknown_location", "", "location_id", "unknown location \"%s\"",
             m->location_id);
        goto fail;
    }
    if (k == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_OUT ||
        k == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_IN) {
        if (!*m->counterpart_location_id) {
            fail(&p, 422, "missing_field", "", "counterpart_location_id", "a transfer needs it");
            goto fail;
        }
        if (!*m->transfer_id) {
            fail(&p, 422, "missing_field", "", "transfer_id", "a transfer needs it");
            goto fail;
        }
        if (strcmp(m->counterpart_location_id, m->location_id) == 0) {
            fail(&p, 422, "invalid_field", "", "counterpart_location_id",
                 "a transfer cannot go to its own location");
            goto fail;
        }
    } else if (*m->counterpart_location_id) {
        fail(&p, 422, "invalid_field", "", "counterpart_location_id", "only transfers have one");
        goto fail;
    }
    if (get_time(&p, obj, "", "occurred_at", true, &out->occurred_at_ms) != 0 ||
        get_array(&p, obj, "", "lines", true, 1, MAX_LINES, &lines))
        goto fail;
    m->n_lines = json_array_size(lines);
    m->lines = arena_alloc(out, sizeof(*m->lines) * m->n_lines);
    for (size_t i = 0; i < m->n_lines; i++) {
        m->lines[i] = arena_alloc(out, sizeof(*m->lines[i]));
        if (parse_movement_line(&p, json_array_get(lines, i), i, k, m->lines[i]))
            goto fail;
    }
    out->kind = POS_ITEM_MOVEMENT;
    out->movement = m;
    out->source = src;
    out->source_name = *source_name ? source_name : (*m->store_code ? m->store_code : source);
    snprintf(out->key, sizeof(out->key), "%s", m->location_id);
    snprintf(name, sizeof(name), "movement/%s/%s/%s", ctx->tenant_id, m->location_id,
             m->movement_id);
    uuid_from_name(name, out->event_id);
    body_hash(obj, out);
    return 0;
fail:
    pos_item_release(out);
    return -EINVAL;
}

/* ---- takings ----------------------------------------------------------------------------- */

int posjson_takings(const json_t *obj, const struct posjson_ctx *ctx, struct pos_item *out,
                    struct posjson_error *e)
{
    static const char *const keys[] = {"store_code",   "till_id",    "business_date", "currency",
                                       "cash_counted", "card_total", "other_total",   "declared_by",
                                       "declared_at",  NULL};
    struct pj p = {ctx, out, e};
    Tillsync__V1__TakingsDeclaration *t;
    int64_t cash, card, other = 0;
    const char *location;
    char *currency, name[600];
    int rc;

    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    t = arena_alloc(out, sizeof(*t));
    tillsync__v1__takings_declaration__init(t);
    if (check_keys(&p, obj, "", keys) || get_id(&p, obj, "", "store_code", true, &t->store_code) ||
        get_id(&p, obj, "", "till_id", true, &t->till_id) ||
        check_store(&p, t->store_code, &location) ||
        get_date(&p, obj, "", "business_date", true, &t->business_date) ||
        get_currency(&p, obj, &currency) ||
        get_money(&p, obj, "", "cash_counted", true, currency, &cash) ||
        get_money(&p, obj, "", "card_total", true, currency, &card) ||
        get_str(&p, obj, "", "declared_by", false, MAX_ID_LEN, &t->declared_by))
        goto fail;
    rc = get_money(&p, obj, "", "other_total", false, currency, &other);
    if (rc == -EINVAL)
        goto fail;
    if (cash < 0 || card < 0 || other < 0) {
        fail(&p, 422, "invalid_field", "",
             cash < 0   ? "cash_counted"
             : card < 0 ? "card_total"
                        : "other_total",
             "must not be negative");
        goto fail;
    }
    rc = get_time(&p, obj, "", "declared_at", false, &out->occurred_at_ms);
    if (rc == -EINVAL || (rc != 0 && p.e->status))
        goto fail;
    if (rc == -ENOENT)
        out->occurred_at_ms = ctx->now_ms;
    t->cash_counted = money_new(&p, cash, currency);
    t->card_total = money_new(&p, card, currency);
    t->other_total = money_new(&p, other, currency);
    out->kind = POS_ITEM_TAKINGS;
    out->takings = t;
    out->source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    snprintf(name, sizeof(name), "%s/%s", t->store_code, t->till_id);
    out->source_name = arena_strdup(out, name);
    snprintf(out->key, sizeof(out->key), "%s/%s", t->store_code, t->till_id);
    snprintf(name, sizeof(name), "takings/%s/%s/%s/%s", ctx->tenant_id, t->store_code, t->till_id,
             t->business_date);
    uuid_from_name(name, out->event_id);
    body_hash(obj, out);
    return 0;
fail:
    pos_item_release(out);
    return -EINVAL;
}

/* ---- batch split ---------------------------------------------------------------------------- */

#define SPLIT_MAX_DEPTH 64  /* deeper than any till item; the full parse judges such bodies */
#define SPLIT_MAX_KEYS  256 /* keys of the objects open at once, for the duplicate check */
#define SPLIT_MAX_NUM   64  /* a longer number is left to the full parse */

static size_t skip_ws(const char *b, size_t n, size_t i)
{
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r'))
        i++;
    return i;
}

/*
 * A strict reading of one item: it succeeds only where jansson's json_loadb(...,
 * JSON_REJECT_DUPLICATES) would, so that a body the split accepts is known to be JSON before
 * any of its items goes out (the items are then parsed while the first ones are already being
 * claimed and published). Besides RFC 8259's grammar that means jansson's own refusals:
 * invalid UTF-8 (utf8_seq_len's refusals, which are jansson's), \u0000, a lone or unpaired
 * surrogate escape, an integer outside long long, a real that overflows a double, and a key
 * repeated in one object. It may refuse more than jansson (an escaped key, a number longer
 * than SPLIT_MAX_NUM, nesting past SPLIT_MAX_DEPTH, more than SPLIT_MAX_KEYS open keys): the
 * caller then parses the whole body, which accepts or names the problem.
 * tests/fuzz/fuzz_pos_json.c checks that every body the split accepts parses whole.
 */
struct scan {
    const unsigned char *b;
    size_t n, i;
    struct {
        const unsigned char *p;
        size_t len;
    } keys[SPLIT_MAX_KEYS];
    size_t nkeys;
};

static int hex4(const unsigned char *p)
{
    int v = 0;

    for (int k = 0; k < 4; k++) {
        int c = p[k], d;

        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The string at b[i] == '"'; *escaped tells whether it held a backslash. */
static bool scan_string(struct scan *s, bool *escaped)
{
    const unsigned char *b = s->b;
    size_t n = s->n, i = s->i + 1;

    *escaped = false;
    for (;;) {
        while (i < n && b[i] >= 0x20 && b[i] < 0x80 && b[i] != '"' && b[i] != '\\')
            i++;
        if (i >= n || b[i] < 0x20)
            return false; /* unterminated, or a control character */
        if (b[i] == '"') {
            s->i = i + 1;
            return true;
        }
        if (b[i] >= 0x80) {
            size_t len = utf8_seq_len(b + i, n - i);

            if (!len)
                return false;
            i += len;
            continue;
        }
        *escaped = true; /* b[i] == '\\' */
        if (++i >= n)
            return false;
        if (b[i] == 'u') {
            int v = n - i > 4 ? hex4(b + i + 1) : -1;

            if (v <= 0 || (v >= 0xDC00 && v <= 0xDFFF))
                return false; /* not hex, \u0000, or a lone low surrogate */
            i += 5;
            if (v >= 0xD800 && v <= 0xDBFF) { /* a high surrogate: its low one must follow */
                int lo = n - i > 5 && b[i] == '\\' && b[i + 1] == 'u' ? hex4(b + i + 2) : -1;

                if (lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                i += 6;
            }
        } else if (b[i] && strchr("\"\\/bfnrt", b[i])) {
            i++;
        } else {
            return false;
        }
    }
}

/* A number at b[i], as jansson reads it: no leading zeros, a digit on both sides of '.', an
 * integer that fits a long long, a real that does not overflow. strtod reads '.' as jansson
 * does because the process never leaves the C locale (nothing calls setlocale). */
static bool scan_number(struct scan *s)
{
    const unsigned char *b = s->b;
    size_t n = s->n, i = s->i, start = i;
    bool real = false;
    char text[SPLIT_MAX_NUM + 1];

    if (b[i] == '-')
        i++;
    if (i < n && b[i] == '0')
        i++;
    else if (i < n && b[i] >= '1' && b[i] <= '9')
        while (i < n && b[i] >= '0' && b[i] <= '9')
            i++;
    else
        return false;
    if (i < n && b[i] == '.') {
        real = true;
        if (++i >= n || b[i] < '0' || b[i] > '9')
            return false;
        while (i < n && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    if (i < n && (b[i] == 'e' || b[i] == 'E')) {
        real = true;
        if (++i < n && (b[i] == '+' || b[i] == '-'))
            i++;
        if (i >= n || b[i] < '0' || b[i] > '9')
            return false;
        while (i < n && b[i] >= '0' && b[i] <= '9')
            i++;
    }
    if (i - start > SPLIT_MAX_NUM)
        return false;
    memcpy(text, b + start, i - start);
    text[i - start] = '\0';
    errno = 0;
    if (real) {
        double v = strtod(text, NULL);

        if ((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE)
            return false;
    } else {
        (void)strtoll(text, NULL, 10);
        if (errno == ERANGE)
            return false;
    }
    s->i = i;
    return true;
}

static bool scan_value(struct scan *s, int depth);

/* s->i past the whitespace from b[from]. */
static void scan_ws(struct scan *s, size_t from)
{
    s->i = skip_ws((const char *)s->b, s->n, from);
}

/* After a member of an object or array: 1 past a ',' (and the space after it), 0 past the
 * closing bracket, -1 on anything else. */
static int scan_next(struct scan *s, char close)
{
    scan_ws(s, s->i);
    if (s->i < s->n && s->b[s->i] == ',') {
        scan_ws(s, s->i + 1);
        return 1;
    }
    if (s->i >= s->n || s->b[s->i] != close)
        return -1;
    s->i++;
    return 0;
}

/* The object at b[i] == '{': its keys unescaped and each once. */
static bool scan_object(struct scan *s, int depth)
{
    size_t first = s->nkeys;

    scan_ws(s, s->i + 1);
    if (s->i < s->n && s->b[s->i] == '}') {
        s->i++;
        return true;
    }
    for (;;) {
        const unsigned char *key = s->b + s->i + 1;
        size_t len;
        bool escaped;

        if (s->i >= s->n || s->b[s->i] != '"' || !scan_string(s, &escaped) || escaped)
            return false;
        len = (size_t)(s->b + s->i - 1 - key);
        for (size_t k = first; k < s->nkeys; k++)
            if (s->keys[k].len == len && memcmp(s->keys[k].p, key, len) == 0)
                return false; /* repeated */
        if (s->nkeys == SPLIT_MAX_KEYS)
            return false;
        s->keys[s->nkeys].p = key;
        s->keys[s->nkeys++].len = len;
        scan_ws(s, s->i);
        if (s->i >= s->n || s->b[s->i] != ':')
            return false;
        scan_ws(s, s->i + 1);
        if (!scan_value(s, depth))
            return false;
        switch (scan_next(s, '}')) {
        case 1:
            continue;
        case 0:
            s->nkeys = first;
            return true;
        default:
            return false;
        }
    }
}

static bool scan_array(struct scan *s, int depth)
{
    scan_ws(s, s->i + 1);
    if (s->i < s->n && s->b[s->i] == ']') {
        s->i++;
        return true;
    }
    for (;;) {
        int next;

        if (!scan_value(s, depth) || (next = scan_next(s, ']')) < 0)
            return false;
        if (next == 0)
            return true;
    }
}

static bool scan_literal(struct scan *s, const char *lit)
{
    size_t len = strlen(lit);

    if (s->n - s->i < len || memcmp(s->b + s->i, lit, len) != 0)
        return false;
    s->i += len;
    return true;
}

/* The value at b[i] (no whitespace before it); s->i ends one past it. */
static bool scan_value(struct scan *s, int depth)
{
    bool escaped;

    if (s->i >= s->n)
        return false;
    switch (s->b[s->i]) {
    case '{':
        return depth < SPLIT_MAX_DEPTH && scan_object(s, depth + 1);
    case '[':
        return depth < SPLIT_MAX_DEPTH && scan_array(s, depth + 1);
    case '"':
        return scan_string(s, &escaped);
    case 't':
        return scan_literal(s, "true");
    case 'f':
        return scan_literal(s, "false");
    case 'n':
        return scan_literal(s, "null");
    default:
        return scan_number(s);
    }
}

/* The end of the item that starts with '{' at b[i] (one past its '}'), or 0 when it is not
 * one JSON object as scan_value reads it. */
static size_t object_end(struct scan *s, size_t i)
{
    s->i = i;
    s->nkeys = 0;
    return scan_value(s, 0) ? s->i : 0;
}

int posjson_batch_split(const char *b, size_t n, size_t max_items, struct posjson_span **out)
{
    static const char *const groups[] = {"transactions", "movements"};
    struct posjson_span *sp = NULL;
    size_t count = 0, cap = 0, i, start[2] = {0, 0}, len[2] = {0, 0};
    bool seen[2] = {false, false};
    struct scan *sc = malloc(sizeof(*sc));

    if (!sc)
        abort(); /* OOM policy */
    sc->b = (const unsigned char *)b;
    sc->n = n;
    *out = NULL;
    i = skip_ws(b, n, 0);
    if (i >= n || b[i] != '{')
        goto fallback;
    for (;;) { /* b[i] is the '{' or the ',' before a key */
        size_t k0, g;

        i = skip_ws(b, n, i + 1);
        if (i >= n || b[i] != '"')
            goto fallback;
        k0 = ++i;
        while (i < n && b[i] != '"' && b[i] != '\\')
            i++;
        if (i >= n || b[i] != '"')
            goto fallback; /* an escaped key: let the full parse decode it */
        for (g = 0; g < 2; g++)
            if (i - k0 == strlen(groups[g]) && memcmp(b + k0, groups[g], i - k0) == 0)
                break;
        if (g == 2 || seen[g])
            goto fallback; /* unknown or repeated key */
        seen[g] = true;
        i = skip_ws(b, n, i + 1);
        if (i >= n || b[i] != ':')
            goto fallback;
        i = skip_ws(b, n, i + 1);
        if (i >= n || b[i] != '[')
            goto fallback;
        start[g] = count;
        i = skip_ws(b, n, i + 1);
        if (i < n && b[i] == ']')
            i++;
        else
            for (;;) {
                size_t end;
                int next;

                if (i >= n || b[i] != '{' || !(end = object_end(sc, i)))
                    goto fallback; /* not an object, or not closed */
                if (count == max_items)
                    goto fallback; /* too many: the full parse says so */
                if (count == cap) {
                    cap = cap ? cap * 2 : 256;
                    sp = realloc(sp, cap * sizeof(*sp));
                    if (!sp)
                        abort(); /* OOM policy */
                }
                sp[count].group = (int)g;
                sp[count].off = i;
                sp[count++].len = end - i;
                sc->i = end;
                next = scan_next(sc, ']');
                if (next < 0)
                    goto fallback;
                i = sc->i;
                if (next == 0)
                    break;
            }
        len[g] = count - start[g];
        i = skip_ws(b, n, i);
        if (i < n && b[i] == ',')
            continue;
        if (i >= n || b[i] != '}')
            goto fallback;
        break;
    }
    if (skip_ws(b, n, i + 1) != n || count == 0)
        goto fallback;
    if (seen[0] && seen[1] && start[1] < start[0]) {
        /* movements came first in the body: transactions first in the answer */
        struct posjson_span *r = malloc(count * sizeof(*r));

        if (!r)
            abort(); /* OOM policy */
        memcpy(r, sp + start[0], len[0] * sizeof(*r));
        memcpy(r + len[0], sp + start[1], len[1] * sizeof(*r));
        free(sp);
        sp = r;
    }
    free(sc);
    *out = sp;
    return (int)count;
fallback:
    free(sc);
    free(sp);
    return -EINVAL;
}
