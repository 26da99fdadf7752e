/* push — see push.h for the design. */
#include "push.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libpq-fe.h>

#include "clock.h"
#include "events.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "platform.h"
#include "push_plan.h"
#include "ratelimit.h"
#include "rawjson.h"
#include "shops.h"
#include "tillsync/v1/inventory.pb-c.h"
#include "uuid.h"

#define TOPIC_LEVELS     "inventory.levels.v1"
#define TOPIC_LEVELS_DLQ "inventory.levels.v1.dlq"
#define SLOW_CALL_MS     500 /* a write call plus its Postgres record this slow is logged */

/* One (item, location) of a shop. Dirty when version > done_version or force. Guarded by
 * push.lock; workers copy what they send and look the entry up again afterwards (the consumer
 * may free it on a revoke meanwhile). */
struct entry {
    char *item_id, *location_id, *sku, *kafka_key;
    int32_t partition;
    struct plan_key k; /* figures and state (push_plan.h) */
    bool drift_raised;
    void *payload; /* newest record, for the dead-letter topic */
    size_t len;
    struct entry *next;
};

struct pshop {
    struct push *p;
    struct shop *shop;
    const struct platform_ops *ops;
    char bucket_key[512];
    struct ratelimit_bucket bucket;
    struct entry **tab;
    size_t nslots, n;
    pthread_t thread;
    bool started;
    long window_ms;
    long backoff_ms;     /* current 5xx backoff; 0 = none */
    bool incident;       /* 5xx / timeouts seen: check every key for drift once it ends */
    int64_t next_drift;  /* mono ms */
    size_t drift_cursor; /* slot index of the rotating sample */
    uint32_t rand_state;
    /* figures for /metrics and /admin/push */
    long changes, calls, read_calls, writes, qty_written, throttled, conflicts, rejected, errors,
        drift_open;
    struct plan_stale stale;
};

struct push {
    struct service *svc;
    struct push_opts o;
    struct shop_set shops;
    struct pshop *ps;
    size_t nps;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    struct kafka_consumer *consumer;
    char topic[256], dlq_topic[256];
    struct http_route routes[1];
    struct metric *m_pending, *m_behind, *m_calls, *m_throttled, *m_conflicts, *m_rejected,
        *m_written, *m_changes, *m_errors, *m_stale;
};

/* ------------------------------------------------------------------ table */

static uint64_t hash2(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 1099511628211ULL;
    h = (h ^ '|') * 1099511628211ULL;
    for (; *b; b++)
        h = (h ^ (unsigned char)*b) * 1099511628211ULL;
    return h;
}

static struct entry *entry_find(struct pshop *s, const char *item, const char *loc)
{
    struct entry *e = s->tab[hash2(item, loc) % s->nslots];
    for (; e; e = e->next)
        if (strcmp(e->item_id, item) == 0 && strcmp(e->location_id, loc) == 0)
            return e;
    return NULL;
}

static void entry_free(struct entry *e)
{
    if (!e)
        return;
    free(e->item_id);
    free(e->location_id);
    free(e->sku);
    free(e->kafka_key);
    free(e->payload);
    free(e);
}

static void table_grow(struct pshop *s)
{
    size_t nn = s->nslots * 2;
    struct entry **nt = calloc(nn, sizeof(*nt));
    if (!nt)
        abort(); /* out of memory: the one policy (STYLE.md) */
    for (size_t i = 0; i < s->nslots; i++) {
        struct entry *e = s->tab[i];
        while (e) {
            struct entry *next = e->next;
            size_t k = hash2(e->item_id, e->location_id) % nn;
            e->next = nt[k];
            nt[k] = e;
            e = next;
        }
    }
    free(s->tab);
    s->tab = nt;
    s->nslots = nn;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort(); /* out of memory */
    return d;
}

static struct entry *entry_get(struct pshop *s, const char *item, const char *loc)
{
    struct entry *e = entry_find(s, item, loc);
    if (e)
        return e;
    if (s->n + 1 > s->nslots)
        table_grow(s);
    e = calloc(1, sizeof(*e));
    if (!e)
        abort(); /* out of memory */
    e->item_id = xstrdup(item);
    e->location_id = xstrdup(loc);
    plan_key_init(&e->k);
    e->partition = -1;
    size_t k = hash2(item, loc) % s->nslots;
    e->next = s->tab[k];
    s->tab[k] = e;
    s->n++;
    return e;
}

static bool entry_dirty(const struct entry *e)
{
    return plan_key_dirty(&e->k);
}

/* ------------------------------------------------------------------ helpers */

static int64_t now_mono(void)
{
    return clock_mono_ms();
}

static uint32_t rnd(struct pshop *s)
{
    s->rand_state ^= s->rand_state << 13;
    s->rand_state ^= s->rand_state >> 17;
    s->rand_state ^= s->rand_state << 5;
    return s->rand_state;
}

/* Wait on the condition until mono ms `until` (or a signal). Lock held. */
static void wait_until(struct push *p, int64_t until)
{
    int64_t d = until - now_mono();
    if (d <= 0)
        return;
    if (d > 1000)
        d = 1000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += d / 1000;
    ts.tv_nsec += (d % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

static void stale_observe(struct pshop *s, int64_t ms)
{
    plan_stale_observe(&s->stale, ms);
    metric_observe(s->p->m_stale, (double)(ms < 0 ? 0 : ms) / 1000.0, s->shop->key);
}

/* Take cost tokens from the shop's bucket, waiting as long as it says; false when stopping. */
static bool bucket_take(struct pshop *s, long cost)
{
    struct push *p = s->p;
    for (;;) {
        long wait = 0;
        char err[256];
        cost = plan_bucket_cost(cost, s->bucket.capacity);
        int rc = ratelimit_try(p->svc->redis, &s->bucket, cost, &wait, err, sizeof(err));
        if (rc < 0) {
            log_kv(LOG_LVL_WARN, "rate-limit bucket unavailable; waiting", "shop", s->shop->key,
                   "error", err, NULL);
            wait = 1000;
        }
        if (rc == 0 && wait == 0)
            return true;
        pthread_mutex_lock(&p->lock);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->lock);
        if (stop)
            return false;
        if (wait > 1000)
            wait = 1000;
        struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The platform's answer about its budget corrects the shared bucket. */
static void bucket_correct(struct pshop *s, const struct platform_budget *b)
{
    if (b->available < 0)
        return;
    char err[256];
    if (ratelimit_correct(s->p->svc->redis, &s->bucket, b->available, err, sizeof(err)) < 0)
        log_kv(LOG_LVL_WARN, "rate-limit correction failed", "shop", s->shop->key, "error", err,
               NULL);
}

/* ------------------------------------------------------------------ Postgres */

/* Record confirmed (or rejected) figures: rows of (item, location, version, quantity). */
struct done_row {
    char *item_id, *location_id;
    int64_t version, quantity;
    bool rejected;
};

/*
 * The ledger names a SKU, not the platform's inventory item: find the items of the SKUs in k in
 * the catalogue this connector synced (catalog_variant), in one query for the whole consumer
 * batch. A SKU not in the shop's catalogue, or on two variants, stays without item (the record
 * is then rejected with the reason). Returns 0, or -EIO when the database is unreachable.
 */
static int catalog_items_lookup(struct pshop *s, struct plan_skus *k)
{
    char err[256];
    char *arr = plan_skus_pg_array(k);
    const char *params[2] = {s->shop->key, arr};
    PGconn *c = pg_acquire(s->p->svc->pg, 5000, err, sizeof(err));
    PGresult *r;
    int rc = 0;

    if (!c) {
        log_kv(LOG_LVL_WARN, "push: catalogue lookup failed", "error", err, NULL);
        free(arr);
        return -EIO;
    }
    r = PQexecParams(c,
                     "SELECT sku, inventory_item_id FROM catalog_variant WHERE shop_key = $1 AND "
                     "sku = ANY($2::text[])",
                     2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_kv(LOG_LVL_WARN, "push: catalogue lookup failed", "error", PQresultErrorMessage(r),
               NULL);
        rc = -EIO;
    } else {
        for (int i = 0; i < PQntuples(r); i++)
            plan_skus_found(k, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    }
    PQclear(r);
    pg_release(s->p->svc->pg, c);
    free(arr);
    return rc;
}

static void done_persist(struct pshop *s, struct done_row *rows, size_t n)
{
    if (n == 0)
        return;
    struct push *p = s->p;
    char err[256];
    PGconn *c = pg_acquire(p->svc->pg, 5000, err, sizeof(err));
    if (!c) {
        log_kv(LOG_LVL_WARN, "push: cannot record confirmed figures", "error", err, NULL);
        return;
    }
    /* one statement: unnest of text arrays built as parameters */
    size_t cap = 64 + n * 64;
    char *items = malloc(cap * 4), *locs = malloc(cap * 4), *vers = malloc(n * 24 + 8),
         *qtys = malloc(n * 24 + 8), *rej = malloc(n * 2 + 8);
    if (!items || !locs || !vers || !qtys || !rej)
        abort(); /* out of memory */
    size_t li = 0, ll = 0, lv = 0, lq = 0, lr = 0;
    items[li++] = '{';
    locs[ll++] = '{';
    vers[lv++] = '{';
    qtys[lq++] = '{';
    rej[lr++] = '{';
    for (size_t i = 0; i < n; i++) {
        /* ids are digits (checked on intake), so no quoting is needed */
        li += (size_t)snprintf(items + li, cap * 4 - li, "%s%s", i ? "," : "", rows[i].item_id);
        ll += (size_t)snprintf(locs + ll, cap * 4 - ll, "%s%s", i ? "," : "", rows[i].location_id);
        lv += (size_t)snprintf(vers + lv, n * 24 + 8 - lv, "%s%" PRId64, i ? "," : "",
                               rows[i].version);
        lq += (size_t)snprintf(qtys + lq, n * 24 + 8 - lq, "%s%" PRId64, i ? "," : "",
                               rows[i].quantity);
        lr += (size_t)snprintf(rej + lr, n * 2 + 8 - lr, "%s%c", i ? "," : "",
                               rows[i].rejected ? 't' : 'f');
    }
    snprintf(items + li, cap * 4 - li, "}");
    snprintf(locs + ll, cap * 4 - ll, "}");
    snprintf(vers + lv, n * 24 + 8 - lv, "}");
    snprintf(qtys + lq, n * 24 + 8 - lq, "}");
    snprintf(rej + lr, n * 2 + 8 - lr, "}");
    const char *params[] = {s->shop->key, items, locs, vers, qtys, rej};
    PGresult *r = PQexecParams(
        c,
        "INSERT INTO push_level (shop_key, item_id, location_id, version, quantity, rejected) "
        "SELECT $1, i, l, v, q, r FROM unnest($2::text[], $3::text[], $4::bigint[], "
        "$5::bigint[], $6::boolean[]) AS t(i, l, v, q, r) "
        "ON CONFLICT (shop_key, item_id, location_id) DO UPDATE SET version = EXCLUDED.version, "
        "quantity = EXCLUDED.quantity, rejected = EXCLUDED.rejected, written_at = now() "
        "WHERE push_level.version <= EXCLUDED.version",
        6, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        log_kv(LOG_LVL_WARN, "push: cannot record confirmed figures", "error",
               PQresultErrorMessage(r), NULL);
    PQclear(r);
    pg_release(p->svc->pg, c);
    free(items);
    free(locs);
    free(vers);
    free(qtys);
    free(rej);
}

static int done_load(struct pshop *s, char *err, size_t errlen)
{
    struct push *p = s->p;
    PGconn *c = pg_acquire(p->svc->pg, 10000, err, errlen);
    if (!c)
        return -EIO;
    const char *params[] = {s->shop->key};
    PGresult *r = PQexecParams(c,
                               "SELECT item_id, location_id, version, quantity, rejected FROM "
                               "push_level WHERE shop_key = $1",
                               1, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "push_level: %s", PQresultErrorMessage(r));
        rc = -EIO;
    } else {
        for (int i = 0; i < PQntuples(r); i++) {
            struct entry *e = entry_get(s, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
            e->k.done_version = strtoll(PQgetvalue(r, i, 2), NULL, 10);
            e->k.plat_qty = strtoll(PQgetvalue(r, i, 3), NULL, 10);
            e->k.plat_known = PQgetvalue(r, i, 4)[0] != 't';
        }
    }
    PQclear(r);
    pg_release(p->svc->pg, c);
    return rc;
}

/* ------------------------------------------------------------------ rejections */

struct reject {
    char *item_id, *location_id, *sku, *kafka_key, reason[160];
    int64_t version;
    void *payload;
    size_t len;
};

static void reject_publish(struct pshop *s, struct reject *r)
{
    struct push *p = s->p;
    char err[256], id[37], name[600], now[40], code[64];
    snprintf(name, sizeof(name), "push-dlq/%s/%s/%s/%" PRId64, s->shop->key, r->item_id,
             r->location_id, r->version);
    uuid_from_name(name, id);
    char source[300];
    snprintf(source, sizeof(source), "/tillsync/%s/shop-connector", p->svc->tenant_id);
    clock_format_rfc3339(clock_now_ms(), now, sizeof(now));
    size_t cl = strcspn(r->reason, ":");
    snprintf(code, sizeof(code), "%.*s", (int)(cl < 60 ? cl : 60), r->reason);
    struct ce_headers ce = {.id = id, .source = source, .type = "tillsync.v1.InventoryLevelEvent"};
    struct kafka_header hx[] = {
        {"dlq_error_code", code, strlen(code)},
        {"dlq_error_message", r->reason, strlen(r->reason)},
        {"dlq_original_topic", p->topic, strlen(p->topic)},
        {"dlq_failed_at", now, strlen(now)},
        {"dlq_service", "shop-connector", 14},
    };
    const char *key = r->kafka_key ? r->kafka_key : "";
    if (kafka_producer_send_sync(p->svc->producer, p->dlq_topic, key, strlen(key),
                                 r->payload ? r->payload : "", r->len, &ce, hx,
                                 sizeof(hx) / sizeof(hx[0]), 30000, err, sizeof(err)) < 0)
        log_kv(LOG_LVL_ERROR, "push: dead-letter failed", "error", err, NULL);
    char dk[600], summary[600];
    snprintf(dk, sizeof(dk), "push/%s/%s/%s", s->shop->key, r->item_id, r->location_id);
    snprintf(summary, sizeof(summary),
             "%s refused the stock figure of SKU %s (item %s) at location %s: %s", s->shop->key,
             r->sku ? r->sku : "?", r->item_id, r->location_id, r->reason);
    const char *details[] = {"shop",     s->shop->key,  "inventory_item_id",
                             r->item_id, "location_id", r->location_id,
                             "reason",   r->reason,     NULL};
    struct exception_raise x = {
        .type = TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_PAYLOAD_REJECTED,
        .dedupe_key = dk,
        .summary = summary,
        .topic = TOPIC_LEVELS,
        .details = details,
    };
    if (event_raise_exception(p->svc, &x, err, sizeof(err)) < 0)
        log_kv(LOG_LVL_ERROR, "push: exception not raised", "error", err, NULL);
    log_kv(LOG_LVL_WARN, "push: figure rejected by the platform", "shop", s->shop->key, "item",
           r->item_id, "location", r->location_id, "reason", r->reason, NULL);
}

static void drift_raise(struct pshop *s, const char *item, const char *loc, const char *sku,
                        int64_t ledger, int64_t platform, bool cleared)
{
    struct push *p = s->p;
    char dk[600], summary[600], l[32], pl[32], err[256];
    snprintf(dk, sizeof(dk), "drift/%s/%s/%s", s->shop->key, item, loc);
    snprintf(l, sizeof(l), "%" PRId64, ledger);
    snprintf(pl, sizeof(pl), "%" PRId64, platform);
    if (cleared)
        snprintf(summary, sizeof(summary),
                 "%s shows SKU %s at location %s as the ledger does again", s->shop->key, sku, loc);
    else
        snprintf(summary, sizeof(summary),
                 "%s shows %s of SKU %s at location %s, the ledger %s; corrected", s->shop->key, pl,
                 sku, loc, l);
    const char *details[] = {"shop",
                             s->shop->key,
                             "inventory_item_id",
                             item,
                             "location_id",
                             loc,
                             "ledger",
                             l,
                             "platform",
                             pl,
                             NULL};
    struct exception_raise x = {
        .type = TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_STOCK_DRIFT,
        .cleared = cleared,
        .dedupe_key = dk,
        .summary = summary,
        .topic = TOPIC_LEVELS,
        .details = details,
    };
    if (event_raise_exception(p->svc, &x, err, sizeof(err)) < 0)
        log_kv(LOG_LVL_ERROR, "push: drift exception not raised", "error", err, NULL);
    else
        log_kv(LOG_LVL_WARN, cleared ? "push: drift cleared" : "push: stock drift", "shop",
               s->shop->key, "item", item, "location", loc, "ledger", l, "platform", pl, NULL);
}

/* ------------------------------------------------------------------ the worker */

static void jobs_free(struct plan_job *j, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(j[i].item_id);
        free(j[i].location_id);
    }
    free(j);
}

/* Handle a failed call's return: throttled or transient. Lock not held. */
static void call_failed(struct pshop *s, int rc, const struct platform_budget *b, const char *err)
{
    struct push *p = s->p;
    long sleep_ms;
    if (rc == -EAGAIN) {
        bucket_correct(s, &(struct platform_budget){.available = 0, .retry_after_ms = -1});
        s->throttled++;
        metric_add(p->m_throttled, 1, s->shop->key);
        /* Retry-After when given, else the time the restore rate needs for one call */
        sleep_ms =
            plan_throttle_wait_ms(b->retry_after_ms, s->ops->write_cost, s->bucket.refill_per_s);
        pthread_mutex_lock(&p->lock);
        s->window_ms = plan_window_throttled(s->window_ms, p->o.window_max_ms);
        pthread_mutex_unlock(&p->lock);
        log_kv(LOG_LVL_INFO, "push: throttled; backing off", "shop", s->shop->key, NULL);
    } else {
        s->errors++;
        s->incident = true;
        metric_add(p->m_errors, 1, s->shop->key);
        s->backoff_ms = plan_backoff_next(s->backoff_ms);
        sleep_ms = (long)(rnd(s) % (uint32_t)s->backoff_ms) + 1; /* full jitter */
        log_kv(LOG_LVL_WARN, "push: platform call failed; retrying", "shop", s->shop->key, "error",
               err, NULL);
    }
    pthread_mutex_lock(&p->lock);
    int64_t until = now_mono() + sleep_ms;
    while (!p->stop && now_mono() < until)
        wait_until(p, until);
    pthread_mutex_unlock(&p->lock);
}

static void call_succeeded(struct pshop *s)
{
    s->backoff_ms = 0;
    if (s->incident) {
        /* after an incident every key is compared with the platform once */
        s->incident = false;
        s->next_drift = 0;
        s->drift_cursor = 0;
    }
}

/* Read the figures of jobs[0..n) and apply them. Returns 0 or the call's error. */
static int do_read(struct pshop *s, struct plan_job *jobs, size_t n, bool drift)
{
    struct push *p = s->p;
    struct level_read *r = calloc(n, sizeof(*r));
    if (!r)
        abort(); /* out of memory */
    for (size_t i = 0; i < n; i++) {
        r[i].item_id = jobs[i].item_id;
        r[i].location_id = jobs[i].location_id;
    }
    struct platform_budget b = {-1, -1};
    char err[512] = "";
    int rc = -EIO;
    if (bucket_take(s, s->ops->read_cost(n)))
        rc = s->ops->read_levels(s->shop, r, n, &b, err, sizeof(err));
    else
        rc = -ECANCELED;
    s->read_calls++;
    metric_add(p->m_calls, 1, s->shop->key, "read");
    bucket_correct(s, &b);
    if (rc == -ECANCELED) {
        free(r);
        return rc;
    }
    if (rc < 0) {
        call_failed(s, rc, &b, err);
        free(r);
        return rc;
    }
    call_succeeded(s);
    struct {
        char *item, *loc, *sku;
        int64_t ledger, plat;
        bool cleared;
    } ev[256];
    size_t nev = 0;
    pthread_mutex_lock(&p->lock);
    int64_t now = now_mono();
    for (size_t i = 0; i < n; i++) {
        struct entry *e = entry_find(s, r[i].item_id, r[i].location_id);
        if (!e)
            continue;
        int64_t got = r[i].found ? r[i].available : 0;
        if (!drift) {
            plan_key_read(&e->k, r[i].found, r[i].available);
            continue;
        }
        if (entry_dirty(e) || e->k.need_read || !r[i].found)
            continue; /* a write is on its way anyway */
        /* the figure read becomes the compare figure only once acted on: within the grace
         * time a sale in flight is left to the compare-and-set of the next write */
        int64_t diff = got > e->k.quantity ? got - e->k.quantity : e->k.quantity - got;
        if (diff > p->o.drift_threshold) {
            if (!e->k.drift_since)
                e->k.drift_since = now;
            if (now - e->k.drift_since >= p->o.drift_grace_ms) {
                if (!e->drift_raised && nev < 256) {
                    ev[nev].item = xstrdup(e->item_id);
                    ev[nev].loc = xstrdup(e->location_id);
                    ev[nev].sku = xstrdup(e->sku);
                    ev[nev].ledger = e->k.quantity;
                    ev[nev].plat = got;
                    ev[nev++].cleared = false;
                    e->drift_raised = true;
                    s->drift_open++;
                }
                e->k.plat_known = true;
                e->k.plat_qty = got;
                e->k.force = true; /* correct it: the ledger's figure is the truth */
                e->k.dirty_since = now;
            }
        } else {
            if (e->drift_raised && nev < 256) {
                ev[nev].item = xstrdup(e->item_id);
                ev[nev].loc = xstrdup(e->location_id);
                ev[nev].sku = xstrdup(e->sku);
                ev[nev].ledger = e->k.quantity;
                ev[nev].plat = got;
                ev[nev++].cleared = true;
                s->drift_open--;
            }
            e->k.drift_since = 0;
            e->drift_raised = false;
        }
    }
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < nev; i++) {
        drift_raise(s, ev[i].item, ev[i].loc, ev[i].sku, ev[i].ledger, ev[i].plat, ev[i].cleared);
        free(ev[i].item);
        free(ev[i].loc);
        free(ev[i].sku);
    }
    free(r);
    return 0;
}

/* Write jobs[0..n) in one call and apply the outcome; have_token: the call's cost was already
 * taken from the bucket. */
static void do_write(struct pshop *s, struct plan_job *jobs, size_t n, bool have_token)
{
    struct push *p = s->p;
    struct level_write *w = calloc(n, sizeof(*w));
    struct done_row *done = calloc(n, sizeof(*done));
    struct reject *rej = calloc(n, sizeof(*rej));
    size_t ndone = 0, nrej = 0;
    if (!w || !done || !rej)
        abort(); /* out of memory */
    /* the idempotency key names the call's content and ledger versions: a retry of the same
     * call has the same key, a later call never does */
    size_t ncap = 64 + n * 96;
    char *name = malloc(ncap);
    if (!name)
        abort();
    size_t nl = (size_t)snprintf(name, ncap, "push/%s", s->shop->key);
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        struct entry *e = entry_find(s, jobs[i].item_id, jobs[i].location_id);
        w[i].item_id = jobs[i].item_id;
        w[i].location_id = jobs[i].location_id;
        w[i].quantity = jobs[i].quantity;
        w[i].compare = e ? plan_key_compare(&e->k) : 0;
        if (nl < ncap)
            nl += (size_t)snprintf(name + nl, ncap - nl, ";%s/%s=%" PRId64 "@%" PRId64 "<%" PRId64,
                                   w[i].item_id, w[i].location_id, w[i].quantity, jobs[i].version,
                                   w[i].compare);
    }
    pthread_mutex_unlock(&p->lock);
    char uu[37], key[64];
    uuid_from_name(name, uu);
    free(name);
    snprintf(key, sizeof(key), "tillsync-%s", uu);

    struct platform_budget b = {-1, -1};
    char err[512] = "";
    int rc;
    if (!have_token && !bucket_take(s, s->ops->write_cost))
        goto out;
    int64_t t_call = now_mono();
    rc = s->ops->set_levels(s->shop, w, n, key, &b, err, sizeof(err));
    t_call = now_mono() - t_call;
    s->calls++;
    metric_add(p->m_calls, 1, s->shop->key, "write");
    bucket_correct(s, &b);
    if (rc < 0) {
        call_failed(s, rc, &b, err);
        goto out;
    }
    call_succeeded(s);
    pthread_mutex_lock(&p->lock);
    int64_t now = now_mono(), now_ms = clock_now_ms();
    size_t nok = 0;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = entry_find(s, jobs[i].item_id, jobs[i].location_id);
        if (!e)
            continue; /* revoked meanwhile: the new owner writes it */
        plan_key_written(&e->k, w[i].outcome, jobs[i].version, w[i].quantity, now,
                         p->o.cas_settle_ms);
        switch (w[i].outcome) {
        case LEVEL_OK:
            nok++;
            stale_observe(s, now_ms - jobs[i].as_of_ms);
            done[ndone].item_id = xstrdup(e->item_id);
            done[ndone].location_id = xstrdup(e->location_id);
            done[ndone].version = jobs[i].version;
            done[ndone++].quantity = w[i].quantity;
            break;
        case LEVEL_STALE:
            s->conflicts++;
            metric_add(p->m_conflicts, 1, s->shop->key);
            log_kv(LOG_LVL_INFO, "push: platform figure changed; re-reading", "shop", s->shop->key,
                   "item", e->item_id, "location", e->location_id, "reason", w[i].reason, NULL);
            break;
        case LEVEL_REJECTED:
            s->rejected++;
            metric_add(p->m_rejected, 1, s->shop->key);
            rej[nrej].item_id = xstrdup(e->item_id);
            rej[nrej].location_id = xstrdup(e->location_id);
            rej[nrej].sku = xstrdup(e->sku);
            rej[nrej].kafka_key = xstrdup(e->kafka_key);
            rej[nrej].version = jobs[i].version;
            snprintf(rej[nrej].reason, sizeof(rej[nrej].reason), "%s", w[i].reason);
            if (e->payload) {
                rej[nrej].payload = malloc(e->len);
                if (!rej[nrej].payload)
                    abort();
                memcpy(rej[nrej].payload, e->payload, e->len);
                rej[nrej].len = e->len;
            }
            nrej++;
            done[ndone].item_id = xstrdup(e->item_id);
            done[ndone].location_id = xstrdup(e->location_id);
            done[ndone].version = jobs[i].version;
            done[ndone].quantity = 0;
            done[ndone++].rejected = true;
            break;
        case LEVEL_NOT_APPLIED:
            break;
        }
    }
    if (nok) {
        s->writes++;
        s->qty_written += (long)nok;
        metric_add(p->m_written, (double)nok, s->shop->key);
    }
    pthread_mutex_unlock(&p->lock);
    int64_t t_pg = now_mono();
    done_persist(s, done, ndone);
    t_pg = now_mono() - t_pg;
    if (t_call + t_pg >= SLOW_CALL_MS) {
        char tc[24], tp[24], nq[24];
        snprintf(tc, sizeof(tc), "%" PRId64, t_call);
        snprintf(tp, sizeof(tp), "%" PRId64, t_pg);
        snprintf(nq, sizeof(nq), "%zu", n);
        log_kv(LOG_LVL_INFO, "push: slow write", "shop", s->shop->key, "quantities", nq, "call_ms",
               tc, "record_ms", tp, NULL);
    }
    for (size_t i = 0; i < nrej; i++)
        reject_publish(s, &rej[i]);
out:
    for (size_t i = 0; i < ndone; i++) {
        free(done[i].item_id);
        free(done[i].location_id);
    }
    for (size_t i = 0; i < nrej; i++) {
        free(rej[i].item_id);
        free(rej[i].location_id);
        free(rej[i].sku);
        free(rej[i].kafka_key);
        free(rej[i].payload);
    }
    free(done);
    free(rej);
    free(w);
}

static void job_fill(struct plan_job *j, const struct push *p, const struct entry *e)
{
    j->item_id = e->item_id; /* borrowed until copied */
    j->location_id = e->location_id;
    j->version = e->k.version;
    j->quantity = e->k.quantity;
    j->as_of_ms = e->k.as_of_ms;
    j->urg = plan_urgency(e->k.quantity, p->o.low_stock);
    j->since = e->k.dirty_since;
}

static void jobs_push(struct plan_job **v, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        struct plan_job *nj = realloc(*v, *cap * sizeof(**v));
        if (!nj)
            abort(); /* out of memory */
        *v = nj;
    }
    (*n)++;
}

/*
 * Pick what is due now. Lock held. Fills *reads or *writes (never both), *next_wake. Writes are
 * the due keys, most urgent first, up to a call; when fewer than a call are due but the keys
 * waiting in their window fill one, the call is topped up with them (plan_flush_early).
 */
static void pick(struct pshop *s, struct plan_job **reads, size_t *nreads, struct plan_job **writes,
                 size_t *nwrites, int64_t *next_wake)
{
    struct push *p = s->p;
    int64_t now = now_mono();
    size_t cap = 0, qcap = 0, nr = 0, nw = 0, nq = 0, pending = 0;
    struct plan_job *rj = NULL, *wj = NULL, *qj = NULL;
    int64_t oldest_ms = 0;
    size_t maxw = s->ops->max_write_batch;
    *next_wake = now + 1000;
    rj = calloc(s->ops->max_read_batch, sizeof(*rj));
    if (!rj)
        abort();
    for (size_t k = 0; k < s->nslots; k++) {
        for (struct entry *e = s->tab[k]; e; e = e->next) {
            int64_t at = 0;
            enum plan_action a =
                plan_key_next(&e->k, s->ops->compare_and_set, s->window_ms, now, &at);
            if (a == PLAN_IDLE)
                continue;
            pending++;
            if (e->k.as_of_ms && (!oldest_ms || e->k.as_of_ms < oldest_ms))
                oldest_ms = e->k.as_of_ms;
            switch (a) {
            case PLAN_HELD:
                if (at < *next_wake)
                    *next_wake = at;
                break;
            case PLAN_READ:
                if (nr < s->ops->max_read_batch) {
                    rj[nr].item_id = xstrdup(e->item_id);
                    rj[nr++].location_id = xstrdup(e->location_id);
                }
                break;
            case PLAN_WAIT:
                if (at < *next_wake)
                    *next_wake = at;
                jobs_push(&qj, &nq, &qcap);
                job_fill(&qj[nq - 1], p, e);
                break;
            case PLAN_WRITE:
                jobs_push(&wj, &nw, &cap);
                job_fill(&wj[nw - 1], p, e);
                break;
            case PLAN_IDLE:
                break;
            }
        }
    }
    metric_set(p->m_pending, (double)pending, s->shop->key);
    metric_set(p->m_behind, oldest_ms ? (double)(clock_now_ms() - oldest_ms) / 1000.0 : 0.0,
               s->shop->key);
    /* adapt the window: short while the calls keep up, longer while the keys already due
     * exceed two calls (the budget does not keep up: coalesce more) */
    s->window_ms =
        plan_window_adapt(s->window_ms, nw, maxw, p->o.window_min_ms, p->o.window_max_ms);
    if (nr) {
        *reads = rj;
        *nreads = nr;
        free(wj);
        free(qj);
        return;
    }
    free(rj);
    if (nw || plan_flush_early(nw, nw + nq, maxw)) {
        nw = plan_batch(wj, nw, maxw);
        if (nw < maxw && plan_flush_early(nw, nw + nq, maxw)) {
            size_t nt = plan_batch(qj, nq, maxw - nw);
            if (nw + nt > cap) {
                struct plan_job *nj = realloc(wj, (nw + nt) * sizeof(*wj));
                if (!nj)
                    abort();
                wj = nj;
            }
            memcpy(wj + nw, qj, nt * sizeof(*qj));
            nw += nt;
        }
        for (size_t i = 0; i < nw; i++) {
            wj[i].item_id = xstrdup(wj[i].item_id);
            wj[i].location_id = xstrdup(wj[i].location_id);
        }
        free(qj);
        *writes = wj;
        *nwrites = nw;
        return;
    }
    free(wj);
    free(qj);
}

/* Due drift sample: keys seen drifting first, then the rotating cursor. Lock held. */
static size_t pick_drift(struct pshop *s, struct plan_job *out, size_t max)
{
    struct push *p = s->p;
    size_t n = 0;
    for (size_t k = 0; k < s->nslots && n < max; k++)
        for (struct entry *e = s->tab[k]; e && n < max; e = e->next)
            if (e->k.drift_since && !entry_dirty(e)) {
                out[n].item_id = xstrdup(e->item_id);
                out[n++].location_id = xstrdup(e->location_id);
            }
    size_t want = (size_t)p->o.drift_sample;
    size_t scanned = 0;
    while (n < max && n < want && scanned < s->nslots) {
        size_t k = s->drift_cursor % s->nslots;
        for (struct entry *e = s->tab[k]; e && n < max; e = e->next)
            if (!e->k.drift_since && !entry_dirty(e) && e->k.version >= 0 && !e->k.need_read &&
                e->k.done_version >= 0) {
                out[n].item_id = xstrdup(e->item_id);
                out[n++].location_id = xstrdup(e->location_id);
            }
        s->drift_cursor++;
        scanned++;
    }
    return n;
}

static void *worker_main(void *arg)
{
    struct pshop *s = arg;
    struct push *p = s->p;
    bool token = false; /* a write call's cost taken from the bucket, not yet spent */
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct plan_job *reads = NULL, *writes = NULL;
        size_t nr = 0, nw = 0;
        int64_t wake = 0;
        pick(s, &reads, &nr, &writes, &nw, &wake);
        if (nr) {
            pthread_mutex_unlock(&p->lock);
            do_read(s, reads, nr, false);
            jobs_free(reads, nr);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (nw && !token) {
            /* wait for the budget first, then pick again: the call carries the figures of
             * that moment and every key that fell due meanwhile, not those of before the wait */
            jobs_free(writes, nw);
            pthread_mutex_unlock(&p->lock);
            token = bucket_take(s, s->ops->write_cost);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (nw) {
            pthread_mutex_unlock(&p->lock);
            do_write(s, writes, nw, true);
            token = false;
            jobs_free(writes, nw);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        int64_t now = now_mono();
        if (p->o.drift_interval_ms > 0 && now >= s->next_drift) {
            /* after an incident (next_drift 0) the sweep goes round every key */
            bool all = s->next_drift == 0;
            size_t max = s->ops->max_read_batch;
            struct plan_job *dj = calloc(max, sizeof(*dj));
            if (!dj)
                abort();
            size_t dn = pick_drift(s, dj, max);
            if (all && s->drift_cursor < s->nslots)
                s->next_drift = 0;
            else
                s->next_drift = now + p->o.drift_interval_ms;
            if (dn) {
                pthread_mutex_unlock(&p->lock);
                do_read(s, dj, dn, true);
                pthread_mutex_lock(&p->lock);
            }
            jobs_free(dj, dn);
            if (!all || s->drift_cursor >= s->nslots)
                s->next_drift = now_mono() + p->o.drift_interval_ms;
            continue;
        }
        if (p->o.drift_interval_ms > 0 && s->next_drift < wake)
            wake = s->next_drift;
        wait_until(p, wake);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* ------------------------------------------------------------------ the consumer */

static struct pshop *pshop_find(struct push *p, const char *platform, const char *shop_id)
{
    for (size_t i = 0; i < p->nps; i++) {
        struct shop *sh = p->ps[i].shop;
        if (strcmp(sh->platform, platform) == 0 &&
            (strcasecmp(sh->domain, shop_id) == 0 || strcasecmp(sh->key, shop_id) == 0))
            return &p->ps[i];
    }
    return NULL;
}

static bool digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* A record that cannot be pushed at all: dead letter + exception. */
static int record_reject(struct push *p, const struct kafka_message *m, const char *code,
                         const char *why)
{
    char err[256];
    if (kafka_dead_letter(p->svc->producer, p->dlq_topic, m, code, why, "shop-connector", err,
                          sizeof(err)) < 0) {
        log_kv(LOG_LVL_ERROR, "push: dead-letter failed", "error", err, NULL);
        return -EIO;
    }
    char dk[300];
    snprintf(dk, sizeof(dk), "push-record/%s/%d/%" PRId64, m->topic, (int)m->partition, m->offset);
    struct exception_raise x = {
        .type = TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_PAYLOAD_REJECTED,
        .dedupe_key = dk,
        .summary = why,
        .related_event_id = m->ce_id[0] ? m->ce_id : NULL,
        .topic = TOPIC_LEVELS,
    };
    if (event_raise_exception(p->svc, &x, err, sizeof(err)) < 0)
        log_kv(LOG_LVL_ERROR, "push: exception not raised", "error", err, NULL);
    return 0;
}

/* The served shop a level record is for, or NULL (physical location, another connector's). */
static struct pshop *level_shop(struct push *p, const Tillsync__V1__InventoryLevel *l)
{
    const char *platform = l->platform == TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY    ? "shopify"
                           : l->platform == TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE ? "shopline"
                                                                                      : "";
    return l->location_kind == TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_CHANNEL
               ? pshop_find(p, platform, l->shop_id ? l->shop_id : "")
               : NULL;
}

/* The inventory item id the record names (id, else the tail of its gid); "" when none. */
static void level_item(const Tillsync__V1__InventoryLevel *l, char *item, size_t cap)
{
    item[0] = '\0';
    if (l->inventory_item && l->inventory_item->id && *l->inventory_item->id)
        snprintf(item, cap, "%s", l->inventory_item->id);
    else if (l->inventory_item && l->inventory_item->gid &&
             rawjson_gid_tail(l->inventory_item->gid, item, cap) < 0)
        item[0] = '\0';
}

static int on_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct push *p = opaque;
    int rc = 0;
    Tillsync__V1__InventoryLevelEvent **evs = calloc(n ? n : 1, sizeof(*evs));
    struct plan_skus *skus = calloc(p->nps ? p->nps : 1, sizeof(*skus));
    if (!evs || !skus)
        abort(); /* out of memory */
    /* first pass: decode, and gather the SKUs without an item id per shop, so the catalogue
     * is asked once per shop and batch (not once per record) */
    for (size_t i = 0; i < n; i++) {
        evs[i] = tillsync__v1__inventory_level_event__unpack(NULL, msgs[i].len, msgs[i].payload);
        if (!evs[i] || !evs[i]->level)
            continue;
        struct pshop *s = level_shop(p, evs[i]->level);
        char item[200];
        if (!s)
            continue;
        level_item(evs[i]->level, item, sizeof(item));
        if (!item[0])
            plan_skus_add(&skus[s - p->ps], evs[i]->level->sku ? evs[i]->level->sku : "");
    }
    for (size_t k = 0; k < p->nps; k++)
        if (skus[k].n && catalog_items_lookup(&p->ps[k], &skus[k]) < 0) {
            rc = -EIO; /* database unreachable: the batch is retried, nothing dropped */
            goto out;
        }
    for (size_t i = 0; i < n; i++) {
        struct kafka_message *m = &msgs[i];
        Tillsync__V1__InventoryLevelEvent *ev = evs[i];
        if (!ev || !ev->level) {
            if (record_reject(p, m, "DECODE_FAILED", "inventory level record does not decode") <
                0) {
                rc = -EIO;
                goto out;
            }
            continue;
        }
        Tillsync__V1__InventoryLevel *l = ev->level;
        struct pshop *s = level_shop(p, l);
        if (!s)
            continue; /* physical location, or a shop another connector serves */
        char item[200];
        level_item(l, item, sizeof(item));
        if (!item[0] &&
            plan_skus_item(&skus[s - p->ps], l->sku ? l->sku : "", item, sizeof(item)) < 0)
            item[0] = '\0';
        const char *loc = l->platform_location_id ? l->platform_location_id : "";
        if (!digits(item) || !digits(loc)) {
            char why[400];
            snprintf(why, sizeof(why),
                     "inventory level of SKU %s for %s has no usable inventory item id (%s) or "
                     "platform location id (%s)",
                     l->sku, s->shop->key, item, loc);
            if (record_reject(p, m, "UNMAPPED", why) < 0) {
                rc = -EIO;
                goto out;
            }
            continue;
        }
        pthread_mutex_lock(&p->lock);
        struct entry *e = entry_get(s, item, loc);
        s->changes++;
        metric_add(p->m_changes, 1, s->shop->key);
        int64_t as_of = l->as_of_ms > 0       ? l->as_of_ms
                        : m->timestamp_ms > 0 ? m->timestamp_ms
                                              : clock_now_ms();
        if (plan_key_apply(&e->k, l->version, l->available, as_of, now_mono())) {
            e->partition = m->partition;
            free(e->sku);
            e->sku = xstrdup(l->sku);
            free(e->kafka_key);
            e->kafka_key = malloc(m->keylen + 1);
            if (!e->kafka_key)
                abort();
            memcpy(e->kafka_key, m->key ? m->key : "", m->keylen);
            e->kafka_key[m->keylen] = '\0';
            free(e->payload);
            e->payload = malloc(m->len ? m->len : 1);
            if (!e->payload)
                abort();
            memcpy(e->payload, m->payload, m->len);
            e->len = m->len;
        }
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
out:
    for (size_t i = 0; i < n; i++)
        tillsync__v1__inventory_level_event__free_unpacked(evs[i], NULL);
    for (size_t k = 0; k < p->nps; k++)
        plan_skus_release(&skus[k]);
    free(skus);
    free(evs);
    return rc;
}

/* Replay the compacted topic from its beginning on every assignment. */
static int on_assign(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    (void)opaque;
    for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    return 0;
}

/* Forget the keys of partitions going away: their new owner replays and writes them. */
static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts, bool lost)
{
    (void)lost;
    struct push *p = opaque;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->nps; i++) {
        struct pshop *s = &p->ps[i];
        for (size_t k = 0; k < s->nslots; k++) {
            struct entry **pp = &s->tab[k];
            while (*pp) {
                struct entry *e = *pp;
                bool gone = false;
                for (int j = 0; j < parts->cnt; j++)
                    if (parts->elems[j].partition == e->partition)
                        gone = true;
                if (gone) {
                    *pp = e->next;
                    entry_free(e);
                    s->n--;
                } else {
                    pp = &e->next;
                }
            }
        }
    }
    pthread_mutex_unlock(&p->lock);
}

/* ------------------------------------------------------------------ HTTP */

static void status_handler(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)req;
    struct push *p = opaque;
    json_t *arr = json_array();
    pthread_mutex_lock(&p->lock);
    int64_t now_ms = clock_now_ms();
    for (size_t i = 0; i < p->nps; i++) {
        struct pshop *s = &p->ps[i];
        long pending = 0, owned = 0;
        int64_t oldest = 0;
        for (size_t k = 0; k < s->nslots; k++)
            for (struct entry *e = s->tab[k]; e; e = e->next) {
                owned += e->k.version >= 0;
                if (entry_dirty(e)) {
                    pending++;
                    if (e->k.as_of_ms && (!oldest || e->k.as_of_ms < oldest))
                        oldest = e->k.as_of_ms;
                }
            }
        json_array_append_new(
            arr,
            json_pack("{s:s, s:s, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                      "s:I, s:I, s:I}",
                      "shop", s->shop->key, "platform", s->shop->platform, "keys",
                      (json_int_t)owned, "pending", (json_int_t)pending, "behind_seconds",
                      oldest ? (double)(now_ms - oldest) / 1000.0 : 0.0, "window_ms",
                      (json_int_t)s->window_ms, "changes", (json_int_t)s->changes, "write_calls",
                      (json_int_t)s->calls, "read_calls", (json_int_t)s->read_calls,
                      "quantities_written", (json_int_t)s->qty_written, "throttled",
                      (json_int_t)s->throttled, "conflicts", (json_int_t)s->conflicts, "rejected",
                      (json_int_t)s->rejected, "errors", (json_int_t)s->errors, "drift_open",
                      (json_int_t)s->drift_open, "staleness_p50_ms",
                      (json_int_t)plan_stale_quantile(&s->stale, 0.50), "staleness_p99_ms",
                      (json_int_t)plan_stale_quantile(&s->stale, 0.99)));
    }
    pthread_mutex_unlock(&p->lock);
    http_response_json(resp, 200, json_pack("{s:o}", "shops", arr));
}

/* ------------------------------------------------------------------ life */

struct push *push_new(struct service *svc, const struct push_opts *opts, char *err, size_t errlen)
{
    struct push *p = calloc(1, sizeof(*p));
    if (!p)
        abort(); /* out of memory */
    p->svc = svc;
    p->o = *opts;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (service_topic(svc, TOPIC_LEVELS, p->topic, sizeof(p->topic)) < 0 ||
        service_topic(svc, TOPIC_LEVELS_DLQ, p->dlq_topic, sizeof(p->dlq_topic)) < 0) {
        snprintf(err, errlen, "TOPIC_PREFIX: too long");
        goto fail;
    }
    if (opts->shops_file && *opts->shops_file &&
        shops_load_file(&p->shops, opts->shops_file, err, errlen) < 0)
        goto fail;
    struct metrics *m = svc->metrics;
    p->m_pending = metrics_gauge(m, "shop_push_pending",
                                 "Keys (item, location) whose newest figure is not yet on the "
                                 "platform",
                                 "shop");
    p->m_behind = metrics_gauge(m, "shop_push_behind_seconds",
                                "Age of the oldest ledger change not yet on the platform", "shop");
    p->m_calls =
        metrics_counter(m, "shop_push_api_calls_total", "Inventory API calls made", "shop,kind");
    p->m_throttled = metrics_counter(m, "shop_push_throttled_total",
                                     "Throttling answers (429 / THROTTLED) received", "shop");
    p->m_conflicts = metrics_counter(m, "shop_push_conflicts_total",
                                     "Compare-and-set conflicts (platform figure changed)", "shop");
    p->m_rejected =
        metrics_counter(m, "shop_push_rejected_total",
                        "Figures the platform refused for good (dead-lettered)", "shop");
    p->m_written = metrics_counter(m, "shop_push_quantities_written_total",
                                   "Quantities confirmed written", "shop");
    p->m_changes =
        metrics_counter(m, "shop_push_changes_total", "Channel level records consumed", "shop");
    p->m_errors = metrics_counter(m, "shop_push_errors_total",
                                  "Failed calls (5xx, timeouts), retried", "shop");
    static const double sb[] = {0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120};
    p->m_stale =
        metrics_histogram(m, "shop_push_staleness_seconds", "Ledger change to platform updated",
                          "shop", sb, sizeof(sb) / sizeof(sb[0]));
    p->nps = p->shops.n;
    p->ps = calloc(p->nps ? p->nps : 1, sizeof(*p->ps));
    if (!p->ps)
        abort();
    for (size_t i = 0; i < p->nps; i++) {
        struct pshop *s = &p->ps[i];
        s->p = p;
        s->shop = &p->shops.shops[i];
        s->ops = s->shop->ops;
        s->nslots = 1024;
        s->tab = calloc(s->nslots, sizeof(*s->tab));
        if (!s->tab)
            abort();
        s->window_ms = opts->window_min_ms;
        s->rand_state = 2463534242u + (uint32_t)i * 7919u + (uint32_t)clock_mono_ms();
        if (!s->rand_state)
            s->rand_state = 1;
        if (platform_bucket(s->shop, svc->tenant_id, &opts->budgets, &s->bucket, s->bucket_key,
                            sizeof(s->bucket_key), err, errlen) < 0)
            goto fail;
        s->next_drift = clock_mono_ms() + opts->drift_interval_ms;
        if (done_load(s, err, errlen) < 0)
            goto fail;
    }
    const char *topics[] = {p->topic};
    const char *conf[40];
    size_t nc = 0;
    for (size_t i = 0; svc->kafka_conf[i] && nc < 32; i++)
        conf[nc++] = svc->kafka_conf[i];
    static char sess[24], hb[24], fwait[24];
    snprintf(sess, sizeof(sess), "%ld", opts->session_timeout_ms);
    snprintf(fwait, sizeof(fwait), "%ld", opts->fetch_wait_ms > 0 ? opts->fetch_wait_ms : 100);
    snprintf(hb, sizeof(hb), "%ld",
             opts->session_timeout_ms / 12 > 100 ? opts->session_timeout_ms / 12 : 100);
    conf[nc++] = "session.timeout.ms";
    conf[nc++] = sess;
    conf[nc++] = "heartbeat.interval.ms";
    conf[nc++] = hb;
    /* librdkafka's default 500 ms is what a fetch may wait when a broker has nothing new for
     * it; a broker that does not answer a waiting fetch as soon as records arrive (the mock
     * cluster) then holds a level that long before the window even starts (measured: 400-500
     * ms of the staleness). PUSH_FETCH_WAIT_MS (100 ms) bounds that at a few empty fetches a
     * second when idle. */
    conf[nc++] = "fetch.wait.max.ms";
    conf[nc++] = fwait;
    conf[nc] = NULL;
    struct kafka_consumer_opts co = {
        .brokers = svc->kafka_brokers,
        .group_id = opts->group_id,
        .topics = topics,
        .ntopics = 1,
        .max_batch = 1000,
        .batch_wait_ms = 20,
        .commit_offsets = false,
        .extra_conf = conf,
    };
    struct kafka_consumer_ops ops = {
        .on_assign = on_assign, .on_revoke = on_revoke, .on_batch = on_batch};
    p->consumer = kafka_consumer_new(&co, &ops, p, err, errlen);
    if (!p->consumer)
        goto fail;
    for (size_t i = 0; i < p->nps; i++) {
        if (pthread_create(&p->ps[i].thread, NULL, worker_main, &p->ps[i]) != 0) {
            snprintf(err, errlen, "push: cannot start a worker thread");
            goto fail;
        }
        p->ps[i].started = true;
    }
    p->routes[0] = (struct http_route){"GET", "/admin/push", status_handler, p, 0, NULL, 0};
    log_kv(LOG_LVL_INFO, "push: started", "topic", p->topic, NULL);
    return p;
fail:
    push_free(p);
    return NULL;
}

int push_run(struct push *p, volatile sig_atomic_t *running)
{
    return kafka_consumer_run(p->consumer, running);
}

const struct http_route *push_routes(struct push *p, size_t *n)
{
    *n = sizeof(p->routes) / sizeof(p->routes[0]);
    return p->routes;
}

void push_free(struct push *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nps; i++)
        if (p->ps[i].started)
            pthread_join(p->ps[i].thread, NULL);
    kafka_consumer_free(p->consumer);
    for (size_t i = 0; i < p->nps; i++) {
        struct pshop *s = &p->ps[i];
        for (size_t k = 0; s->tab && k < s->nslots; k++) {
            struct entry *e = s->tab[k];
            while (e) {
                struct entry *next = e->next;
                entry_free(e);
                e = next;
            }
        }
        free(s->tab);
    }
    free(p->ps);
    shops_release(&p->shops);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
