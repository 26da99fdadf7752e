/* exstore — see exstore.h. The JSON the API serves is built by Postgres (json_build_object), so
 * the row and its JSON cannot disagree. */
#include "exstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

static const char *const type_names[] = {
    "unspecified",
    "sku_unknown",
    "duplicate_sku",
    "tax_mapping_failed",
    "discount_mapping_failed",
    "non_stock_unmapped",
    "payload_rejected",
    "dead_lettered",
    "stock_drift",
    "negative_stock",
    "order_not_reflected",
    "webhook_gap",
    "loyalty_update_failed",
    "possible_duplicate_customer",
    "takings_variance",
    "payout_variance",
    "unknown_location",
    "transaction_not_applied",
    "balance_mismatch",
    "sku_one_side_only",
};
static const char *const owner_names[] = {"unspecified", "ecommerce", "finance", "operations",
                                          "cx"};
static const char *const severity_names[] = {"unspecified", "info", "warning", "error", "critical"};

#define NAME_OF(arr, v)                                                                            \
    (((size_t)(v) < sizeof(arr) / sizeof((arr)[0])) ? (arr)[(size_t)(v)] : "unspecified")

const char *exstore_type_name(Tillsync__V1__ExceptionType t)
{
    return NAME_OF(type_names, t);
}

const char *exstore_owner_name(Tillsync__V1__OwnerTeam o)
{
    return NAME_OF(owner_names, o);
}

const char *exstore_severity_name(Tillsync__V1__Severity s)
{
    return NAME_OF(severity_names, s);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int link_event(PGconn *conn, const char *id, const char *event_id, const char *role,
                      char *err, size_t errlen)
{
    const char *p[] = {id, event_id, role};

    if (!event_id || !*event_id)
        return 0;
    return db_exec(conn,
                   "INSERT INTO recon_exception_events (exception_id, event_id, role) "
                   "VALUES ($1::bigint, $2, $3) ON CONFLICT DO NOTHING",
                   3, p, err, errlen);
}

int exstore_raise(PGconn *conn, const struct exstore_sighting *s, int64_t *id, char *err,
                  size_t errlen)
{
    char seen[32];
    const char *p[12];
    PGresult *r;
    char *idtext = NULL;
    int rc = 0;

    if (!s->dedupe_key || !*s->dedupe_key) {
        snprintf(err, errlen, "exception without a dedupe key");
        return -EINVAL;
    }
    p[0] = s->dedupe_key;
    p[1] = nz(s->type);
    p[2] = nz(s->owner);
    p[3] = nz(s->severity);
    p[4] = nz(s->summary);
    p[5] = nz(s->explanation);
    p[6] = nz(s->action);
    p[7] = nz(s->topic);
    p[8] = nz(s->store_code);
    p[9] = s->refs_json ? s->refs_json : "{}";
    p[10] = s->details_json ? s->details_json : "{}";
    p[11] = s->seen_at_ms > 0 ? db_int(seen, sizeof(seen), s->seen_at_ms) : NULL;
    r = db_query(
        conn,
        "INSERT INTO recon_exceptions AS x (dedupe_key, type, owner, severity, summary, "
        "explanation, suggested_action, topic, store_code, refs, details, first_seen, last_seen) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, "
        "  coalesce(to_timestamp($12::bigint / 1000.0), now()), "
        "  coalesce(to_timestamp($12::bigint / 1000.0), now())) "
        "ON CONFLICT (dedupe_key) DO UPDATE SET count = x.count + 1, "
        "  first_seen = least(x.first_seen, EXCLUDED.first_seen), "
        "  last_seen = greatest(x.last_seen, EXCLUDED.last_seen), "
        "  summary = EXCLUDED.summary, severity = EXCLUDED.severity, "
        "  details = x.details || EXCLUDED.details, refs = x.refs || EXCLUDED.refs, "
        "  status = CASE WHEN x.status = 'resolved' THEN 'open' ELSE x.status END, "
        "  acknowledged_by = CASE WHEN x.status = 'resolved' THEN NULL ELSE x.acknowledged_by END, "
        "  acknowledged_at = CASE WHEN x.status = 'resolved' THEN NULL ELSE x.acknowledged_at END, "
        "  resolved_by = CASE WHEN x.status = 'resolved' THEN NULL ELSE x.resolved_by END, "
        "  resolved_at = CASE WHEN x.status = 'resolved' THEN NULL ELSE x.resolved_at END, "
        "  resolution = CASE WHEN x.status = 'resolved' THEN NULL ELSE x.resolution END "
        "RETURNING id",
        12, p, err, errlen);
    if (!r)
        return -EIO;
    idtext = strdup(PQgetvalue(r, 0, 0));
    if (id)
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (!idtext) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = link_event(conn, idtext, s->event_id, "sighting", err, errlen);
    for (size_t i = 0; rc == 0 && i < s->nrelated; i++)
        rc = link_event(conn, idtext, s->related[i], "related", err, errlen);
    free(idtext);
    return rc;
}

int exstore_clear(PGconn *conn, const char *dedupe_key, const char *event_id, char *err,
                  size_t errlen)
{
    const char *p[] = {dedupe_key};
    PGresult *r;
    char *idtext;
    int rc;

    r = db_query(conn,
                 "UPDATE recon_exceptions SET status = 'resolved', resolved_by = 'system', "
                 "resolved_at = now(), resolution = 'cleared' "
                 "WHERE dedupe_key = $1 AND status <> 'resolved' RETURNING id",
                 1, p, err, errlen);
    if (!r)
        return -EIO;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    idtext = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!idtext) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = link_event(conn, idtext, event_id, "cleared", err, errlen);
    free(idtext);
    return rc < 0 ? rc : 1;
}

/* The JSON of one exception row aliased x (no events). */
#define EXCEPTION_JSON                                                                             \
    "json_build_object('id', x.id, 'dedupe_key', x.dedupe_key, 'type', x.type, 'owner', x.owner, " \
    "'severity', x.severity, 'status', x.status, 'summary', x.summary, 'explanation', "            \
    "x.explanation, 'suggested_action', x.suggested_action, 'topic', x.topic, 'store_code', "      \
    "x.store_code, 'refs', x.refs, 'details', x.details, 'count', x.count, 'first_seen', "         \
    "x.first_seen, 'last_seen', x.last_seen, 'acknowledged_by', x.acknowledged_by, "               \
    "'acknowledged_at', x.acknowledged_at, 'resolved_by', x.resolved_by, 'resolved_at', "          \
    "x.resolved_at, 'resolution', x.resolution, 'note', x.note, 'event_ids', "                     \
    "coalesce((SELECT json_agg(e.event_id ORDER BY e.event_id) FROM recon_exception_events e "     \
    "WHERE e.exception_id = x.id), '[]'::json))"

int exstore_act(PGconn *conn, int64_t id, enum exstore_action action, const char *by,
                const char *note, char **json, char *err, size_t errlen)
{
    char idbuf[32];
    const char *p[] = {db_int(idbuf, sizeof(idbuf), id), by, note};
    const char *sql;
    PGresult *r;
    int rc = 0;

    *json = NULL;
    if (action == EXSTORE_ACKNOWLEDGE)
        sql = "UPDATE recon_exceptions x SET status = 'acknowledged', acknowledged_by = $2, "
              "acknowledged_at = now(), note = coalesce($3, x.note) "
              "WHERE x.id = $1::bigint AND x.status = 'open' RETURNING " EXCEPTION_JSON;
    else
        sql = "UPDATE recon_exceptions x SET status = 'resolved', resolved_by = $2, "
              "resolved_at = now(), resolution = 'manual', note = coalesce($3, x.note) "
              "WHERE x.id = $1::bigint AND x.status <> 'resolved' RETURNING " EXCEPTION_JSON;
    r = db_query(conn, sql, 3, p, err, errlen);
    if (!r)
        return -EIO;
    if (PQntuples(r) == 1) {
        *json = strdup(PQgetvalue(r, 0, 0));
        rc = *json ? 0 : -ENOMEM;
        goto out;
    }
    PQclear(r);
    r = db_query(conn, "SELECT status FROM recon_exceptions WHERE id = $1::bigint", 1, p, err,
                 errlen);
    if (!r)
        return -EIO;
    if (PQntuples(r) == 0) {
        snprintf(err, errlen, "no exception %lld", (long long)id);
        rc = -ENOENT;
    } else {
        snprintf(err, errlen, "exception %lld is %s", (long long)id, PQgetvalue(r, 0, 0));
        rc = -EPERM;
    }
out:
    PQclear(r);
    return rc;
}

static const char *empty_null(const char *s)
{
    return s && *s ? s : NULL;
}

char *exstore_list_json(PGconn *conn, const struct exstore_filter *f, char *err, size_t errlen)
{
    char lim[32];
    const char *p[] = {
        empty_null(f->owner),    empty_null(f->type),
        empty_null(f->status),   empty_null(f->store_code),
        empty_null(f->severity), db_int(lim, sizeof(lim), f->limit > 0 ? f->limit : 500)};

    return db_scalar(
        conn,
        "WITH m AS (SELECT * FROM recon_exceptions x WHERE ($1::text IS NULL OR x.owner = $1) "
        "  AND ($2::text IS NULL OR x.type = $2) AND ($3::text IS NULL OR x.status = $3) "
        "  AND ($4::text IS NULL OR x.store_code = $4) AND ($5::text IS NULL OR x.severity = $5)) "
        "SELECT json_build_object("
        "  'exceptions', coalesce((SELECT json_agg(j ORDER BY last_seen DESC, id DESC) FROM "
        "    (SELECT " EXCEPTION_JSON " AS j, x.last_seen, x.id FROM m x "
        "     ORDER BY x.last_seen DESC, x.id DESC LIMIT $6::bigint) s), '[]'::json), "
        "  'counts', coalesce((SELECT json_agg(json_build_object('owner', owner, 'type', type, "
        "    'status', status, 'count', n) ORDER BY owner, type, status) FROM "
        "    (SELECT owner, type, status, count(*) AS n FROM m GROUP BY owner, type, status) c), "
        "    '[]'::json))::text",
        6, p, err, errlen);
}

char *exstore_get_json(PGconn *conn, int64_t id, int *notfound, char *err, size_t errlen)
{
    char idbuf[32];
    const char *p[] = {db_int(idbuf, sizeof(idbuf), id)};
    char *out;

    *notfound = 0;
    out = db_scalar(
        conn,
        "SELECT coalesce((SELECT json_build_object('exception', " EXCEPTION_JSON ", 'events', "
        "  coalesce((SELECT json_agg(json_build_object('event_id', l.event_id, 'role', l.role, "
        "    'topic', e.topic, 'partition', e.partition, 'offset', e.kafka_offset, 'ce_type', "
        "    e.ce_type, 'occurred_at', e.occurred_at, 'seen_at', e.seen_at, 'summary', e.summary, "
        "    'refs', e.refs) ORDER BY l.role, l.event_id) "
        "    FROM recon_exception_events l LEFT JOIN recon_events e ON e.event_id = l.event_id "
        "    WHERE l.exception_id = x.id), '[]'::json))::text "
        "  FROM recon_exceptions x WHERE x.id = $1::bigint), '')",
        1, p, err, errlen);
    if (out && !*out) {
        free(out);
        *notfound = 1;
        snprintf(err, errlen, "no exception %lld", (long long)id);
        return NULL;
    }
    return out;
}
