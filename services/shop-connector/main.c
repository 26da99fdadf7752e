/*
 * shop-connector — Shopify and Shopline webhooks in, available-to-sell out, within API limits.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s; the
 * inbound work is intake.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"
#include "push.h"
#include "service.h"

static char *shops_file;
static long poll_interval_ms, poll_grace_ms, kafka_timeout_ms;
static char *push_group;
static long session_timeout_ms, window_min_ms, window_max_ms, low_stock, cas_settle_ms;
static long fetch_wait_ms;
static long shopify_bucket, shopify_restore, shopline_bucket, shopline_rate;
static long drift_interval_ms, drift_sample, drift_threshold, drift_grace_ms;

static const struct config_var vars[] = {
    {"SHOPS_FILE", CONFIG_STR, false, NULL, 0, 0,
     "JSON file of the shops served: platform, domain, api_base, tokens and webhook secrets "
     "(see README); unset = no shops (every webhook 401)",
     &shops_file},
    {"POLL_INTERVAL_MS", CONFIG_INT, false, "60000", 0, 86400000,
     "Missed-webhook poll interval in ms (0 = no background poll)", &poll_interval_ms},
    {"POLL_GRACE_MS", CONFIG_INT, false, "30000", 0, 86400000,
     "The poll leaves orders updated this recently to their webhooks", &poll_grace_ms},
    {"PUBLISH_TIMEOUT_MS", CONFIG_INT, false, "4000", 100, 60000,
     "Longest wait for Kafka's acknowledgement before a webhook is answered 503",
     &kafka_timeout_ms},
    {"PUSH_GROUP_ID", CONFIG_STR, false, "shop-connector-push", 0, 0,
     "Consumer group of the inventory.levels.v1 push (replicas share it)", &push_group},
    {"KAFKA_SESSION_TIMEOUT_MS", CONFIG_INT, false, "10000", 3000, 300000,
     "Consumer group session timeout of the push consumer", &session_timeout_ms},
    {"PUSH_FETCH_WAIT_MS", CONFIG_INT, false, "100", 1, 5000,
     "Longest a fetch of inventory.levels.v1 waits for new levels (fetch.wait.max.ms); a broker "
     "that holds a waiting fetch this long adds it to every figure's staleness",
     &fetch_wait_ms},
    {"PUSH_WINDOW_MIN_MS", CONFIG_INT, false, "200", 0, 60000,
     "Coalescing window when quiet: changes of one SKU and location within it are one write",
     &window_min_ms},
    {"PUSH_WINDOW_MAX_MS", CONFIG_INT, false, "2000", 0, 600000,
     "Longest coalescing window, reached under backlog or throttling", &window_max_ms},
    {"PUSH_LOW_STOCK", CONFIG_INT, false, "5", 0, 1000000,
     "Figures at or below this go before others (after zeros)", &low_stock},
    {"PUSH_CAS_SETTLE_MS", CONFIG_INT, false, "1500", 0, 600000,
     "After a compare-and-set conflict, how long to wait for the order event before re-reading "
     "and writing the ledger's figure",
     &cas_settle_ms},
    {"SHOPIFY_BUCKET_POINTS", CONFIG_INT, false, "1000", 10, 1000000,
     "Shopify GraphQL bucket size in cost points (the shop plan's)", &shopify_bucket},
    {"SHOPIFY_RESTORE_PER_S", CONFIG_INT, false, "100", 1, 100000,
     "Shopify GraphQL restore rate in points/s (Standard 100, Advanced 200, Plus 1000)",
     &shopify_restore},
    {"SHOPLINE_BUCKET_REQUESTS", CONFIG_INT, false, "36", 1, 100000,
     "Shopline REST bucket size in requests (the platform allows 40; the margin absorbs network "
     "jitter)",
     &shopline_bucket},
    {"SHOPLINE_RATE_PER_S", CONFIG_INT, false, "4", 1, 10000, "Shopline REST requests per second",
     &shopline_rate},
    {"DRIFT_INTERVAL_MS", CONFIG_INT, false, "60000", 0, 86400000,
     "Drift check interval (0 = none): a rotating sample of figures is read back",
     &drift_interval_ms},
    {"DRIFT_SAMPLE", CONFIG_INT, false, "100", 1, 100000, "Keys read per drift check",
     &drift_sample},
    {"DRIFT_THRESHOLD", CONFIG_INT, false, "0", 0, 1000000,
     "Largest tolerated difference between platform and ledger", &drift_threshold},
    {"DRIFT_GRACE_MS", CONFIG_INT, false, "120000", 0, 86400000,
     "How long a difference may last before STOCK_DRIFT is raised and it is corrected",
     &drift_grace_ms},
};

static const struct service_spec spec = {
    .name = "shop-connector",
    .migrations_dir = TILLSYNC_MIGRATIONS_DIR,
    .kafka = true,
    .postgres = true,
    .redis = true,
    .extra = vars,
    .nextra = sizeof(vars) / sizeof(vars[0]),
};

/* Both halves of the connector: the inbound intake and the outbound push. */
struct connector {
    struct intake *in;
    struct push *push;
    struct http_route routes[32];
};

static int start(struct service *svc, void **state, const struct http_route **routes,
                 size_t *nroutes, char *err, size_t errlen)
{
    struct intake_opts opts = {
        .shops_file = shops_file,
        .poll_interval_ms = poll_interval_ms,
        .poll_grace_ms = poll_grace_ms,
        .kafka_timeout_ms = kafka_timeout_ms,
        .budgets = {shopify_bucket, shopify_restore, shopline_bucket, shopline_rate},
    };
    struct push_opts po = {
        .shops_file = shops_file,
        .group_id = push_group,
        .session_timeout_ms = session_timeout_ms,
        .fetch_wait_ms = fetch_wait_ms,
        .window_min_ms = window_min_ms,
        .window_max_ms = window_max_ms < window_min_ms ? window_min_ms : window_max_ms,
        .low_stock = low_stock,
        .cas_settle_ms = cas_settle_ms,
        .budgets = {shopify_bucket, shopify_restore, shopline_bucket, shopline_rate},
        .drift_interval_ms = drift_interval_ms,
        .drift_sample = drift_sample,
        .drift_threshold = drift_threshold,
        .drift_grace_ms = drift_grace_ms,
    };
    struct connector *c = calloc(1, sizeof(*c));
    if (!c)
        abort(); /* out of memory: the one policy (STYLE.md) */
    c->in = intake_new(svc, &opts, err, errlen);
    if (!c->in)
        goto fail;
    c->push = push_new(svc, &po, err, errlen);
    if (!c->push)
        goto fail;
    size_t ni = 0, np = 0;
    const struct http_route *ri = intake_routes(c->in, &ni);
    const struct http_route *rp = push_routes(c->push, &np);
    if (ni + np > sizeof(c->routes) / sizeof(c->routes[0])) {
        snprintf(err, errlen, "too many routes");
        goto fail;
    }
    memcpy(c->routes, ri, ni * sizeof(*ri));
    memcpy(c->routes + ni, rp, np * sizeof(*rp));
    *state = c;
    *routes = c->routes;
    *nroutes = ni + np;
    return 0;
fail:
    push_free(c->push);
    intake_free(c->in);
    free(c);
    return -1;
}

static int run(struct service *svc, void *state)
{
    (void)svc;
    struct connector *c = state;
    return push_run(c->push, &service_running);
}

static void stop(struct service *svc, void *state)
{
    (void)svc;
    struct connector *c = state;
    if (!c)
        return;
    push_free(c->push);
    intake_free(c->in);
    free(c);
}

static const struct service_hooks hooks = {.start = start, .run = run, .stop = stop};

int main(int argc, char **argv)
{
    return service_main(&spec, &hooks, argc, argv);
}
