/*
 * kafka — the producer and the batch consumer every tillsync service uses (librdkafka).
 *
 * Producer: idempotent (enable.idempotence=true, acks=all), with its own thread that polls
 * delivery reports; a delivery report is the only proof a record was written. Records carry the
 * CloudEvents Kafka binary binding headers (DESIGN.md "Events"): ce_specversion "1.0", ce_id,
 * ce_source, ce_type, ce_time, content-type "application/protobuf", optional ce_subject.
 *
 * Consumer: a consumer-group member that hands batches to the service and stores an offset only
 * after the batch's effect is done (at-least-once). A batch that fails transiently is redelivered
 * from its first record after a backoff, never skipped. Offsets are either committed to Kafka
 * (commit_offsets) or kept by the service (e.g. in Postgres, in the same transaction as the
 * effect) and handed back in on_assign.
 *
 * librdkafka's own log lines go to log.h, never to stderr. Errors are 0 or a negative errno
 * (-EINVAL bad argument, -EIO Kafka failure, -ETIMEDOUT, -ENOBUFS local queue full, -ECANCELED
 * record purged at shutdown, -ENOMEM) with one line in the caller's err.
 */
#ifndef TILLSYNC_KAFKA_H
#define TILLSYNC_KAFKA_H

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

/* One record header; value is len bytes, not necessarily NUL-terminated. */
struct kafka_header {
    const char *name;
    const void *value;
    size_t len;
};

/*
 * CloudEvents attributes of one record. id, source and type are required; time (RFC 3339) may
 * be NULL and is then the current time; subject may be NULL (no ce_subject header).
 */
struct ce_headers {
    const char *id;
    const char *source;
    const char *type;
    const char *time;
    const char *subject;
};

struct kafka_producer;

/*
 * Create an idempotent producer for brokers ("host:port,...") and start its delivery thread.
 * extra_conf: NULL-terminated key, value pairs passed to rd_kafka_conf_set after the defaults
 * (e.g. security.protocol, sasl.*, ssl.ca.location; may also override message.timeout.ms,
 * 30 s by default); may be NULL. Connects lazily. Returns NULL with err on a bad setting.
 * Free with kafka_producer_free().
 */
struct kafka_producer *kafka_producer_new(const char *brokers, const char *client_id,
                                          const char *const *extra_conf, char *err, size_t errlen);

/*
 * Delivery result of one record: error 0 when the broker acknowledged it (partition and offset
 * are then set), else a negative errno with errstr. errstr is valid during the call only.
 */
typedef void (*kafka_delivery_cb)(void *opaque, int error, const char *errstr, int32_t partition,
                                  int64_t offset);

/*
 * Queue one record for topic with key (may be NULL), payload (copied), the CloudEvents headers
 * of ce (NULL: none) and nextra extra headers. cb (may be NULL) runs on the producer's delivery
 * thread once the record was acknowledged or failed for good; records still queued when the
 * producer is freed fail with -ECANCELED, their cb then runs on the freeing thread. When the
 * local queue is full, waits for room up to 5 s. Returns 0 when queued (cb will run exactly
 * once), else negative with err (cb will not run).
 */
int kafka_producer_send(struct kafka_producer *p, const char *topic, const void *key, size_t keylen,
                        const void *payload, size_t len, const struct ce_headers *ce,
                        const struct kafka_header *extra, size_t nextra, kafka_delivery_cb cb,
                        void *opaque, char *err, size_t errlen);

/*
 * Same as kafka_producer_send but waits for the delivery report up to timeout_ms. Returns 0
 * only when the broker acknowledged the record; negative on failure, -ETIMEDOUT when no report
 * came in time (the record may still be written later: callers retry, consumers dedupe on ce_id).
 */
int kafka_producer_send_sync(struct kafka_producer *p, const char *topic, const void *key,
                             size_t keylen, const void *payload, size_t len,
                             const struct ce_headers *ce, const struct kafka_header *extra,
                             size_t nextra, int timeout_ms, char *err, size_t errlen);

/*
 * Wait up to timeout_ms until every queued record has its delivery report processed.
 * Returns 0, or -ETIMEDOUT with records outstanding.
 */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms);

/* true when the producer hit a fatal (idempotence) error; err then says which. It cannot
 * produce any more: the service should report not-ready and exit non-zero. */
bool kafka_producer_fatal(struct kafka_producer *p, char *err, size_t errlen);

/* Metadata request: 0 when a broker answered within timeout_ms, else -EIO (for /readyz). */
int kafka_producer_ping(struct kafka_producer *p, int timeout_ms);

/* Flush (up to 10 s), stop the delivery thread, fail what is left (-ECANCELED) and destroy.
 * NULL is fine. */
void kafka_producer_free(struct kafka_producer *p);

/* Write prefix + base into out (prefix may be NULL or ""). Returns 0, -EINVAL for an empty
 * base, -ENOSPC when out is too small. */
int kafka_topic_name(const char *prefix, const char *base, char *out, size_t outcap);

/*
 * A consumed record as handed to on_batch. Pointers are valid during the on_batch call only.
 * ce_id / ce_type hold the headers' values (truncated to 127 bytes) or "" when absent.
 * raw is the rd_kafka_message_t, for kafka_dead_letter() and header access.
 */
struct kafka_message {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t keylen;
    const void *payload;
    size_t len;
    int64_t timestamp_ms; /* -1 when unknown */
    char ce_id[128];
    char ce_type[128];
    const void *raw;
};

/* What the service does with its partitions and records; every callback runs on the thread
 * that called kafka_consumer_run(). */
struct kafka_consumer_ops {
    /*
     * Partitions were assigned (eager or cooperative incremental). May set each partition's
     * .offset (e.g. loaded from Postgres); RD_KAFKA_OFFSET_INVALID keeps the committed offset
     * (or the earliest when none). Non-zero return is fatal: the run loop ends. May be NULL.
     */
    int (*on_assign)(void *opaque, rd_kafka_topic_partition_list_t *parts);
    /* Partitions are going away; lost = the assignment was lost (no commit possible).
     * Records of theirs gathered but not yet handed over are dropped (not processed: the new
     * owner gets them). May be NULL. */
    void (*on_revoke)(void *opaque, const rd_kafka_topic_partition_list_t *parts, bool lost);
    /*
     * A batch of 1..max_batch records, possibly of several partitions, in order per partition.
     * Return 0 when done: their offsets are then stored for commit. Negative = transient
     * failure: every partition is sought back to its first record of the batch and the batch
     * is redelivered after a backoff (100 ms doubling to 5 s). NULL = accept everything.
     * With opts.deferred, 0 means accepted: the batch may still be in flight when on_batch
     * returns (its records are freed then: copy what the work needs), and so may the
     * opts.in_flight - 1 accepted before it; the one accepted before those was done.
     * KAFKA_PREVIOUS_FAILED means a batch accepted earlier failed and this one was not
     * started (nor will those still in flight commit): all are redelivered from the earliest
     * first records among them. Any other negative: this one failed, every earlier one was
     * done.
     */
    int (*on_batch)(void *opaque, struct kafka_message *msgs, size_t n);
    /*
     * With opts.deferred: wait until every batch accepted by on_batch is done. Returns 0
     * when their effects are durable, negative when one failed (all still in flight when
     * on_settle was called are then redelivered). Called
     * when no record came for 100 ms, before partitions are revoked (before on_revoke) and
     * before the consumer closes; only while a batch is in flight. NULL without deferred.
     */
    int (*on_settle)(void *opaque);
};

/* on_batch's answer with a deferred consumer when the previous batch failed (see on_batch). */
#define KAFKA_PREVIOUS_FAILED (-EPIPE)

/* Most batches a deferred consumer keeps in flight (kafka_consumer_opts.in_flight). */
#define KAFKA_IN_FLIGHT_MAX 4

/* Consumer settings; strings are copied by kafka_consumer_new(). */
struct kafka_consumer_opts {
    const char *brokers;
    const char *group_id;
    const char *const *topics; /* full names (with the tenant prefix) */
    size_t ntopics;
    int max_batch;       /* <= 0: 100 */
    int batch_wait_ms;   /* how long to gather after the first record; < 0: 100 */
    bool commit_offsets; /* false when the service stores offsets itself (e.g. in Postgres) */
    /* on_batch may return before its batch is done, which ops.on_settle then waits for: the
     * next batch is gathered and prepared while the previous one is applied. The consumer
     * keeps the in-flight batch's first offsets to seek back to if it fails. Needs
     * commit_offsets false and ops.on_settle. */
    bool deferred;
    /* with deferred: how many accepted batches may be in flight at once (0 = 1, at most
     * KAFKA_IN_FLIGHT_MAX); the consumer keeps each one's first offsets */
    int in_flight;
    const char *const *extra_conf; /* NULL-terminated key, value pairs, may be NULL */
};

struct kafka_consumer;

/*
 * Create a consumer (cooperative-sticky assignment, auto.offset.reset=earliest,
 * enable.auto.offset.store=false) and subscribe to opts->topics. ops and opaque are kept
 * (ops is copied). Returns NULL with err on a bad setting. Free with kafka_consumer_free().
 */
struct kafka_consumer *kafka_consumer_new(const struct kafka_consumer_opts *opts,
                                          const struct kafka_consumer_ops *ops, void *opaque,
                                          char *err, size_t errlen);

/*
 * Consume and hand batches to ops->on_batch until *running becomes 0 (checked at least every
 * 100 ms and between batches, also during a retry backoff); then commit stored offsets (when
 * commit_offsets) and close the consumer (leaving the group). Returns 0, or -EIO on a fatal
 * error (fatal consumer error, on_assign failure); the consumer is closed either way.
 */
int kafka_consumer_run(struct kafka_consumer *c, volatile sig_atomic_t *running);

/* Close (when kafka_consumer_run did not) and destroy. NULL is fine. */
void kafka_consumer_free(struct kafka_consumer *c);

/*
 * Dead-letter msg: republish its key, payload and headers to dlq_topic with the extra headers
 * dlq_error_code, dlq_error_message, dlq_original_topic, dlq_original_partition,
 * dlq_original_offset, dlq_failed_at (RFC 3339, now) and dlq_service. Waits for the delivery
 * report (up to 30 s): 0 only once the record is written.
 */
int kafka_dead_letter(struct kafka_producer *p, const char *dlq_topic,
                      const struct kafka_message *msg, const char *error_code,
                      const char *error_message, const char *service, char *err, size_t errlen);

#endif
