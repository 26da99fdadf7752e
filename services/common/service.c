/*
 * service — shared skeleton of the five services (see service.h).
 *
 * Start-up never fails because a dependency is down: Kafka and Redis connect lazily and /readyz
 * reports them; only Postgres migrations are waited for, since a service must not touch a schema
 * that is not there yet. Configuration errors are the one reason to refuse to start.
 */
#include "service.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "migrate.h"

volatile sig_atomic_t service_running = 1;

/* The variables every service reads. `out` is filled in by service_init() (the table is copied). */
enum {
    V_TENANT,
    V_PREFIX,
    V_LISTEN,
    V_LOGLEVEL,
    V_BROKERS,
    V_DBURL,
    V_REDISURL,
    V_MIGRATIONS,
    V_HTTP_THREADS,
    V_HTTP_MAX_BODY,
    V_PG_POOL,
    V_REDIS_POOL,
    V_GRACE,
    V_KSEC,
    V_KMECH,
    V_KUSER,
    V_KPASS,
    V_KCA,
    V_COUNT
};

static void common_vars(struct config_var *v, const struct service_spec *spec, struct service *svc)
{
    static const struct config_var base[V_COUNT] = {
        [V_TENANT] = {"TENANT_ID", CONFIG_STR, true, NULL, 0, 0,
                      "Tenant (retail chain) this instance serves; stamped on every event", NULL},
        [V_PREFIX] = {"TOPIC_PREFIX", CONFIG_STR, false, "", 0, 0,
                      "Prefix of every Kafka topic name, e.g. \"acme.\"", NULL},
        [V_LISTEN] = {"HTTP_LISTEN", CONFIG_HOSTPORT, false, "0.0.0.0:8080", 0, 0,
                      "HTTP listen address host:port; port 0 picks a free port (logged)", NULL},
        [V_LOGLEVEL] = {"LOG_LEVEL", CONFIG_STR, false, "info", 0, 0, "debug, info, warn or error",
                        NULL},
        [V_BROKERS] = {"KAFKA_BROKERS", CONFIG_STR, false, NULL, 0, 0,
                       "Kafka bootstrap servers, host:port[,host:port]", NULL},
        [V_DBURL] = {"DATABASE_URL", CONFIG_SECRET, false, NULL, 0, 0,
                     "Postgres connection URL postgresql://user@host:port/db", NULL},
        [V_REDISURL] = {"REDIS_URL", CONFIG_SECRET, false, NULL, 0, 0,
                        "Redis URL redis://[:password@]host:port[/db]", NULL},
        [V_MIGRATIONS] = {"MIGRATIONS_DIR", CONFIG_STR, false, NULL, 0, 0,
                          "Directory of the service's numbered SQL migrations", NULL},
        [V_HTTP_THREADS] = {"HTTP_THREADS", CONFIG_INT, false, "8", 1, 256, "HTTP worker threads",
                            NULL},
        [V_HTTP_MAX_BODY] = {"HTTP_MAX_BODY", CONFIG_INT, false, "1048576", 1024, 268435456,
                             "Largest accepted request body in bytes (413 above)", NULL},
        [V_PG_POOL] = {"PG_POOL_SIZE", CONFIG_INT, false, "4", 1, 64,
                       "Postgres connections kept by the service", NULL},
        [V_REDIS_POOL] = {"REDIS_POOL_SIZE", CONFIG_INT, false, "4", 1, 64,
                          "Redis connections kept by the service", NULL},
        [V_GRACE] = {"SHUTDOWN_GRACE_MS", CONFIG_INT, false, "4000", 0, 60000,
                     "Time allowed to drain in-flight work on SIGTERM", NULL},
        [V_KSEC] = {"KAFKA_SECURITY_PROTOCOL", CONFIG_STR, false, "plaintext", 0, 0,
                    "plaintext, ssl, sasl_plaintext or sasl_ssl", NULL},
        [V_KMECH] = {"KAFKA_SASL_MECHANISM", CONFIG_STR, false, NULL, 0, 0,
                     "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when SASL is used", NULL},
        [V_KUSER] = {"KAFKA_SASL_USERNAME", CONFIG_STR, false, NULL, 0, 0, "SASL user name", NULL},
        [V_KPASS] = {"KAFKA_SASL_PASSWORD", CONFIG_SECRET, false, NULL, 0, 0, "SASL password",
                     NULL},
        [V_KCA] = {"KAFKA_SSL_CA_LOCATION", CONFIG_STR, false, NULL, 0, 0,
                   "CA certificate file for Kafka TLS", NULL},
    };
    memcpy(v, base, sizeof(base));
    v[V_BROKERS].required = spec->kafka;
    v[V_DBURL].required = spec->postgres;
    v[V_REDISURL].required = spec->redis;
    if (spec->pg_pool_default)
        v[V_PG_POOL].def = spec->pg_pool_default;
    if (!svc)
        return;
    v[V_TENANT].out = &svc->tenant_id;
    v[V_PREFIX].out = &svc->topic_prefix;
    v[V_LISTEN].out = &svc->http_listen;
    v[V_LOGLEVEL].out = &svc->log_level;
    v[V_BROKERS].out = &svc->kafka_brokers;
    v[V_DBURL].out = &svc->database_url;
    v[V_REDISURL].out = &svc->redis_url;
    v[V_MIGRATIONS].out = &svc->migrations_dir;
    v[V_HTTP_THREADS].out = &svc->http_threads;
    v[V_HTTP_MAX_BODY].out = &svc->http_max_body;
    v[V_PG_POOL].out = &svc->pg_pool_size;
    v[V_REDIS_POOL].out = &svc->redis_pool_size;
    v[V_GRACE].out = &svc->shutdown_grace_ms;
    v[V_KSEC].out = &svc->kafka_security_protocol;
    v[V_KMECH].out = &svc->kafka_sasl_mechanism;
    v[V_KUSER].out = &svc->kafka_sasl_username;
    v[V_KPASS].out = &svc->kafka_sasl_password;
    v[V_KCA].out = &svc->kafka_ssl_ca_location;
}

static void kafka_conf_build(struct service *svc)
{
    size_t i = 0;

    svc->kafka_conf[i++] = "security.protocol";
    svc->kafka_conf[i++] = svc->kafka_security_protocol;
    if (svc->kafka_sasl_mechanism) {
        svc->kafka_conf[i++] = "sasl.mechanisms";
        svc->kafka_conf[i++] = svc->kafka_sasl_mechanism;
    }
    if (svc->kafka_sasl_username) {
        svc->kafka_conf[i++] = "sasl.username";
        svc->kafka_conf[i++] = svc->kafka_sasl_username;
    }
    if (svc->kafka_sasl_password) {
        svc->kafka_conf[i++] = "sasl.password";
        svc->kafka_conf[i++] = svc->kafka_sasl_password;
    }
    if (svc->kafka_ssl_ca_location) {
        svc->kafka_conf[i++] = "ssl.ca.location";
        svc->kafka_conf[i++] = svc->kafka_ssl_ca_location;
    }
    svc->kafka_conf[i] = NULL;
}

static int validate_common(struct service *svc, char *err, size_t errlen)
{
    static const char *const protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"};
    bool known = false;

    for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++)
        known = known || strcmp(svc->kafka_security_protocol, protocols[i]) == 0;
    if (!known) {
        snprintf(err, errlen,
                 "KAFKA_SECURITY_PROTOCOL: \"%s\" is not one of plaintext, ssl, "
                 "sasl_plaintext, sasl_ssl",
                 svc->kafka_security_protocol);
        return -EINVAL;
    }
    if (strncmp(svc->kafka_security_protocol, "sasl", 4) == 0 &&
        (!svc->kafka_sasl_mechanism || !svc->kafka_sasl_username || !svc->kafka_sasl_password)) {
        snprintf(err, errlen,
                 "KAFKA_SASL_MECHANISM: SASL needs KAFKA_SASL_MECHANISM, "
                 "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD");
        return -EINVAL;
    }
    /* URLs may hold passwords: name the variable, never echo the value. */
    if (svc->database_url && strncmp(svc->database_url, "postgresql://", 13) != 0 &&
        strncmp(svc->database_url, "postgres://", 11) != 0) {
        snprintf(err, errlen, "DATABASE_URL: must start with postgresql:// (value not shown)");
        return -EINVAL;
    }
    if (svc->redis_url && strncmp(svc->redis_url, "redis://", 8) != 0) {
        snprintf(err, errlen, "REDIS_URL: must start with redis:// (value not shown)");
        return -EINVAL;
    }
    for (const char *c = svc->tenant_id; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_')) {
            snprintf(err, errlen, "TENANT_ID: \"%s\" may hold only letters, digits, - and _",
                     svc->tenant_id);
            return -EINVAL;
        }
    }
    return 0;
}

int service_init(struct service *svc, const struct service_spec *spec, char *err, size_t errlen)
{
    struct config_var common[V_COUNT];
    int rc;

    memset(svc, 0, sizeof(*svc));
    svc->spec = spec;
    common_vars(common, spec, svc);
    rc = config_load(common, V_COUNT, err, errlen);
    if (rc == 0 && spec->extra)
        rc = config_load(spec->extra, spec->nextra, err, errlen);
    svc->config_loaded = true;
    if (rc != 0)
        return rc;
    rc = validate_common(svc, err, errlen);
    if (rc != 0)
        return rc;
    if (log_init(spec->name, svc->log_level) != 0) {
        snprintf(err, errlen, "LOG_LEVEL: \"%s\" is not one of debug, info, warn, error",
                 svc->log_level);
        return -EINVAL;
    }
    kafka_conf_build(svc);
    return 0;
}

void service_print_config(const struct service_spec *spec, FILE *out)
{
    struct config_var common[V_COUNT];

    common_vars(common, spec, NULL);
    config_print_markdown(common, V_COUNT, out);
    if (spec->extra)
        config_print_markdown(spec->extra, spec->nextra, out);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Apply migrations, waiting for the database with capped backoff while the service runs. */
static int migrations_run(struct service *svc, char *err, size_t errlen)
{
    const char *dir = svc->migrations_dir;
    long backoff = 200;

    if (!dir)
        dir = svc->spec->migrations_dir;
    if (!dir || access(dir, R_OK) != 0)
        return 0; /* this service has no schema of its own */
    while (service_running) {
        char why[256];
        PGconn *conn = pg_acquire(svc->pg, 2000, why, sizeof(why));
        int n;

        if (!conn) {
            log_kv(LOG_LVL_WARN, "postgres unreachable, migrations wait", "reason", why, NULL);
            sleep_ms(backoff);
            backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
            continue;
        }
        n = migrate_apply(conn, svc->spec->name, dir, err, errlen);
        pg_release(svc->pg, conn);
        if (n < 0)
            return n;
        log_kv(LOG_LVL_INFO, "migrations applied", "dir", dir, NULL);
        return 0;
    }
    snprintf(err, errlen, "stopped while waiting for Postgres");
    return -EINTR;
}

int service_connect(struct service *svc, char *err, size_t errlen)
{
    const struct service_spec *spec = svc->spec;

    svc->metrics = metrics_new();
    if (!svc->metrics) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (spec->kafka) {
        svc->producer =
            kafka_producer_new(svc->kafka_brokers, spec->name, svc->kafka_conf, err, errlen);
        if (!svc->producer)
            return -EINVAL;
    }
    if (spec->redis) {
        svc->redis = redis_new(svc->redis_url, (unsigned)svc->redis_pool_size, 2000, err, errlen);
        if (!svc->redis)
            return -EINVAL;
    }
    if (spec->postgres) {
        svc->pg = pg_new(svc->database_url, (unsigned)svc->pg_pool_size, err, errlen);
        if (!svc->pg)
            return -EINVAL;
        return migrations_run(svc, err, errlen);
    }
    return 0;
}

/* /readyz: every dependency the service declared must answer. */
static bool service_ready(void *opaque, char *why, size_t whylen)
{
    struct service *svc = opaque;
    char detail[256];

    if (svc->producer && kafka_producer_ping(svc->producer, 1000) != 0) {
        snprintf(why, whylen, "kafka unreachable");
        return false;
    }
    if (svc->producer && kafka_producer_fatal(svc->producer, detail, sizeof(detail))) {
        snprintf(why, whylen, "kafka producer fatal error: %s", detail);
        return false;
    }
    if (svc->pg && !pg_ping(svc->pg, detail, sizeof(detail))) {
        snprintf(why, whylen, "postgres unreachable: %s", detail);
        return false;
    }
    if (svc->redis && !redis_ping(svc->redis, detail, sizeof(detail))) {
        snprintf(why, whylen, "redis unreachable: %s", detail);
        return false;
    }
    return true;
}

int service_start_http(struct service *svc, const struct http_route *routes, size_t nroutes,
                       char *err, size_t errlen)
{
    struct http_server_opts opts = {
        .listen = svc->http_listen,
        .max_body = (size_t)svc->http_max_body,
        .threads = (unsigned)svc->http_threads,
        .timeout_s = 30,
        .ready = service_ready,
        .ready_opaque = svc,
        .metrics = svc->metrics,
    };

    svc->http = http_server_new(&opts, routes, nroutes, err, errlen);
    if (!svc->http)
        return -EINVAL;
    log_kv(LOG_LVL_INFO, "listening", "address", http_server_address(svc->http), "tenant",
           svc->tenant_id, NULL);
    return 0;
}

int service_topic(const struct service *svc, const char *base, char *out, size_t outcap)
{
    return kafka_topic_name(svc->topic_prefix, base, out, outcap);
}

static void on_signal(int sig)
{
    (void)sig;
    service_running = 0;
}

void service_signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

void service_wait(void)
{
    while (service_running)
        sleep_ms(100);
}

void service_release(struct service *svc)
{
    struct config_var common[V_COUNT];

    if (svc->http)
        http_server_quiesce(svc->http);
    http_server_free(svc->http);
    svc->http = NULL;
    if (svc->producer) {
        kafka_producer_flush(svc->producer, (int)svc->shutdown_grace_ms);
        kafka_producer_free(svc->producer);
        svc->producer = NULL;
    }
    redis_free(svc->redis);
    svc->redis = NULL;
    pg_free(svc->pg);
    svc->pg = NULL;
    metrics_free(svc->metrics);
    svc->metrics = NULL;
    if (svc->config_loaded && svc->spec) {
        common_vars(common, svc->spec, svc);
        config_release(common, V_COUNT);
        if (svc->spec->extra)
            config_release(svc->spec->extra, svc->spec->nextra);
        svc->config_loaded = false;
    }
}

/* `--migrate-only`: apply the service's migrations and exit (the Helm pre-upgrade Job). */
static int service_migrate_only(const struct service_spec *spec)
{
    struct service_spec only = *spec;
    struct service svc;
    char err[512] = "";
    int code = 1;

    only.kafka = false;
    only.redis = false;
    if (!only.postgres) {
        fprintf(stderr, "%s: has no database schema; nothing to migrate\n", spec->name);
        return 0;
    }
    service_signals_install();
    if (service_init(&svc, &only, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: configuration error: %s\n", spec->name, err);
        service_release(&svc);
        return 2;
    }
    svc.pg = pg_new(svc.database_url, 1, err, sizeof(err));
    if (svc.pg && migrations_run(&svc, err, sizeof(err)) == 0)
        code = 0;
    if (code != 0)
        log_kv(LOG_LVL_ERROR, "migrations failed", "reason", err, NULL);
    service_release(&svc);
    return code;
}

int service_main(const struct service_spec *spec, const struct service_hooks *hooks, int argc,
                 char **argv)
{
    static const struct service_hooks none = {0};
    const struct http_route *routes = NULL;
    struct service svc;
    size_t nroutes = 0;
    void *state = NULL;
    char err[512] = "";
    int code = 1;

    if (!hooks)
        hooks = &none;
    if (argc > 1 && strcmp(argv[1], "--config-help") == 0) {
        service_print_config(spec, stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--migrate-only") == 0)
        return service_migrate_only(spec);
    if (argc > 1) {
        fprintf(stderr,
                "%s: unknown argument \"%s\" (configuration comes from the environment; "
                "--config-help lists it)\n",
                spec->name, argv[1]);
        return 2;
    }
    service_signals_install();
    if (service_init(&svc, spec, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: configuration error: %s\n", spec->name, err);
        service_release(&svc);
        return 2;
    }
    log_kv(LOG_LVL_INFO, "starting", "version", TILLSYNC_VERSION, "tenant", svc.tenant_id, NULL);
    if (service_connect(&svc, err, sizeof(err)) != 0)
        goto out;
    if (hooks->start && hooks->start(&svc, &state, &routes, &nroutes, err, sizeof(err)) != 0)
        goto out;
    if (service_start_http(&svc, routes, nroutes, err, sizeof(err)) != 0)
        goto out;
    if (hooks->run) {
        if (hooks->run(&svc, state) != 0) {
            snprintf(err, sizeof(err), "service loop ended on a fatal error");
            goto out;
        }
    } else {
        service_wait();
    }
    code = 0;
out:
    if (code != 0 && service_running == 0 && strstr(err, "stopped while waiting"))
        code = 0; /* SIGTERM during start-up is a clean stop */
    if (code != 0)
        log_kv(LOG_LVL_ERROR, "fatal", "reason", err, NULL);
    log_kv(LOG_LVL_INFO, "stopping", NULL);
    if (svc.http)
        http_server_quiesce(svc.http);
    if (hooks->stop)
        hooks->stop(&svc, state);
    service_release(&svc);
    log_kv(LOG_LVL_INFO, "stopped", "exit_code", code == 0 ? "0" : "1", NULL);
    return code;
}
