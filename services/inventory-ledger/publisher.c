/* publisher — outbox → Kafka. See publisher.h. */
#include "publisher.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "levels.h"
#include "log.h"
#include "pgarr.h"
#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/inventory.pb-c.h"
#include "uuid.h"

struct publisher {
    struct service *svc;
    struct availability_holds *holds;
    long interval_ms;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    /* deliveries of the current round */
    size_t pending, failed;
    struct metric *published, *errors;
};

static void delivered(void *opaque, int error, const char *errstr, int32_t partition,
                      int64_t offset)
{
    struct publisher *p = opaque;

    (void)errstr;
    (void)partition;
    (void)offset;
    pthread_mutex_lock(&p->mu);
    p->pending--;
    if (error)
        p->failed++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Wait for every record of the round; true when all were acknowledged. */
static bool round_wait(struct publisher *p)
{
    bool ok;

    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    ok = p->failed == 0;
    p->failed = 0;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static int send_msg(struct publisher *p, const char *base, const char *key,
                    const ProtobufCMessage *msg, const char *id, const char *type, char *err,
                    size_t errlen)
{
    char topic[256], source[256], now[32];
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    struct ce_headers ce;
    int rc;

    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    service_topic(p->svc, base, topic, sizeof(topic));
    snprintf(source, sizeof(source), "/tillsync/%s/inventory-ledger", p->svc->tenant_id);
    clock_format_rfc3339(clock_now_ms(), now, sizeof(now));
    ce = (struct ce_headers){id, source, type, now, NULL};
    pthread_mutex_lock(&p->mu);
    p->pending++;
    pthread_mutex_unlock(&p->mu);
    rc = kafka_producer_send(p->svc->producer, topic, key, strlen(key), buf, len, &ce, NULL, 0,
                             delivered, p, err, errlen);
    if (rc) {
        pthread_mutex_lock(&p->mu);
        p->pending--;
        pthread_mutex_unlock(&p->mu);
    }
    free(buf);
    return rc;
}

static int exec_ok(PGconn *conn, const char *sql, int n, const char *const *params, PGresult **out,
                   char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return -EIO;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Bump the versions of every level key of set (sorted: replicas lock in the same order). */
static int versions_bump(PGconn *conn, const char *tenant, const struct level_set *set,
                         PGresult **out, char *err, size_t errlen)
{
    const char **keys = malloc((set->n ? set->n : 1) * sizeof(*keys));
    struct pgarr a;
    const char *params[2];
    int rc = -ENOMEM;

    pgarr_init(&a);
    if (!keys)
        goto out;
    for (size_t i = 0; i < set->n; i++)
        keys[i] = set->v[i].key;
    qsort(keys, set->n, sizeof(*keys), cmp_str);
    for (size_t i = 0; i < set->n; i++)
        if (i == 0 || strcmp(keys[i], keys[i - 1]) != 0)
            pgarr_text(&a, keys[i]);
    params[0] = tenant;
    params[1] = pgarr_finish(&a);
    if (!params[1])
        goto out;
    rc = exec_ok(conn,
                 "INSERT INTO level_versions AS v (tenant_id, key, version) "
                 "SELECT $1, k, 1 FROM unnest($2::text[]) AS k ORDER BY k COLLATE \"C\" "
                 "ON CONFLICT (tenant_id, key) DO UPDATE SET version = v.version + 1 "
                 "RETURNING key, version",
                 2, params, out, err, errlen);
out:
    pgarr_release(&a);
    free(keys);
    return rc;
}

static int64_t version_of(PGresult *v, const char *key)
{
    for (int r = 0; r < PQntuples(v); r++)
        if (strcmp(PQgetvalue(v, r, 0), key) == 0)
            return strtoll(PQgetvalue(v, r, 1), NULL, 10);
    return 0;
}

static int level_send(struct publisher *p, const struct level *lv, int64_t version, char *err,
                      size_t errlen)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__InventoryLevel l = TILLSYNC__V1__INVENTORY_LEVEL__INIT;
    Tillsync__V1__InventoryLevelEvent ev = TILLSYNC__V1__INVENTORY_LEVEL_EVENT__INIT;
    char name[700], id[37];
    int64_t now = clock_now_ms();

    snprintf(name, sizeof(name), "level/%s/%s/%" PRId64, p->svc->tenant_id, lv->key, version);
    uuid_from_name(name, id);
    refs.sku = (char *)lv->sku;
    refs.location_id = (char *)lv->location_id;
    env.event_id = id;
    env.tenant_id = p->svc->tenant_id;
    env.occurred_at_ms = now;
    env.recorded_at_ms = now;
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_TILLSYNC;
    env.source_name = "inventory-ledger";
    env.producer = "inventory-ledger";
    env.refs = &refs;
    l.sku = (char *)lv->sku;
    l.location_id = (char *)lv->location_id;
    l.location_kind = lv->kind;
    l.platform = strcmp(lv->platform, "shopline") == 0 ? TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE
                 : strcmp(lv->platform, "shopify") == 0
                     ? TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY
                     : TILLSYNC__V1__PLATFORM__PLATFORM_UNSPECIFIED;
    l.shop_id = (char *)lv->shop_id;
    l.platform_location_id = (char *)lv->platform_location_id;
    l.on_hand = lv->on_hand;
    l.committed = lv->committed;
    l.reserved = lv->reserved;
    l.in_transit = lv->in_transit;
    l.safety_stock = lv->safety_stock;
    l.buffer = lv->buffer;
    l.available = lv->available;
    l.version = version;
    l.as_of_ms = now;
    l.requires_shipping = true;
    ev.envelope = &env;
    ev.level = &l;
    return send_msg(p, "inventory.levels.v1", lv->key, &ev.base, id,
                    "tillsync.v1.InventoryLevelEvent", err, errlen);
}

/* One chunk of the level outbox. Returns records sent or negative. */
static int levels_round(struct publisher *p, PGconn *conn, char *err, size_t errlen)
{
    const char *tenant = p->svc->tenant_id;
    PGresult *rows = NULL, *ver = NULL;
    struct level_set set = {0};
    struct pgarr ids, skus, locs;
    const char *params[3];
    int rc, sent = 0;

    pgarr_init(&ids);
    pgarr_init(&skus);
    pgarr_init(&locs);
    if ((rc = exec_ok(conn, "BEGIN", 0, NULL, NULL, err, errlen)))
        goto out;
    params[0] = tenant;
    rc = exec_ok(conn,
                 "SELECT id FROM level_outbox WHERE tenant_id = $1 "
                 "ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED",
                 1, params, &rows, err, errlen);
    if (rc || PQntuples(rows) == 0)
        goto done;
    for (int r = 0; r < PQntuples(rows); r++)
        pgarr_text(&ids, PQgetvalue(rows, r, 0));
    rc = -ENOMEM;
    if (!pgarr_finish(&ids))
        goto done;
    params[1] = ids.buf;
    PQclear(rows);
    rows = NULL;
    rc = exec_ok(conn,
                 "SELECT DISTINCT u.s, u.l FROM level_outbox o, unnest(o.skus, o.locations) "
                 "AS u(s, l) WHERE o.tenant_id = $1 AND o.id = ANY($2::bigint[])",
                 2, params, &rows, err, errlen);
    if (rc)
        goto done;
    for (int r = 0; r < PQntuples(rows); r++) {
        pgarr_text(&skus, PQgetvalue(rows, r, 0));
        pgarr_text(&locs, PQgetvalue(rows, r, 1));
    }
    params[1] = pgarr_finish(&skus);
    params[2] = pgarr_finish(&locs);
    rc = -ENOMEM;
    if (!params[1] || !params[2])
        goto done;
    /* learn the keys, lock their versions, then read the figures under that lock */
    if ((rc = levels_load(conn, tenant, params[1], params[2], p->holds, &set, err, errlen)))
        goto done;
    if ((rc = versions_bump(conn, tenant, &set, &ver, err, errlen)))
        goto done;
    level_set_release(&set);
    if ((rc = levels_load(conn, tenant, params[1], params[2], p->holds, &set, err, errlen)))
        goto done;
    for (size_t i = 0; rc == 0 && i < set.n; i++) {
        int64_t v = version_of(ver, set.v[i].key);

        if (v == 0)
            continue; /* a channel mapped in between: its own outbox rows publish it */
        rc = level_send(p, &set.v[i], v, err, errlen);
        if (rc == 0)
            sent++;
    }
    if (!round_wait(p) && rc == 0) {
        snprintf(err, errlen, "a level record was not acknowledged");
        rc = -EIO;
    }
    if (rc)
        goto done;
    params[1] = ids.buf;
    rc = exec_ok(conn, "DELETE FROM level_outbox WHERE tenant_id = $1 AND id = ANY($2::bigint[])",
                 2, params, NULL, err, errlen);
done:
    if (rc == 0)
        rc = exec_ok(conn, "COMMIT", 0, NULL, NULL, err, errlen);
    else
        PQclear(PQexec(conn, "ROLLBACK"));
out:
    level_set_release(&set);
    PQclear(rows);
    PQclear(ver);
    pgarr_release(&ids);
    pgarr_release(&skus);
    pgarr_release(&locs);
    return rc ? rc : sent;
}

static Tillsync__V1__OwnerTeam owner_of(int type)
{
    switch (type) {
    case TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN:
        return TILLSYNC__V1__OWNER_TEAM__OWNER_TEAM_ECOMMERCE;
    case TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NON_STOCK_UNMAPPED:
        return TILLSYNC__V1__OWNER_TEAM__OWNER_TEAM_FINANCE;
    default:
        return TILLSYNC__V1__OWNER_TEAM__OWNER_TEAM_OPERATIONS;
    }
}

static int exception_send(struct publisher *p, PGresult *r, int row, char *err, size_t errlen)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__RaisedException x = TILLSYNC__V1__RAISED_EXCEPTION__INIT;
    Tillsync__V1__ExceptionEvent ev = TILLSYNC__V1__EXCEPTION_EVENT__INIT;
    Tillsync__V1__ExceptionDetail d = TILLSYNC__V1__EXCEPTION_DETAIL__INIT;
    Tillsync__V1__ExceptionDetail *dp[1] = {&d};
    char name[512], id[37];
    char *related[1];
    int64_t created = strtoll(PQgetvalue(r, row, 8), NULL, 10);

    /* the outbox row id makes a retried send keep its event id */
    snprintf(name, sizeof(name), "exception/%s/inventory-ledger/%s", p->svc->tenant_id,
             PQgetvalue(r, row, 0));
    uuid_from_name(name, id);
    refs.sku = PQgetvalue(r, row, 6);
    refs.location_id = PQgetvalue(r, row, 7);
    env.event_id = id;
    env.tenant_id = p->svc->tenant_id;
    env.occurred_at_ms = created;
    env.recorded_at_ms = clock_now_ms();
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_TILLSYNC;
    env.source_name = "inventory-ledger";
    env.producer = "inventory-ledger";
    env.refs = &refs;
    env.correlation_id = PQgetvalue(r, row, 4);
    x.type = (Tillsync__V1__ExceptionType)strtol(PQgetvalue(r, row, 1), NULL, 10);
    x.dedupe_key = PQgetvalue(r, row, 2);
    x.summary = PQgetvalue(r, row, 3);
    x.owner = owner_of(x.type);
    x.severity = x.type == TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NEGATIVE_STOCK
                     ? TILLSYNC__V1__SEVERITY__SEVERITY_ERROR
                     : TILLSYNC__V1__SEVERITY__SEVERITY_WARNING;
    x.signal = TILLSYNC__V1__EXCEPTION_SIGNAL__EXCEPTION_SIGNAL_RAISED;
    x.topic = PQgetvalue(r, row, 5);
    related[0] = PQgetvalue(r, row, 4);
    if (*related[0]) {
        x.n_related_event_ids = 1;
        x.related_event_ids = related;
    }
    d.key = "service";
    d.value = "inventory-ledger";
    x.n_details = 1;
    x.details = dp;
    ev.envelope = &env;
    ev.exception = &x;
    return send_msg(p, "recon.exceptions.v1", x.dedupe_key, &ev.base, id,
                    "tillsync.v1.ExceptionEvent", err, errlen);
}

static int exceptions_round(struct publisher *p, PGconn *conn, char *err, size_t errlen)
{
    const char *params[2] = {p->svc->tenant_id, NULL};
    PGresult *rows = NULL;
    struct pgarr ids;
    int rc, sent = 0;

    pgarr_init(&ids);
    if ((rc = exec_ok(conn, "BEGIN", 0, NULL, NULL, err, errlen)))
        return rc;
    rc = exec_ok(conn,
                 "SELECT id, type, dedupe_key, summary, event_id, topic, sku, location_id, "
                 "created_at_ms FROM exception_outbox WHERE tenant_id = $1 "
                 "ORDER BY id LIMIT 200 FOR UPDATE SKIP LOCKED",
                 1, params, &rows, err, errlen);
    for (int r = 0; rc == 0 && rows && r < PQntuples(rows); r++) {
        rc = exception_send(p, rows, r, err, errlen);
        pgarr_text(&ids, PQgetvalue(rows, r, 0));
        if (rc == 0)
            sent++;
    }
    if (!round_wait(p) && rc == 0) {
        snprintf(err, errlen, "an exception record was not acknowledged");
        rc = -EIO;
    }
    if (rc == 0 && sent > 0) {
        params[1] = pgarr_finish(&ids);
        rc = params[1] ? exec_ok(conn,
                                 "DELETE FROM exception_outbox WHERE tenant_id = $1 "
                                 "AND id = ANY($2::bigint[])",
                                 2, params, NULL, err, errlen)
                       : -ENOMEM;
    }
    if (rc == 0)
        rc = exec_ok(conn, "COMMIT", 0, NULL, NULL, err, errlen);
    else
        PQclear(PQexec(conn, "ROLLBACK"));
    PQclear(rows);
    pgarr_release(&ids);
    return rc ? rc : sent;
}

int publisher_round(struct publisher *p, char *err, size_t errlen)
{
    PGconn *conn = pg_acquire(p->svc->pg, 2000, err, errlen);
    int a, b;

    if (!conn)
        return -EIO;
    a = levels_round(p, conn, err, errlen);
    b = a < 0 ? 0 : exceptions_round(p, conn, err, errlen);
    pg_release(p->svc->pg, conn);
    if (a < 0 || b < 0) {
        metric_add(p->errors, 1);
        return a < 0 ? a : b;
    }
    metric_add(p->published, (double)(a + b));
    return a + b;
}

static void *publisher_main(void *arg)
{
    struct publisher *p = arg;

    for (;;) {
        char err[512];
        int n;
        struct timespec until;

        pthread_mutex_lock(&p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        pthread_mutex_unlock(&p->mu);
        n = publisher_round(p, err, sizeof(err));
        if (n < 0)
            log_kv(LOG_LVL_WARN, "publication failed, retrying", "reason", err, NULL);
        if (n > 0)
            continue; /* there may be more: no pause */
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (p->interval_ms % 1000) * 1000000L;
        until.tv_sec += p->interval_ms / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&p->mu);
        if (!p->stop)
            pthread_cond_timedwait(&p->cv, &p->mu, &until);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

struct publisher *publisher_new(struct service *svc, struct availability_holds *holds,
                                long interval_ms, char *err, size_t errlen)
{
    struct publisher *p = calloc(1, sizeof(*p));

    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->svc = svc;
    p->holds = holds;
    p->interval_ms = interval_ms > 0 ? interval_ms : 200;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->published = metrics_counter(svc->metrics, "ledger_published_records_total",
                                   "Levels and exceptions acknowledged by Kafka", NULL);
    p->errors = metrics_counter(svc->metrics, "ledger_publish_errors_total",
                                "Publication rounds that failed and will be retried", NULL);
    if (pthread_create(&p->thread, NULL, publisher_main, p) != 0) {
        snprintf(err, errlen, "cannot start the publisher thread");
        publisher_free(p);
        return NULL;
    }
    p->started = true;
    return p;
}

void publisher_free(struct publisher *p)
{
    if (!p)
        return;
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
