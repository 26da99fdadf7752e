/* claims — see claims.h. Batches travel as Postgres array literals in one round trip. */
#include "claims.h"

#include <errno.h>
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
    PGconn *conn = pg_acquire(pg, 2000, err, errlen);
    PGresult *res;

    if (!conn)
        return NULL;
    res = PQexec(conn, "SET synchronous_commit TO off");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "SET synchronous_commit: %s", PQresultErrorMessage(res));
        PQclear(res);
        pg_release(pg, conn);
        return NULL;
    }
    PQclear(res);
    return conn;
}

int claims_claim(struct pg *pg, struct claim *c, size_t n, long lease_ms, char *err, size_t errlen)
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

int claims_finish(struct pg *pg, const char *const *ids, size_t n, int ok, char *err, size_t errlen)
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
