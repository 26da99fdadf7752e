/*
 * app — consumer, publisher and API of inventory-ledger. See app.h.
 *
 * The consumer does not commit offsets to Kafka (commit_offsets = false): each batch is applied
 * by store_apply() together with the next offsets of its partitions in one Postgres
 * transaction, and on_assign hands those offsets back to librdkafka. A batch that fails is
 * redelivered whole; its events that did commit earlier are duplicates (applied_events).
 */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "holds.h"
#include "holds_api.h"
#include "ledger.h"
#include "log.h"
#include "publisher.h"
#include "store.h"

static struct {
    char *group_id;
    long batch_max;
    long batch_wait_ms;
    char *online_location;
    long publish_interval_ms;
    long session_timeout_ms;
} cfg;

const struct config_var app_config[APP_NCONFIG] = {
    {"LEDGER_GROUP_ID", CONFIG_STR, false, "inventory-ledger", 0, 0,
     "Kafka consumer group; its offsets are stored in Postgres with the ledger", &cfg.group_id},
    {"LEDGER_BATCH_MAX", CONFIG_INT, false, "1000", 1, 20000,
     "Most records applied in one Postgres transaction", &cfg.batch_max},
    {"LEDGER_BATCH_WAIT_MS", CONFIG_INT, false, "50", 0, 5000,
     "How long to gather a batch after its first record", &cfg.batch_wait_ms},
    {"ONLINE_DEFAULT_LOCATION", CONFIG_STR, false, "online", 0, 0,
     "Ledger location of online orders that name none (committed, fulfilled from)",
     &cfg.online_location},
    {"PUBLISH_INTERVAL_MS", CONFIG_INT, false, "200", 10, 60000,
     "Pause of the outbox publisher when the outboxes are empty", &cfg.publish_interval_ms},
    {"KAFKA_SESSION_TIMEOUT_MS", CONFIG_INT, false, "45000", 6000, 300000,
     "Consumer group session timeout (heartbeat every twelfth of it)", &cfg.session_timeout_ms},
};

/* The API's state outlives the app: requests still in flight at stop may read it. So do the
 * holds (their sync thread is stopped at stop; the object stays reachable for those requests)
 * and the route table (ledger routes, then holds routes). */
static struct api api_state;
static struct holds *holds_state;
static struct http_route
    all_routes[sizeof(api_state.routes) / sizeof(api_state.routes[0]) + HOLDS_API_NROUTES];

struct app {
    struct service *svc;
    struct publisher *pub;
    struct kafka_consumer *consumer;
    struct store_ctx ctx;
    char topics[3][256];
    char dlq[256];
    struct metric *applied, *dups, *entries, *batches, *failures, *batch_seconds;
    struct ledger_event *evs;
    struct store_offset *offs;
    size_t cap;
};

static int on_assign(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    struct app *app = opaque;
    char err[512];

    for (int attempt = 0; attempt < 50 && service_running; attempt++) {
        PGconn *c = pg_acquire(app->svc->pg, 2000, err, sizeof(err));
        int rc = c ? store_offsets_load(c, app->ctx.group_id, parts, err, sizeof(err)) : -EIO;

        pg_release(app->svc->pg, c);
        if (rc == 0) {
            for (int i = 0; i < parts->cnt; i++) {
                char part[16], off[32];

                snprintf(part, sizeof(part), "%d", (int)parts->elems[i].partition);
                snprintf(off, sizeof(off), "%lld", (long long)parts->elems[i].offset);
                log_kv(LOG_LVL_INFO, "partition assigned", "topic", parts->elems[i].topic,
                       "partition", part, "offset", off, NULL);
            }
            return 0;
        }
        log_kv(LOG_LVL_WARN, "cannot load offsets, retrying", "reason", err, NULL);
        nanosleep(&(struct timespec){0, 200000000L}, NULL);
    }
    return -EIO;
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts, bool lost)
{
    (void)opaque;
    /* nothing held per partition: effects and offsets are committed per batch */
    log_kv(LOG_LVL_INFO, lost ? "partitions lost" : "partitions revoked", "count",
           parts->cnt > 0 ? parts->elems[0].topic : "", NULL);
}

static int offsets_note(struct app *app, size_t *noffs, const struct kafka_message *m)
{
    for (size_t i = 0; i < *noffs; i++)
        if (app->offs[i].partition == m->partition && strcmp(app->offs[i].topic, m->topic) == 0) {
            if (m->offset + 1 > app->offs[i].next_offset)
                app->offs[i].next_offset = m->offset + 1;
            return 0;
        }
    app->offs[(*noffs)++] = (struct store_offset){m->topic, m->partition, m->offset + 1};
    return 0;
}

static int on_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct app *app = opaque;
    size_t nev = 0, noffs = 0;
    struct store_stats st = {0};
    struct timespec t0, t1;
    char err[512];
    PGconn *c;
    int rc = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (n > app->cap) {
        struct ledger_event *e = realloc(app->evs, n * sizeof(*e));
        struct store_offset *o;

        if (!e)
            return -ENOMEM;
        app->evs = e;
        o = realloc(app->offs, n * sizeof(*o));
        if (!o)
            return -ENOMEM;
        app->offs = o;
        app->cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        struct kafka_message *m = &msgs[i];

        offsets_note(app, &noffs, m);
        rc =
            ledger_event_decode(&app->evs[nev], m->topic, m->payload, m->len,
                                *m->ce_id ? m->ce_id : NULL, cfg.online_location, err, sizeof(err));
        if (rc == 0) {
            nev++;
            continue;
        }
        ledger_event_release(&app->evs[nev]);
        if (rc == -ENOMEM)
            goto out;
        /* a record that can never apply: dead-letter it, then move on */
        snprintf(app->dlq, sizeof(app->dlq), "%s.dlq", m->topic);
        log_kv(LOG_LVL_WARN, "undecodable record dead-lettered", "topic", m->topic, "reason", err,
               NULL);
        rc = kafka_dead_letter(app->svc->producer, app->dlq, m, "undecodable", err,
                               "inventory-ledger", err, sizeof(err));
        if (rc)
            goto out;
    }
    c = pg_acquire(app->svc->pg, 5000, err, sizeof(err));
    if (!c) {
        rc = -EIO;
        goto out;
    }
    rc = store_apply(c, &app->ctx, app->evs, nev, app->offs, noffs, &st, err, sizeof(err));
    pg_release(app->svc->pg, c);
    if (rc == 0) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        metric_add(app->applied, (double)st.events);
        metric_add(app->dups, (double)st.duplicates);
        metric_add(app->entries, (double)st.entries);
        metric_add(app->batches, 1);
        metric_observe(app->batch_seconds,
                       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
out:
    if (rc) {
        metric_add(app->failures, 1);
        log_kv(LOG_LVL_WARN, "batch not applied, will be redelivered", "reason", err, NULL);
    }
    for (size_t i = 0; i < nev; i++)
        ledger_event_release(&app->evs[i]);
    return rc ? (rc == -ENOMEM ? -ENOMEM : -EIO) : 0;
}

static void app_free(struct app *app)
{
    if (!app)
        return;
    kafka_consumer_free(app->consumer);
    publisher_free(app->pub);
    free(app->evs);
    free(app->offs);
    free(app);
}

static int app_start(struct service *svc, void **state, const struct http_route **routes,
                     size_t *nroutes, char *err, size_t errlen)
{
    struct app *app = calloc(1, sizeof(*app));
    const char *bases[3] = {"pos.transactions.v1", "stock.movements.v1", "shop.orders.v1"};
    const char *topics[3];
    char session[32], heartbeat[32];
    const char *extra[8 + 16 + 1];
    size_t ne = 0;

    if (!app) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    app->svc = svc;
    app->ctx.tenant_id = svc->tenant_id;
    app->ctx.group_id = cfg.group_id;
    for (int i = 0; i < 3; i++) {
        service_topic(svc, bases[i], app->topics[i], sizeof(app->topics[i]));
        topics[i] = app->topics[i];
    }
    app->applied = metrics_counter(svc->metrics, "ledger_events_applied_total",
                                   "Events applied to the ledger", NULL);
    app->dups = metrics_counter(svc->metrics, "ledger_events_duplicate_total",
                                "Events skipped as already applied", NULL);
    app->entries = metrics_counter(svc->metrics, "ledger_entries_written_total",
                                   "Ledger entries written", NULL);
    app->batches = metrics_counter(svc->metrics, "ledger_batches_total",
                                   "Batches committed (one transaction each)", NULL);
    app->failures = metrics_counter(svc->metrics, "ledger_batch_failures_total",
                                    "Batches rolled back and redelivered", NULL);
    app->batch_seconds = metrics_histogram(svc->metrics, "ledger_batch_seconds",
                                           "Time to decode and commit one batch", NULL, NULL, 0);
    snprintf(session, sizeof(session), "%ld", cfg.session_timeout_ms);
    snprintf(heartbeat, sizeof(heartbeat), "%ld", cfg.session_timeout_ms / 12);
    extra[ne++] = "session.timeout.ms";
    extra[ne++] = session;
    extra[ne++] = "heartbeat.interval.ms";
    extra[ne++] = heartbeat;
    for (size_t i = 0; svc->kafka_conf[i] && ne + 2 < sizeof(extra) / sizeof(extra[0]); i += 2) {
        extra[ne++] = svc->kafka_conf[i];
        extra[ne++] = svc->kafka_conf[i + 1];
    }
    extra[ne] = NULL;
    {
        struct kafka_consumer_opts opts = {
            .brokers = svc->kafka_brokers,
            .group_id = cfg.group_id,
            .topics = topics,
            .ntopics = 3,
            .max_batch = (int)cfg.batch_max,
            .batch_wait_ms = (int)cfg.batch_wait_ms,
            .commit_offsets = false,
            .extra_conf = extra,
        };
        struct kafka_consumer_ops ops = {on_assign, on_revoke, on_batch};

        app->consumer = kafka_consumer_new(&opts, &ops, app, err, errlen);
    }
    if (!app->consumer)
        goto fail;
    if (!holds_state && !(holds_state = holds_new(svc, cfg.publish_interval_ms, err, errlen)))
        goto fail;
    app->ctx.batch_hook = holds_batch_hook;
    app->ctx.batch_hook_opaque = svc->tenant_id;
    app->pub = publisher_new(svc, holds_view(holds_state), cfg.publish_interval_ms, err, errlen);
    if (!app->pub)
        goto fail;
    {
        size_t n = api_routes_init(&api_state, svc, holds_view(holds_state));

        memcpy(all_routes, api_state.routes, n * sizeof(all_routes[0]));
        n += holds_api_routes(all_routes + n, holds_state);
        *nroutes = n;
    }
    *routes = all_routes;
    *state = app;
    return 0;
fail:
    app_free(app);
    return -EINVAL;
}

static int app_run(struct service *svc, void *state)
{
    struct app *app = state;

    (void)svc;
    return kafka_consumer_run(app->consumer, &service_running);
}

static void app_stop(struct service *svc, void *state)
{
    (void)svc;
    app_free(state);
    holds_stop(holds_state);
}

const struct service_hooks app_hooks = {app_start, app_run, app_stop};
