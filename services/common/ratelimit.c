/*
 * ratelimit — token bucket in Redis (see ratelimit.h). Both scripts refill first from the
 * Redis server's clock, so a correction and a take see the same bucket.
 */
#include "ratelimit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* KEYS[1] bucket; ARGV capacity, refill/s, cost. Returns ms to wait (0 = taken). */
static struct redis_script take_script = {
    .source = "local cap = tonumber(ARGV[1]) * 1000\n"
              "local rate = tonumber(ARGV[2])\n"
              "local cost = tonumber(ARGV[3]) * 1000\n"
              "local t = redis.call('TIME')\n"
              "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
              "local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
              "local tokens = tonumber(h[1]) or cap\n"
              "local ts = tonumber(h[2]) or now\n"
              "if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) "
              "else now = ts end\n"
              "local wait = 0\n"
              "if tokens >= cost then tokens = tokens - cost\n"
              "else wait = math.ceil((cost - tokens) / rate) end\n"
              "redis.call('HSET', KEYS[1], 'tokens', math.floor(tokens), 'ts', now)\n"
              "redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 60000)\n"
              "return wait\n",
};

/* KEYS[1] bucket; ARGV capacity, refill/s, available. Lowers the bucket to available. */
static struct redis_script correct_script = {
    .source = "local cap = tonumber(ARGV[1]) * 1000\n"
              "local rate = tonumber(ARGV[2])\n"
              "local avail = tonumber(ARGV[3]) * 1000\n"
              "local t = redis.call('TIME')\n"
              "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
              "local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
              "local tokens = tonumber(h[1]) or cap\n"
              "local ts = tonumber(h[2]) or now\n"
              "if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) "
              "else now = ts end\n"
              "if avail < tokens then tokens = avail end\n"
              "redis.call('HSET', KEYS[1], 'tokens', math.floor(tokens), 'ts', now)\n"
              "redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 60000)\n"
              "return math.floor(tokens / 1000)\n",
};

int ratelimit_key(const char *tenant, const char *shop, const char *api, char *out, size_t outcap)
{
    if (!tenant || !*tenant || !shop || !*shop || !api || !*api)
        return -EINVAL;
    int n = snprintf(out, outcap, "tillsync:rl:%s:%s:%s", tenant, shop, api);
    if (n < 0 || (size_t)n >= outcap)
        return -ENOSPC;
    return 0;
}

static int bucket_check(const struct ratelimit_bucket *b, long n, char *err, size_t errlen)
{
    if (!b || !b->key || !*b->key || b->capacity <= 0 || b->refill_per_s <= 0 || n < 0 ||
        n > b->capacity) {
        snprintf(err, errlen, "ratelimit: bad bucket or amount");
        return -EINVAL;
    }
    return 0;
}

/* Run script over b with a third argument n; returns the integer reply in *out. */
static int bucket_eval(struct redis *r, struct redis_script *s, const struct ratelimit_bucket *b,
                       long n, long long *out, char *err, size_t errlen)
{
    char cap[24], rate[24], arg[24];
    snprintf(cap, sizeof cap, "%ld", b->capacity);
    snprintf(rate, sizeof rate, "%ld", b->refill_per_s);
    snprintf(arg, sizeof arg, "%ld", n);
    const char *args[] = {b->key, cap, rate, arg};
    redisReply *rep = redis_eval(r, s, 1, 3, args, NULL, err, errlen);
    if (!rep)
        return -EIO;
    int rc = 0;
    if (rep->type == REDIS_REPLY_INTEGER) {
        *out = rep->integer;
    } else {
        snprintf(err, errlen, "ratelimit: unexpected reply: %s",
                 rep->type == REDIS_REPLY_ERROR && rep->str ? rep->str : "not an integer");
        rc = -EIO;
    }
    freeReplyObject(rep);
    return rc;
}

int ratelimit_try(struct redis *r, const struct ratelimit_bucket *b, long cost, long *wait_ms,
                  char *err, size_t errlen)
{
    int rc = bucket_check(b, cost, err, errlen);
    if (rc)
        return rc;
    long long w = 0;
    rc = bucket_eval(r, &take_script, b, cost, &w, err, errlen);
    if (rc)
        return rc;
    *wait_ms = w > 0 ? (long)w : 0;
    return 0;
}

int ratelimit_take(struct redis *r, const struct ratelimit_bucket *b, long cost, long timeout_ms,
                   char *err, size_t errlen)
{
    long waited = 0;
    for (;;) {
        long wait = 0;
        int rc = ratelimit_try(r, b, cost, &wait, err, errlen);
        if (rc)
            return rc;
        if (wait == 0)
            return 0;
        if (waited + wait > timeout_ms) {
            snprintf(err, errlen, "ratelimit: no token for %s within %ld ms", b->key, timeout_ms);
            return -ETIMEDOUT;
        }
        struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        waited += wait;
    }
}

int ratelimit_correct(struct redis *r, const struct ratelimit_bucket *b, long available, char *err,
                      size_t errlen)
{
    if (available < 0)
        available = 0;
    if (b && available > b->capacity)
        available = b->capacity;
    int rc = bucket_check(b, available, err, errlen);
    if (rc)
        return rc;
    long long left = 0;
    return bucket_eval(r, &correct_script, b, available, &left, err, errlen);
}
