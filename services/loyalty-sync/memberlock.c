/* memberlock — per-member Redis lock (see memberlock.h). */
#include "memberlock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "clock.h"

static struct redis_script release_script = {
    .source = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
              "return redis.call('DEL', KEYS[1]) else return 0 end",
};

static struct redis_script extend_script = {
    .source = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
              "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
};

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int memberlock_acquire(struct memberlock *l, struct redis *r, const char *tenant, const char *name,
                       long ttl_ms, long wait_ms, volatile sig_atomic_t *running, char *err,
                       size_t errlen)
{
    unsigned char rnd[16];
    memset(l, 0, sizeof *l);
    int n = snprintf(l->key, sizeof l->key, "tillsync:lock:%s:%s", tenant, name);
    if (n < 0 || (size_t)n >= sizeof l->key) {
        snprintf(err, errlen, "lock name too long");
        return -EINVAL;
    }
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        snprintf(err, errlen, "no randomness for the lock token");
        return -EIO;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(l->token + 2 * i, 3, "%02x", rnd[i]);
    int64_t deadline = clock_mono_ms() + wait_ms;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms);
    for (;;) {
        const char *argv[] = {"SET", l->key, l->token, "NX", "PX", ttl};
        redisReply *rep = redis_command_argv(r, 6, argv, NULL, err, errlen);
        if (!rep)
            return -EIO;
        bool ok = rep->type == REDIS_REPLY_STATUS && rep->str && strcmp(rep->str, "OK") == 0;
        bool bad = rep->type == REDIS_REPLY_ERROR;
        if (bad)
            snprintf(err, errlen, "lock: %s", rep->str ? rep->str : "error");
        freeReplyObject(rep);
        if (bad)
            return -EIO;
        if (ok) {
            l->held = true;
            return 0;
        }
        if (running && !*running) {
            snprintf(err, errlen, "lock %s: shutting down", l->key);
            return -ECANCELED;
        }
        if (clock_mono_ms() >= deadline) {
            snprintf(err, errlen, "lock %s busy for %ld ms", l->key, wait_ms);
            return -EBUSY;
        }
        unsigned char j = 0;
        RAND_bytes(&j, 1);
        sleep_ms(10 + j % 40);
    }
}

int memberlock_extend(struct memberlock *l, struct redis *r, long ttl_ms, char *err, size_t errlen)
{
    if (!l->held)
        return -ENOLCK;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_ms);
    const char *args[] = {l->key, l->token, ttl};
    redisReply *rep = redis_eval(r, &extend_script, 1, 2, args, NULL, err, errlen);
    if (!rep)
        return -EIO;
    int rc = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1 ? 0 : -ENOLCK;
    freeReplyObject(rep);
    if (rc) {
        l->held = false;
        snprintf(err, errlen, "lock %s no longer ours", l->key);
    }
    return rc;
}

void memberlock_release(struct memberlock *l, struct redis *r)
{
    char err[128];
    if (!l || !l->held)
        return;
    const char *args[] = {l->key, l->token};
    redisReply *rep = redis_eval(r, &release_script, 1, 1, args, NULL, err, sizeof err);
    if (rep)
        freeReplyObject(rep);
    l->held = false; /* if Redis was unreachable the lock simply expires after its ttl */
}
