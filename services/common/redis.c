/*
 * redis — hiredis pool. See redis.h.
 *
 * Each slot holds one blocking redisContext. A context that reported an error
 * (c->err) is useless in hiredis and is freed; the slot connects anew (and
 * re-sends AUTH and SELECT) on its next use. We reconnect by hand rather than
 * with redisReconnect() so that AUTH/SELECT and the timeouts are applied in
 * one place.
 */
#include "redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

struct redis_slot {
    redisContext *c;
    bool in_use;
};

struct redis {
    char *host;
    int port;
    char *user;     /* NULL: AUTH with the password alone */
    char *password; /* NULL: no AUTH */
    long db;
    int timeout_ms;
    unsigned size;
    struct redis_slot *slots;
    pthread_mutex_t lock; /* slots and every redis_script.sha */
    pthread_cond_t cond;
};

static char *strndup_or_null(const char *s, size_t n)
{
    return n ? strndup(s, n) : NULL;
}

/* Parse redis://[[user]:password@]host[:port][/db]. */
static int url_parse(struct redis *r, const char *url, char *err, size_t errlen)
{
    const char *p = url;
    if (!url || strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "REDIS_URL \"%s\" does not start with redis://", url ? url : "");
        return -EINVAL;
    }
    p += 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            snprintf(err, errlen, "REDIS_URL: credentials must be [user]:password@");
            return -EINVAL;
        }
        r->user = strndup_or_null(p, (size_t)(colon - p));
        r->password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0) {
        snprintf(err, errlen, "REDIS_URL \"%s\" has no host", url);
        return -EINVAL;
    }
    r->host = strndup(p, hl);
    p += hl;
    r->port = 6379;
    if (*p == ':') {
        char *end = NULL;
        errno = 0;
        long port = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || port <= 0 || port > 65535 || (*end && *end != '/')) {
            snprintf(err, errlen, "REDIS_URL \"%s\" has a bad port", url);
            return -EINVAL;
        }
        r->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end = NULL;
        errno = 0;
        long db = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || *end || db < 0) {
            snprintf(err, errlen, "REDIS_URL \"%s\" has a bad database number", url);
            return -EINVAL;
        }
        r->db = db;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "REDIS_URL \"%s\" does not parse", url);
        return -EINVAL;
    }
    if (!r->host) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

struct redis *redis_new(const char *url, unsigned pool_size, int timeout_ms, char *err,
                        size_t errlen)
{
    struct redis *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->size = pool_size ? pool_size : 4;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    r->slots = calloc(r->size, sizeof *r->slots);
    if (!r->slots) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (url_parse(r, url, err, errlen) < 0)
        goto fail;
    return r;
fail:
    redis_free(r);
    return NULL;
}

void redis_free(struct redis *r)
{
    if (!r)
        return;
    for (unsigned i = 0; r->slots && i < r->size; i++)
        if (r->slots[i].c)
            redisFree(r->slots[i].c);
    free(r->slots);
    free(r->host);
    free(r->user);
    free(r->password);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* Connect, set timeouts, AUTH and SELECT. Returns the context or NULL with
 * err. */
static redisContext *redis_connect(struct redis *r, char *err, size_t errlen)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "redis unavailable: %s:%d: %s", r->host, r->port,
                 c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "redis unavailable: cannot set timeout: %s", c->errstr);
        goto fail;
    }
    redisEnableKeepAlive(c);
    if (r->password) {
        redisReply *rep = r->user ? redisCommand(c, "AUTH %s %s", r->user, r->password)
                                  : redisCommand(c, "AUTH %s", r->password);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (!ok)
            snprintf(err, errlen, "redis unavailable: AUTH failed: %s", rep ? rep->str : c->errstr);
        if (rep)
            freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    if (r->db) {
        redisReply *rep = redisCommand(c, "SELECT %ld", r->db);
        bool ok = rep && rep->type != REDIS_REPLY_ERROR;
        if (!ok)
            snprintf(err, errlen, "redis unavailable: SELECT %ld failed: %s", r->db,
                     rep ? rep->str : c->errstr);
        if (rep)
            freeReplyObject(rep);
        if (!ok)
            goto fail;
    }
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}

/* Take a free slot, waiting up to the timeout. Returns NULL with err. */
static struct redis_slot *slot_take(struct redis *r, char *err, size_t errlen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += r->timeout_ms / 1000;
    ts.tv_nsec += (long)(r->timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    struct redis_slot *s = NULL;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        /* prefer a connected slot */
        for (unsigned i = 0; i < r->size; i++) {
            struct redis_slot *x = &r->slots[i];
            if (!x->in_use && (!s || (x->c && !s->c)))
                s = x;
        }
        if (s) {
            s->in_use = true;
            break;
        }
        if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT) {
            snprintf(err, errlen, "redis unavailable: no connection free within %d ms",
                     r->timeout_ms);
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return s;
}

static void slot_give(struct redis *r, struct redis_slot *s)
{
    pthread_mutex_lock(&r->lock);
    s->in_use = false;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

/* One way of sending a command on a context. */
struct redis_call {
    int argc;
    const char **argv;
    const size_t *argvlen;
    const char *fmt;
    va_list *ap;
};

static redisReply *call_once(redisContext *c, const struct redis_call *call)
{
    if (call->fmt) {
        va_list ap;
        va_copy(ap, *call->ap);
        redisReply *rep = redisvCommand(c, call->fmt, ap);
        va_end(ap);
        return rep;
    }
    return redisCommandArgv(c, call->argc, call->argv, call->argvlen);
}

/* Run call on a slot; on an I/O error drop the context and retry once on a
 * new one. */
static redisReply *redis_run(struct redis *r, const struct redis_call *call, char *err,
                             size_t errlen)
{
    struct redis_slot *s = slot_take(r, err, errlen);
    redisReply *rep = NULL;
    if (!s)
        return NULL;
    for (int attempt = 0; attempt < 2 && !rep; attempt++) {
        if (s->c && s->c->err) {
            redisFree(s->c);
            s->c = NULL;
        }
        if (!s->c) {
            s->c = redis_connect(r, err, errlen);
            if (!s->c)
                break; /* connecting failed: the server is down, do not retry */
        }
        rep = call_once(s->c, call);
        if (!rep) {
            snprintf(err, errlen, "redis unavailable: %s",
                     s->c->errstr[0] ? s->c->errstr : "I/O error");
            redisFree(s->c);
            s->c = NULL;
        }
    }
    slot_give(r, s);
    return rep;
}

redisReply *redis_command_argv(struct redis *r, int argc, const char **argv, const size_t *argvlen,
                               char *err, size_t errlen)
{
    struct redis_call call = {.argc = argc, .argv = argv, .argvlen = argvlen};
    return redis_run(r, &call, err, errlen);
}

redisReply *redis_command(struct redis *r, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct redis_call call = {.fmt = fmt, .ap = &ap};
    redisReply *rep = redis_run(r, &call, err, errlen);
    va_end(ap);
    return rep;
}

/* SCRIPT LOAD s->source and store the sha. Returns 0 or negative with err
 * (a Redis error reply is reported in err too). */
static int script_load(struct redis *r, struct redis_script *s, char *err, size_t errlen)
{
    const char *argv[] = {"SCRIPT", "LOAD", s->source};
    redisReply *rep = redis_command_argv(r, 3, argv, NULL, err, errlen);
    if (!rep)
        return -EIO;
    int rc = 0;
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
        pthread_mutex_lock(&r->lock);
        memcpy(s->sha, rep->str, 40);
        s->sha[40] = '\0';
        pthread_mutex_unlock(&r->lock);
    } else {
        snprintf(err, errlen, "redis: SCRIPT LOAD failed: %s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        rc = -EINVAL;
    }
    freeReplyObject(rep);
    return rc;
}

redisReply *redis_eval(struct redis *r, struct redis_script *s, int nkeys, int nargs,
                       const char **args, const size_t *argslen, char *err, size_t errlen)
{
    int total = nkeys + nargs, argc = 3 + total;
    const char **argv = calloc((size_t)argc, sizeof *argv);
    size_t *argvlen = calloc((size_t)argc, sizeof *argvlen);
    char sha[41], nk[16];
    redisReply *rep = NULL;
    if (!argv || !argvlen || nkeys < 0 || nargs < 0) {
        snprintf(err, errlen, "redis_eval: bad arguments or out of memory");
        goto out;
    }
    pthread_mutex_lock(&r->lock);
    memcpy(sha, s->sha, sizeof sha);
    pthread_mutex_unlock(&r->lock);
    sha[40] = '\0';
    if (strlen(sha) != 40) {
        if (script_load(r, s, err, errlen) < 0)
            goto out;
        pthread_mutex_lock(&r->lock);
        memcpy(sha, s->sha, sizeof sha);
        pthread_mutex_unlock(&r->lock);
    }
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        argvlen[i] = strlen(argv[i]);
    for (int i = 0; i < total; i++) {
        argv[3 + i] = args[i];
        argvlen[3 + i] = argslen ? argslen[i] : strlen(args[i]);
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        rep = redis_command_argv(r, argc, argv, argvlen, err, errlen);
        if (!rep || rep->type != REDIS_REPLY_ERROR || strncmp(rep->str, "NOSCRIPT", 8) != 0)
            break;
        if (attempt == 1)
            break; /* still NOSCRIPT after loading: hand the error back */
        freeReplyObject(rep);
        rep = NULL;
        if (script_load(r, s, err, errlen) < 0)
            break;
        pthread_mutex_lock(&r->lock);
        memcpy(sha, s->sha, sizeof sha);
        pthread_mutex_unlock(&r->lock);
    }
out:
    free(argv);
    free(argvlen);
    return rep;
}

bool redis_ping(struct redis *r, char *why, size_t whylen)
{
    const char *argv[] = {"PING"};
    char err[256] = "";
    redisReply *rep = redis_command_argv(r, 1, argv, NULL, err, sizeof err);
    bool ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (!ok)
        snprintf(why, whylen, "%s",
                 rep ? (rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply") : err);
    if (rep)
        freeReplyObject(rep);
    return ok;
}
