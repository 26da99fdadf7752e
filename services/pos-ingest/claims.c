/* claims — see claims.h. Batches travel as Postgres array literals in one round trip. */
#include "claims.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "{a,b,c}" from n strings that need no quoting (uuids, hex). Caller frees. */
static char *array_literal(const char *const *v, size_t stride, size_t n)
{
    size_t len = 3, off = 0;
    char *s;

    for (size_t i = 0; i < n; i++)
        len += strlen(*(const char *const *)((const char *)v + i * stride)) + 1;
    s = malloc(len);
    if (!s)
        abort(); /* OOM policy */
    s[off++] = '{';
    for (size_t i = 0; i < n; i++) {
        const char *x = *(const char *const *)((const char *)v + i * stride);
        size_t l = strlen(x);

        if (i)
            s[off++] = ',';
        memcpy(s + off, x, l);
        off += l;
    }
    s[off++] = '}';
    s[off] = '\0';
    return s;
}

/*
 * A pooled connection whose commits do not wait for the WAL flush (synchronous_commit off, for
 * this session only). Why that is safe here: Kafka, not this table, holds the facts; a claim or
 * mark lost in a Postgres crash (the last few hundred ms) only lets a retry publish the same
 * event id again — the same outcome as the crash window of claims.h, deduplicated by consumers
 * on ce_id. It takes the WAL fsync out of every till request (two commits each).
 */
static PGconn *claims_conn(struct pg *pg, char *err, size_t errlen)
{
    /* sessions already switched, by backend pid: a repaired connection is a new session */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int set_pids[128];
    static size_t nset;
    PGconn *conn = pg_acquire(pg, 2000, err, errlen);
    PGresult *res;
    int pid;
    bool done = false;

    if (!conn)
        return NULL;
    pid = PQbackendPID(conn);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nset && i < sizeof(set_pids) / sizeof(set_pids[0]) && !done; i++)
        done = set_pids[i] == pid;
    pthread_mutex_unlock(&mu);
    if (done)
        return conn;
    res = PQexec(conn, "SET synchronous_commit TO off");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "SET synchronous_commit: %s", PQresultErrorMessage(res));
        PQclear(res);
        pg_release(pg, conn);
        return NULL;
    }
    PQclear(res);
    pthread_mutex_lock(&mu);
    set_pids[nset++ % (sizeof(set_pids) / sizeof(set_pids[0]))] = pid;
    pthread_mutex_unlock(&mu);
    return conn;
}

static int claim_direct(struct pg *pg, struct claim *c, size_t n, long lease_ms, char *err,
                        size_t errlen)
{
    static const char sql[] =
        "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY "
        "                AS t(event_id, body_hash, n)), "
        "ins AS (INSERT INTO pos_ingest_claims (event_id, body_hash, claimed_at) "
        "        SELECT event_id, body_hash, now() FROM input "
        "        ON CONFLICT (event_id) DO UPDATE SET claimed_at = now(), "
        "           attempts = pos_ingest_claims.attempts + 1 "
        "        WHERE pos_ingest_claims.published_at IS NULL "
        "          AND pos_ingest_claims.body_hash = EXCLUDED.body_hash "
        "          AND pos_ingest_claims.claimed_at < now() - make_interval(secs => $3::float8) "
        "        RETURNING event_id) "
        "SELECT i.n, ins.event_id IS NOT NULL, c.published_at IS NOT NULL, "
        "       coalesce(c.body_hash = i.body_hash, true) "
        "FROM input i LEFT JOIN ins ON ins.event_id = i.event_id "
        "LEFT JOIN pos_ingest_claims c ON c.event_id = i.event_id ORDER BY i.n";
    char *ids = NULL, *hashes = NULL, lease[32];
    const char *params[3];
    PGconn *conn;
    PGresult *res = NULL;
    int rc = -EIO;

    if (n == 0)
        return 0;
    conn = claims_conn(pg, err, errlen);
    if (!conn)
        return -EIO;
    ids = array_literal(&c[0].event_id, sizeof(*c), n);
    hashes = array_literal(&c[0].body_hash, sizeof(*c), n);
    snprintf(lease, sizeof(lease), "%.3f", (double)lease_ms / 1000.0);
    params[0] = ids;
    params[1] = hashes;
    params[2] = lease;
    res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "claim failed: %s", PQresultErrorMessage(res));
        goto out;
    }
    if ((size_t)PQntuples(res) != n) {
        snprintf(err, errlen, "claim returned %d rows for %zu ids", PQntuples(res), n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        bool owned = PQgetvalue(res, (int)i, 1)[0] == 't';
        bool published = PQgetvalue(res, (int)i, 2)[0] == 't';
        bool same = PQgetvalue(res, (int)i, 3)[0] == 't';

        c[i].state = owned       ? CLAIM_OWNED
                     : !same     ? CLAIM_CONFLICT
                     : published ? CLAIM_PUBLISHED
                                 : CLAIM_IN_FLIGHT;
    }
    rc = 0;
out:
    PQclear(res);
    pg_release(pg, conn);
    free(ids);
    free(hashes);
    return rc;
}

static int finish_direct(struct pg *pg, const char *const *ids, size_t n, int ok, char *err,
                         size_t errlen)
{
    const char *sql = ok ? "UPDATE pos_ingest_claims SET published_at = now() "
                           "WHERE event_id = ANY($1::uuid[])"
                         : "UPDATE pos_ingest_claims SET claimed_at = '-infinity' "
                           "WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL";
    PGconn *conn;
    PGresult *res;
    char *lit;
    int rc = 0;

    if (n == 0)
        return 0;
    conn = claims_conn(pg, err, errlen);
    if (!conn)
        return -EIO;
    lit = array_literal(ids, sizeof(*ids), n);
    res = PQexecParams(conn, sql, 1, NULL, (const char *const *)&lit, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "claim update failed: %s", PQresultErrorMessage(res));
        rc = -EIO;
    }
    PQclear(res);
    pg_release(pg, conn);
    free(lit);
    return rc;
}

/* ---- group commit ----------------------------------------------------------------------------
 * Single-fact requests arrive one per HTTP worker, each worth one small statement (two with its
 * SET). Concurrent small calls are gathered instead: the first caller to find no statement in
 * progress runs one for everything waiting (leader), the others wait for their results. A call
 * larger than GROUP_SMALL (a batch upload) is one statement already and goes straight through.
 */
#define GROUP_SMALL 32
#define GROUP_MAX   1024 /* facts per gathered statement */

struct greq {
    struct greq *next;
    struct pg *pg;
    struct claim *c;        /* claim */
    const char *const *ids; /* finish */
    size_t n;
    int rc;
    bool done;
    pthread_cond_t cv; /* its own: a flush wakes only whom it concerns */
    char err[256];
};

struct group {
    pthread_mutex_t mu;
    struct greq *head, **tail;
    bool busy;
};

static struct group g_claim = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, false};
static struct group g_finish[2] = {{PTHREAD_MUTEX_INITIALIZER, NULL, NULL, false},
                                   {PTHREAD_MUTEX_INITIALIZER, NULL, NULL, false}};

/* Take from g's queue the requests that go with the first one (same pool, room left). */
static struct greq *group_take(struct group *g)
{
    struct greq *batch = NULL, **bt = &batch, **pp = &g->head;
    struct pg *pg = g->head->pg;
    size_t total = 0;

    while (*pp) {
        struct greq *r = *pp;

        if (r->pg == pg && (total == 0 || total + r->n <= GROUP_MAX)) {
            *pp = r->next;
            r->next = NULL;
            *bt = r;
            bt = &r->next;
            total += r->n;
        } else {
            pp = &r->next;
        }
    }
    g->tail = pp;
    return batch;
}

/* Queue me on g; lead statements (flush) until me is answered. Returns me->rc. */
static int group_run(struct group *g, struct greq *me, void (*flush)(struct greq *, void *),
                     void *arg)
{
    pthread_cond_init(&me->cv, NULL);
    pthread_mutex_lock(&g->mu);
    if (!g->tail)
        g->tail = &g->head;
    *g->tail = me;
    g->tail = &me->next;
    while (!me->done) {
        if (g->busy) {
            pthread_cond_wait(&me->cv, &g->mu);
            continue;
        }
        struct greq *batch = group_take(g);

        g->busy = true;
        pthread_mutex_unlock(&g->mu);
        flush(batch, arg);
        pthread_mutex_lock(&g->mu);
        g->busy = false;
        for (struct greq *r = batch, *next; r; r = next) {
            next = r->next; /* r is gone once its caller has seen done */
            r->done = true;
            if (r != me)
                pthread_cond_signal(&r->cv);
        }
        if (g->head) /* the first one waiting leads the next statement */
            pthread_cond_signal(&g->head->cv);
    }
    pthread_mutex_unlock(&g->mu);
    pthread_cond_destroy(&me->cv);
    return me->rc;
}

/* How many facts the requests of batch carry. */
static size_t batch_total(const struct greq *batch)
{
    size_t total = 0;

    for (const struct greq *r = batch; r; r = r->next)
        total += r->n;
    return total;
}

/* The statement's outcome, to every request of batch. */
static void batch_answer(struct greq *batch, int rc, const char *err)
{
    for (struct greq *r = batch; r; r = r->next) {
        r->rc = rc;
        snprintf(r->err, sizeof(r->err), "%s", err);
    }
}

/*
 * One claim statement for a batch. An id wanted by two requests is sent once, for the first:
 * the others get what a second request would get right after it (in flight, or the first's
 * answer when that was not a new claim; a different body is a conflict either way).
 */
static void claim_flush(struct greq *batch, void *arg)
{
    long lease_ms = *(const long *)arg;
    size_t nu = 0;
    struct claim *uniq = calloc(batch_total(batch), sizeof(*uniq));
    char err[256] = "";
    int rc;

    if (!uniq)
        abort(); /* OOM policy */
    for (struct greq *r = batch; r; r = r->next)
        for (size_t i = 0; i < r->n; i++) {
            size_t k = 0;

            while (k < nu && strcmp(uniq[k].event_id, r->c[i].event_id) != 0)
                k++;
            if (k == nu)
                uniq[nu++] = r->c[i];
        }
    rc = claim_direct(batch->pg, uniq, nu, lease_ms, err, sizeof(err));
    batch_answer(batch, rc, err);
    for (struct greq *r = batch; r && rc == 0; r = r->next) {
        for (size_t i = 0; i < r->n; i++) {
            size_t k = 0;

            while (strcmp(uniq[k].event_id, r->c[i].event_id) != 0)
                k++;
            if (strcmp(uniq[k].body_hash, r->c[i].body_hash) != 0) {
                r->c[i].state = CLAIM_CONFLICT;
            } else {
                r->c[i].state = uniq[k].state;
                if (uniq[k].state == CLAIM_OWNED)
                    uniq[k].state = CLAIM_IN_FLIGHT; /* for any later asker in this batch */
            }
        }
    }
    free(uniq);
}

static void finish_flush(struct greq *batch, void *arg)
{
    int ok = *(const int *)arg;
    size_t total = batch_total(batch), k = 0;
    const char **ids = calloc(total, sizeof(*ids));
    char err[256] = "";

    if (!ids)
        abort(); /* OOM policy */
    for (struct greq *r = batch; r; r = r->next)
        for (size_t i = 0; i < r->n; i++)
            ids[k++] = r->ids[i];
    batch_answer(batch, finish_direct(batch->pg, ids, total, ok, err, sizeof(err)), err);
    free(ids);
}

int claims_claim(struct pg *pg, struct claim *c, size_t n, long lease_ms, char *err, size_t errlen)
{
    struct greq me = {.pg = pg, .c = c, .n = n};
    int rc;

    if (n == 0)
        return 0;
    if (n > GROUP_SMALL)
        return claim_direct(pg, c, n, lease_ms, err, errlen);
    rc = group_run(&g_claim, &me, claim_flush, &lease_ms);
    if (rc)
        snprintf(err, errlen, "%s", me.err);
    return rc;
}

int claims_finish(struct pg *pg, const char *const *ids, size_t n, int ok, char *err, size_t errlen)
{
    struct greq me = {.pg = pg, .ids = ids, .n = n};
    int rc;

    if (n == 0)
        return 0;
    if (n > GROUP_SMALL)
        return finish_direct(pg, ids, n, ok, err, errlen);
    rc = group_run(&g_finish[ok ? 1 : 0], &me, finish_flush, &ok);
    if (rc)
        snprintf(err, errlen, "%s", me.err);
    return rc;
}
