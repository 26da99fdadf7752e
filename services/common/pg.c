/*
 * pg — connection pool. See pg.h.
 *
 * A slot is free or in use; a free slot holds a healthy connection, a broken
 * one, or none. pg_acquire() prefers a free healthy connection, then repairs
 * or opens one on a free slot whose backoff has passed. Connecting happens
 * outside the lock (the slot is marked in use meanwhile), so one slow connect
 * never blocks the other threads.
 */
#include "pg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_BACKOFF_MIN_MS  100
#define PG_BACKOFF_MAX_MS  5000
#define PG_PING_TIMEOUT_MS 2000

struct pg_slot {
    PGconn *conn;
    bool in_use;
    bool broken;         /* conn needs PQreset / reconnect before use */
    unsigned failures;   /* consecutive failed attempts */
    int64_t retry_at_ms; /* no attempt before this (monotonic) */
};

struct pg {
    char *url;
    unsigned size;
    struct pg_slot *slots;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled on release */
    char last_err[256];  /* why the last attempt failed */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy a libpq message without its trailing newline. */
static void copy_msg(char *dst, size_t len, const char *prefix, const char *msg)
{
    if (!len)
        return;
    snprintf(dst, len, "%s%s", prefix, msg ? msg : "");
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
        dst[--n] = '\0';
    for (char *p = dst; *p; p++) /* libpq's messages span lines: keep one */
        if (*p == '\n' || *p == '\t')
            *p = ' ';
}

struct pg *pg_new(const char *url, unsigned pool_size, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = url ? PQconninfoParse(url, &perr) : NULL;
    if (!opts) {
        copy_msg(err, errlen, "DATABASE_URL does not parse: ", perr ? perr : "empty");
        PQfreemem(perr);
        return NULL;
    }
    PQconninfoFree(opts);
    struct pg *pg = calloc(1, sizeof *pg);
    if (!pg)
        goto oom;
    pg->size = pool_size ? pool_size : 4;
    pg->url = strdup(url);
    pg->slots = calloc(pg->size, sizeof *pg->slots);
    if (!pg->url || !pg->slots)
        goto oom;
    pthread_mutex_init(&pg->lock, NULL);
    pthread_cond_init(&pg->cond, NULL);
    return pg;
oom:
    if (pg) {
        free(pg->url);
        free(pg->slots);
        free(pg);
    }
    snprintf(err, errlen, "out of memory");
    return NULL;
}

/* libpq prints notices (and the FATAL of a terminated session) to stderr by
 * default; a library module does not. */
static void notice_discard(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Connect anew to pg->url with a default connect_timeout. */
static PGconn *pg_connect(struct pg *pg)
{
    /* with expand_dbname, later settings override earlier ones: the URL's own
     * connect_timeout wins over our default */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {"5", pg->url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c)
        PQsetNoticeProcessor(c, notice_discard, NULL);
    return c;
}

/* An idle connection whose socket is readable has been told something by
 * the server: usually a FATAL (terminated, shutting down) then EOF. Consume
 * it and report whether the connection is still good. */
static bool conn_alive(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_OK)
        return false;
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
    if (pfd.fd < 0)
        return false;
    /* a FATAL and the EOF after it may take more than one read to see */
    for (int i = 0; i < 4 && poll(&pfd, 1, 0) > 0; i++) {
        if (!PQconsumeInput(c))
            return false;
        PGnotify *n;
        while ((n = PQnotifies(c)) != NULL)
            PQfreemem(n);
    }
    return PQstatus(c) == CONNECTION_OK;
}

/* Make slot's connection usable (reset, else reconnect). Called without the
 * lock, with the slot marked in use. Returns true on success, else err. */
static bool slot_repair(struct pg *pg, struct pg_slot *s, char *err, size_t errlen)
{
    if (s->conn && s->broken) {
        PQreset(s->conn); /* keeps the notice processor */
        if (PQstatus(s->conn) == CONNECTION_OK)
            return true;
        PQfinish(s->conn);
        s->conn = NULL;
    }
    if (!s->conn)
        s->conn = pg_connect(pg);
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
        return true;
    copy_msg(err, errlen,
             "database unreachable: ", s->conn ? PQerrorMessage(s->conn) : "out of memory");
    return false;
}

PGconn *pg_acquire(struct pg *pg, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    PGconn *ret = NULL;
    pthread_mutex_lock(&pg->lock);
    for (;;) {
        struct pg_slot *repair = NULL;
        int64_t now = now_ms();
        bool any_free = false;
        for (unsigned i = 0; i < pg->size && !ret; i++) {
            struct pg_slot *s = &pg->slots[i];
            if (s->in_use)
                continue;
            any_free = true;
            if (s->conn && !s->broken) {
                if (conn_alive(s->conn)) {
                    s->in_use = true;
                    ret = s->conn;
                    break;
                }
                s->broken = true;
            }
            if (!repair && s->retry_at_ms <= now)
                repair = s;
        }
        if (ret)
            break;
        if (repair) {
            repair->in_use = true;
            pthread_mutex_unlock(&pg->lock);
            char why[256] = "";
            bool ok = slot_repair(pg, repair, why, sizeof why);
            pthread_mutex_lock(&pg->lock);
            if (ok) {
                repair->broken = false;
                repair->failures = 0;
                repair->retry_at_ms = 0;
                ret = repair->conn;
                break;
            }
            repair->in_use = false;
            repair->broken = repair->conn != NULL;
            unsigned shift = repair->failures < 6 ? repair->failures : 6;
            int64_t wait = (int64_t)PG_BACKOFF_MIN_MS << shift;
            repair->failures++;
            repair->retry_at_ms = now_ms() + (wait < PG_BACKOFF_MAX_MS ? wait : PG_BACKOFF_MAX_MS);
            snprintf(pg->last_err, sizeof pg->last_err, "%s", why);
            pthread_cond_broadcast(&pg->cond);
            snprintf(err, errlen, "%s", why);
            break;
        }
        if (any_free) {
            /* every free slot is backing off after failures: the database is
             * down; fail now rather than wait */
            snprintf(err, errlen, "%s (retry pending)",
                     pg->last_err[0] ? pg->last_err : "database unreachable");
            break;
        }
        if (now >= deadline) {
            snprintf(err, errlen, "no database connection free within %d ms", timeout_ms);
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t wait = deadline - now;
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&pg->cond, &pg->lock, &ts);
    }
    pthread_mutex_unlock(&pg->lock);
    return ret;
}

void pg_release(struct pg *pg, PGconn *conn)
{
    if (!pg || !conn)
        return;
    bool broken = PQstatus(conn) != CONNECTION_OK;
    if (!broken) {
        PGTransactionStatusType ts = PQtransactionStatus(conn);
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            PGresult *r = PQexec(conn, "ROLLBACK");
            broken = PQresultStatus(r) != PGRES_COMMAND_OK;
            PQclear(r);
        } else if (ts != PQTRANS_IDLE) {
            broken = true; /* results still pending or unknown: start over */
        }
    }
    pthread_mutex_lock(&pg->lock);
    for (unsigned i = 0; i < pg->size; i++) {
        struct pg_slot *s = &pg->slots[i];
        if (s->conn == conn && s->in_use) {
            s->in_use = false;
            if (broken)
                s->broken = true;
            break;
        }
    }
    pthread_cond_signal(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
}

/* Run "SELECT 1" with a deadline, using libpq's asynchronous calls.
 * Returns 1 when answered, 0 on an error (conn still owned by the pool), -1
 * on a timeout: the query was cancelled and conn finished, as we cannot tell
 * when its answer would come. */
static int ping_conn(PGconn *c, char *why, size_t whylen)
{
    int64_t deadline = now_ms() + PG_PING_TIMEOUT_MS;
    int ret = 0;
    if (!PQsendQuery(c, "SELECT 1")) {
        copy_msg(why, whylen, "postgres: ", PQerrorMessage(c));
        return 0;
    }
    while (PQisBusy(c)) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            snprintf(why, whylen, "postgres: no answer to SELECT 1 within %d ms",
                     PG_PING_TIMEOUT_MS);
            PGcancel *cancel = PQgetCancel(c);
            char cerr[64];
            if (cancel) {
                PQcancel(cancel, cerr, sizeof cerr);
                PQfreeCancel(cancel);
            }
            PQfinish(c);
            return -1;
        }
        if (!PQconsumeInput(c))
            break;
    }
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            ret = 1;
        else if (whylen && !why[0])
            copy_msg(why, whylen, "postgres: ", PQresultErrorMessage(r));
        PQclear(r);
    }
    if (!ret && whylen && !why[0])
        copy_msg(why, whylen, "postgres: ", PQerrorMessage(c));
    return ret;
}

bool pg_ping(struct pg *pg, char *why, size_t whylen)
{
    char err[256] = "";
    if (whylen)
        why[0] = '\0';
    PGconn *c = pg_acquire(pg, PG_PING_TIMEOUT_MS, err, sizeof err);
    if (!c) {
        snprintf(why, whylen, "postgres: %s", err);
        return false;
    }
    int rc = ping_conn(c, why, whylen);
    if (rc >= 0) {
        pg_release(pg, c);
        return rc == 1;
    }
    /* c is finished: empty its slot */
    pthread_mutex_lock(&pg->lock);
    for (unsigned i = 0; i < pg->size; i++) {
        if (pg->slots[i].conn == c) {
            pg->slots[i].conn = NULL;
            pg->slots[i].in_use = false;
            pg->slots[i].broken = false;
        }
    }
    pthread_cond_signal(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
    return false;
}

void pg_free(struct pg *pg)
{
    if (!pg)
        return;
    for (unsigned i = 0; i < pg->size; i++)
        if (pg->slots[i].conn)
            PQfinish(pg->slots[i].conn);
    pthread_mutex_destroy(&pg->lock);
    pthread_cond_destroy(&pg->cond);
    free(pg->slots);
    free(pg->url);
    free(pg);
}

int pg_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        copy_msg(err, errlen, "", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
        if (errlen && !err[0])
            copy_msg(err, errlen, "", PQerrorMessage(conn));
        rc = -EIO;
    }
    PQclear(r);
    return rc;
}
