/*
 * loyalty-sync — member points awarded and reversed after the fact, conflict-safe.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s; the logic is
 * in loyalty.c (engine), rules.c, identity.c, member_api.c, memberlock.c and journal.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "json_util.h"
#include "log.h"
#include "loyalty.h"
#include "ratelimit.h"
#include "service.h"

#define LS_MAX_WORKERS 8

static struct {
    char *rules_file;
    char *platform;
    char *shop;
    char *api_url;
    char *api_token;
    char *api_version;
    char *default_cc;
    char *group;
    long max_retries;
    long backoff_base_ms;
    long backoff_max_ms;
    long lock_ttl_ms;
    long http_timeout_ms;
    long rl_capacity;
    long rl_refill;
    long rl_rest_capacity;
    long rl_rest_refill;
} cfg;

static const struct config_var vars[] = {
    {"RULES_FILE", CONFIG_STR, true, NULL, 0, 0,
     "JSON file of the points rules per tenant (format in README.md \"Rules\")", &cfg.rules_file},
    {"LOYALTY_PLATFORM", CONFIG_STR, true, NULL, 0, 0,
     "Where members live: shopify (a loyalty app's member API) or shopline", &cfg.platform},
    {"LOYALTY_SHOP", CONFIG_STR, true, NULL, 0, 0,
     "Shop domain or handle of the loyalty program (rate-limit bucket and event keys)", &cfg.shop},
    {"LOYALTY_API_URL", CONFIG_URL, true, NULL, 0, 0,
     "Base URL of the member API (the loyalty app, or the Shopline shop)", &cfg.api_url},
    {"LOYALTY_API_TOKEN", CONFIG_SECRET, true, NULL, 0, 0, "Bearer token of the member API",
     &cfg.api_token},
    {"LOYALTY_API_VERSION", CONFIG_STR, false, "v20240601", 0, 0,
     "Shopline API version (vYYYYMMDD)", &cfg.api_version},
    {"LOYALTY_DEFAULT_COUNTRY_CODE", CONFIG_STR, false, NULL, 0, 0,
     "Country calling code for national phone numbers (e.g. 44); unset = national numbers ignored",
     &cfg.default_cc},
    {"LOYALTY_CONSUMER_GROUP", CONFIG_STR, false, "loyalty-sync", 0, 0,
     "Kafka consumer group of pos.transactions.v1 and shop.orders.v1", &cfg.group},
    {"LOYALTY_MAX_RETRIES", CONFIG_INT, false, "30", 0, 100,
     "Collisions retried per change before LOYALTY_UPDATE_FAILED (30: about a minute at the "
     "default backoff)",
     &cfg.max_retries},
    {"LOYALTY_BACKOFF_BASE_MS", CONFIG_INT, false, "100", 1, 60000,
     "First retry backoff; doubles per retry, plus random jitter", &cfg.backoff_base_ms},
    {"LOYALTY_BACKOFF_MAX_MS", CONFIG_INT, false, "2000", 1, 600000, "Longest retry backoff",
     &cfg.backoff_max_ms},
    {"LOYALTY_LOCK_TTL_MS", CONFIG_INT, false, "30000", 1000, 600000,
     "Expiry of a per-member Redis lock (extended while retrying)", &cfg.lock_ttl_ms},
    {"LOYALTY_HTTP_TIMEOUT_MS", CONFIG_INT, false, "10000", 100, 120000,
     "Timeout of one member API call", &cfg.http_timeout_ms},
    {"RATELIMIT_CAPACITY", CONFIG_INT, false, "200", 1, 1000000,
     "Tokens of the member-API bucket: the loyalty app's (shopify) or Shopline GraphQL's "
     "(shopline; no documented limit)",
     &cfg.rl_capacity},
    {"RATELIMIT_REFILL_PER_S", CONFIG_INT, false, "100", 1, 1000000,
     "Tokens restored per second of the member-API bucket; one call costs 1", &cfg.rl_refill},
    {"RATELIMIT_REST_CAPACITY", CONFIG_INT, false, "36", 1, 1000000,
     "shopline: tokens of the shop's REST bucket (customer search and create), shared with "
     "shop-connector: set it to shop-connector's SHOPLINE_BUCKET_REQUESTS",
     &cfg.rl_rest_capacity},
    {"RATELIMIT_REST_REFILL_PER_S", CONFIG_INT, false, "4", 1, 1000000,
     "shopline: REST tokens restored per second: shop-connector's SHOPLINE_RATE_PER_S",
     &cfg.rl_rest_refill},
};

struct ls_state {
    struct service *svc;
    struct rules rules;
    struct member_api *api;
    struct loyalty *engine;
    char bucket_key[256];      /* loyalty app or Shopline GraphQL */
    char rest_bucket_key[256]; /* Shopline REST, shared with shop-connector */
    char topic_pos[256], topic_orders[256];
    size_t workers; /* records of one batch handled in parallel, one customer per worker */
};

static void replay_handler(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct ls_state *st = opaque;
    char err[256];
    const char *key = NULL;
    json_t *body = NULL;
    if (req->body_len > 0) {
        body = json_parse_object(req->body, req->body_len, err, sizeof err);
        if (!body) {
            http_response_error(resp, 400, "invalid_json", NULL, "%s", err);
            return;
        }
        if (json_get_string(body, "idempotency_key", false, &key, err, sizeof err) == -EINVAL) {
            http_response_error(resp, 400, "invalid_field", "idempotency_key", "%s", err);
            json_decref(body);
            return;
        }
    }
    size_t done = 0, open = 0;
    int rc = loyalty_replay(st->engine, key, &done, &open, err, sizeof err);
    json_decref(body);
    if (rc == -ENOENT) {
        http_response_error(resp, 404, "not_found", "idempotency_key", "%s", err);
        return;
    }
    if (rc) {
        http_response_error(resp, 503, "unavailable", NULL, "%s", err);
        return;
    }
    http_response_json(resp, 200,
                       json_pack("{s:I,s:I}", "done", (json_int_t)done, "open", (json_int_t)open));
}

static struct http_route routes[] = {
    {"POST", "/v1/replay", replay_handler, NULL, 4096, "application/json", 0},
};

static int ls_start(struct service *svc, void **state, const struct http_route **r, size_t *nroutes,
                    char *err, size_t errlen)
{
    struct ls_state *st = calloc(1, sizeof *st);
    if (!st)
        abort(); /* out of memory: the one policy (STYLE.md) */
    *state = st;
    st->svc = svc;
    enum member_platform platform;
    if (strcmp(cfg.platform, "shopify") == 0) {
        platform = MEMBER_PLATFORM_LOYALTY_APP;
    } else if (strcmp(cfg.platform, "shopline") == 0) {
        platform = MEMBER_PLATFORM_SHOPLINE;
    } else {
        snprintf(err, errlen, "LOYALTY_PLATFORM: must be shopify or shopline");
        return -EINVAL;
    }
    char e2[256];
    if (rules_load_file(cfg.rules_file, svc->tenant_id, &st->rules, e2, sizeof e2)) {
        snprintf(err, errlen, "RULES_FILE: %s", e2);
        return -EINVAL;
    }
    /* the keys shop-connector uses for the same shop and API (ratelimit.h): Shopline's REST
     * calls take from the REST bucket its inventory pushes take from */
    bool shopline = platform == MEMBER_PLATFORM_SHOPLINE;
    if (ratelimit_key(svc->tenant_id, cfg.shop, shopline ? "graphql" : "loyalty", st->bucket_key,
                      sizeof st->bucket_key) ||
        (shopline && ratelimit_key(svc->tenant_id, cfg.shop, "rest", st->rest_bucket_key,
                                   sizeof st->rest_bucket_key))) {
        snprintf(err, errlen, "LOYALTY_SHOP: too long");
        return -EINVAL;
    }
    struct member_api_opts ao = {
        .platform = platform,
        .base_url = cfg.api_url,
        .token = cfg.api_token,
        .api_version = cfg.api_version,
        .timeout_ms = cfg.http_timeout_ms,
        .redis = svc->redis,
        .running = &service_running,
        .bucket = {.key = st->bucket_key,
                   .capacity = cfg.rl_capacity,
                   .refill_per_s = cfg.rl_refill},
        .rest_bucket = {.key = shopline ? st->rest_bucket_key : NULL,
                        .capacity = cfg.rl_rest_capacity,
                        .refill_per_s = cfg.rl_rest_refill},
    };
    st->api = member_api_new(&ao, err, errlen);
    if (!st->api)
        return -EINVAL;
    struct loyalty_opts lo = {
        .svc = svc,
        .rules = &st->rules,
        .api = st->api,
        .platform = platform,
        .shop = cfg.shop,
        .default_cc = cfg.default_cc,
        .max_retries = (int)cfg.max_retries,
        .backoff_base_ms = cfg.backoff_base_ms,
        .backoff_max_ms = cfg.backoff_max_ms,
        .lock_ttl_ms = cfg.lock_ttl_ms,
        .running = &service_running,
    };
    st->engine = loyalty_new(&lo, err, errlen);
    if (!st->engine)
        return -EINVAL;
    /* each change holds one Postgres connection while it runs: leave one for /v1/replay */
    st->workers = svc->pg_pool_size > 1 ? (size_t)svc->pg_pool_size - 1 : 1;
    if (st->workers > LS_MAX_WORKERS)
        st->workers = LS_MAX_WORKERS;
    routes[0].opaque = st;
    *r = routes;
    *nroutes = sizeof routes / sizeof *routes;
    return 0;
}

/* Handle one record: 0 when decided or dead-lettered, else negative (the batch comes back). */
static int record_handle(struct ls_state *st, struct kafka_message *m, char *err, size_t errlen)
{
    char e2[256], dlq[300];
    const char *base =
        strcmp(m->topic, st->topic_pos) == 0 ? "pos.transactions.v1" : "shop.orders.v1";
    int rc = loyalty_handle(st->engine, base, m->payload, m->len, err, errlen);
    if (rc != -EBADMSG)
        return rc;
    snprintf(dlq, sizeof dlq, "%s.dlq", m->topic);
    if (kafka_dead_letter(st->svc->producer, dlq, m, "undecodable", err, "loyalty-sync", e2,
                          sizeof e2)) {
        snprintf(err, errlen, "dead letter: %s", e2);
        return -EIO;
    }
    return 0;
}

/* One worker's share of a batch: its records in batch order. */
struct batch_part {
    struct ls_state *st;
    struct kafka_message *msgs;
    size_t *idx;
    size_t n;
    int rc;
    char err[256];
};

/* Handle a part's records in order; stop at the first failure or when a shutdown began. */
static void *part_run(void *opaque)
{
    struct batch_part *p = opaque;
    for (size_t i = 0; i < p->n && p->rc == 0; i++) {
        if (!service_running) {
            snprintf(p->err, sizeof p->err, "shutting down");
            p->rc = -ECANCELED;
            break;
        }
        p->rc = record_handle(p->st, &p->msgs[p->idx[i]], p->err, sizeof p->err);
    }
    return NULL;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/*
 * A batch: its records are spread over st->workers threads by customer (one customer's records
 * stay in order on one worker; different customers proceed in parallel). Returns 0 when every
 * record is decided; else the first failure, and the whole batch comes back (the journal makes
 * the records already done no-ops). A shutdown stops every worker before its next record.
 */
static int on_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct ls_state *st = opaque;
    struct batch_part parts[LS_MAX_WORKERS];
    pthread_t threads[LS_MAX_WORKERS];
    bool started[LS_MAX_WORKERS] = {false};
    size_t nw = st->workers < n ? st->workers : n;
    size_t *idx = calloc(n * nw, sizeof *idx);
    uint32_t *who_h = calloc(n, sizeof *who_h);
    size_t *rank = calloc(n, sizeof *rank);
    if (!idx || !who_h || !rank)
        abort(); /* out of memory: the one policy (STYLE.md) */
    for (size_t w = 0; w < nw; w++)
        parts[w] = (struct batch_part){.st = st, .msgs = msgs, .idx = idx + w * n};
    for (size_t i = 0; i < n; i++) {
        char who[300];
        size_t w = 0;
        if (nw > 1) {
            const char *base = strcmp(msgs[i].topic, st->topic_pos) == 0 ? "pos.transactions.v1"
                                                                         : "shop.orders.v1";
            loyalty_record_customer(st->engine, base, msgs[i].payload, msgs[i].len, who,
                                    sizeof who);
            who_h[i] = fnv1a(who);
            w = who_h[i] % nw;
        }
        parts[w].idx[parts[w].n++] = i;
    }
    /* Within a part, take the customers in turns (each one's first record, then each one's
     * second...): one customer's records keep their order but are spaced out, since a
     * platform refuses writes to one member in quick succession. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (who_h[j] == who_h[i])
                rank[i]++;
    for (size_t w = 0; w < nw && nw > 1; w++) {
        size_t *v = parts[w].idx;
        for (size_t a = 1; a < parts[w].n; a++) { /* insertion sort by (rank, batch order) */
            size_t x = v[a], b = a;
            while (b > 0 &&
                   (rank[v[b - 1]] > rank[x] || (rank[v[b - 1]] == rank[x] && v[b - 1] > x))) {
                v[b] = v[b - 1];
                b--;
            }
            v[b] = x;
        }
    }
    for (size_t w = 1; w < nw; w++)
        if (parts[w].n > 0 && pthread_create(&threads[w], NULL, part_run, &parts[w]) == 0)
            started[w] = true;
        else
            part_run(&parts[w]); /* no thread: do it here */
    part_run(&parts[0]);
    int rc = 0;
    for (size_t w = 0; w < nw; w++) {
        if (started[w])
            pthread_join(threads[w], NULL);
        if (parts[w].rc && !rc) {
            rc = parts[w].rc;
            if (rc == -ECANCELED)
                log_kv(LOG_LVL_INFO, "shutting down: batch left for redelivery", "reason",
                       parts[w].err, NULL);
            else
                log_kv(LOG_LVL_WARN, "batch will be redelivered", "reason", parts[w].err, NULL);
        }
    }
    free(idx);
    free(who_h);
    free(rank);
    return rc;
}

static int ls_run(struct service *svc, void *state)
{
    struct ls_state *st = state;
    static const struct kafka_consumer_ops ops = {.on_batch = on_batch};
    char err[256];
    service_topic(svc, "pos.transactions.v1", st->topic_pos, sizeof st->topic_pos);
    service_topic(svc, "shop.orders.v1", st->topic_orders, sizeof st->topic_orders);
    const char *topics[] = {st->topic_pos, st->topic_orders};
    struct kafka_consumer_opts o = {
        .brokers = svc->kafka_brokers,
        .group_id = cfg.group,
        .topics = topics,
        .ntopics = 2,
        .max_batch = 100,
        .batch_wait_ms = 50,
        .commit_offsets = true, /* the journal makes redelivery harmless */
        .extra_conf = svc->kafka_conf,
    };
    struct kafka_consumer *c = kafka_consumer_new(&o, &ops, st, err, sizeof err);
    if (!c) {
        log_kv(LOG_LVL_ERROR, "consumer not created", "reason", err, NULL);
        return -EINVAL;
    }
    int rc = kafka_consumer_run(c, &service_running);
    kafka_consumer_free(c);
    return rc;
}

static void ls_stop(struct service *svc, void *state)
{
    struct ls_state *st = state;
    (void)svc;
    if (!st)
        return;
    loyalty_free(st->engine);
    member_api_free(st->api);
    rules_release(&st->rules);
    free(st);
}

static const struct service_spec spec = {
    .name = "loyalty-sync",
    .migrations_dir = TILLSYNC_MIGRATIONS_DIR,
    .kafka = true,
    .postgres = true,
    .redis = true,
    .extra = vars,
    .nextra = sizeof vars / sizeof vars[0],
};

static const struct service_hooks hooks = {.start = ls_start, .run = ls_run, .stop = ls_stop};

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = service_main(&spec, &hooks, argc, argv);
    curl_global_cleanup();
    return rc;
}
