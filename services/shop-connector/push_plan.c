/* push_plan — see push_plan.h. */
#include "push_plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ one key */

void plan_key_init(struct plan_key *k)
{
    memset(k, 0, sizeof(*k));
    k->version = -1;
    k->done_version = -1;
}

bool plan_key_dirty(const struct plan_key *k)
{
    return k->version >= 0 && (k->version > k->done_version || k->force);
}

bool plan_key_apply(struct plan_key *k, int64_t version, int64_t available, int64_t as_of_ms,
                    int64_t now)
{
    if (version <= k->version)
        return false;
    bool was_dirty = plan_key_dirty(k);
    k->version = version;
    k->quantity = available < 0 ? 0 : available;
    k->as_of_ms = as_of_ms;
    if (plan_key_dirty(k) && !was_dirty)
        k->dirty_since = now;
    if (k->need_read)
        k->not_before = 0; /* likely the order behind the conflict: go on now */
    if (k->version > k->done_version && k->drift_since)
        k->drift_since = 0;
    return true;
}

enum plan_action plan_key_next(const struct plan_key *k, bool compare_and_set, long window_ms,
                               int64_t now, int64_t *at)
{
    if (!plan_key_dirty(k))
        return PLAN_IDLE;
    if (k->not_before > now) {
        *at = k->not_before;
        return PLAN_HELD;
    }
    if (k->need_read || (compare_and_set && !k->plat_known))
        return PLAN_READ;
    int64_t due = k->dirty_since + window_ms;
    if (due > now) {
        *at = due;
        return PLAN_WAIT;
    }
    return PLAN_WRITE;
}

int64_t plan_key_compare(const struct plan_key *k)
{
    return k->plat_known ? k->plat_qty : 0;
}

void plan_key_written(struct plan_key *k, enum level_outcome o, int64_t version, int64_t quantity,
                      int64_t now, long cas_settle_ms)
{
    switch (o) {
    case LEVEL_OK:
        k->plat_known = true;
        k->plat_qty = quantity;
        k->force = false;
        if (version > k->done_version)
            k->done_version = version;
        k->dirty_since = plan_key_dirty(k) ? now : 0;
        break;
    case LEVEL_STALE:
        k->need_read = true;
        k->not_before = now + cas_settle_ms;
        break;
    case LEVEL_REJECTED:
        if (version > k->done_version)
            k->done_version = version;
        k->force = false;
        k->plat_known = false;
        k->dirty_since = plan_key_dirty(k) ? now : 0;
        break;
    case LEVEL_NOT_APPLIED:
        break;
    }
}

void plan_key_read(struct plan_key *k, bool found, int64_t available)
{
    k->plat_known = true;
    k->plat_qty = found ? available : 0;
    k->need_read = false;
}

/* ------------------------------------------------------------------ batches */

int plan_urgency(int64_t qty, long low_stock)
{
    return qty <= 0 ? 0 : qty <= low_stock ? 1 : 2;
}

static int job_cmp(const void *a, const void *b)
{
    const struct plan_job *x = a, *y = b;
    if (x->urg != y->urg)
        return x->urg - y->urg;
    return x->since < y->since ? -1 : x->since > y->since;
}

size_t plan_batch(struct plan_job *jobs, size_t n, size_t max_batch)
{
    if (n == 0)
        return 0;
    qsort(jobs, n, sizeof(*jobs), job_cmp);
    if (max_batch == 0)
        max_batch = 1;
    return n < max_batch ? n : max_batch;
}

long plan_window_adapt(long cur, size_t pending, size_t max_batch, long min, long max)
{
    if (pending > max_batch * 2 && max_batch > 1)
        return cur * 2 > max ? max : cur * 2 < min ? min : cur * 2;
    if (pending <= max_batch)
        return cur / 2 < min ? min : cur / 2;
    return cur;
}

long plan_window_throttled(long cur, long max)
{
    return cur * 2 > max ? max : cur * 2;
}

bool plan_flush_early(size_t ndue, size_t nready, size_t max_batch)
{
    return max_batch > 1 && ndue < max_batch && nready >= max_batch;
}

/* ------------------------------------------------------------------ staleness */

void plan_stale_observe(struct plan_stale *h, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    int64_t b = ms / PLAN_STALE_BUCKET_MS;
    if (b >= PLAN_STALE_BUCKETS)
        b = PLAN_STALE_BUCKETS - 1;
    h->hist[b]++;
    h->n++;
}

long plan_stale_quantile(const struct plan_stale *h, double q)
{
    if (h->n == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t want = (uint64_t)(q * (double)h->n + 0.999999);
    if (want == 0)
        want = 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < PLAN_STALE_BUCKETS; i++) {
        acc += h->hist[i];
        if (acc >= want)
            return (long)((i + 1) * PLAN_STALE_BUCKET_MS);
    }
    return (long)PLAN_STALE_BUCKETS * PLAN_STALE_BUCKET_MS;
}

/* ------------------------------------------------------------------ the shared bucket */

long plan_bucket_cost(long cost, long capacity)
{
    if (cost > capacity)
        cost = capacity;
    return cost < 1 ? 1 : cost;
}

long plan_throttle_wait_ms(long retry_after_ms, long call_cost, long refill_per_s)
{
    long ms;
    if (retry_after_ms >= 0)
        ms = retry_after_ms;
    else if (refill_per_s > 0)
        ms = (call_cost * 1000 + refill_per_s - 1) / refill_per_s;
    else
        ms = 1000;
    return ms < 250 ? 250 : ms;
}

long plan_backoff_next(long cur)
{
    long n = cur > 0 ? cur * 2 : 200;
    return n > 10000 ? 10000 : n;
}

/* ------------------------------------------------------------------ SKU -> item */

struct plan_sku {
    char *sku;
    char *item; /* NULL = not found (yet) */
    bool ambiguous;
};

void plan_skus_init(struct plan_skus *s)
{
    memset(s, 0, sizeof(*s));
}

void plan_skus_release(struct plan_skus *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].sku);
        free(s->v[i].item);
    }
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static struct plan_sku *sku_find(const struct plan_skus *s, const char *sku)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].sku, sku) == 0)
            return &s->v[i];
    return NULL;
}

void plan_skus_add(struct plan_skus *s, const char *sku)
{
    if (!sku || sku_find(s, sku))
        return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        struct plan_sku *nv = realloc(s->v, nc * sizeof(*nv));
        if (!nv)
            abort(); /* out of memory: the one policy (STYLE.md) */
        s->v = nv;
        s->cap = nc;
    }
    char *d = strdup(sku);
    if (!d)
        abort(); /* out of memory */
    s->v[s->n++] = (struct plan_sku){.sku = d};
}

char *plan_skus_pg_array(const struct plan_skus *s)
{
    size_t cap = 3;
    for (size_t i = 0; i < s->n; i++)
        cap += strlen(s->v[i].sku) * 2 + 3;
    char *out = malloc(cap);
    if (!out)
        abort(); /* out of memory */
    size_t o = 0;
    out[o++] = '{';
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            out[o++] = ',';
        out[o++] = '"';
        for (const char *c = s->v[i].sku; *c; c++) {
            if (*c == '"' || *c == '\\')
                out[o++] = '\\';
            out[o++] = *c;
        }
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o] = '\0';
    return out;
}

void plan_skus_found(struct plan_skus *s, const char *sku, const char *item_id)
{
    struct plan_sku *e = sku ? sku_find(s, sku) : NULL;
    if (!e || !item_id)
        return;
    if (e->item) {
        e->ambiguous = true; /* a second variant row: the SKU does not name one item */
        return;
    }
    e->item = strdup(item_id);
    if (!e->item)
        abort(); /* out of memory */
}

int plan_skus_item(const struct plan_skus *s, const char *sku, char *item, size_t itemcap)
{
    const struct plan_sku *e = sku ? sku_find(s, sku) : NULL;
    if (!e || !e->item || e->ambiguous)
        return -ENOENT;
    size_t l = strlen(e->item);
    if (l + 1 > itemcap)
        return -ENOENT;
    memcpy(item, e->item, l + 1);
    return 0;
}
