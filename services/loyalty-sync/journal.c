/* journal — Postgres access for loyalty-sync (see journal.h). */
#include "journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *state_names[] = {"new",    "in_flight", "applied",  "noop",
                                    "failed", "waiting",   "ambiguous"};
static const char *kind_names[] = {"award", "reversal", "unlinked"};

const char *change_state_name(enum change_state s)
{
    return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "?";
}

const char *change_kind_name(enum change_kind k)
{
    return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

static int res_fail(PGresult *r, PGconn *db, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s", what, r ? PQresultErrorMessage(r) : PQerrorMessage(db));
    PQclear(r);
    return -EIO;
}

static void cp(char *out, size_t cap, const char *s)
{
    snprintf(out, cap, "%s", s ? s : "");
}

static int64_t i64(const char *s)
{
    return s && *s ? strtoll(s, NULL, 10) : 0;
}

#define CHANGE_COLS                                                                                \
    "idem_key, kind, state, source_key, coalesce(member_id, ''), points, "                         \
    "coalesce(balance_after, -1), coalesce(expected_version, -1), amount_minor, currency, "        \
    "occurred_at_ms, source_event_id, loyalty_id, email, phone, customer_name, failure_reason, "   \
    "attempts, published"

int journal_change_get(PGconn *db, const char *idem_key, struct journal_change *c, char *err,
                       size_t errlen)
{
    const char *p[] = {idem_key};
    PGresult *r = PQexecParams(db, "SELECT " CHANGE_COLS " FROM loyalty_change WHERE idem_key = $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return res_fail(r, db, "journal read", err, errlen);
    if (PQntuples(r) == 0) {
        PQclear(r);
        c->state = CHANGE_NEW;
        return -ENOENT;
    }
    memset(c, 0, sizeof *c);
    cp(c->idem_key, sizeof c->idem_key, PQgetvalue(r, 0, 0));
    const char *k = PQgetvalue(r, 0, 1), *s = PQgetvalue(r, 0, 2);
    for (size_t i = 0; i < sizeof kind_names / sizeof *kind_names; i++)
        if (strcmp(k, kind_names[i]) == 0)
            c->kind = (enum change_kind)i;
    for (size_t i = 0; i < sizeof state_names / sizeof *state_names; i++)
        if (strcmp(s, state_names[i]) == 0)
            c->state = (enum change_state)i;
    cp(c->source_key, sizeof c->source_key, PQgetvalue(r, 0, 3));
    cp(c->member_id, sizeof c->member_id, PQgetvalue(r, 0, 4));
    c->points = i64(PQgetvalue(r, 0, 5));
    c->balance_after = i64(PQgetvalue(r, 0, 6));
    c->expected_version = i64(PQgetvalue(r, 0, 7));
    c->amount_minor = i64(PQgetvalue(r, 0, 8));
    cp(c->currency, sizeof c->currency, PQgetvalue(r, 0, 9));
    c->occurred_at_ms = i64(PQgetvalue(r, 0, 10));
    cp(c->source_event_id, sizeof c->source_event_id, PQgetvalue(r, 0, 11));
    cp(c->loyalty_id, sizeof c->loyalty_id, PQgetvalue(r, 0, 12));
    cp(c->email, sizeof c->email, PQgetvalue(r, 0, 13));
    cp(c->phone, sizeof c->phone, PQgetvalue(r, 0, 14));
    cp(c->customer_name, sizeof c->customer_name, PQgetvalue(r, 0, 15));
    cp(c->failure_reason, sizeof c->failure_reason, PQgetvalue(r, 0, 16));
    c->attempts = (int)i64(PQgetvalue(r, 0, 17));
    c->published = PQgetvalue(r, 0, 18)[0] == 't';
    PQclear(r);
    return 0;
}

static PGresult *change_upsert(PGconn *db, const struct journal_change *c)
{
    char pts[24], bal[24], ver[24], amt[24], occ[24], att[16];
    snprintf(pts, sizeof pts, "%" PRId64, c->points);
    snprintf(bal, sizeof bal, "%" PRId64, c->balance_after);
    snprintf(ver, sizeof ver, "%" PRId64, c->expected_version);
    snprintf(amt, sizeof amt, "%" PRId64, c->amount_minor);
    snprintf(occ, sizeof occ, "%" PRId64, c->occurred_at_ms);
    snprintf(att, sizeof att, "%d", c->attempts);
    const char *p[] = {c->idem_key,
                       change_kind_name(c->kind),
                       change_state_name(c->state),
                       c->source_key,
                       c->member_id[0] ? c->member_id : NULL,
                       pts,
                       c->balance_after >= 0 ? bal : NULL,
                       c->expected_version != -1 ? ver : NULL,
                       amt,
                       c->currency,
                       occ,
                       c->source_event_id,
                       c->loyalty_id,
                       c->email,
                       c->phone,
                       c->customer_name,
                       c->failure_reason,
                       att,
                       c->published ? "true" : "false"};
    return PQexecParams(
        db,
        "INSERT INTO loyalty_change (idem_key, kind, state, source_key, member_id, points, "
        "balance_after, expected_version, amount_minor, currency, occurred_at_ms, "
        "source_event_id, loyalty_id, email, phone, customer_name, failure_reason, attempts, "
        "published) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19) "
        "ON CONFLICT (idem_key) DO UPDATE SET kind = EXCLUDED.kind, state = EXCLUDED.state, "
        "member_id = EXCLUDED.member_id, points = EXCLUDED.points, "
        "balance_after = EXCLUDED.balance_after, expected_version = EXCLUDED.expected_version, "
        "amount_minor = EXCLUDED.amount_minor, failure_reason = EXCLUDED.failure_reason, "
        "attempts = EXCLUDED.attempts, published = EXCLUDED.published, updated_at = now()",
        19, NULL, p, NULL, NULL, 0);
}

int journal_change_put(PGconn *db, const struct journal_change *c, char *err, size_t errlen)
{
    PGresult *r = change_upsert(db, c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return res_fail(r, db, "journal write", err, errlen);
    PQclear(r);
    return 0;
}

int journal_award_get(PGconn *db, const char *source_key, struct journal_award *a, char *err,
                      size_t errlen)
{
    const char *p[] = {source_key};
    PGresult *r = PQexecParams(db,
                               "SELECT source_key, coalesce(member_id, ''), qualifying_minor, "
                               "currency, points, refunded_minor, occurred_at_ms, rule_id "
                               "FROM loyalty_award WHERE source_key = $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return res_fail(r, db, "award read", err, errlen);
    if (PQntuples(r) == 0) {
        PQclear(r);
        return -ENOENT;
    }
    memset(a, 0, sizeof *a);
    cp(a->source_key, sizeof a->source_key, PQgetvalue(r, 0, 0));
    cp(a->member_id, sizeof a->member_id, PQgetvalue(r, 0, 1));
    a->qualifying_minor = i64(PQgetvalue(r, 0, 2));
    cp(a->currency, sizeof a->currency, PQgetvalue(r, 0, 3));
    a->points = i64(PQgetvalue(r, 0, 4));
    a->refunded_minor = i64(PQgetvalue(r, 0, 5));
    a->occurred_at_ms = i64(PQgetvalue(r, 0, 6));
    cp(a->rule_id, sizeof a->rule_id, PQgetvalue(r, 0, 7));
    PQclear(r);
    return 0;
}

int journal_commit(PGconn *db, const struct journal_change *c, const struct journal_award *a,
                   int64_t refunded, char *err, size_t errlen)
{
    PGresult *r = PQexec(db, "BEGIN");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return res_fail(r, db, "journal begin", err, errlen);
    PQclear(r);
    r = change_upsert(db, c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(r);
    r = NULL;
    if (a && c->kind == CHANGE_AWARD) {
        char q[24], pts[24], occ[24];
        snprintf(q, sizeof q, "%" PRId64, a->qualifying_minor);
        snprintf(pts, sizeof pts, "%" PRId64, a->points);
        snprintf(occ, sizeof occ, "%" PRId64, a->occurred_at_ms);
        const char *p[] = {
            a->source_key, a->member_id[0] ? a->member_id : NULL, q, a->currency, pts, occ,
            a->rule_id};
        r = PQexecParams(db,
                         "INSERT INTO loyalty_award (source_key, member_id, qualifying_minor, "
                         "currency, points, occurred_at_ms, rule_id) VALUES ($1,$2,$3,$4,$5,$6,$7) "
                         "ON CONFLICT (source_key) DO NOTHING",
                         7, NULL, p, NULL, NULL, 0);
    } else if (a && c->kind == CHANGE_REVERSAL) {
        char rf[24];
        snprintf(rf, sizeof rf, "%" PRId64, refunded);
        const char *p[] = {a->source_key, rf};
        r = PQexecParams(db,
                         "UPDATE loyalty_award SET refunded_minor = refunded_minor + $2 "
                         "WHERE source_key = $1",
                         2, NULL, p, NULL, NULL, 0);
    }
    if (r && PQresultStatus(r) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(r);
    r = PQexec(db, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        goto fail;
    PQclear(r);
    return 0;
fail:
    res_fail(r, db, "journal commit", err, errlen);
    PQclear(PQexec(db, "ROLLBACK"));
    return -EIO;
}

int journal_mark_published(PGconn *db, const char *idem_key, char *err, size_t errlen)
{
    const char *p[] = {idem_key};
    PGresult *r = PQexecParams(db, "UPDATE loyalty_change SET published = true WHERE idem_key = $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return res_fail(r, db, "journal publish mark", err, errlen);
    PQclear(r);
    return 0;
}

int journal_member_writes(PGconn *db, const char *member_id, const char *except_key, int64_t base,
                          int64_t upto, struct journal_member_writes *w, char *err, size_t errlen)
{
    char b[24], u[24];
    snprintf(b, sizeof b, "%" PRId64, base);
    snprintf(u, sizeof u, "%" PRId64, upto);
    const char *p[] = {member_id, except_key, b, u};
    PGresult *r = PQexecParams(
        db,
        "SELECT count(*) FILTER (WHERE expected_version = $3::bigint), "
        "count(*) FILTER (WHERE expected_version > $3::bigint AND expected_version < $4::bigint), "
        "coalesce(sum(points) FILTER (WHERE expected_version > $3::bigint AND "
        "expected_version < $4::bigint), 0) FROM loyalty_change WHERE member_id = $1 AND "
        "state = 'applied' AND idem_key <> $2",
        4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return res_fail(r, db, "journal member writes", err, errlen);
    w->at_base = i64(PQgetvalue(r, 0, 0));
    w->after = i64(PQgetvalue(r, 0, 1));
    w->after_points = i64(PQgetvalue(r, 0, 2));
    PQclear(r);
    return 0;
}

int journal_open_keys(PGconn *db, const char *only_source, bool only_waiting, char ***keys,
                      size_t *n, char *err, size_t errlen)
{
    const char *p[] = {only_source, only_waiting ? "t" : "f"};
    *keys = NULL;
    *n = 0;
    PGresult *r = PQexecParams(
        db,
        "SELECT idem_key FROM loyalty_change WHERE ($1::text IS NULL OR source_key = $1) AND "
        "(CASE WHEN $2::boolean THEN state = 'waiting' ELSE (state IN ('failed', 'ambiguous', "
        "'in_flight', 'waiting') OR (state IN ('applied', 'noop') AND NOT published)) END) "
        "ORDER BY occurred_at_ms, updated_at",
        2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return res_fail(r, db, "journal open keys", err, errlen);
    int rows = PQntuples(r);
    if (rows > 0) {
        *keys = calloc((size_t)rows, sizeof **keys);
        if (!*keys) {
            PQclear(r);
            return -ENOMEM;
        }
    }
    for (int i = 0; i < rows; i++) {
        (*keys)[i] = strdup(PQgetvalue(r, i, 0));
        if (!(*keys)[i])
            break;
        (*n)++;
    }
    PQclear(r);
    return 0;
}
