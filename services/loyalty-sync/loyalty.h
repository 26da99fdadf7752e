/*
 * loyalty — the engine: till transactions and shop orders in, member points changes out.
 *
 * An event becomes changes with deterministic idempotency keys:
 *   award|pos:<transaction id>          a completed till sale (or the positive net of an exchange)
 *   award|order:<order id>              an order at its trigger (paid or fulfilled, RULES_FILE)
 *   reversal|<source>|pos:<txn id>      a till return/exchange against a sale or an online order
 *   reversal|<source>|refund:<id>       an online refund;  reversal|<source>|cancel  a cancellation
 *   reversal|<source>|void:<txn id>     a till void;  unlinked|pos:<txn id>  a return without
 * origin Each change is applied at most once: the journal is checked before and after taking the
 * member's lock, an in-flight row is written before the platform call, the applied row right
 * after. Collisions are retried with exponential backoff and jitter; after max_retries the change
 * is kept as failed (LOYALTY_UPDATE_FAILED raised) for loyalty_replay(). A reversal whose award
 * is not in the journal yet waits and is applied right after the award.
 */
#ifndef LOYALTY_LOYALTY_H
#define LOYALTY_LOYALTY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "member_api.h"
#include "rules.h"
#include "service.h"

struct loyalty_opts {
    struct service *svc;       /* publishing, exceptions, tenant; borrowed */
    const struct rules *rules; /* borrowed */
    struct member_api *api;    /* borrowed */
    enum member_platform platform;
    const char *shop;       /* the loyalty program's shop (domain / handle) */
    const char *default_cc; /* country calling code for national phone numbers, "44" */
    int max_retries;        /* collisions retried before giving up (>= 0) */
    long backoff_base_ms;   /* first backoff; doubles per retry, plus jitter in [0, base) */
    long backoff_max_ms;
    long lock_ttl_ms;
    long lock_wait_ms;
    /* while *running is 0 every wait (backoff, member lock, rate limit) gives up within ~50 ms
     * and the change is left for redelivery (negative return, -ECANCELED); a platform write
     * already sent is always finished and journalled first. NULL = never. Borrowed. */
    volatile sig_atomic_t *running;
};

/* Counters since start (read without locking: for metrics and tests). */
struct loyalty_stats {
    long applied, noop, failed, waiting, ambiguous, collisions, published;
};

struct loyalty;

/* Create the engine; strings of opts are copied. NULL with err. */
struct loyalty *loyalty_new(const struct loyalty_opts *opts, char *err, size_t errlen);
void loyalty_free(struct loyalty *l);

/*
 * Handle one record of topic_base ("pos.transactions.v1" or "shop.orders.v1"). Returns 0 when
 * its changes are all decided (applied, no-op, waiting, failed or ambiguous: kept for replay),
 * -EBADMSG when the payload does not decode (dead-letter it), another negative error when a
 * dependency (Postgres, Redis, Kafka) failed: redeliver later.
 */
int loyalty_handle(struct loyalty *l, const char *topic_base, const void *payload, size_t len,
                   char *err, size_t errlen);

/*
 * Re-drive open changes from the journal: idem_key (NULL = every open one) in state failed,
 * ambiguous, in_flight or waiting, and applied ones not yet published. *done = how many ended
 * applied or no-op, *open = how many are still open. Returns 0 or a negative dependency error.
 */
int loyalty_replay(struct loyalty *l, const char *idem_key, size_t *done, size_t *open, char *err,
                   size_t errlen);

/*
 * Write into out the customer a record of topic_base is about (normalised email, else E.164
 * phone, else loyalty id, else the transaction / order id; a takings declaration: "t:store/till";
 * "" when it does not decode), so a caller handling records in parallel can keep one customer's
 * records in order on one worker.
 */
void loyalty_record_customer(struct loyalty *l, const char *topic_base, const void *payload,
                             size_t len, char *out, size_t cap);

/* Copy of the counters. */
void loyalty_stats_get(struct loyalty *l, struct loyalty_stats *out);

#endif
