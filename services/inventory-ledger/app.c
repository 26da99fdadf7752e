/*
 * app — consumer, publisher and API of inventory-ledger. See app.h.
 *
 * The consumer does not commit offsets to Kafka (commit_offsets = false): each batch is applied
 * by store_apply() together with the next offsets of its partitions in one Postgres
 * transaction, and on_assign hands those offsets back to librdkafka. A batch that fails is
 * redelivered whole; its events that did commit earlier are duplicates (applied_events).
 *
 * Batches overlap (a deferred consumer, kafka.h): LEDGER_IN_FLIGHT worker threads take the
 * batches in turn, each on a connection of its own. The consumer thread decodes batch k, hands
 * it to its worker and waits for batch k-(W-1) (W workers), so up to W batches are in flight.
 * A worker runs store_begin() (dedupe, once the batch before has passed its own) and
 * store_prepare() (the entries, for batches that only move stock) at once; only when the batch
 * before has committed does it go on to store_commit() (locks, balances, offsets, COMMIT):
 * batches commit in consumer order and a crash leaves a prefix of them committed. If a batch
 * fails, every later one in flight is rolled back and all are redelivered from the earliest
 * first records (KAFKA_PREVIOUS_FAILED). Each worker holds a pool connection from its
 * store_begin() to its COMMIT, so PG_POOL_SIZE should leave W for them besides the publisher's,
 * the holds' and the API's.
 */
#include "app.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
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

/* Most worker threads: with W workers, W - 1 batches stay in flight when on_batch returns and
 * the consumer keeps each one's first offsets (kafka.h: at most KAFKA_IN_FLIGHT_MAX) */
#define SLOTS_MAX (KAFKA_IN_FLIGHT_MAX + 1)

static struct {
    char *group_id;
    long batch_max;
    long batch_wait_ms;
    char *online_location;
    long publish_interval_ms;
    long session_timeout_ms;
    long in_flight;
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
    {"LEDGER_IN_FLIGHT", CONFIG_INT, false, "2", 1, SLOTS_MAX,
     "Batches applied at once, each in a transaction of its own on its own Postgres connection "
     "(they commit in order)",
     &cfg.in_flight},
};

/* The API's state outlives the app: requests still in flight at stop may read it. So do the
 * holds (their sync thread is stopped at stop; the object stays reachable for those requests)
 * and the route table (ledger routes, then holds routes). */
static struct api api_state;
static struct holds *holds_state;
static struct http_route
    all_routes[sizeof(api_state.routes) / sizeof(api_state.routes[0]) + HOLDS_API_NROUTES];

/* One decoded batch: its events and its partitions' next offsets (topic names point into
 * app->topics, so they outlive the Kafka records). */
struct job {
    struct ledger_event *evs;
    size_t nev;
    struct store_offset *offs;
    size_t noffs;
    size_t cap;
};

/* A worker thread and the batch it applies. Under app->mu: handed = the job waits for the
 * worker; busy = handed and not settled; done = the worker finished it with result. */
struct slot {
    struct app *app;
    struct job job;
    pthread_t thread;
    bool started, handed, busy, done;
    uint64_t seq; /* of the batch handed last (batches are numbered from 1 in consumer order) */
    int result;
};

struct app {
    struct service *svc;
    struct publisher *pub;
    struct kafka_consumer *consumer;
    struct store_ctx ctx;
    char topics[3][256];
    char dlq[256];
    struct metric *applied, *dups, *entries, *batches, *failures, *batch_seconds;
    /* slots[next] takes the batch being decoded, the others (nslots in all) those before it */
    struct slot slots[SLOTS_MAX];
    int nslots, next;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    /* Under mu. seq: batches handed so far. Every batch up to begun has passed store_begin()
     * or ended, every one up to committed has committed; failed: the first that failed (0 =
     * none) — every later one is rolled back. After a failure, once all are settled, the
     * three start again from seq. */
    uint64_t seq, begun, committed, failed;
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
    char n[16];

    (void)opaque;
    /* nothing held per partition: the batch in flight was settled before (on_settle) */
    snprintf(n, sizeof(n), "%d", parts->cnt);
    log_kv(LOG_LVL_INFO, lost ? "partitions lost" : "partitions revoked", "count", n, NULL);
}

static int offsets_note(struct job *j, const char *topic, const struct kafka_message *m)
{
    for (size_t i = 0; i < j->noffs; i++)
        if (j->offs[i].partition == m->partition && strcmp(j->offs[i].topic, topic) == 0) {
            if (m->offset + 1 > j->offs[i].next_offset)
                j->offs[i].next_offset = m->offset + 1;
            return 0;
        }
    j->offs[j->noffs++] = (struct store_offset){topic, m->partition, m->offset + 1};
    return 0;
}

static void job_release(struct job *j)
{
    for (size_t i = 0; i < j->nev; i++)
        ledger_event_release(&j->evs[i]);
    j->nev = 0;
    j->noffs = 0;
}

/* Wait until the batch before sl's has committed (1) or a batch up to it failed (-1). */
static int gate_wait(struct slot *sl)
{
    struct app *app = sl->app;
    int gate;

    pthread_mutex_lock(&app->mu);
    while (app->committed + 1 < sl->seq && !(app->failed && app->failed < sl->seq))
        pthread_cond_wait(&app->cv, &app->mu);
    gate = app->committed + 1 >= sl->seq ? 1 : -1;
    pthread_mutex_unlock(&app->mu);
    return gate;
}

/*
 * Wait until the batch before sl's has passed its store_begin() (or ended). Two dedupes at once
 * could deadlock: if batch k+1 inserted an event id of batch k first, k would wait for k+1's
 * transaction and k+1 for k's commit, a wait Postgres cannot see.
 */
static void before_begun(struct slot *sl)
{
    struct app *app = sl->app;

    pthread_mutex_lock(&app->mu);
    while (app->begun + 1 < sl->seq)
        pthread_cond_wait(&app->cv, &app->mu);
    pthread_mutex_unlock(&app->mu);
}

static void mark_begun(struct slot *sl)
{
    pthread_mutex_lock(&sl->app->mu);
    if (sl->app->begun < sl->seq)
        sl->app->begun = sl->seq;
    pthread_cond_broadcast(&sl->app->cv);
    pthread_mutex_unlock(&sl->app->mu);
}

/*
 * Apply the slot's job in its transaction (on the slot's worker thread): store_begin() once the
 * batch before it has passed its own, store_prepare(), then store_commit() once that batch
 * committed. Returns 0 or negative. When no connection is free at once (a small PG_POOL_SIZE),
 * it waits for that commit first.
 */
static int job_apply(struct slot *sl)
{
    struct app *app = sl->app;
    struct job *j = &sl->job;
    struct store_stats st = {0};
    struct store_batch *b = NULL;
    struct timespec t0, t1;
    char err[512];
    PGconn *c;
    int rc, gate = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    before_begun(sl);
    c = pg_acquire(app->svc->pg, 0, err, sizeof(err));
    if (!c) {
        if ((gate = gate_wait(sl)) < 0)
            return -ECANCELED;
        c = pg_acquire(app->svc->pg, 5000, err, sizeof(err));
        if (!c) {
            rc = -EIO;
            goto out;
        }
    }
    rc = store_begin(c, &app->ctx, j->evs, j->nev, &b, err, sizeof(err));
    mark_begun(sl);
    if (rc == 0)
        rc = store_prepare(b);
    if (!gate)
        gate = gate_wait(sl);
    if (rc == 0 && gate < 0) {
        store_abort(b);
        pg_release(app->svc->pg, c);
        return -ECANCELED;
    }
    if (rc == 0)
        rc = store_commit(b, j->offs, j->noffs, &st, err, sizeof(err));
    pg_release(app->svc->pg, c);
    if (gate < 0)
        return -ECANCELED;
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
    return rc;
}

static void *worker_main(void *opaque)
{
    struct slot *sl = opaque;
    struct app *app = sl->app;

    pthread_mutex_lock(&app->mu);
    for (;;) {
        int rc;

        while (!sl->handed && !app->stop)
            pthread_cond_wait(&app->cv, &app->mu);
        if (!sl->handed)
            break;
        sl->handed = false;
        pthread_mutex_unlock(&app->mu);
        rc = job_apply(sl);
        pthread_mutex_lock(&app->mu);
        sl->result = rc;
        sl->done = true;
        if (app->begun < sl->seq)
            app->begun = sl->seq;
        if (rc == 0)
            app->committed = sl->seq; /* the one before it had (gate_wait()) */
        else if (!app->failed || sl->seq < app->failed)
            app->failed = sl->seq;
        pthread_cond_broadcast(&app->cv);
    }
    pthread_mutex_unlock(&app->mu);
    return NULL;
}

/* Wait for the slot's job (if handed) and free its events. Returns its result. */
static int slot_settle(struct slot *sl)
{
    struct app *app = sl->app;
    int rc;

    pthread_mutex_lock(&app->mu);
    if (!sl->busy) {
        pthread_mutex_unlock(&app->mu);
        return 0;
    }
    while (!sl->done)
        pthread_cond_wait(&app->cv, &app->mu);
    rc = sl->result;
    sl->busy = false;
    sl->done = false;
    pthread_mutex_unlock(&app->mu);
    job_release(&sl->job);
    return rc;
}

/* The slot of batch seq while it is not settled, NULL otherwise. */
static struct slot *slot_of(struct app *app, uint64_t seq)
{
    struct slot *found = NULL;

    pthread_mutex_lock(&app->mu);
    for (int i = 0; i < app->nslots; i++)
        if (app->slots[i].busy && app->slots[i].seq == seq)
            found = &app->slots[i];
    pthread_mutex_unlock(&app->mu);
    return found;
}

/*
 * Wait for every batch in flight (oldest first). Returns 0 when all committed, else the first
 * failure: the later ones were rolled back, and the batch numbers start again after them.
 */
static int on_settle(void *opaque)
{
    struct app *app = opaque;
    uint64_t last;
    int rc = 0;

    pthread_mutex_lock(&app->mu);
    last = app->seq;
    pthread_mutex_unlock(&app->mu);
    for (uint64_t s = last >= (uint64_t)app->nslots ? last - (uint64_t)app->nslots + 1 : 1;
         s <= last; s++) {
        struct slot *sl = slot_of(app, s);
        int r = sl ? slot_settle(sl) : 0;

        if (r && !rc)
            rc = r;
    }
    pthread_mutex_lock(&app->mu);
    app->begun = app->committed = app->seq;
    app->failed = 0;
    pthread_mutex_unlock(&app->mu);
    return rc;
}

/* The full topic name (in app->topics) a record came from, NULL when not ours. */
static const char *topic_of(struct app *app, const char *topic)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(app->topics[i], topic) == 0)
            return app->topics[i];
    return NULL;
}

static int job_grow(struct job *j, size_t n)
{
    struct ledger_event *e;
    struct store_offset *o;

    if (n <= j->cap)
        return 0;
    e = realloc(j->evs, n * sizeof(*e));
    if (!e)
        return -ENOMEM;
    j->evs = e;
    o = realloc(j->offs, n * sizeof(*o));
    if (!o)
        return -ENOMEM;
    j->offs = o;
    j->cap = n;
    return 0;
}

/*
 * Decode the batch into slots[next] and hand it to that slot's worker (store_begin() starts at
 * once), then wait for the oldest batch that may not stay in flight (nslots - 1 may). Returns
 * 0 (this batch in flight), KAFKA_PREVIOUS_FAILED (an earlier batch failed: this one and all in
 * flight rolled back), or negative when this batch failed and every earlier one committed
 * (with one slot, or when it cannot start).
 */
static int on_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct app *app = opaque;
    struct slot *sl = &app->slots[app->next];
    struct job *j = &sl->job;
    struct slot *old;
    uint64_t oldest;
    char err[512];
    int rc = 0, prev;

    j->nev = j->noffs = 0;
    if (job_grow(j, n)) {
        rc = -ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        struct kafka_message *m = &msgs[i];
        const char *topic = topic_of(app, m->topic);

        if (!topic) {
            log_kv(LOG_LVL_ERROR, "record of a topic not subscribed", "topic", m->topic, NULL);
            rc = -EIO;
            goto fail;
        }
        offsets_note(j, topic, m);
        rc =
            ledger_event_decode(&j->evs[j->nev], m->topic, m->payload, m->len,
                                *m->ce_id ? m->ce_id : NULL, cfg.online_location, err, sizeof(err));
        if (rc == 0) {
            j->nev++;
            continue;
        }
        ledger_event_release(&j->evs[j->nev]);
        if (rc == -ENOMEM)
            goto fail;
        /* a record that can never apply: dead-letter it, then move on */
        snprintf(app->dlq, sizeof(app->dlq), "%s.dlq", m->topic);
        log_kv(LOG_LVL_WARN, "undecodable record dead-lettered", "topic", m->topic, "reason", err,
               NULL);
        rc = kafka_dead_letter(app->svc->producer, app->dlq, m, "undecodable", err,
                               "inventory-ledger", err, sizeof(err));
        if (rc) {
            log_kv(LOG_LVL_WARN, "batch not applied, will be redelivered", "reason", err, NULL);
            goto fail;
        }
    }
    pthread_mutex_lock(&app->mu);
    sl->handed = true;
    sl->busy = true;
    sl->seq = ++app->seq;
    oldest = sl->seq - (uint64_t)(app->nslots - 1);
    pthread_cond_broadcast(&app->cv);
    pthread_mutex_unlock(&app->mu);
    app->next = (app->next + 1) % app->nslots;
    /* the oldest batch kept in flight ends now; if it failed, those after it are rolled back */
    old = slot_of(app, oldest);
    if (old && (prev = slot_settle(old)) != 0) {
        on_settle(app);
        return old == sl ? prev : KAFKA_PREVIOUS_FAILED;
    }
    return 0;
fail:
    job_release(j);
    metric_add(app->failures, 1);
    /* this batch did not start; the ones in flight must end before we say how */
    prev = on_settle(app);
    if (prev)
        return KAFKA_PREVIOUS_FAILED;
    return rc == -ENOMEM ? -ENOMEM : -EIO;
}

static void app_free(struct app *app)
{
    if (!app)
        return;
    kafka_consumer_free(app->consumer); /* settles the batch in flight */
    on_settle(app);
    pthread_mutex_lock(&app->mu);
    app->stop = true;
    pthread_cond_broadcast(&app->cv);
    pthread_mutex_unlock(&app->mu);
    for (int i = 0; i < app->nslots; i++)
        if (app->slots[i].started)
            pthread_join(app->slots[i].thread, NULL);
    pthread_mutex_destroy(&app->mu);
    pthread_cond_destroy(&app->cv);
    publisher_free(app->pub);
    for (int i = 0; i < app->nslots; i++) {
        job_release(&app->slots[i].job);
        free(app->slots[i].job.evs);
        free(app->slots[i].job.offs);
    }
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
    app->nslots = (int)cfg.in_flight;
    for (int i = 0; i < app->nslots; i++)
        app->slots[i].app = app;
    pthread_mutex_init(&app->mu, NULL);
    pthread_cond_init(&app->cv, NULL);
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
                                           "Time to apply and commit one batch", NULL, NULL, 0);
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
            .deferred = true,
            .in_flight = app->nslots > 1 ? app->nslots - 1 : 1,
            .extra_conf = extra,
        };
        struct kafka_consumer_ops ops = {.on_assign = on_assign,
                                         .on_revoke = on_revoke,
                                         .on_batch = on_batch,
                                         .on_settle = on_settle};

        app->consumer = kafka_consumer_new(&opts, &ops, app, err, errlen);
    }
    if (!app->consumer)
        goto fail;
    for (int i = 0; i < app->nslots; i++) {
        if (pthread_create(&app->slots[i].thread, NULL, worker_main, &app->slots[i]) != 0) {
            snprintf(err, errlen, "cannot start the batch worker threads");
            goto fail;
        }
        app->slots[i].started = true;
    }
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
