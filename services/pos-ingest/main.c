/*
 * pos-ingest — the tills' HTTP door: sales, returns, stock movements and offline backlogs into
 * Kafka. The process life (configuration, connections, HTTP, signals) is service_main()'s; the
 * API is ingest.c; the main thread keeps the catalogue from catalog.items.v1 (catalog.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apikeys.h"
#include "catalog.h"
#include "ingest.h"
#include "kafka.h"
#include "log.h"
#include "mapping.h"
#include "posjson.h"
#include "service.h"
#include "uuid.h"

static struct {
    char *mapping_file;
    long kafka_timeout_ms;
    long kafka_linger_ms;
    long max_future_ms;
    long batch_max_items;
    long batch_max_body;
    long batch_concurrency;
    long key_refresh_ms;
    long item_cache_mb;
    char *catalog_group;
} cfg;

static const struct config_var vars[] = {
    {"POS_MAPPING_FILE", CONFIG_STR, false, NULL, 0, 0,
     "JSON file mapping store codes to ledger locations and non-stock codes to ledger codes "
     "(README \"Mapping\"); unset = every store is unknown",
     &cfg.mapping_file},
    {"POS_KAFKA_TIMEOUT_MS", CONFIG_INT, false, "5000", 500, 120000,
     "Longest wait for Kafka's acknowledgement (message.timeout.ms); then 503",
     &cfg.kafka_timeout_ms},
    {"POS_KAFKA_LINGER_MS", CONFIG_INT, false, "2", 0, 1000,
     "Producer linger.ms: batching delay traded against latency", &cfg.kafka_linger_ms},
    {"POS_MAX_FUTURE_MS", CONFIG_INT, false, "300000", 0, 86400000,
     "How far ahead of our clock an occurred_at may be (till clock skew)", &cfg.max_future_ms},
    {"POS_BATCH_MAX_ITEMS", CONFIG_INT, false, "10000", 1, 100000,
     "Most transactions plus movements in one batch", &cfg.batch_max_items},
    {"POS_BATCH_MAX_BODY", CONFIG_INT, false, "33554432", 1024, 268435456,
     "Largest batch body in bytes (413 above)", &cfg.batch_max_body},
    {"POS_BATCH_CONCURRENCY", CONFIG_INT, false, "2", 1, 64,
     "Batches one replica takes at once, from upload to answer (more: 503 busy, Retry-After); "
     "bounds memory: see README \"Memory\"",
     &cfg.batch_concurrency},
    {"POS_ITEM_CACHE_MB", CONFIG_INT, false, "160", 0, 4096,
     "Memory kept for the next requests' items once a batch is answered (MiB; 160 holds one "
     "batch of 10,000 ordinary sales); 0 = give it back to malloc at once. README \"Memory\"",
     &cfg.item_cache_mb},
    {"POS_API_KEY_REFRESH_MS", CONFIG_INT, false, "5000", 100, 3600000,
     "How often the API key cache is reloaded from Postgres (key rotation delay)",
     &cfg.key_refresh_ms},
    {"POS_CATALOG_GROUP", CONFIG_STR, false, NULL, 0, 0,
     "Consumer group for catalog.items.v1; unset = a fresh group per process (reads it all)",
     &cfg.catalog_group},
};

struct pos_state {
    struct mapping *mapping;
    struct catalog *catalog;
    struct apikeys *keys;
    struct ingest *ingest;
};

/* The common producer waits 30 s for an acknowledgement; a till must not be held that long, so
 * the producer is replaced (before any use) by one with message.timeout.ms bounded. */
static int producer_bound(struct service *svc, char *err, size_t errlen)
{
    const char *conf[24];
    char timeout[24], linger[24];
    struct kafka_producer *p;
    size_t i = 0;

    for (; svc->kafka_conf[i] && i < 16; i++)
        conf[i] = svc->kafka_conf[i];
    snprintf(timeout, sizeof(timeout), "%ld", cfg.kafka_timeout_ms);
    snprintf(linger, sizeof(linger), "%ld", cfg.kafka_linger_ms);
    conf[i++] = "message.timeout.ms";
    conf[i++] = timeout;
    conf[i++] = "linger.ms";
    conf[i++] = linger;
    conf[i] = NULL;
    p = kafka_producer_new(svc->kafka_brokers, svc->spec->name, conf, err, errlen);
    if (!p)
        return -EINVAL;
    kafka_producer_free(svc->producer);
    svc->producer = p; /* owned by svc now; freed by service_release() */
    return 0;
}

static int pos_start(struct service *svc, void **state, const struct http_route **routes,
                     size_t *nroutes, char *err, size_t errlen)
{
    struct pos_state *st = calloc(1, sizeof(*st));
    struct ingest_opts opts = {
        .kafka_timeout_ms = cfg.kafka_timeout_ms,
        .max_future_ms = cfg.max_future_ms,
        .batch_max_items = cfg.batch_max_items,
        .batch_concurrency = cfg.batch_concurrency,
        .batch_max_body = cfg.batch_max_body,
        .claim_lease_ms = cfg.kafka_timeout_ms + 5000,
    };

    if (!st)
        abort();
    *state = st;
    if (producer_bound(svc, err, errlen) != 0)
        return -EINVAL;
    posjson_pool_limit((size_t)cfg.item_cache_mb << 20);
    if (cfg.mapping_file) {
        st->mapping = mapping_load(cfg.mapping_file, err, errlen);
        if (!st->mapping)
            return -EINVAL;
    } else {
        log_kv(LOG_LVL_WARN, "POS_MAPPING_FILE unset: every store is unknown", NULL);
        st->mapping = mapping_empty();
    }
    st->catalog = catalog_new();
    st->keys = apikeys_new(svc->pg, (int)cfg.key_refresh_ms);
    st->ingest = ingest_new(svc, &opts, st->mapping, st->catalog, st->keys);
    if (!st->ingest) {
        snprintf(err, errlen, "the ingest pipeline could not start");
        return -EINVAL;
    }
    *routes = ingest_routes(st->ingest, nroutes);
    return 0;
}

static int on_catalog_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct catalog *c = opaque;
    char err[256];

    for (size_t i = 0; i < n; i++) {
        if (catalog_apply(c, msgs[i].key, msgs[i].keylen, msgs[i].payload, msgs[i].len, err,
                          sizeof(err)) != 0)
            log_kv(LOG_LVL_WARN, "catalogue record skipped", "reason", err, NULL);
    }
    return 0;
}

/* Main thread: keep the catalogue current until SIGTERM. */
static int pos_run(struct service *svc, void *state)
{
    struct pos_state *st = state;
    static const struct kafka_consumer_ops ops = {.on_batch = on_catalog_batch};
    char topic[256], group[128], id[37], err[256];
    const char *topics[1] = {topic};
    struct kafka_consumer_opts o = {0};
    struct kafka_consumer *c;
    int rc;

    service_topic(svc, "catalog.items.v1", topic, sizeof(topic));
    if (cfg.catalog_group) {
        snprintf(group, sizeof(group), "%s", cfg.catalog_group);
    } else {
        uuid_v7(id);
        snprintf(group, sizeof(group), "pos-ingest-catalog-%s", id);
    }
    o.brokers = svc->kafka_brokers;
    o.group_id = group;
    o.topics = topics;
    o.ntopics = 1;
    o.max_batch = 500;
    o.batch_wait_ms = 50;
    o.commit_offsets = false;
    o.extra_conf = svc->kafka_conf;
    c = kafka_consumer_new(&o, &ops, st->catalog, err, sizeof(err));
    if (!c) {
        log_kv(LOG_LVL_ERROR, "catalogue consumer not created", "reason", err, NULL);
        return -EINVAL;
    }
    log_kv(LOG_LVL_INFO, "catalogue consumer started", "topic", topic, "group", group, NULL);
    rc = kafka_consumer_run(c, &service_running);
    kafka_consumer_free(c);
    return rc;
}

static void pos_stop(struct service *svc, void *state)
{
    struct pos_state *st = state;

    if (!st)
        return;
    /* Answer every request in flight, then stop HTTP, before what the handlers use goes away
     * (libmicrohttpd must not stop while a request waits suspended). */
    ingest_close(st->ingest);
    http_server_free(svc->http);
    svc->http = NULL;
    ingest_free(st->ingest);
    apikeys_free(st->keys);
    catalog_free(st->catalog);
    mapping_free(st->mapping);
    posjson_pool_limit(0);
    free(st);
}

static const struct service_spec spec = {
    .name = "pos-ingest",
    .migrations_dir = TILLSYNC_MIGRATIONS_DIR,
    .kafka = true,
    .postgres = true,
    .extra = vars,
    .nextra = sizeof(vars) / sizeof(vars[0]),
};

static const struct service_hooks hooks = {
    .start = pos_start,
    .run = pos_run,
    .stop = pos_stop,
};

int main(int argc, char **argv)
{
    return service_main(&spec, &hooks, argc, argv);
}
