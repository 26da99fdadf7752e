/*
 * ratelimit — a token bucket in Redis, one per (tenant, shop, API), shared by every replica and
 * by every service that calls the same platform API (shop-connector, loyalty-sync), so together
 * they stay inside the platform's budget (DESIGN.md "Shop platforms").
 *
 * The bucket is one Redis hash {tokens, ts} updated by a Lua script that refills it from the
 * elapsed Redis server time (TIME, so replicas with skewed clocks agree) at refill_per_s up to
 * capacity, then takes the cost if there is enough. Tokens are kept in thousandths so slow
 * refill rates work. The platform's own reports correct it: ratelimit_correct() lowers the
 * bucket to what the platform says is left (a Shopify throttleStatus.currentlyAvailable, or 0
 * after a 429), so our view never promises more than the platform will grant.
 */
#ifndef TILLSYNC_RATELIMIT_H
#define TILLSYNC_RATELIMIT_H

#include <stddef.h>

#include "redis.h"

/* One bucket. key is borrowed (see ratelimit_key()); capacity and refill_per_s > 0. */
struct ratelimit_bucket {
    const char *key;
    long capacity;     /* most tokens held (the platform's burst) */
    long refill_per_s; /* tokens restored per second */
};

/* Write the bucket key "tillsync:rl:<tenant>:<shop>:<api>" into out, e.g. api "rest",
 * "graphql", "loyalty". Every service must build keys with this function so they share the
 * bucket. Returns 0, -EINVAL for a NULL/empty part, -ENOSPC when out is too small. */
int ratelimit_key(const char *tenant, const char *shop, const char *api, char *out, size_t outcap);

/*
 * Try to take cost tokens. Returns 0 with *wait_ms = 0 when taken, or 0 with *wait_ms > 0
 * (nothing taken) = how long until enough tokens will be there. Negative with err when Redis
 * is unavailable (-EIO) or the arguments are bad (-EINVAL, e.g. cost > capacity).
 */
int ratelimit_try(struct redis *r, const struct ratelimit_bucket *b, long cost, long *wait_ms,
                  char *err, size_t errlen);

/*
 * Take cost tokens, sleeping as long as the bucket says, for at most timeout_ms in total.
 * Returns 0 when taken, -ETIMEDOUT when not within timeout_ms, negative from ratelimit_try.
 */
int ratelimit_take(struct redis *r, const struct ratelimit_bucket *b, long cost, long timeout_ms,
                   char *err, size_t errlen);

/*
 * The platform reported available tokens left (0 after a 429): lower the bucket to that if
 * it holds more (never raises it). Returns 0 or negative with err.
 */
int ratelimit_correct(struct redis *r, const struct ratelimit_bucket *b, long available, char *err,
                      size_t errlen);

#endif
