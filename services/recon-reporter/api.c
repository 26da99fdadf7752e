/* api — see api.h. Handlers run on HTTP worker threads; each takes one pooled connection. */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "db.h"
#include "exstore.h"
#include "json_util.h"
#include "payout.h"
#include "recon.h"
#include "report.h"

static PGconn *conn_get(struct recon *r, struct http_response *resp)
{
    char err[256] = "";
    PGconn *conn = pg_acquire(r->svc->pg, 3000, err, sizeof(err));

    if (!conn)
        http_response_error(resp, 503, "unavailable", NULL, "database unavailable: %s", err);
    return conn;
}

/* Respond with a JSON text produced by Postgres (or 500 when it is NULL). */
static void respond_text_json(struct http_response *resp, int status, char *text, const char *err)
{
    if (!text) {
        http_response_error(resp, 500, "internal", NULL, "%s", err);
        return;
    }
    http_response_body(resp, status, "application/json", text, strlen(text));
    free(text);
}

static int id_parse(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -EINVAL;
    *out = v;
    return 0;
}

static void h_exceptions(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    struct exstore_filter f = {
        .owner = http_request_query(req, "owner"),
        .type = http_request_query(req, "type"),
        .status = http_request_query(req, "status"),
        .store_code = http_request_query(req, "store_code"),
        .severity = http_request_query(req, "severity"),
    };
    const char *limit = http_request_query(req, "limit");
    char err[512] = "";
    PGconn *conn;
    int64_t lim = 0;

    if (f.status && *f.status && strcmp(f.status, "open") && strcmp(f.status, "acknowledged") &&
        strcmp(f.status, "resolved")) {
        http_response_error(resp, 400, "invalid", "status",
                            "status must be open, acknowledged or resolved");
        return;
    }
    if (limit && (id_parse(limit, &lim) || lim > 5000)) {
        http_response_error(resp, 400, "invalid", "limit", "limit must be 1..5000");
        return;
    }
    f.limit = (long)lim;
    if (!(conn = conn_get(r, resp)))
        return;
    respond_text_json(resp, 200, exstore_list_json(conn, &f, err, sizeof(err)), err);
    pg_release(r->svc->pg, conn);
}

static void h_exception(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    char err[512] = "";
    int64_t id;
    int notfound = 0;
    char *text;
    PGconn *conn;

    if (id_parse(req->path_params[0], &id)) {
        http_response_error(resp, 404, "not_found", "id", "no exception %s", req->path_params[0]);
        return;
    }
    if (!(conn = conn_get(r, resp)))
        return;
    text = exstore_get_json(conn, id, &notfound, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (notfound)
        http_response_error(resp, 404, "not_found", "id", "%s", err);
    else
        respond_text_json(resp, 200, text, err);
}

static void act(const struct http_request *req, struct http_response *resp, struct recon *r,
                enum exstore_action action)
{
    char err[512] = "";
    const char *by = NULL, *note = NULL;
    json_t *body = NULL;
    int64_t id;
    char *text = NULL;
    PGconn *conn;
    int rc;

    if (id_parse(req->path_params[0], &id)) {
        http_response_error(resp, 404, "not_found", "id", "no exception %s", req->path_params[0]);
        return;
    }
    body = json_parse_object(req->body, req->body_len, err, sizeof(err));
    if (!body) {
        http_response_error(resp, 400, "invalid_json", NULL, "%s", err);
        return;
    }
    if (json_get_string(body, "by", true, &by, err, sizeof(err)) ||
        (rc = json_get_string(body, "note", false, &note, err, sizeof(err))) == -EINVAL) {
        http_response_error(resp, 400, "invalid",
                            strchr(err, ':') && !strncmp(err, "note", 4) ? "note" : "by", "%s",
                            err);
        goto out;
    }
    if (!*by || strlen(by) > 200) {
        http_response_error(resp, 400, "invalid", "by", "by: 1 to 200 characters");
        goto out;
    }
    if (note && strlen(note) > 2000) {
        http_response_error(resp, 400, "invalid", "note", "note: at most 2000 characters");
        goto out;
    }
    if (!(conn = conn_get(r, resp)))
        goto out;
    rc = exstore_act(conn, id, action, by, note, &text, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (rc == -ENOENT)
        http_response_error(resp, 404, "not_found", "id", "%s", err);
    else if (rc == -EPERM)
        http_response_error(resp, 409, "conflict", "status", "%s", err);
    else if (rc)
        http_response_error(resp, 500, "internal", NULL, "%s", err);
    else
        respond_text_json(resp, 200, text, err);
out:
    json_decref(body);
}

static void h_ack(const struct http_request *req, struct http_response *resp, void *opaque)
{
    act(req, resp, opaque, EXSTORE_ACKNOWLEDGE);
}

static void h_resolve(const struct http_request *req, struct http_response *resp, void *opaque)
{
    act(req, resp, opaque, EXSTORE_RESOLVE);
}

static void h_event(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    const char *p[] = {req->path_params[0]};
    char err[512] = "";
    char *text;
    PGconn *conn;

    if (!(conn = conn_get(r, resp)))
        return;
    text = db_scalar(
        conn,
        "SELECT coalesce((SELECT json_build_object('event_id', e.event_id, 'topic', e.topic, "
        "'partition', e.partition, 'offset', e.kafka_offset, 'ce_type', e.ce_type, 'tenant_id', "
        "e.tenant_id, 'occurred_at', e.occurred_at, 'recorded_at', e.recorded_at, "
        "'correlation_id', e.correlation_id, 'summary', e.summary, 'refs', e.refs, 'seen_at', "
        "e.seen_at, 'exception_ids', coalesce((SELECT json_agg(DISTINCT l.exception_id) FROM "
        "recon_exception_events l WHERE l.event_id = e.event_id), '[]'::json))::text "
        "FROM recon_events e WHERE e.event_id = $1), '')",
        1, p, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (text && !*text) {
        free(text);
        http_response_error(resp, 404, "not_found", "id", "no event %s", p[0]);
        return;
    }
    respond_text_json(resp, 200, text, err);
}

/* date query argument, or today (UTC). Returns 0, or answers 400 and returns -1. */
static int date_arg(const struct http_request *req, struct http_response *resp, char *out,
                    size_t cap)
{
    const char *d = http_request_query(req, "date");

    if (!d || !*d) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, cap, "%Y-%m-%d", &tm);
        return 0;
    }
    if (!report_date_valid(d)) {
        http_response_error(resp, 400, "invalid", "date", "date must be YYYY-MM-DD");
        return -1;
    }
    snprintf(out, cap, "%s", d);
    return 0;
}

static void reconciliation(const struct http_request *req, struct http_response *resp,
                           struct recon *r, bool csv)
{
    char date[16], err[512] = "";
    json_t *doc;
    PGconn *conn;

    if (date_arg(req, resp, date, sizeof(date)))
        return;
    if (!(conn = conn_get(r, resp)))
        return;
    doc = report_build(conn, r->svc->tenant_id, date, http_request_query(req, "store_code"), err,
                       sizeof(err));
    pg_release(r->svc->pg, conn);
    if (!doc) {
        http_response_error(resp, 500, "internal", NULL, "%s", err);
        return;
    }
    if (csv) {
        char *text = report_csv(doc), disp[96];
        if (!text) {
            http_response_error(resp, 500, "internal", NULL, "out of memory");
        } else {
            snprintf(disp, sizeof(disp), "attachment; filename=\"reconciliation-%s.csv\"", date);
            http_response_body(resp, 200, "text/csv; charset=utf-8", text, strlen(text));
            http_response_header(resp, "Content-Disposition", disp);
        }
        free(text);
        json_decref(doc);
        return;
    }
    http_response_json(resp, 200, doc);
}

static void h_recon(const struct http_request *req, struct http_response *resp, void *opaque)
{
    const char *format = http_request_query(req, "format");

    reconciliation(req, resp, opaque, format && !strcmp(format, "csv"));
}

static void h_recon_csv(const struct http_request *req, struct http_response *resp, void *opaque)
{
    reconciliation(req, resp, opaque, true);
}

static void h_trace(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    static const char *const need[] = {"store_code", "channel", "metric"};
    const char *v[3];
    char date[16], err[512] = "";
    json_t *doc;
    PGconn *conn;

    if (date_arg(req, resp, date, sizeof(date)))
        return;
    for (int i = 0; i < 3; i++) {
        v[i] = http_request_query(req, need[i]);
        if (!v[i]) {
            http_response_error(resp, 400, "invalid", need[i], "%s is required", need[i]);
            return;
        }
    }
    if (!(conn = conn_get(r, resp)))
        return;
    doc = report_trace(conn, date, v[0], v[1], v[2], http_request_query(req, "key"),
                       http_request_query(req, "currency"), err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (!doc)
        http_response_error(resp, 500, "internal", NULL, "%s", err);
    else
        http_response_json(resp, 200, doc);
}

static void h_payouts(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    struct payout_file f;
    char err[512] = "";
    PGconn *conn;
    int n;

    if (payout_parse(&f, req->body, req->body_len, err, sizeof(err))) {
        http_response_error(resp, 400, "invalid_csv", NULL, "%s", err);
        goto out;
    }
    if (!(conn = conn_get(r, resp)))
        goto out;
    n = payout_import(conn, &f, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (n < 0)
        http_response_error(resp, 500, "internal", NULL, "%s", err);
    else
        http_response_json(resp, 200, json_pack("{s:i}", "imported", n));
out:
    payout_file_release(&f);
}

static void h_checks(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    struct checks_result res;
    char err[512] = "";

    (void)req;
    if (recon_check_now(r, &res, err, sizeof(err))) {
        http_response_error(resp, 503, "unavailable", NULL, "checks failed: %s", err);
        return;
    }
    http_response_json(resp, 200,
                       json_pack("{s:i,s:i,s:s,s:s}", "raised", res.raised, "cleared", res.cleared,
                                 "ledger_check", res.ledger, "sku_check", res.sku_sides));
}

static void h_flows(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct recon *r = opaque;
    char list[1024] = "{", err[512] = "", when[40] = "", wm[40] = "";
    const char *p[] = {list, r->ingest.prefix};
    struct checks_result last;
    char last_error[256];
    int64_t last_ms, wm_ms;
    json_t *doc, *flows;
    PGresult *res;
    PGconn *conn;
    size_t used = 1;

    (void)req;
    for (size_t i = 0; ingest_topics[i]; i++) {
        snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "", ingest_topics[i]);
        used = strlen(list);
    }
    snprintf(list + used, sizeof(list) - used, "}");
    if (!(conn = conn_get(r, resp)))
        return;
    res = db_query(
        conn,
        "WITH t AS (SELECT base, ord FROM unnest($1::text[]) WITH ORDINALITY AS u(base, ord)), "
        "lag AS (SELECT w.topic, sum(greatest(w.high - coalesce(o.next_offset, 0), 0)) AS lag "
        "  FROM recon_watermarks w LEFT JOIN recon_offsets o ON o.topic = w.topic AND "
        "  o.partition = w.partition GROUP BY w.topic), "
        "ev AS (SELECT topic, count(*) AS n, max(seen_at) AS seen, max(occurred_at) AS occ "
        "  FROM recon_events GROUP BY topic) "
        "SELECT t.base, coalesce(e.n, 0), "
        "  coalesce(to_char(e.seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
        "  coalesce(to_char(e.occ AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
        "  coalesce(d.n, 0), coalesce(l.lag, 0), coalesce(dl.lag, 0), "
        "  coalesce(l.lag, 0) > 0 AND (e.seen IS NULL OR e.seen < now() - interval '60 seconds'), "
        "  (SELECT count(*) FROM recon_exceptions x WHERE x.type = 'dead_lettered' AND "
        "   x.topic = t.base AND x.status <> 'resolved') "
        "FROM t LEFT JOIN ev e ON e.topic = t.base LEFT JOIN ev d ON d.topic = t.base || '.dlq' "
        "LEFT JOIN lag l ON l.topic = $2 || t.base LEFT JOIN lag dl ON dl.topic = $2 || t.base "
        "|| '.dlq' ORDER BY t.ord",
        2, p, err, sizeof(err));
    pg_release(r->svc->pg, conn);
    if (!res) {
        http_response_error(resp, 500, "internal", NULL, "%s", err);
        return;
    }
    flows = json_array();
    for (int i = 0; i < PQntuples(res); i++) {
        json_t *f =
            json_pack("{s:s,s:I,s:s?,s:s?,s:I,s:I,s:I,s:b,s:I}", "topic", PQgetvalue(res, i, 0),
                      "events", (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
                      "last_event_at", *PQgetvalue(res, i, 2) ? PQgetvalue(res, i, 2) : NULL,
                      "last_occurred_at", *PQgetvalue(res, i, 3) ? PQgetvalue(res, i, 3) : NULL,
                      "dlq_events", (json_int_t)strtoll(PQgetvalue(res, i, 4), NULL, 10), "lag",
                      (json_int_t)strtoll(PQgetvalue(res, i, 5), NULL, 10), "dlq_lag",
                      (json_int_t)strtoll(PQgetvalue(res, i, 6), NULL, 10), "paused",
                      !strcmp(PQgetvalue(res, i, 7), "t"), "open_dead_letters",
                      (json_int_t)strtoll(PQgetvalue(res, i, 8), NULL, 10));
        json_array_append_new(flows, f);
    }
    PQclear(res);
    pthread_mutex_lock(&r->mu);
    last = r->last;
    last_ms = r->last_check_ms;
    wm_ms = r->watermarks_ms;
    snprintf(last_error, sizeof(last_error), "%s", r->last_check_error);
    pthread_mutex_unlock(&r->mu);
    if (last_ms)
        clock_format_rfc3339(last_ms, when, sizeof(when));
    if (wm_ms)
        clock_format_rfc3339(wm_ms, wm, sizeof(wm));
    doc = json_pack("{s:o,s:{s:s?,s:s,s:s,s:s?},s:s?,s:s}", "flows", flows, "checks", "last_run_at",
                    last_ms ? when : NULL, "ledger_check", last.ledger, "sku_check", last.sku_sides,
                    "error", last_error[0] ? last_error : NULL, "lag_measured_at",
                    wm_ms ? wm : NULL, "topic_prefix", r->ingest.prefix);
    http_response_json(resp, 200, doc);
}

static void h_static(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)opaque;
    if (!strcmp(req->path, "/dashboard.js"))
        http_response_body(resp, 200, "text/javascript; charset=utf-8", dashboard_js,
                           strlen(dashboard_js));
    else if (!strcmp(req->path, "/dashboard.css"))
        http_response_body(resp, 200, "text/css; charset=utf-8", dashboard_css,
                           strlen(dashboard_css));
    else
        http_response_body(resp, 200, "text/html; charset=utf-8", dashboard_html,
                           strlen(dashboard_html));
}

static struct http_route routes[] = {
    {"GET", "/", h_static, NULL, 0, NULL, 0},
    {"GET", "/dashboard.js", h_static, NULL, 0, NULL, 0},
    {"GET", "/dashboard.css", h_static, NULL, 0, NULL, 0},
    {"GET", "/v1/exceptions", h_exceptions, NULL, 0, NULL, 0},
    {"GET", "/v1/exceptions/{id}", h_exception, NULL, 0, NULL, 0},
    {"POST", "/v1/exceptions/{id}/acknowledge", h_ack, NULL, 16384, "application/json", 0},
    {"POST", "/v1/exceptions/{id}/resolve", h_resolve, NULL, 16384, "application/json", 0},
    {"GET", "/v1/events/{id}", h_event, NULL, 0, NULL, 0},
    {"GET", "/v1/reconciliation", h_recon, NULL, 0, NULL, 0},
    {"GET", "/v1/reconciliation.csv", h_recon_csv, NULL, 0, NULL, 0},
    {"GET", "/v1/reconciliation/trace", h_trace, NULL, 0, NULL, 0},
    {"POST", "/v1/payouts", h_payouts, NULL, 8 << 20, "text/csv", 0},
    {"GET", "/v1/flows", h_flows, NULL, 0, NULL, 0},
    {"POST", "/v1/checks/run", h_checks, NULL, 0, NULL, 0},
};

const struct http_route *api_routes(struct recon *r, size_t *n)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        routes[i].opaque = r;
    *n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}
