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

/* ---- repeated ids ------------------------------------------------------------------------
 * A round of the pipeline (pipeline.h) claims the facts of many requests in one statement, and
 * two tills may send the same fact at once. An id is sent once, for its first asker; a later
 * asker gets what a second request right after it would get: in flight when the first owns it,
 * else the first's answer, and a conflict whenever its body differs.
 */

/* Open addressing over event ids: slot = index + 1 of the first claim with that id, 0 empty. */
struct idset {
    size_t *slot;
    size_t mask;
};

static void idset_init(struct idset *set, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n)
        cap *= 2;
    set->slot = calloc(cap, sizeof(*set->slot));
    if (!set->slot)
        abort(); /* OOM policy */
    set->mask = cap - 1;
}

/* The index of the first claim with c[i]'s id, inserting i when it is the first. */
static size_t idset_first(struct idset *set, struct claim *const *c, size_t i)
{
    size_t h = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)c[i]->event_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    for (h &= set->mask;; h = (h + 1) & set->mask) {
        if (set->slot[h] == 0) {
            set->slot[h] = i + 1;
            return i;
        }
        if (strcmp(c[set->slot[h] - 1]->event_id, c[i]->event_id) == 0)
            return set->slot[h] - 1;
    }
}

int claims_claim(struct pg *pg, struct claim *const *c, size_t n, long lease_ms, char *err,
                 size_t errlen)
{
    struct claim *uniq = NULL;
    size_t *first = NULL, nu = 0;
    struct idset set;
    int rc;

    if (n == 0)
        return 0;
    uniq = calloc(n, sizeof(*uniq));
    first = calloc(n, sizeof(*first));
    if (!uniq || !first)
        abort(); /* OOM policy */
    idset_init(&set, n);
    for (size_t i = 0; i < n; i++) {
        first[i] = idset_first(&set, c, i);
        if (first[i] == i) {
            uniq[nu] = *c[i];
            first[i] = nu++; /* from here on: the index in uniq */
        } else {
            first[i] = first[first[i]];
        }
    }
    rc = claim_direct(pg, uniq, nu, lease_ms, err, errlen);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct claim *u = &uniq[first[i]];

        if (strcmp(u->body_hash, c[i]->body_hash) != 0) {
            c[i]->state = CLAIM_CONFLICT;
        } else {
            c[i]->state = u->state;
            if (u->state == CLAIM_OWNED)
                u->state = CLAIM_IN_FLIGHT; /* for any later asker in this round */
        }
    }
    free(set.slot);
    free(uniq);
    free(first);
    return rc;
}

int claims_finish(struct pg *pg, const char *const *ids, size_t n, int ok, char *err, size_t errlen)
{
    return finish_direct(pg, ids, n, ok, err, errlen);
}
