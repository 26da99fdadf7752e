/*
 * Integration tests of services/common/kafka against the local stack's mock cluster
 * (KAFKA_BROKERS; KAFKA_MOCK_CONTROL for fault injection). Every test uses its own topics and
 * consumer groups (named with the pid), so runs in one stack do not see each other's records.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "clock.h"
#include "kafka.h"

#define MAX_SEEN 64

static const char *brokers;

/* Consumer settings for the mock: a short session so a restarted member is not held back by the
 * previous one (the 2.0.2 mock group coordinator may miss a LeaveGroup). */
static const char *const consumer_conf[] = {"session.timeout.ms", "6000", "heartbeat.interval.ms",
                                            "500", NULL};

/* ---- helpers --------------------------------------------------------------------------------- */

static void name_make(char *out, size_t cap, const char *what)
{
    snprintf(out, cap, "test.kafka.%ld.%s", (long)getpid(), what);
}

/* Send one line to the kafka-mock control port; returns 0 when it answered "ok". */
static int mock_control(const char *fmt, ...)
{
    const char *addr = getenv("KAFKA_MOCK_CONTROL");
    char line[512], answer[512] = "";
    struct sockaddr_in sa = {0};
    const char *colon;
    va_list ap;
    int fd, rc = -1;
    size_t got = 0;

    if (!addr || !(colon = strrchr(addr, ':')))
        return -1;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    strncat(line, "\n", sizeof(line) - strlen(line) - 1);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)strtol(colon + 1, NULL, 10));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        write(fd, line, strlen(line)) == (ssize_t)strlen(line)) {
        while (got < sizeof(answer) - 1) {
            ssize_t n = read(fd, answer + got, sizeof(answer) - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            if (memchr(answer, '\n', got))
                break;
        }
        answer[got] = '\0';
        rc = strncmp(answer, "ok", 2) == 0 ? 0 : -1;
    }
    close(fd);
    return rc;
}

/* Create topic with partitions through the control port, or let the producer auto-create it. */
static void topic_prepare(const char *topic, int partitions)
{
    if (getenv("KAFKA_MOCK_CONTROL"))
        assert_int_equal(mock_control("create-topic %s %d", topic, partitions), 0);
}

static struct kafka_producer *producer_make(void)
{
    char err[256] = "";
    struct kafka_producer *p = kafka_producer_new(brokers, "test-kafka", NULL, err, sizeof(err));
    if (!p)
        fail_msg("kafka_producer_new: %s", err);
    return p;
}

static void produce_n(struct kafka_producer *p, const char *topic, int from, int n)
{
    char err[256], id[160], key[32], payload[64];

    for (int i = from; i < from + n; i++) {
        snprintf(id, sizeof(id), "evt-%s-%d", topic, i);
        snprintf(key, sizeof(key), "key-%d", i % 3);
        snprintf(payload, sizeof(payload), "payload-%d", i);
        struct ce_headers ce = {.id = id, .source = "test/kafka", .type = "tillsync.test.v1"};
        struct kafka_header extra = {"x-test", "yes", 3};
        int rc = kafka_producer_send_sync(p, topic, key, strlen(key), payload, strlen(payload), &ce,
                                          &extra, 1, 10000, err, sizeof(err));
        if (rc != 0)
            fail_msg("send_sync %s #%d: %d %s", topic, i, rc, err);
    }
}

/* Stops a run loop after a deadline, so a broken consumer fails the test instead of hanging. */
struct watchdog {
    pthread_t thread;
    volatile sig_atomic_t *running;
    int ms;
    volatile int fired;
    volatile int cancel;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *w = arg;
    for (int t = 0; t < w->ms && !w->cancel; t += 50)
        usleep(50000);
    if (!w->cancel) {
        w->fired = 1;
        *w->running = 0;
    }
    return NULL;
}

static void watchdog_start(struct watchdog *w, volatile sig_atomic_t *running, int ms)
{
    w->running = running;
    w->ms = ms;
    w->fired = 0;
    w->cancel = 0;
    assert_int_equal(pthread_create(&w->thread, NULL, watchdog_main, w), 0);
}

static int watchdog_stop(struct watchdog *w)
{
    w->cancel = 1;
    pthread_join(w->thread, NULL);
    return w->fired;
}

/* What a test's batch handler saw. */
struct seen {
    volatile sig_atomic_t running;
    int want;       /* stop once this many records were accepted */
    int fail_first; /* return -1 for this many batches */
    int calls;
    int accepted;
    int64_t first_offsets[16]; /* first offset of each on_batch call */
    size_t batch_sizes[16];
    int64_t offsets[MAX_SEEN];
    char ce_ids[MAX_SEEN][128];
    char payloads[MAX_SEEN][64];
    bool headers_ok[MAX_SEEN];
    int64_t assign_offset; /* on_assign sets this offset when >= 0 */
    int assigned;
    int revoked;
};

static bool header_is(const void *raw, const char *name, const char *want)
{
    rd_kafka_headers_t *h = NULL;
    const void *val = NULL;
    size_t size = 0;

    if (rd_kafka_message_headers(raw, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    if (rd_kafka_header_get_last(h, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    return size == strlen(want) && memcmp(val, want, size) == 0;
}

static int seen_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct seen *s = opaque;

    if (s->calls < 16) {
        s->first_offsets[s->calls] = msgs[0].offset;
        s->batch_sizes[s->calls] = n;
    }
    s->calls++;
    if (s->fail_first > 0) {
        s->fail_first--;
        return -1;
    }
    for (size_t i = 0; i < n && s->accepted < MAX_SEEN; i++) {
        int k = s->accepted++;
        s->offsets[k] = msgs[i].offset;
        snprintf(s->ce_ids[k], sizeof(s->ce_ids[k]), "%s", msgs[i].ce_id);
        snprintf(s->payloads[k], sizeof(s->payloads[k]), "%.*s", (int)msgs[i].len,
                 (const char *)msgs[i].payload);
        s->headers_ok[k] = header_is(msgs[i].raw, "ce_specversion", "1.0") &&
                           header_is(msgs[i].raw, "content-type", "application/protobuf") &&
                           header_is(msgs[i].raw, "ce_source", "test/kafka") &&
                           header_is(msgs[i].raw, "x-test", "yes") &&
                           strcmp(msgs[i].ce_type, "tillsync.test.v1") == 0;
    }
    if (s->accepted >= s->want)
        s->running = 0;
    return 0;
}

static int seen_assign(void *opaque, rd_kafka_topic_partition_list_t *parts)
{
    struct seen *s = opaque;
    s->assigned += parts->cnt;
    if (s->assign_offset >= 0)
        for (int i = 0; i < parts->cnt; i++)
            parts->elems[i].offset = s->assign_offset;
    return 0;
}

static void seen_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts, bool lost)
{
    struct seen *s = opaque;
    (void)lost;
    s->revoked += parts->cnt;
}

/* Run a consumer of topic in group until s->want records were accepted (or 60 s). */
static void consume(const char *topic, const char *group, struct seen *s, int max_batch,
                    bool commit)
{
    const char *topics[] = {topic};
    struct kafka_consumer_opts o = {.brokers = brokers,
                                    .group_id = group,
                                    .topics = topics,
                                    .ntopics = 1,
                                    .max_batch = max_batch,
                                    .batch_wait_ms = 200,
                                    .commit_offsets = commit,
                                    .extra_conf = consumer_conf};
    struct kafka_consumer_ops ops = {
        .on_assign = seen_assign, .on_revoke = seen_revoke, .on_batch = seen_batch};
    struct watchdog w;
    char err[256] = "";
    struct kafka_consumer *c = kafka_consumer_new(&o, &ops, s, err, sizeof(err));

    if (!c)
        fail_msg("kafka_consumer_new: %s", err);
    s->running = 1;
    watchdog_start(&w, &s->running, 60000);
    assert_int_equal(kafka_consumer_run(c, &s->running), 0);
    if (watchdog_stop(&w))
        fail_msg("consumer of %s saw %d of %d records within 60 s", topic, s->accepted, s->want);
    kafka_consumer_free(c);
}

static void seen_init(struct seen *s, int want)
{
    memset(s, 0, sizeof(*s));
    s->want = want;
    s->assign_offset = -1;
}

/* ---- tests ----------------------------------------------------------------------------------- */

/* send_sync then consume: every record arrives with its CloudEvents headers and ce_id. */
static void test_roundtrip_headers(void **state)
{
    char topic[128], group[128], id[160];
    struct kafka_producer *p = producer_make();
    struct seen s;

    (void)state;
    name_make(topic, sizeof(topic), "roundtrip");
    name_make(group, sizeof(group), "g-roundtrip");
    topic_prepare(topic, 3);
    produce_n(p, topic, 0, 6);
    assert_int_equal(kafka_producer_flush(p, 5000), 0);

    seen_init(&s, 6);
    consume(topic, group, &s, 100, true);
    assert_int_equal(s.accepted, 6);
    assert_true(s.assigned >= 1);
    for (int i = 0; i < 6; i++) {
        bool found = false;
        assert_true(s.headers_ok[i]);
        snprintf(id, sizeof(id), "evt-%s-%d", topic, i);
        for (int k = 0; k < 6; k++)
            found = found || strcmp(s.ce_ids[k], id) == 0;
        if (!found)
            fail_msg("ce_id %s not consumed", id);
    }
    kafka_producer_free(p);
}

/* A batch handler failing transiently gets the very same records again, nothing skipped. */
static void test_failed_batch_redelivered(void **state)
{
    char topic[128], group[128];
    struct kafka_producer *p = producer_make();
    struct seen s;

    (void)state;
    name_make(topic, sizeof(topic), "retry");
    name_make(group, sizeof(group), "g-retry");
    topic_prepare(topic, 1);
    produce_n(p, topic, 0, 5);

    seen_init(&s, 5);
    s.fail_first = 2;
    consume(topic, group, &s, 100, true);
    assert_true(s.calls >= 3);
    assert_int_equal(s.first_offsets[0], 0);
    assert_int_equal(s.first_offsets[1], 0); /* redelivered from the start of the batch */
    assert_int_equal(s.first_offsets[2], 0);
    assert_int_equal(s.accepted, 5);
    for (int i = 0; i < 5; i++) {
        char want[32];
        assert_int_equal(s.offsets[i], i); /* in order, none skipped, none twice */
        snprintf(want, sizeof(want), "payload-%d", i);
        assert_string_equal(s.payloads[i], want);
    }
    kafka_producer_free(p);
}

/* A deferred consumer: on_batch accepts a batch that is still in flight; the next on_batch or
 * on_settle says how it ended, and a failure seeks back to the batch in flight. */
struct deferred {
    volatile sig_atomic_t running;
    int calls, settles, fail_settles;
    int64_t firsts[16];
    size_t sizes[16];
    int seen4; /* batches that started at offset 4 */
};

/* Note a batch's first offset and size; returns its call number (from 0). */
static int deferred_note(struct deferred *d, const struct kafka_message *msgs, size_t n)
{
    int call = d->calls++;

    if (call < 16) {
        d->firsts[call] = msgs[0].offset;
        d->sizes[call] = n;
    }
    return call;
}

static int deferred_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct deferred *d = opaque;
    int call = deferred_note(d, msgs, n);

    if (call == 1)
        return KAFKA_PREVIOUS_FAILED; /* the batch at 0 failed after it was accepted */
    if (msgs[0].offset == 4 && ++d->seen4 == 2)
        d->running = 0;
    return 0;
}

static int deferred_settle(void *opaque)
{
    struct deferred *d = opaque;

    d->settles++;
    if (d->fail_settles > 0 && d->calls >= 5) {
        d->fail_settles--;
        return -1; /* the batch at 4, in flight when nothing more came, failed */
    }
    return 0;
}

/* Run a deferred consumer until its on_batch clears d->running; then it made exactly n calls,
 * each of a batch of 2 starting at want[i]. */
static void deferred_run(const struct kafka_consumer_opts *o, const struct kafka_consumer_ops *ops,
                         struct deferred *d, const int64_t *want, int n)
{
    char err[256] = "";
    struct kafka_consumer *c = kafka_consumer_new(o, ops, d, err, sizeof(err));
    struct watchdog w;

    if (!c)
        fail_msg("kafka_consumer_new: %s", err);
    d->running = 1;
    watchdog_start(&w, &d->running, 60000);
    assert_int_equal(kafka_consumer_run(c, &d->running), 0);
    if (watchdog_stop(&w))
        fail_msg("deferred consumer: %d batches within 60 s", d->calls);
    kafka_consumer_free(c);
    assert_int_equal(d->calls, n);
    for (int i = 0; i < n; i++) {
        if (d->firsts[i] != want[i])
            fail_msg("batch %d started at %lld, want %lld", i, (long long)d->firsts[i],
                     (long long)want[i]);
        assert_int_equal(d->sizes[i], 2);
    }
}

static void test_deferred_batches(void **state)
{
    char topic[128], group[128], err[256] = "";
    const char *topics[1] = {topic};
    struct kafka_producer *p = producer_make();
    struct deferred d = {.fail_settles = 1};
    struct kafka_consumer_opts o = {.brokers = brokers,
                                    .group_id = group,
                                    .topics = topics,
                                    .ntopics = 1,
                                    .max_batch = 2,
                                    .batch_wait_ms = 200,
                                    .deferred = true,
                                    .extra_conf = consumer_conf};
    struct kafka_consumer_ops ops = {.on_batch = deferred_batch, .on_settle = deferred_settle};
    const int64_t want[6] = {0, 2, 0, 2, 4, 4};

    (void)state;
    name_make(topic, sizeof(topic), "deferred");
    name_make(group, sizeof(group), "g-deferred");
    topic_prepare(topic, 1);
    produce_n(p, topic, 0, 6);
    assert_int_equal(kafka_producer_flush(p, 5000), 0);

    /* deferred needs on_settle and offsets kept by the service */
    o.commit_offsets = true;
    assert_null(kafka_consumer_new(&o, &ops, &d, err, sizeof(err)));
    o.commit_offsets = false;
    deferred_run(&o, &ops, &d, want, 6);
    assert_int_equal(d.fail_settles, 0); /* the idle settle ran and failed once */
    assert_true(d.settles >= 2);         /* and the close settled the last batch */
    kafka_producer_free(p);
}

/* Two batches kept in flight (opts.in_flight = 2): when the oldest turns out to have failed,
 * every batch in flight is redelivered from the oldest's first record, not the newer one's. */
static int two_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct deferred *d = opaque;

    if (deferred_note(d, msgs, n) == 2)
        return KAFKA_PREVIOUS_FAILED; /* the batch at 0 failed; the one at 2 was in flight too */
    if (msgs[0].offset == 6)
        d->running = 0;
    return 0;
}

static void test_deferred_two_in_flight(void **state)
{
    char topic[128], group[128], err[256] = "";
    const char *topics[1] = {topic};
    struct kafka_producer *p = producer_make();
    struct deferred d = {0};
    struct kafka_consumer_opts o = {.brokers = brokers,
                                    .group_id = group,
                                    .topics = topics,
                                    .ntopics = 1,
                                    .max_batch = 2,
                                    .batch_wait_ms = 200,
                                    .deferred = true,
                                    .in_flight = KAFKA_IN_FLIGHT_MAX + 1,
                                    .extra_conf = consumer_conf};
    struct kafka_consumer_ops ops = {.on_batch = two_batch, .on_settle = deferred_settle};
    const int64_t want[7] = {0, 2, 4, 0, 2, 4, 6};

    (void)state;
    name_make(topic, sizeof(topic), "inflight2");
    name_make(group, sizeof(group), "g-inflight2");
    topic_prepare(topic, 1);
    produce_n(p, topic, 0, 8);
    assert_int_equal(kafka_producer_flush(p, 5000), 0);

    assert_null(kafka_consumer_new(&o, &ops, &d, err, sizeof(err))); /* too many in flight */
    o.in_flight = 2;
    deferred_run(&o, &ops, &d, want, 7);
    kafka_producer_free(p);
}

/* A consumer restarted in the same group resumes after the last processed offset; a consumer
 * that keeps its own offsets starts where on_assign says. */
static void test_restart_resumes(void **state)
{
    char topic[128], group[128], group2[128];
    struct kafka_producer *p = producer_make();
    struct seen s;

    (void)state;
    name_make(topic, sizeof(topic), "restart");
    name_make(group, sizeof(group), "g-restart");
    name_make(group2, sizeof(group2), "g-restart-own-offsets");
    topic_prepare(topic, 1);
    produce_n(p, topic, 0, 6);

    seen_init(&s, 2);
    consume(topic, group, &s, 2, true); /* processes offsets 0 and 1, commits, leaves */
    assert_int_equal(s.accepted, 2);
    assert_int_equal(s.offsets[0], 0);
    assert_int_equal(s.offsets[1], 1);
    assert_true(s.revoked >= 1);

    seen_init(&s, 4);
    consume(topic, group, &s, 100, true);
    assert_int_equal(s.offsets[0], 2); /* resumed after the last processed record */
    assert_int_equal(s.offsets[3], 5);

    seen_init(&s, 2);
    s.assign_offset = 4; /* as if loaded from Postgres */
    consume(topic, group2, &s, 100, false);
    assert_int_equal(s.offsets[0], 4);
    assert_int_equal(s.offsets[1], 5);
    kafka_producer_free(p);
}

/* Dead-lettering keeps key, payload and headers and adds the dlq_* headers. */
struct dlq_state {
    volatile sig_atomic_t running;
    struct kafka_producer *p;
    const char *dlq_topic;
    int rc;
    bool done;
    /* second pass: what arrived on the DLQ */
    bool checked;
    char err[256];
};

static int dlq_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct dlq_state *d = opaque;
    (void)n;
    d->rc = kafka_dead_letter(d->p, d->dlq_topic, &msgs[0], "SKU_UNKNOWN", "sku X-1 not known",
                              "test-kafka", d->err, sizeof(d->err));
    d->done = true;
    d->running = 0;
    return 0;
}

static int dlq_check_batch(void *opaque, struct kafka_message *msgs, size_t n)
{
    struct dlq_state *d = opaque;
    const struct kafka_message *m = &msgs[0];
    char want_topic[160];
    (void)n;

    snprintf(want_topic, sizeof(want_topic), "%s", d->dlq_topic);
    want_topic[strlen(want_topic) - 4] = '\0'; /* strip ".dlq" */
    d->checked = m->keylen == 5 && memcmp(m->key, "key-0", 5) == 0 && m->len == 9 &&
                 memcmp(m->payload, "payload-0", 9) == 0 &&
                 header_is(m->raw, "dlq_error_code", "SKU_UNKNOWN") &&
                 header_is(m->raw, "dlq_error_message", "sku X-1 not known") &&
                 header_is(m->raw, "dlq_original_topic", want_topic) &&
                 header_is(m->raw, "dlq_original_partition", "0") &&
                 header_is(m->raw, "dlq_original_offset", "0") &&
                 header_is(m->raw, "dlq_service", "test-kafka") &&
                 header_is(m->raw, "ce_source", "test/kafka") && m->ce_id[0] != '\0' &&
                 strstr(m->ce_id, "evt-") == m->ce_id;
    {
        rd_kafka_headers_t *h = NULL;
        const void *v = NULL;
        size_t sz = 0;
        int64_t ms;
        char at[40] = "";
        if (rd_kafka_message_headers(m->raw, &h) == 0 &&
            rd_kafka_header_get_last(h, "dlq_failed_at", &v, &sz) == 0 && sz < sizeof(at))
            memcpy(at, v, sz);
        d->checked = d->checked && clock_parse_rfc3339(at, &ms) == 0;
    }
    d->running = 0;
    return 0;
}

static void test_dead_letter_headers(void **state)
{
    char topic[128], dlq[160], group[128];
    struct kafka_producer *p = producer_make();
    struct dlq_state d = {.p = p};
    struct watchdog w;
    char err[256] = "";

    (void)state;
    name_make(topic, sizeof(topic), "dl");
    snprintf(dlq, sizeof(dlq), "%s.dlq", topic);
    name_make(group, sizeof(group), "g-dl");
    topic_prepare(topic, 1);
    topic_prepare(dlq, 1);
    produce_n(p, topic, 0, 1);
    d.dlq_topic = dlq;

    {
        const char *topics[] = {topic};
        struct kafka_consumer_opts o = {.brokers = brokers,
                                        .group_id = group,
                                        .topics = topics,
                                        .ntopics = 1,
                                        .commit_offsets = true,
                                        .extra_conf = consumer_conf};
        struct kafka_consumer_ops ops = {.on_batch = dlq_batch};
        struct kafka_consumer *c = kafka_consumer_new(&o, &ops, &d, err, sizeof(err));
        assert_non_null(c);
        d.running = 1;
        watchdog_start(&w, &d.running, 60000);
        assert_int_equal(kafka_consumer_run(c, &d.running), 0);
        assert_false(watchdog_stop(&w));
        kafka_consumer_free(c);
    }
    assert_true(d.done);
    if (d.rc != 0)
        fail_msg("kafka_dead_letter: %d %s", d.rc, d.err);

    {
        const char *topics[] = {dlq};
        struct kafka_consumer_opts o = {.brokers = brokers,
                                        .group_id = group,
                                        .topics = topics,
                                        .ntopics = 1,
                                        .commit_offsets = true,
                                        .extra_conf = consumer_conf};
        struct kafka_consumer_ops ops = {.on_batch = dlq_check_batch};
        struct kafka_consumer *c = kafka_consumer_new(&o, &ops, &d, err, sizeof(err));
        assert_non_null(c);
        d.running = 1;
        watchdog_start(&w, &d.running, 60000);
        assert_int_equal(kafka_consumer_run(c, &d.running), 0);
        assert_false(watchdog_stop(&w));
        kafka_consumer_free(c);
    }
    assert_true(d.checked);
    kafka_producer_free(p);
}

/* An unreachable broker list fails within the timeout instead of hanging. */
static void test_unreachable_broker_fails_in_time(void **state)
{
    char err[256] = "";
    struct ce_headers ce = {.id = "evt-unreachable", .source = "test/kafka", .type = "t"};
    struct kafka_producer *p;
    int64_t t0, took;
    int rc;

    (void)state;
    p = kafka_producer_new("127.0.0.1:1", "test-kafka", NULL, err, sizeof(err));
    assert_non_null(p);
    t0 = clock_mono_ms();
    rc = kafka_producer_send_sync(p, "nowhere", "k", 1, "v", 1, &ce, NULL, 0, 2000, err,
                                  sizeof(err));
    took = clock_mono_ms() - t0;
    assert_true(rc < 0);
    assert_true(strlen(err) > 0);
    assert_true(took < 4000);

    t0 = clock_mono_ms();
    assert_int_equal(kafka_producer_ping(p, 1000), -EIO);
    assert_true(clock_mono_ms() - t0 < 3000);
    assert_int_equal(kafka_producer_flush(p, 200), -ETIMEDOUT); /* the record is still queued */

    t0 = clock_mono_ms();
    kafka_producer_free(p); /* fails the queued record (-ECANCELED), frees its context */
    assert_true(clock_mono_ms() - t0 < 15000);
}

/* Delivery callbacks: error 0 with partition/offset on success. */
struct cb_state {
    pthread_mutex_t mu;
    int calls;
    int error;
    int64_t offset;
};

static void cb_record(void *opaque, int error, const char *errstr, int32_t partition,
                      int64_t offset)
{
    struct cb_state *s = opaque;
    (void)errstr;
    (void)partition;
    pthread_mutex_lock(&s->mu);
    s->calls++;
    s->error = error;
    s->offset = offset;
    pthread_mutex_unlock(&s->mu);
}

static void test_async_send_and_ping(void **state)
{
    char topic[128], err[256] = "";
    struct kafka_producer *p = producer_make();
    struct ce_headers ce = {
        .id = "evt-async", .source = "test/kafka", .type = "t", .subject = "sku/X-1"};
    struct cb_state s = {.mu = PTHREAD_MUTEX_INITIALIZER, .offset = -1};

    (void)state;
    name_make(topic, sizeof(topic), "async");
    topic_prepare(topic, 1);
    assert_int_equal(kafka_producer_ping(p, 5000), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kafka_producer_send(p, topic, "k", 1, "v", 1, &ce, NULL, 0, cb_record, &s,
                                             err, sizeof(err)),
                         0);
    assert_int_equal(kafka_producer_flush(p, 10000), 0);
    pthread_mutex_lock(&s.mu);
    assert_int_equal(s.calls, 10);
    assert_int_equal(s.error, 0);
    assert_int_equal(s.offset, 9);
    pthread_mutex_unlock(&s.mu);
    assert_false(kafka_producer_fatal(p, err, sizeof(err)));
    kafka_producer_free(p);
}

/* Produce requests failing with a retriable error (NOT_LEADER_OR_FOLLOWER) are retried by the
 * idempotent producer: send_sync still succeeds. A broker-down with every broker down fails. */
static void test_fault_injection(void **state)
{
    char topic[128], err[256] = "";
    struct kafka_producer *p;
    struct ce_headers ce = {.id = "evt-fault", .source = "test/kafka", .type = "t"};

    (void)state;
    if (!getenv("KAFKA_MOCK_CONTROL"))
        skip();
    p = producer_make();
    name_make(topic, sizeof(topic), "fault");
    topic_prepare(topic, 1);
    assert_int_equal(
        kafka_producer_send_sync(p, topic, "k", 1, "v", 1, &ce, NULL, 0, 10000, err, sizeof(err)),
        0);
    assert_int_equal(mock_control("request-errors 0 3 6"), 0);
    assert_int_equal(
        kafka_producer_send_sync(p, topic, "k", 1, "v", 1, &ce, NULL, 0, 15000, err, sizeof(err)),
        0);
    assert_int_not_equal(mock_control("request-errors 0 x 6"), 0); /* bad command answered */

    assert_int_equal(mock_control("broker-down 1"), 0);
    assert_int_equal(mock_control("broker-down 2"), 0);
    assert_int_equal(mock_control("broker-down 3"), 0);
    assert_true(kafka_producer_send_sync(p, topic, "k", 1, "v", 1, &ce, NULL, 0, 1500, err,
                                         sizeof(err)) < 0);
    assert_int_equal(mock_control("clear"), 0);
    /* back up: a new record gets through (the earlier one may still be retried) */
    assert_int_equal(
        kafka_producer_send_sync(p, topic, "k", 1, "v", 1, &ce, NULL, 0, 20000, err, sizeof(err)),
        0);
    kafka_producer_free(p);
}

/* Bad arguments are refused with a message, not crashed on. */
static void test_bad_arguments(void **state)
{
    char err[256] = "", out[16];
    struct ce_headers no_id = {.source = "s", .type = "t"};
    struct kafka_producer *p;
    const char *topics[] = {"t"};
    struct kafka_consumer_opts o = {.brokers = brokers, .group_id = "g", .topics = topics};
    const char *bad_conf[] = {"no.such.setting", "1", NULL};

    (void)state;
    assert_null(kafka_producer_new("", "x", NULL, err, sizeof(err)));
    assert_null(kafka_producer_new(brokers, "x", bad_conf, err, sizeof(err)));
    assert_non_null(strstr(err, "no.such.setting"));
    p = producer_make();
    assert_int_equal(
        kafka_producer_send(p, "t", NULL, 0, "v", 1, &no_id, NULL, 0, NULL, NULL, err, sizeof(err)),
        -EINVAL);
    assert_int_equal(
        kafka_producer_send_sync(p, "", NULL, 0, "v", 1, NULL, NULL, 0, 100, err, sizeof(err)),
        -EINVAL);
    kafka_producer_free(p);
    kafka_producer_free(NULL);

    assert_null(kafka_consumer_new(&o, NULL, NULL, err, sizeof(err))); /* ntopics 0 */
    kafka_consumer_free(NULL);

    assert_int_equal(kafka_topic_name("acme.", "pos.transactions.v1", out, sizeof(out)), -ENOSPC);
    assert_int_equal(kafka_topic_name("a.", "b", out, sizeof(out)), 0);
    assert_string_equal(out, "a.b");
    assert_int_equal(kafka_topic_name(NULL, "b", out, sizeof(out)), 0);
    assert_string_equal(out, "b");
    assert_int_equal(kafka_topic_name("a.", "", out, sizeof(out)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_unreachable_broker_fails_in_time),
        cmocka_unit_test(test_async_send_and_ping),
        cmocka_unit_test(test_roundtrip_headers),
        cmocka_unit_test(test_failed_batch_redelivered),
        cmocka_unit_test(test_restart_resumes),
        cmocka_unit_test(test_deferred_batches),
        cmocka_unit_test(test_deferred_two_in_flight),
        cmocka_unit_test(test_dead_letter_headers),
        cmocka_unit_test(test_fault_injection),
    };

    brokers = getenv("KAFKA_BROKERS");
    if (!brokers || !*brokers) {
        fprintf(stderr,
                "test_kafka: KAFKA_BROKERS is not set (run through tests/lib/with-stack)\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
