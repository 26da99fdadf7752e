/* recon — see recon.h. */
#include "recon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "clock.h"
#include "db.h"
#include "log.h"

struct recon_config recon_config;

int recon_check_now(struct recon *r, struct checks_result *res, char *err, size_t errlen)
{
    PGconn *conn = pg_acquire(r->svc->pg, 5000, err, errlen);
    int rc;

    if (!conn)
        return -EIO;
    rc = checks_run(conn, &r->checks, res, err, errlen);
    pg_release(r->svc->pg, conn);
    pthread_mutex_lock(&r->mu);
    r->last = *res;
    r->last_check_ms = clock_now_ms();
    snprintf(r->last_check_error, sizeof(r->last_check_error), "%s", rc ? err : "");
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* High watermark of every partition of our topics into recon_watermarks (for consumer lag). */
static int watermarks_refresh(struct recon *r, rd_kafka_t *rk, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    PGconn *conn = NULL;
    rd_kafka_resp_err_t ke;
    int rc = 0;

    ke = rd_kafka_metadata(rk, 1, NULL, &md, 3000);
    if (ke) {
        snprintf(err, errlen, "metadata: %s", rd_kafka_err2str(ke));
        return -EIO;
    }
    conn = pg_acquire(r->svc->pg, 5000, err, errlen);
    if (!conn) {
        rc = -EIO;
        goto out;
    }
    for (int t = 0; t < md->topic_cnt && rc == 0; t++) {
        bool ours = false;
        for (size_t i = 0; i < r->ntopics; i++)
            if (!strcmp(r->topics[i], md->topics[t].topic))
                ours = true;
        if (!ours)
            continue;
        for (int p = 0; p < md->topics[t].partition_cnt && rc == 0; p++) {
            int64_t lo = 0, hi = 0;
            char pb[16], hb[32];
            int32_t part = md->topics[t].partitions[p].id;
            const char *params[] = {md->topics[t].topic, db_int(pb, sizeof(pb), part), hb};

            if (rd_kafka_query_watermark_offsets(rk, md->topics[t].topic, part, &lo, &hi, 2000))
                continue;
            db_int(hb, sizeof(hb), hi);
            rc = db_exec(conn,
                         "INSERT INTO recon_watermarks (topic, partition, high) VALUES ($1, "
                         "$2::int, $3::bigint) ON CONFLICT (topic, partition) DO UPDATE SET "
                         "high = EXCLUDED.high, updated_at = now()",
                         3, params, err, errlen);
        }
    }
    if (rc == 0) {
        pthread_mutex_lock(&r->mu);
        r->watermarks_ms = clock_now_ms();
        pthread_mutex_unlock(&r->mu);
    }
out:
    pg_release(r->svc->pg, conn);
    if (md)
        rd_kafka_metadata_destroy(md);
    return rc;
}

static rd_kafka_t *meta_client_new(struct recon *r)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", r->svc->kafka_brokers, errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK)
        goto fail;
    rd_kafka_conf_set(conf, "client.id", "recon-reporter-lag", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    for (size_t i = 0; r->svc->kafka_conf[i] && r->svc->kafka_conf[i + 1]; i += 2)
        if (rd_kafka_conf_set(conf, r->svc->kafka_conf[i], r->svc->kafka_conf[i + 1], errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK)
            goto fail;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk)
        return rk; /* conf owned by rk now */
fail:
    log_kv(LOG_LVL_WARN, "lag client not created", "reason", errstr, NULL);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void *checker_main(void *opaque)
{
    struct recon *r = opaque;
    rd_kafka_t *rk = meta_client_new(r);

    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        struct checks_result res;
        struct timespec until;
        char err[256] = "";

        pthread_mutex_unlock(&r->mu);
        if (recon_check_now(r, &res, err, sizeof(err)))
            log_kv(LOG_LVL_WARN, "checks failed", "reason", err, NULL);
        else if (res.raised || res.cleared) {
            char a[16], b[16];
            snprintf(a, sizeof(a), "%d", res.raised);
            snprintf(b, sizeof(b), "%d", res.cleared);
            log_kv(LOG_LVL_INFO, "checks ran", "raised", a, "cleared", b, NULL);
        }
        if (rk && watermarks_refresh(r, rk, err, sizeof(err)))
            log_kv(LOG_LVL_WARN, "consumer lag not measured", "reason", err, NULL);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += r->check_interval_ms / 1000;
        until.tv_nsec += (r->check_interval_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&r->mu);
        while (!r->stopping && pthread_cond_timedwait(&r->cond, &r->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&r->mu);
    if (rk)
        rd_kafka_destroy(rk);
    return NULL;
}

static void recon_free(struct recon *r)
{
    if (!r)
        return;
    if (r->checker_started) {
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->checker, NULL);
    }
    for (size_t i = 0; i < r->ntopics; i++)
        free(r->topics[i]);
    free(r->topics);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static int recon_start(struct service *svc, void **state, const struct http_route **routes,
                       size_t *nroutes, char *err, size_t errlen)
{
    struct recon *r = calloc(1, sizeof(*r));
    size_t nbase = 0;

    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->svc = svc;
    r->ingest.prefix = svc->topic_prefix ? svc->topic_prefix : "";
    r->ingest.producer = svc->producer;
    r->ingest.service = svc->spec->name;
    r->checks.deadline_s = recon_config.apply_deadline_s;
    r->checks.takings_tolerance = recon_config.takings_tolerance;
    r->checks.sku_side_grace_s = recon_config.sku_side_grace_s;
    r->check_interval_ms = recon_config.check_interval_ms;
    r->group_id = recon_config.group_id;
    r->session_timeout_ms = recon_config.session_timeout_ms;
    snprintf(r->last.ledger, sizeof(r->last.ledger), "not run yet");
    snprintf(r->last.sku_sides, sizeof(r->last.sku_sides), "not run yet");
    while (ingest_topics[nbase])
        nbase++;
    r->topics = calloc(2 * nbase, sizeof(*r->topics));
    if (!r->topics)
        goto oom;
    for (size_t i = 0; i < nbase; i++) {
        char name[256], dlq[300];
        if (service_topic(svc, ingest_topics[i], name, sizeof(name))) {
            snprintf(err, errlen, "TOPIC_PREFIX: topic name too long");
            recon_free(r);
            return -EINVAL;
        }
        snprintf(dlq, sizeof(dlq), "%s.dlq", name);
        r->topics[r->ntopics] = strdup(name);
        r->topics[r->ntopics + 1] = strdup(dlq);
        r->ntopics += 2;
        if (!r->topics[r->ntopics - 2] || !r->topics[r->ntopics - 1])
            goto oom;
    }
    if (pthread_create(&r->checker, NULL, checker_main, r)) {
        snprintf(err, errlen, "cannot start the checker thread");
        recon_free(r);
        return -EAGAIN;
    }
    r->checker_started = true;
    *routes = api_routes(r, nroutes);
    *state = r;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    recon_free(r);
    return -ENOMEM;
}

static int on_assign(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    struct recon *r = opaque;
    char err[256] = "";
    PGconn *conn;
    int rc;

    /* keep trying while running: without our offsets we must not start consuming */
    while (!(conn = pg_acquire(r->svc->pg, 5000, err, sizeof(err)))) {
        log_kv(LOG_LVL_WARN, "postgres unreachable, assignment waits", "reason", err, NULL);
        if (!service_running)
            return -1;
        sleep(1);
    }
    rc = ingest_load_offsets(conn, parts, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (rc)
        log_kv(LOG_LVL_ERROR, "offsets not loaded", "reason", err, NULL);
    return rc;
}

static int on_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct recon *r = opaque;
    char err[512] = "";
    PGconn *conn = pg_acquire(r->svc->pg, 5000, err, sizeof(err));
    int rc;

    if (!conn) {
        log_kv(LOG_LVL_WARN, "postgres unreachable, batch retried", "reason", err, NULL);
        return -EIO;
    }
    rc = ingest_batch(conn, &r->ingest, msgs, n, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (rc)
        log_kv(LOG_LVL_WARN, "batch not applied, retried", "reason", err, NULL);
    return rc;
}

static int recon_run(struct service *svc, void *state)
{
    struct recon *r = state;
    const char *conf[40];
    char session[32], heartbeat[32], err[256] = "";
    size_t n = 0;
    struct kafka_consumer *c;
    int rc;

    (void)svc;
    snprintf(session, sizeof(session), "%ld", r->session_timeout_ms);
    snprintf(heartbeat, sizeof(heartbeat), "%ld", r->session_timeout_ms / 12);
    for (size_t i = 0; r->svc->kafka_conf[i] && r->svc->kafka_conf[i + 1] && n + 6 < 40; i += 2) {
        conf[n++] = r->svc->kafka_conf[i];
        conf[n++] = r->svc->kafka_conf[i + 1];
    }
    conf[n++] = "session.timeout.ms";
    conf[n++] = session;
    conf[n++] = "heartbeat.interval.ms";
    conf[n++] = heartbeat;
    conf[n] = NULL;
    {
        struct kafka_consumer_opts opts = {
            .brokers = r->svc->kafka_brokers,
            .group_id = r->group_id,
            .topics = (const char *const *)r->topics,
            .ntopics = r->ntopics,
            .max_batch = 200,
            .batch_wait_ms = 50,
            .commit_offsets = false,
            .extra_conf = conf,
        };
        struct kafka_consumer_ops ops = {.on_assign = on_assign, .on_batch = on_batch};
        c = kafka_consumer_new(&opts, &ops, r, err, sizeof(err));
    }
    if (!c) {
        log_kv(LOG_LVL_ERROR, "consumer not created", "reason", err, NULL);
        return -EINVAL;
    }
    rc = kafka_consumer_run(c, &service_running);
    kafka_consumer_free(c);
    return rc;
}

static void recon_stop(struct service *svc, void *state)
{
    (void)svc;
    recon_free(state);
}

const struct service_hooks recon_hooks = {
    .start = recon_start,
    .run = recon_run,
    .stop = recon_stop,
};
