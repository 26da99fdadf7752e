/*
 * kafka — see kafka.h.
 *
 * Design notes.
 * Producer: one rd_kafka_t plus a thread calling rd_kafka_poll(), so delivery callbacks run on
 * that thread only. Nothing else polls: a full queue is waited out with short sleeps and flush
 * watches rd_kafka_outq_len() instead of calling rd_kafka_flush() (which would serve callbacks
 * on the caller's thread). Each record carries a heap "delivery" context freed by its report.
 * send_sync waits on a reference-counted struct sync_wait so that a report arriving after the
 * waiter timed out frees it safely.
 * Consumer: rd_kafka_consumer_poll() one record at a time into c->batch until max_batch or
 * batch_wait_ms after the first record; the rebalance callback (run inside that poll) drops
 * gathered records of revoked partitions, so a batch never holds records of a partition this
 * member no longer owns. Deferred: c->inflight keeps the first offsets of each batch on_batch
 * accepted but did not finish (up to opts.in_flight, oldest first); the next on_batch says how
 * the oldest ended, on_settle (idle, revoke, close) how all did, and a failure seeks back to the
 * earliest of them, together with anything gathered since.
 */
#include "kafka.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define QUEUE_FULL_WAIT_MS 5000
#define FREE_FLUSH_MS      10000
#define DLQ_TIMEOUT_MS     30000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000

struct kafka_producer {
    rd_kafka_t *rk;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
};

/* Per-record context of kafka_producer_send, freed by the delivery callback. */
struct delivery {
    kafka_delivery_cb cb;
    void *opaque;
};

/* Shared between a send_sync waiter and its delivery callback; freed by whichever of the two
 * drops the last reference. */
struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;
    int error;
    char errstr[256];
};

/* ---- shared helpers ------------------------------------------------------------------------ */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Map a librdkafka error to our negative errno. */
static int err_from_rd(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return -ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY:
        return -ECANCELED;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return -ENOBUFS;
    default:
        return -EIO;
    }
}

/* librdkafka's log lines (syslog levels) into our JSON log instead of stderr. */
static void on_rd_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const char *name = rd_kafka_name(rk);

    if (level <= 3)
        log_kv(LOG_LVL_ERROR, buf, "component", "librdkafka", "client", name, "facility", fac,
               NULL);
    else if (level == 4)
        log_kv(LOG_LVL_WARN, buf, "component", "librdkafka", "client", name, "facility", fac, NULL);
    else if (level <= 6)
        log_kv(LOG_LVL_INFO, buf, "component", "librdkafka", "client", name, "facility", fac, NULL);
    else
        log_kv(LOG_LVL_DEBUG, buf, "component", "librdkafka", "client", name, "facility", fac,
               NULL);
}

/* Apply NULL-terminated key/value pairs. Returns 0 or -EINVAL with err. */
static int conf_apply(rd_kafka_conf_t *conf, const char *const *kv, char *err, size_t errlen)
{
    char why[512];

    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1]) {
            set_err(err, errlen, "kafka setting %s has no value", kv[i]);
            return -EINVAL;
        }
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], why, sizeof(why)) != RD_KAFKA_CONF_OK) {
            set_err(err, errlen, "kafka setting %s: %s", kv[i], why);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- producer ------------------------------------------------------------------------------ */

static void sync_wait_unref(struct sync_wait *w)
{
    bool last;

    pthread_mutex_lock(&w->mu);
    last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
    }
}

static void sync_delivered(void *opaque, int error, const char *errstr, int32_t partition,
                           int64_t offset)
{
    struct sync_wait *w = opaque;

    (void)partition;
    (void)offset;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->error = error;
    snprintf(w->errstr, sizeof(w->errstr), "%s", errstr ? errstr : "");
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    sync_wait_unref(w);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct delivery *d = m->_private;

    (void)rk;
    (void)opaque;
    if (!d)
        return;
    if (d->cb)
        d->cb(d->opaque, err_from_rd(m->err), m->err ? rd_kafka_err2str(m->err) : "", m->partition,
              m->offset);
    free(d);
}

static void on_producer_error(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    char fatal[512];

    (void)opaque;
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        log_kv(LOG_LVL_ERROR, "kafka producer fatal error", "error", fatal, NULL);
        return;
    }
    /* Everything else is retried by librdkafka: informational. */
    log_kv(LOG_LVL_WARN, "kafka producer error", "error", rd_kafka_err2str(e), "reason", reason,
           NULL);
}

static void *producer_thread(void *arg)
{
    struct kafka_producer *p = arg;

    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

struct kafka_producer *kafka_producer_new(const char *brokers, const char *client_id,
                                          const char *const *extra_conf, char *err, size_t errlen)
{
    static const char *const defaults[] = {
        "enable.idempotence", "true",  "acks", "all", "linger.ms", "5",
        "message.timeout.ms", "30000", NULL};
    struct kafka_producer *p = NULL;
    rd_kafka_conf_t *conf = NULL;
    char why[512];

    if (!brokers || !*brokers) {
        set_err(err, errlen, "kafka producer: no brokers");
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        set_err(err, errlen, "kafka producer: out of memory");
        return NULL;
    }
    atomic_init(&p->stop, false);
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, why, sizeof(why)) ||
        (client_id && rd_kafka_conf_set(conf, "client.id", client_id, why, sizeof(why)))) {
        set_err(err, errlen, "kafka producer: %s", why);
        goto out_fail;
    }
    if (conf_apply(conf, defaults, err, errlen) || conf_apply(conf, extra_conf, err, errlen))
        goto out_fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_producer_error);
    rd_kafka_conf_set_log_cb(conf, on_rd_log);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!p->rk) {
        set_err(err, errlen, "kafka producer: %s", why);
        goto out_fail;
    }
    conf = NULL; /* owned by rk now */
    if (pthread_create(&p->thread, NULL, producer_thread, p) != 0) {
        set_err(err, errlen, "kafka producer: cannot start the delivery thread");
        goto out_fail;
    }
    p->thread_started = true;
    return p;

out_fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    kafka_producer_free(p);
    return NULL;
}

/* Build the header set of a record. Returns NULL with err on a missing CE attribute. */
static rd_kafka_headers_t *headers_build(const struct ce_headers *ce,
                                         const struct kafka_header *extra, size_t nextra, char *err,
                                         size_t errlen)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(8 + nextra);
    char now[40];

    if (ce) {
        const char *time = ce->time;
        if (!ce->id || !*ce->id || !ce->source || !*ce->source || !ce->type || !*ce->type) {
            set_err(err, errlen, "kafka send: CloudEvents id, source and type are required");
            rd_kafka_headers_destroy(h);
            return NULL;
        }
        if (!time) {
            if (clock_format_rfc3339(clock_now_ms(), now, sizeof(now)) != 0)
                now[0] = '\0';
            time = now;
        }
        rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
        rd_kafka_header_add(h, "ce_id", -1, ce->id, -1);
        rd_kafka_header_add(h, "ce_source", -1, ce->source, -1);
        rd_kafka_header_add(h, "ce_type", -1, ce->type, -1);
        rd_kafka_header_add(h, "ce_time", -1, time, -1);
        rd_kafka_header_add(h, "content-type", -1, "application/protobuf", -1);
        if (ce->subject)
            rd_kafka_header_add(h, "ce_subject", -1, ce->subject, -1);
    }
    for (size_t i = 0; i < nextra; i++) {
        if (!extra[i].name) {
            set_err(err, errlen, "kafka send: header %zu has no name", i);
            rd_kafka_headers_destroy(h);
            return NULL;
        }
        rd_kafka_header_add(h, extra[i].name, -1, extra[i].value, (ssize_t)extra[i].len);
    }
    return h;
}

int kafka_producer_send(struct kafka_producer *p, const char *topic, const void *key, size_t keylen,
                        const void *payload, size_t len, const struct ce_headers *ce,
                        const struct kafka_header *extra, size_t nextra, kafka_delivery_cb cb,
                        void *opaque, char *err, size_t errlen)
{
    rd_kafka_headers_t *h = NULL;
    struct delivery *d = NULL;
    rd_kafka_resp_err_t e;
    int64_t deadline;
    int rc;

    if (!p || !topic || !*topic || (nextra && !extra)) {
        set_err(err, errlen, "kafka send: bad arguments");
        return -EINVAL;
    }
    h = headers_build(ce, extra, nextra, err, errlen);
    if (!h)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (!d) {
        rd_kafka_headers_destroy(h);
        set_err(err, errlen, "kafka send: out of memory");
        return -ENOMEM;
    }
    d->cb = cb;
    d->opaque = opaque;
    deadline = clock_mono_ms() + QUEUE_FULL_WAIT_MS;
    for (;;) {
        e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY((void *)key, key ? keylen : 0),
            RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || clock_mono_ms() >= deadline)
            break;
        /* the delivery thread drains the queue; just wait for room */
        sleep_ms(10);
    }
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0; /* h and d are owned by librdkafka / the delivery callback now */
    rc = err_from_rd(e);
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[256];
        rd_kafka_fatal_error(p->rk, fatal, sizeof(fatal));
        set_err(err, errlen, "kafka send to %s: fatal producer error: %s", topic, fatal);
    } else {
        set_err(err, errlen, "kafka send to %s: %s", topic, rd_kafka_err2str(e));
    }
    rd_kafka_headers_destroy(h);
    free(d);
    return rc;
}

int kafka_producer_send_sync(struct kafka_producer *p, const char *topic, const void *key,
                             size_t keylen, const void *payload, size_t len,
                             const struct ce_headers *ce, const struct kafka_header *extra,
                             size_t nextra, int timeout_ms, char *err, size_t errlen)
{
    struct sync_wait *w = calloc(1, sizeof(*w));
    pthread_condattr_t ca;
    struct timespec until;
    int rc;

    if (!w) {
        set_err(err, errlen, "kafka send: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    w->refs = 2; /* the waiter and the delivery callback */

    rc = kafka_producer_send(p, topic, key, keylen, payload, len, ce, extra, nextra, sync_delivered,
                             w, err, errlen);
    if (rc != 0) {
        w->refs = 1; /* the callback will never run */
        sync_wait_unref(w);
        return rc;
    }

    if (timeout_ms < 0)
        timeout_ms = 0;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT)
            break;
    }
    if (!w->done) {
        rc = -ETIMEDOUT;
        set_err(err, errlen, "kafka send to %s: no delivery report within %d ms", topic,
                timeout_ms);
    } else if (w->error) {
        rc = w->error;
        set_err(err, errlen, "kafka send to %s: %s", topic, w->errstr);
    }
    pthread_mutex_unlock(&w->mu);
    sync_wait_unref(w);
    return rc;
}

int kafka_producer_flush(struct kafka_producer *p, int timeout_ms)
{
    int64_t deadline;

    if (!p)
        return 0;
    deadline = clock_mono_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    while (rd_kafka_outq_len(p->rk) > 0) {
        if (clock_mono_ms() >= deadline)
            return -ETIMEDOUT;
        sleep_ms(5);
    }
    return 0;
}

bool kafka_producer_fatal(struct kafka_producer *p, char *err, size_t errlen)
{
    char buf[512];

    if (!p || !p->rk)
        return false;
    if (rd_kafka_fatal_error(p->rk, buf, sizeof(buf)) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    set_err(err, errlen, "%s", buf);
    return true;
}

int kafka_producer_ping(struct kafka_producer *p, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e;

    if (!p)
        return -EINVAL;
    /* all_topics=0 and no topic: asks a broker for the broker list only */
    e = rd_kafka_metadata(p->rk, 0, NULL, &md, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -EIO;
    rd_kafka_metadata_destroy(md);
    return 0;
}

void kafka_producer_free(struct kafka_producer *p)
{
    if (!p)
        return;
    if (p->rk && p->thread_started)
        kafka_producer_flush(p, FREE_FLUSH_MS);
    if (p->thread_started) {
        atomic_store(&p->stop, true);
        pthread_join(p->thread, NULL);
    }
    if (p->rk) {
        /* Fail what is left so every delivery context is released by its callback. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        for (int i = 0; i < 100 && rd_kafka_outq_len(p->rk) > 0; i++)
            rd_kafka_poll(p->rk, 50);
        rd_kafka_destroy(p->rk);
    }
    free(p);
}

int kafka_topic_name(const char *prefix, const char *base, char *out, size_t outcap)
{
    int n;

    if (!base || !*base || !out)
        return -EINVAL;
    n = snprintf(out, outcap, "%s%s", prefix ? prefix : "", base);
    if (n < 0 || (size_t)n >= outcap)
        return -ENOSPC;
    return 0;
}

/* ---- consumer ------------------------------------------------------------------------------ */

struct kafka_consumer {
    rd_kafka_t *rk;
    struct kafka_consumer_ops ops;
    void *opaque;
    int max_batch;
    int batch_wait_ms;
    bool commit_offsets;
    bool deferred;
    bool closed;
    bool fatal; /* set by the rebalance callback when on_assign failed */
    /* deferred: first offset per partition of each batch in flight, oldest first (at most
     * in_flight); settle_failed: on_settle reported a failure inside the rebalance callback,
     * the run loop seeks back to inflight */
    rd_kafka_topic_partition_list_t *inflight[KAFKA_IN_FLIGHT_MAX];
    int ninflight, in_flight;
    bool settle_failed;
    rd_kafka_message_t **batch; /* records gathered, max_batch slots */
    size_t nbatch;
    struct kafka_message *msgs; /* views of batch for on_batch */
};

static void inflight_clear(struct kafka_consumer *c)
{
    for (int i = 0; i < c->ninflight; i++)
        rd_kafka_topic_partition_list_destroy(c->inflight[i]);
    c->ninflight = 0;
}

/* A batch was accepted: keep its first offsets; the oldest kept is done when in_flight are. */
static void inflight_push(struct kafka_consumer *c, rd_kafka_topic_partition_list_t *firsts)
{
    if (c->ninflight == c->in_flight) {
        rd_kafka_topic_partition_list_destroy(c->inflight[0]);
        memmove(&c->inflight[0], &c->inflight[1],
                (size_t)(c->ninflight - 1) * sizeof(c->inflight[0]));
        c->ninflight--;
    }
    c->inflight[c->ninflight++] = firsts;
}

/* Drop gathered records of the given partitions (they are being revoked). */
static void batch_drop_partitions(struct kafka_consumer *c,
                                  const rd_kafka_topic_partition_list_t *parts)
{
    size_t keep = 0;

    for (size_t i = 0; i < c->nbatch; i++) {
        rd_kafka_message_t *m = c->batch[i];
        if (rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt), m->partition)) {
            rd_kafka_message_destroy(m);
            continue;
        }
        c->batch[keep++] = m;
    }
    c->nbatch = keep;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kafka_consumer *c = opaque;
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t ae = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (c->ops.on_assign && c->ops.on_assign(c->opaque, parts) != 0) {
            log_kv(LOG_LVL_ERROR, "kafka consumer: on_assign failed, stopping", NULL);
            c->fatal = true;
            /* take nothing: the run loop ends and closes */
            if (!cooperative)
                rd_kafka_assign(rk, NULL);
            return;
        }
        if (cooperative)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            ae = rd_kafka_assign(rk, parts);
        log_kv(LOG_LVL_INFO, "kafka consumer: partitions assigned", "protocol",
               cooperative ? "cooperative" : "eager", NULL);
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool lost = rd_kafka_assignment_lost(rk) != 0;
        /* the batch in flight ends before its partitions go; if it failed, the run loop seeks
         * back to it (partitions still ours) and drops what was gathered after it */
        if (c->ninflight && !c->settle_failed) {
            if (c->ops.on_settle(c->opaque) == 0)
                inflight_clear(c);
            else
                c->settle_failed = true;
        }
        batch_drop_partitions(c, parts);
        if (c->commit_offsets && !lost) {
            /* commit what was processed now, so the next owner does not redo it */
            rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
            if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
                log_kv(LOG_LVL_WARN, "kafka consumer: commit on revoke failed", "error",
                       rd_kafka_err2str(ce), NULL);
        }
        if (c->ops.on_revoke)
            c->ops.on_revoke(c->opaque, parts, lost);
        if (cooperative)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            ae = rd_kafka_assign(rk, NULL);
        log_kv(LOG_LVL_INFO, "kafka consumer: partitions revoked", "lost", lost ? "true" : "false",
               NULL);
    } else {
        log_kv(LOG_LVL_WARN, "kafka consumer: rebalance error", "error", rd_kafka_err2str(e), NULL);
        rd_kafka_assign(rk, NULL);
    }
    if (error) {
        log_kv(LOG_LVL_WARN, "kafka consumer: incremental (un)assign failed", "error",
               rd_kafka_error_string(error), NULL);
        rd_kafka_error_destroy(error);
    }
    if (ae)
        log_kv(LOG_LVL_WARN, "kafka consumer: assign failed", "error", rd_kafka_err2str(ae), NULL);
}

struct kafka_consumer *kafka_consumer_new(const struct kafka_consumer_opts *opts,
                                          const struct kafka_consumer_ops *ops, void *opaque,
                                          char *err, size_t errlen)
{
    struct kafka_consumer *c = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    rd_kafka_resp_err_t e;
    char why[512];

    if (!opts || !opts->brokers || !*opts->brokers || !opts->group_id || !*opts->group_id ||
        !opts->topics || opts->ntopics == 0) {
        set_err(err, errlen, "kafka consumer: brokers, group_id and topics are required");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        goto out_nomem;
    if (ops)
        c->ops = *ops;
    c->opaque = opaque;
    c->max_batch = opts->max_batch > 0 ? opts->max_batch : 100;
    c->batch_wait_ms = opts->batch_wait_ms >= 0 ? opts->batch_wait_ms : 100;
    c->commit_offsets = opts->commit_offsets;
    c->deferred = opts->deferred;
    c->in_flight = opts->in_flight > 0 ? opts->in_flight : 1;
    if (c->deferred && (c->commit_offsets || !c->ops.on_settle)) {
        set_err(err, errlen, "kafka consumer: deferred needs on_settle and commit_offsets off");
        goto out_fail;
    }
    if (c->in_flight > KAFKA_IN_FLIGHT_MAX) {
        set_err(err, errlen, "kafka consumer: in_flight above %d", KAFKA_IN_FLIGHT_MAX);
        goto out_fail;
    }
    c->batch = calloc((size_t)c->max_batch, sizeof(*c->batch));
    c->msgs = calloc((size_t)c->max_batch, sizeof(*c->msgs));
    if (!c->batch || !c->msgs)
        goto out_nomem;

    {
        const char *const defaults[] = {"bootstrap.servers",
                                        opts->brokers,
                                        "group.id",
                                        opts->group_id,
                                        "enable.auto.offset.store",
                                        "false",
                                        "enable.auto.commit",
                                        opts->commit_offsets ? "true" : "false",
                                        "auto.offset.reset",
                                        "earliest",
                                        "partition.assignment.strategy",
                                        "cooperative-sticky",
                                        NULL};
        conf = rd_kafka_conf_new();
        if (conf_apply(conf, defaults, err, errlen) ||
            conf_apply(conf, opts->extra_conf, err, errlen))
            goto out_fail;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_log_cb(conf, on_rd_log);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!c->rk) {
        set_err(err, errlen, "kafka consumer: %s", why);
        goto out_fail;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(c->rk);

    subs = rd_kafka_topic_partition_list_new((int)opts->ntopics);
    for (size_t i = 0; i < opts->ntopics; i++) {
        if (!opts->topics[i] || !*opts->topics[i]) {
            set_err(err, errlen, "kafka consumer: topic %zu is empty", i);
            goto out_fail;
        }
        rd_kafka_topic_partition_list_add(subs, opts->topics[i], RD_KAFKA_PARTITION_UA);
    }
    e = rd_kafka_subscribe(c->rk, subs);
    if (e) {
        set_err(err, errlen, "kafka consumer: subscribe: %s", rd_kafka_err2str(e));
        goto out_fail;
    }
    rd_kafka_topic_partition_list_destroy(subs);
    return c;

out_nomem:
    set_err(err, errlen, "kafka consumer: out of memory");
out_fail:
    if (subs)
        rd_kafka_topic_partition_list_destroy(subs);
    if (conf)
        rd_kafka_conf_destroy(conf);
    kafka_consumer_free(c);
    return NULL;
}

/* Copy header name's last value as a C string into out ("" when absent). */
static void header_copy(const rd_kafka_message_t *m, const char *name, char *out, size_t outcap)
{
    rd_kafka_headers_t *h = NULL;
    const void *val = NULL;
    size_t size = 0;

    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (rd_kafka_header_get_last(h, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || !val)
        return;
    if (size >= outcap)
        size = outcap - 1;
    memcpy(out, val, size);
    out[size] = '\0';
}

static void message_view(const rd_kafka_message_t *m, struct kafka_message *out)
{
    rd_kafka_timestamp_type_t tstype;

    out->topic = rd_kafka_topic_name(m->rkt);
    out->partition = m->partition;
    out->offset = m->offset;
    out->key = m->key;
    out->keylen = m->key_len;
    out->payload = m->payload;
    out->len = m->len;
    out->timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
    header_copy(m, "ce_id", out->ce_id, sizeof(out->ce_id));
    header_copy(m, "ce_type", out->ce_type, sizeof(out->ce_type));
    out->raw = m;
}

/* Set (topic, partition) in list to offset, keeping the lowest (first) or highest (last). */
static void list_note(rd_kafka_topic_partition_list_t *list, const char *topic, int32_t part,
                      int64_t offset, bool lowest)
{
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(list, topic, part);

    if (!tp) {
        rd_kafka_topic_partition_list_add(list, topic, part)->offset = offset;
        return;
    }
    if (lowest ? offset < tp->offset : offset > tp->offset)
        tp->offset = offset;
}

/* After a successful batch: store next offsets for commit. */
static void batch_store(struct kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t e;

    if (!c->commit_offsets)
        return;
    list = rd_kafka_topic_partition_list_new((int)c->nbatch);
    for (size_t i = 0; i < c->nbatch; i++) {
        const rd_kafka_message_t *m = c->batch[i];
        list_note(list, rd_kafka_topic_name(m->rkt), m->partition, m->offset + 1, false);
    }
    e = rd_kafka_offsets_store(c->rk, list);
    if (e)
        log_kv(LOG_LVL_WARN, "kafka consumer: storing offsets failed", "error", rd_kafka_err2str(e),
               NULL);
    rd_kafka_topic_partition_list_destroy(list);
}

/* First offset per partition of the gathered batch (a new list). */
static rd_kafka_topic_partition_list_t *batch_firsts(struct kafka_consumer *c)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)c->nbatch);

    for (size_t i = 0; i < c->nbatch; i++) {
        const rd_kafka_message_t *m = c->batch[i];
        list_note(list, rd_kafka_topic_name(m->rkt), m->partition, m->offset, true);
    }
    return list;
}

/*
 * After a failed batch: seek every partition back to its first record of the batch, or, with
 * with_inflight, of the batches in flight before it when one of those is earlier (they are
 * redelivered too). A partition no longer assigned fails to seek (logged): its next owner
 * starts from what was stored. Clears the batches in flight either way.
 */
static void batch_rewind(struct kafka_consumer *c, bool with_inflight)
{
    rd_kafka_topic_partition_list_t *list = batch_firsts(c);
    rd_kafka_error_t *error;

    for (int b = 0; with_inflight && b < c->ninflight; b++)
        for (int i = 0; i < c->inflight[b]->cnt; i++)
            list_note(list, c->inflight[b]->elems[i].topic, c->inflight[b]->elems[i].partition,
                      c->inflight[b]->elems[i].offset, true);
    inflight_clear(c);
    if (list->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(list);
        return;
    }
    error = rd_kafka_seek_partitions(c->rk, list, 5000);
    if (error) {
        log_kv(LOG_LVL_WARN, "kafka consumer: seek back failed", "error",
               rd_kafka_error_string(error), NULL);
        rd_kafka_error_destroy(error);
    }
    for (int i = 0; i < list->cnt; i++) {
        if (list->elems[i].err)
            log_kv(LOG_LVL_WARN, "kafka consumer: seek back failed", "topic", list->elems[i].topic,
                   "error", rd_kafka_err2str(list->elems[i].err), NULL);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void batch_clear(struct kafka_consumer *c)
{
    for (size_t i = 0; i < c->nbatch; i++)
        rd_kafka_message_destroy(c->batch[i]);
    c->nbatch = 0;
}

/* Sleep ms in slices, returning early when *running is cleared. */
static void backoff_sleep(int ms, volatile sig_atomic_t *running)
{
    while (ms > 0 && *running) {
        int slice = ms < 50 ? ms : 50;
        sleep_ms(slice);
        ms -= slice;
    }
}

/* Handle one polled record: keep it in the batch, or deal with an error event.
 * Returns -EIO on a fatal consumer error, else 0. */
static int consumer_take(struct kafka_consumer *c, rd_kafka_message_t *m)
{
    char fatal[512];

    if (!m->err) {
        c->batch[c->nbatch++] = m;
        return 0;
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(c->rk, fatal, sizeof(fatal));
        log_kv(LOG_LVL_ERROR, "kafka consumer fatal error", "error", fatal, NULL);
        rd_kafka_message_destroy(m);
        return -EIO;
    }
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        log_kv(LOG_LVL_WARN, "kafka consumer error", "error", rd_kafka_message_errstr(m), "topic",
               m->rkt ? rd_kafka_topic_name(m->rkt) : NULL, NULL);
    rd_kafka_message_destroy(m);
    return 0;
}

/* Gather one batch: wait up to 100 ms for a first record, then up to batch_wait_ms more. */
static int batch_gather(struct kafka_consumer *c, volatile sig_atomic_t *running)
{
    int64_t deadline = 0;

    while (*running && !c->fatal && c->nbatch < (size_t)c->max_batch) {
        int wait = 100;
        rd_kafka_message_t *m;

        if (c->nbatch > 0) {
            int64_t left = deadline - clock_mono_ms();
            if (left <= 0)
                break;
            wait = left < 100 ? (int)left : 100;
        }
        m = rd_kafka_consumer_poll(c->rk, wait);
        if (c->settle_failed) {
            /* what was gathered follows the failed batch: the run loop drops it */
            if (m)
                rd_kafka_message_destroy(m);
            return 0;
        }
        if (!m) {
            if (c->nbatch == 0)
                return 0; /* nothing yet: let the caller check *running */
            continue;
        }
        if (consumer_take(c, m) != 0)
            return -EIO;
        if (c->nbatch == 1 && deadline == 0)
            deadline = clock_mono_ms() + c->batch_wait_ms;
    }
    return 0;
}

static void consumer_close(struct kafka_consumer *c)
{
    rd_kafka_resp_err_t e;

    if (c->closed || !c->rk)
        return;
    batch_clear(c);
    if (c->commit_offsets) {
        e = rd_kafka_commit(c->rk, NULL, 0);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            log_kv(LOG_LVL_WARN, "kafka consumer: final commit failed", "error",
                   rd_kafka_err2str(e), NULL);
    }
    e = rd_kafka_consumer_close(c->rk);
    if (e)
        log_kv(LOG_LVL_WARN, "kafka consumer: close", "error", rd_kafka_err2str(e), NULL);
    c->closed = true;
}

/* The in-flight batch failed: seek back to it and to what was gathered after it (dropped),
 * then back off. */
static void inflight_failed(struct kafka_consumer *c, volatile sig_atomic_t *running, int *backoff)
{
    batch_rewind(c, true);
    batch_clear(c);
    c->settle_failed = false;
    log_kv(LOG_LVL_WARN, "kafka consumer: batch failed, redelivering after backoff", NULL);
    backoff_sleep(*backoff, running);
    *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
}

int kafka_consumer_run(struct kafka_consumer *c, volatile sig_atomic_t *running)
{
    int backoff = BACKOFF_MIN_MS;
    int rc = 0;

    if (!c || !running)
        return -EINVAL;
    while (*running && !c->fatal) {
        if (batch_gather(c, running) != 0) {
            rc = -EIO;
            break;
        }
        if (c->settle_failed) {
            inflight_failed(c, running, &backoff);
            continue;
        }
        if (c->nbatch == 0 && c->ninflight) {
            /* nothing came: finish the batch in flight rather than leave it pending */
            if (c->ops.on_settle(c->opaque) == 0)
                inflight_clear(c);
            else
                inflight_failed(c, running, &backoff);
            continue;
        }
        if (c->nbatch == 0 || c->fatal)
            continue;
        for (size_t i = 0; i < c->nbatch; i++)
            message_view(c->batch[i], &c->msgs[i]);
        int brc = c->ops.on_batch ? c->ops.on_batch(c->opaque, c->msgs, c->nbatch) : 0;
        if (brc >= 0) {
            batch_store(c);
            if (c->deferred)
                inflight_push(c, batch_firsts(c)); /* in flight until settled */
            backoff = BACKOFF_MIN_MS;
        } else {
            batch_rewind(c, brc == KAFKA_PREVIOUS_FAILED);
            log_kv(LOG_LVL_WARN, "kafka consumer: batch failed, redelivering after backoff", NULL);
            backoff_sleep(backoff, running);
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
        batch_clear(c);
    }
    /* the batch in flight ends before the consumer leaves the group */
    if (c->ninflight && !c->settle_failed && c->ops.on_settle(c->opaque) != 0)
        log_kv(LOG_LVL_WARN, "kafka consumer: last batch failed, redelivered after restart", NULL);
    inflight_clear(c);
    if (c->fatal)
        rc = -EIO;
    consumer_close(c);
    return rc;
}

void kafka_consumer_free(struct kafka_consumer *c)
{
    if (!c)
        return;
    if (c->rk) {
        consumer_close(c);
        rd_kafka_destroy(c->rk);
    }
    inflight_clear(c);
    free(c->batch);
    free(c->msgs);
    free(c);
}

/* ---- dead letters -------------------------------------------------------------------------- */

/* Fill h with a text header (NULL value = ""). Returns 1, the number of headers written. */
static size_t hdr_text(struct kafka_header *h, const char *name, const char *value)
{
    if (!value)
        value = "";
    *h = (struct kafka_header){name, value, strlen(value)};
    return 1;
}

int kafka_dead_letter(struct kafka_producer *p, const char *dlq_topic,
                      const struct kafka_message *msg, const char *error_code,
                      const char *error_message, const char *service, char *err, size_t errlen)
{
    const rd_kafka_message_t *raw;
    rd_kafka_headers_t *orig = NULL;
    struct kafka_header *hdrs = NULL;
    size_t norig = 0, n = 0;
    char part[16], off[24], now[40];
    int rc;

    if (!p || !dlq_topic || !msg) {
        set_err(err, errlen, "kafka dead letter: bad arguments");
        return -EINVAL;
    }
    raw = msg->raw;
    if (raw && rd_kafka_message_headers(raw, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR)
        norig = rd_kafka_header_cnt(orig);
    hdrs = calloc(norig + 7, sizeof(*hdrs));
    if (!hdrs) {
        set_err(err, errlen, "kafka dead letter: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < norig; i++) {
        const char *name;
        const void *val;
        size_t size;
        if (rd_kafka_header_get_all(orig, i, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        hdrs[n++] = (struct kafka_header){name, val, val ? size : 0};
    }
    snprintf(part, sizeof(part), "%d", (int)msg->partition);
    snprintf(off, sizeof(off), "%lld", (long long)msg->offset);
    if (clock_format_rfc3339(clock_now_ms(), now, sizeof(now)) != 0)
        now[0] = '\0';
    n += hdr_text(&hdrs[n], "dlq_error_code", error_code);
    n += hdr_text(&hdrs[n], "dlq_error_message", error_message);
    n += hdr_text(&hdrs[n], "dlq_original_topic", msg->topic);
    n += hdr_text(&hdrs[n], "dlq_original_partition", part);
    n += hdr_text(&hdrs[n], "dlq_original_offset", off);
    n += hdr_text(&hdrs[n], "dlq_failed_at", now);
    n += hdr_text(&hdrs[n], "dlq_service", service);
    rc = kafka_producer_send_sync(p, dlq_topic, msg->key, msg->keylen, msg->payload, msg->len, NULL,
                                  hdrs, n, DLQ_TIMEOUT_MS, err, errlen);
    free(hdrs);
    return rc;
}
