/*
 * service — the skeleton every tillsync service shares: configuration of the common variables,
 * logging, metrics, the HTTP server with /healthz /readyz /metrics, the connections a service
 * declares it needs (Kafka producer, Postgres pool with migrations, Redis pool), signal handling
 * and an orderly shutdown. A service's main.c fills a struct service_spec, calls service_init(),
 * service_connect(), service_start_http(), runs its own loop while service_running is set, and
 * ends with service_release().
 */
#ifndef TILLSYNC_SERVICE_H
#define TILLSYNC_SERVICE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"
#include "kafka.h"
#include "metrics.h"
#include "pg.h"
#include "redis.h"

/* Set to 0 by SIGTERM/SIGINT once service_signals_install() ran. Loops poll it. */
extern volatile sig_atomic_t service_running;

/* What a service needs; the matching variables become required. */
struct service_spec {
    const char *name;               /* "pos-ingest" */
    bool kafka;                     /* KAFKA_BROKERS required, a producer is created */
    bool postgres;                  /* DATABASE_URL required, pool created, migrations applied */
    bool redis;                     /* REDIS_URL required, pool created */
    const char *migrations_dir;     /* default of MIGRATIONS_DIR: pass TILLSYNC_MIGRATIONS_DIR */
    const char *pg_pool_default;    /* default of PG_POOL_SIZE when not "4", e.g. "6" */
    const struct config_var *extra; /* the service's own variables, may be NULL */
    size_t nextra;
};

/*
 * A running service. Fields are read-only for callers once service_init() returned; strings are
 * owned by the service and freed by service_release().
 */
struct service {
    const struct service_spec *spec;
    /* common configuration (DESIGN.md "Conventions": one name in every service) */
    char *tenant_id;
    char *topic_prefix;
    char *http_listen;
    char *log_level;
    char *kafka_brokers;
    char *database_url;
    char *redis_url;
    char *migrations_dir;
    long http_threads;
    long http_max_body;
    long pg_pool_size;
    long redis_pool_size;
    long shutdown_grace_ms;
    char *kafka_security_protocol;
    char *kafka_sasl_mechanism;
    char *kafka_sasl_username;
    char *kafka_sasl_password;
    char *kafka_ssl_ca_location;
    const char *kafka_conf[16]; /* NULL-terminated key/value pairs derived from the above */
    /* parts, created by service_connect() / service_start_http() */
    struct metrics *metrics;
    struct kafka_producer *producer;
    struct pg *pg;
    struct redis *redis;
    struct http_server *http;
    bool config_loaded;
};

/*
 * Load the common variables plus spec->extra and start logging. On a bad or missing variable
 * returns -EINVAL with err holding one line that starts with the variable's name. svc is
 * caller-owned; release it with service_release() whatever this returns.
 */
int service_init(struct service *svc, const struct service_spec *spec, char *err, size_t errlen);

/* Print the configuration table (common + service variables) as Markdown. */
void service_print_config(const struct service_spec *spec, FILE *out);

/*
 * Create the metrics registry and the connections spec asks for. Kafka and Redis connect lazily;
 * Postgres migrations are applied here, waiting (with backoff, until service_running is cleared)
 * while the database is unreachable. Returns 0 or a negative error with err set.
 */
int service_connect(struct service *svc, char *err, size_t errlen);

/*
 * Start the HTTP server on HTTP_LISTEN with the service's routes plus /healthz, /readyz (every
 * dependency reachable) and /metrics, and log the address it got. Returns 0 or negative.
 */
int service_start_http(struct service *svc, const struct http_route *routes, size_t nroutes,
                       char *err, size_t errlen);

/* Full topic name for a base name such as "pos.transactions.v1" (TOPIC_PREFIX + base). */
int service_topic(const struct service *svc, const char *base, char *out, size_t outcap);

/* Install SIGTERM/SIGINT handlers that clear service_running; ignore SIGPIPE. */
void service_signals_install(void);

/* Sleep until service_running is cleared (for services without a loop of their own). */
void service_wait(void);

/*
 * Orderly shutdown: stop accepting HTTP work, let in-flight requests finish, flush the producer,
 * close pools, free everything. Safe on a partly initialised service.
 */
void service_release(struct service *svc);

/*
 * A service's own parts, plugged into service_main(). Every hook may be NULL.
 *   start: after service_connect(); builds the service's state and may point *routes at its
 *          HTTP routes (which must outlive the server). Returns 0 or negative with err set.
 *   run:   the service's loop on the main thread (e.g. a Kafka consumer) until service_running
 *          is cleared; returns 0, or negative on a fatal error. NULL = service_wait().
 *   stop:  after the HTTP server stopped accepting work; frees the state.
 */
struct service_hooks {
    int (*start)(struct service *svc, void **state, const struct http_route **routes,
                 size_t *nroutes, char *err, size_t errlen);
    int (*run)(struct service *svc, void *state);
    void (*stop)(struct service *svc, void *state);
};

/*
 * The whole life of a service process: `--config-help` prints the configuration table; otherwise
 * init, connect, start, HTTP, run, and an orderly shutdown on SIGTERM. Returns the process exit
 * code: 0 after a clean shutdown, 2 on a configuration error (one line on stderr naming the
 * variable), 1 on a fatal runtime error.
 */
int service_main(const struct service_spec *spec, const struct service_hooks *hooks, int argc,
                 char **argv);

#endif
