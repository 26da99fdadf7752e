/* api — HTTP handlers of inventory-ledger. See api.h. */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_util.h"
#include "levels.h"
#include "pgarr.h"
#include "tillsync/v1/inventory.pb-c.h"

#define ID_MAX 200

/* Identifiers in paths: 1..200 printable ASCII characters. */
static bool id_valid(const char *s)
{
    size_t n = 0;

    for (; s && s[n]; n++)
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return false;
    return n > 0 && n <= ID_MAX;
}

static PGconn *conn_get(struct api *api, struct http_response *resp)
{
    char why[256];
    PGconn *c = pg_acquire(api->svc->pg, 2000, why, sizeof(why));

    if (!c)
        http_response_error(resp, 503, "unavailable", NULL, "database unavailable: %s", why);
    return c;
}

static PGresult *exec(PGconn *c, const char *sql, int n, const char *const *params,
                      struct http_response *resp)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        http_response_error(resp, 503, "unavailable", NULL, "database error: %s",
                            res ? PQresultErrorMessage(res) : "no result");
        PQclear(res);
        return NULL;
    }
    return res;
}

static const char *kind_name(int kind)
{
    switch (kind) {
    case TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_STORE:
        return "store";
    case TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_WAREHOUSE:
        return "warehouse";
    case TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_CHANNEL:
        return "channel";
    default:
        return "unknown";
    }
}

static json_t *figures_json(const struct level *lv)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "location_id", lv->location_id,
                     "kind", kind_name(lv->kind), "on_hand", (json_int_t)lv->on_hand, "committed",
                     (json_int_t)lv->committed, "reserved", (json_int_t)lv->reserved, "in_transit",
                     (json_int_t)lv->in_transit, "safety_stock", (json_int_t)lv->safety_stock,
                     "available", (json_int_t)lv->available);
}

static void stock_get(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *sku = req->path_params[0];
    const char *params[2] = {api->svc->tenant_id, sku};
    struct level_set set = {0};
    struct pgarr skus, locs;
    PGresult *res = NULL;
    PGconn *c;
    char err[256];
    json_t *body, *locations, *channels;

    if (!id_valid(sku)) {
        http_response_error(resp, 400, "invalid_sku", "sku",
                            "sku must be 1..200 printable characters");
        return;
    }
    if (!(c = conn_get(api, resp)))
        return;
    pgarr_init(&skus);
    pgarr_init(&locs);
    res = exec(c,
               "SELECT location_id FROM balances WHERE tenant_id = $1 AND sku = $2 "
               "UNION SELECT location_id FROM safety_stock WHERE tenant_id = $1 AND sku = $2 "
               "ORDER BY 1",
               2, params, resp);
    if (!res)
        goto out;
    if (PQntuples(res) == 0) {
        http_response_error(resp, 404, "not_found", "sku", "no stock recorded for SKU %s", sku);
        goto out;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        pgarr_text(&skus, sku);
        pgarr_text(&locs, PQgetvalue(res, r, 0));
    }
    if (!pgarr_finish(&skus) || !pgarr_finish(&locs) ||
        levels_load(c, api->svc->tenant_id, skus.buf, locs.buf, api->holds, &set, err,
                    sizeof(err))) {
        http_response_error(resp, 503, "unavailable", NULL, "cannot load levels");
        goto out;
    }
    locations = json_array();
    channels = json_array();
    for (size_t i = 0; i < set.n; i++) {
        const struct level *lv = &set.v[i];

        if (lv->kind != TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_CHANNEL) {
            json_array_append_new(locations, figures_json(lv));
        } else {
            json_t *ch = figures_json(lv), *members = json_array();

            for (size_t m = 0; m < lv->nmembers; m++)
                json_array_append_new(members, json_string(lv->members[m].location_id));
            json_object_del(ch, "location_id");
            json_object_set_new(ch, "channel_location_id", json_string(lv->location_id));
            json_object_set_new(ch, "platform", json_string(lv->platform));
            json_object_set_new(ch, "buffer", json_integer(lv->buffer));
            json_object_set_new(ch, "locations", members);
            json_array_append_new(channels, ch);
        }
    }
    body = json_pack("{s:s, s:o, s:o}", "sku", sku, "locations", locations, "channel_locations",
                     channels);
    http_response_json(resp, 200, body);
out:
    level_set_release(&set);
    PQclear(res);
    pgarr_release(&skus);
    pgarr_release(&locs);
    pg_release(api->svc->pg, c);
}

static void ledger_get(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *sku = req->path_params[0], *loc = req->path_params[1];
    const char *limit_s = http_request_query(req, "limit");
    const char *before_s = http_request_query(req, "before");
    long long limit = 100, before = INT64_MAX;
    char limbuf[32], befbuf[32];
    const char *params[5] = {api->svc->tenant_id, sku, loc, limbuf, befbuf};
    PGresult *res;
    PGconn *c;
    json_t *entries;
    char *end;

    if (!id_valid(sku) || !id_valid(loc)) {
        http_response_error(resp, 400, "invalid_path", id_valid(sku) ? "location" : "sku",
                            "sku and location must be 1..200 printable characters");
        return;
    }
    if (limit_s) {
        errno = 0;
        limit = strtoll(limit_s, &end, 10);
        if (errno || *end || end == limit_s || limit < 1 || limit > 1000) {
            http_response_error(resp, 400, "invalid_limit", "limit",
                                "limit must be an integer from 1 to 1000");
            return;
        }
    }
    if (before_s) {
        errno = 0;
        before = strtoll(before_s, &end, 10);
        if (errno || *end || end == before_s || before < 1) {
            http_response_error(resp, 400, "invalid_before", "before",
                                "before must be a positive entry id");
            return;
        }
    }
    snprintf(limbuf, sizeof(limbuf), "%lld", limit);
    snprintf(befbuf, sizeof(befbuf), "%lld", before);
    if (!(c = conn_get(api, resp)))
        return;
    res = exec(c,
               "SELECT id, bucket, delta, reason, event_id, source_ref, line_ref, occurred_at_ms, "
               "recorded_at_ms FROM ledger_entries WHERE tenant_id = $1 AND sku = $2 "
               "AND location_id = $3 AND id < $5 ORDER BY id DESC LIMIT $4",
               5, params, resp);
    if (res) {
        entries = json_array();
        for (int r = 0; r < PQntuples(res); r++) {
            char occ[32] = "", rec[32] = "";

            clock_format_rfc3339(strtoll(PQgetvalue(res, r, 7), NULL, 10), occ, sizeof(occ));
            clock_format_rfc3339(strtoll(PQgetvalue(res, r, 8), NULL, 10), rec, sizeof(rec));
            json_array_append_new(
                entries, json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "id",
                                   (json_int_t)strtoll(PQgetvalue(res, r, 0), NULL, 10), "bucket",
                                   PQgetvalue(res, r, 1), "delta",
                                   (json_int_t)strtoll(PQgetvalue(res, r, 2), NULL, 10), "reason",
                                   PQgetvalue(res, r, 3), "event_id", PQgetvalue(res, r, 4),
                                   "source_ref", PQgetvalue(res, r, 5), "line_ref",
                                   PQgetvalue(res, r, 6), "occurred_at", occ, "recorded_at", rec));
        }
        http_response_json(
            resp, 200,
            json_pack("{s:s, s:s, s:o}", "sku", sku, "location_id", loc, "entries", entries));
        PQclear(res);
    }
    pg_release(api->svc->pg, c);
}

/* Parse the body as a JSON object; NULL after answering 400. An empty body is {} when
 * allow_empty. */
static json_t *body_object(const struct http_request *req, struct http_response *resp,
                           bool allow_empty)
{
    char err[256];
    json_t *o;

    if (req->body_len == 0 && allow_empty)
        return json_object();
    o = json_parse_object(req->body, req->body_len, err, sizeof(err));
    if (!o)
        http_response_error(resp, 400, "invalid_json", NULL, "%s", err);
    return o;
}

/* A statement of an admin change: its parameters are params[idx[0]], params[idx[1]], … */
struct admin_stmt {
    const char *sql;
    int n;
    int idx[8];
};

/* Run the statements in one transaction; answer 200 with ok_body (owned) or 503. */
static void admin_exec(struct api *api, struct http_response *resp, const struct admin_stmt *stmts,
                       size_t nsql, const char *const *params, json_t *ok_body)
{
    PGconn *c = conn_get(api, resp);
    PGresult *res;

    if (!c) {
        json_decref(ok_body);
        return;
    }
    PQclear(PQexec(c, "BEGIN"));
    for (size_t i = 0; i < nsql; i++) {
        const char *p[8];

        for (int j = 0; j < stmts[i].n; j++)
            p[j] = params[stmts[i].idx[j]];
        if (!(res = exec(c, stmts[i].sql, stmts[i].n, p, resp))) {
            PQclear(PQexec(c, "ROLLBACK"));
            json_decref(ok_body);
            pg_release(api->svc->pg, c);
            return;
        }
        PQclear(res);
    }
    res = PQexec(c, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        http_response_error(resp, 503, "unavailable", NULL, "commit failed");
        json_decref(ok_body);
    } else {
        http_response_json(resp, 200, ok_body);
    }
    PQclear(res);
    pg_release(api->svc->pg, c);
}

static void sku_put(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *sku = req->path_params[0];
    bool ship = true;
    char err[256], nowbuf[32];
    json_t *o;
    int rc;

    if (!id_valid(sku)) {
        http_response_error(resp, 400, "invalid_sku", "sku",
                            "sku must be 1..200 printable characters");
        return;
    }
    if (!(o = body_object(req, resp, true)))
        return;
    rc = json_get_bool(o, "requires_shipping", false, &ship, err, sizeof(err));
    if (rc && rc != -ENOENT) {
        http_response_error(resp, 400, "invalid_field", "requires_shipping", "%s", err);
    } else {
        const char *params[4] = {api->svc->tenant_id, sku, ship ? "true" : "false", nowbuf};
        const struct admin_stmt sql[] = {
            {"INSERT INTO skus (tenant_id, sku, requires_shipping, created_at_ms) "
             "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, sku) DO UPDATE "
             "SET requires_shipping = EXCLUDED.requires_shipping",
             4,
             {0, 1, 2, 3}}};

        snprintf(nowbuf, sizeof(nowbuf), "%" PRId64, clock_now_ms());
        admin_exec(api, resp, sql, 1, params,
                   json_pack("{s:s, s:b}", "sku", sku, "requires_shipping", ship));
    }
    json_decref(o);
}

static void location_put(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *loc = req->path_params[0], *kind = NULL, *name = "";
    char err[256];
    json_t *o;
    int rc;

    if (!id_valid(loc)) {
        http_response_error(resp, 400, "invalid_location", "location",
                            "location must be 1..200 printable characters");
        return;
    }
    if (!(o = body_object(req, resp, false)))
        return;
    if ((rc = json_get_string(o, "kind", true, &kind, err, sizeof(err)))) {
        http_response_error(resp, 400, "invalid_field", "kind", "%s", err);
    } else if (strcmp(kind, "store") != 0 && strcmp(kind, "warehouse") != 0) {
        http_response_error(resp, 400, "invalid_field", "kind",
                            "kind: must be \"store\" or \"warehouse\"");
    } else if ((rc = json_get_string(o, "name", false, &name, err, sizeof(err))) && rc != -ENOENT) {
        http_response_error(resp, 400, "invalid_field", "name", "%s", err);
    } else {
        const char *params[4] = {api->svc->tenant_id, loc, kind, name};
        const struct admin_stmt sql[] = {
            {"INSERT INTO locations (tenant_id, location_id, kind, name) "
             "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, location_id) DO UPDATE "
             "SET kind = EXCLUDED.kind, name = EXCLUDED.name",
             4,
             {0, 1, 2, 3}},
            {"INSERT INTO level_outbox (tenant_id, skus, locations) SELECT $1, array_agg(sku), "
             "array_agg(location_id) FROM balances WHERE tenant_id = $1 AND location_id = $2 "
             "HAVING count(*) > 0",
             2,
             {0, 1}}};

        admin_exec(api, resp, sql, 2, params,
                   json_pack("{s:s, s:s, s:s}", "location_id", loc, "kind", kind, "name", name));
    }
    json_decref(o);
}

static void safety_put(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *sku = req->path_params[0], *loc = req->path_params[1];
    char err[256], qbuf[32];
    int64_t q;
    json_t *o;

    if (!id_valid(sku) || !id_valid(loc)) {
        http_response_error(resp, 400, "invalid_path", id_valid(sku) ? "location" : "sku",
                            "sku and location must be 1..200 printable characters");
        return;
    }
    if (!(o = body_object(req, resp, false)))
        return;
    if (json_get_int(o, "quantity", true, 0, 1000000000, &q, err, sizeof(err))) {
        http_response_error(resp, 400, "invalid_field", "quantity", "%s", err);
    } else {
        const char *params[4] = {api->svc->tenant_id, sku, loc, qbuf};
        const struct admin_stmt sql[] = {
            {"INSERT INTO safety_stock (tenant_id, sku, location_id, quantity) "
             "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, sku, location_id) "
             "DO UPDATE SET quantity = EXCLUDED.quantity",
             4,
             {0, 1, 2, 3}},
            {"INSERT INTO level_outbox (tenant_id, skus, locations) "
             "VALUES ($1, ARRAY[$2::text], ARRAY[$3::text])",
             3,
             {0, 1, 2}}};

        snprintf(qbuf, sizeof(qbuf), "%" PRId64, q);
        admin_exec(api, resp, sql, 2, params,
                   json_pack("{s:s, s:s, s:I}", "sku", sku, "location_id", loc, "quantity",
                             (json_int_t)q));
    }
    json_decref(o);
}

static json_t *channel_json(PGresult *c, PGresult *m)
{
    json_t *locs = json_array();

    for (int r = 0; r < PQntuples(m); r++)
        json_array_append_new(locs, json_string(PQgetvalue(m, r, 0)));
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "channel_location_id", PQgetvalue(c, 0, 0),
                     "platform", PQgetvalue(c, 0, 1), "shop_id", PQgetvalue(c, 0, 2),
                     "platform_location_id", PQgetvalue(c, 0, 3), "buffer",
                     (json_int_t)strtoll(PQgetvalue(c, 0, 4), NULL, 10), "locations", locs);
}

static void channel_get(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *ch = req->path_params[0];
    const char *params[2] = {api->svc->tenant_id, ch};
    PGresult *c = NULL, *m = NULL;
    PGconn *conn;

    if (!id_valid(ch)) {
        http_response_error(resp, 400, "invalid_channel_location", "channel",
                            "channel location must be 1..200 printable characters");
        return;
    }
    if (!(conn = conn_get(api, resp)))
        return;
    c = exec(conn,
             "SELECT channel_location_id, platform, shop_id, platform_location_id, buffer "
             "FROM channel_locations WHERE tenant_id = $1 AND channel_location_id = $2",
             2, params, resp);
    if (c && PQntuples(c) == 0)
        http_response_error(resp, 404, "not_found", "channel", "no channel location %s", ch);
    else if (c)
        m = exec(conn,
                 "SELECT location_id FROM channel_location_members WHERE tenant_id = $1 "
                 "AND channel_location_id = $2 ORDER BY 1",
                 2, params, resp);
    if (c && m)
        http_response_json(resp, 200, channel_json(c, m));
    PQclear(c);
    PQclear(m);
    pg_release(api->svc->pg, conn);
}

static void channel_put(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct api *api = opaque;
    const char *ch = req->path_params[0], *platform = NULL, *shop = "", *ploc = "";
    json_t *o, *locs;
    char err[256], bufbuf[32];
    int64_t buffer = 0;
    struct pgarr members;
    size_t i;
    json_t *v;
    int rc;

    if (!id_valid(ch)) {
        http_response_error(resp, 400, "invalid_channel_location", "channel",
                            "channel location must be 1..200 printable characters");
        return;
    }
    if (!(o = body_object(req, resp, false)))
        return;
    pgarr_init(&members);
    if ((rc = json_get_string(o, "platform", true, &platform, err, sizeof(err)))) {
        http_response_error(resp, 400, "invalid_field", "platform", "%s", err);
        goto out;
    }
    if (strcmp(platform, "shopify") != 0 && strcmp(platform, "shopline") != 0) {
        http_response_error(resp, 400, "invalid_field", "platform",
                            "platform: must be \"shopify\" or \"shopline\"");
        goto out;
    }
    if (((rc = json_get_string(o, "shop_id", false, &shop, err, sizeof(err))) && rc != -ENOENT) ||
        ((rc = json_get_string(o, "platform_location_id", false, &ploc, err, sizeof(err))) &&
         rc != -ENOENT) ||
        ((rc = json_get_int(o, "buffer", false, 0, 1000000000, &buffer, err, sizeof(err))) &&
         rc != -ENOENT)) {
        http_response_error(resp, 400, "invalid_field", NULL, "%s", err);
        goto out;
    }
    locs = json_object_get(o, "locations");
    if (!json_is_array(locs) || json_array_size(locs) == 0 || json_array_size(locs) > 100) {
        http_response_error(resp, 400, "invalid_field", "locations",
                            "locations: must be an array of 1..100 ledger location ids");
        goto out;
    }
    json_array_foreach(locs, i, v)
    {
        if (!json_is_string(v) || !id_valid(json_string_value(v))) {
            http_response_error(resp, 400, "invalid_field", "locations",
                                "locations[%zu]: must be a ledger location id", i);
            goto out;
        }
        pgarr_text(&members, json_string_value(v));
    }
    if (!pgarr_finish(&members)) {
        http_response_error(resp, 500, "internal", NULL, "out of memory");
        goto out;
    }
    snprintf(bufbuf, sizeof(bufbuf), "%" PRId64, buffer);
    {
        const char *params[7] = {api->svc->tenant_id, ch, platform, shop, ploc, bufbuf,
                                 members.buf};
        const struct admin_stmt sql[] = {
            {"INSERT INTO channel_locations (tenant_id, channel_location_id, platform, shop_id, "
             "platform_location_id, buffer) VALUES ($1, $2, $3, $4, $5, $6) "
             "ON CONFLICT (tenant_id, channel_location_id) DO UPDATE SET platform = "
             "EXCLUDED.platform, shop_id = EXCLUDED.shop_id, platform_location_id = "
             "EXCLUDED.platform_location_id, buffer = EXCLUDED.buffer",
             6,
             {0, 1, 2, 3, 4, 5}},
            {"DELETE FROM channel_location_members WHERE tenant_id = $1 "
             "AND channel_location_id = $2",
             2,
             {0, 1}},
            {"INSERT INTO channel_location_members (tenant_id, channel_location_id, location_id) "
             "SELECT DISTINCT $1, $2, unnest($3::text[])",
             3,
             {0, 1, 6}},
            {"INSERT INTO level_outbox (tenant_id, skus, locations) SELECT $1, array_agg(sku), "
             "array_agg(location_id) FROM balances WHERE tenant_id = $1 "
             "AND location_id = ANY($2::text[]) HAVING count(*) > 0",
             2,
             {0, 6}}};
        json_t *ok = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}", "channel_location_id", ch,
                               "platform", platform, "shop_id", shop, "platform_location_id", ploc,
                               "buffer", (json_int_t)buffer, "locations", locs);

        admin_exec(api, resp, sql, 4, params, ok);
    }
out:
    pgarr_release(&members);
    json_decref(o);
}

size_t api_routes_init(struct api *api, struct service *svc, struct availability_holds *holds)
{
    const struct http_route routes[] = {
        {"GET", "/v1/stock/{sku}", stock_get, api, 0, NULL, 0},
        {"GET", "/v1/ledger/{sku}/{location}", ledger_get, api, 0, NULL, 0},
        {"PUT", "/v1/skus/{sku}", sku_put, api, 16384, "application/json", 0},
        {"PUT", "/v1/locations/{location}", location_put, api, 16384, "application/json", 0},
        {"PUT", "/v1/safety-stock/{sku}/{location}", safety_put, api, 16384, "application/json", 0},
        {"PUT", "/v1/channel-locations/{channel}", channel_put, api, 65536, "application/json", 0},
        {"GET", "/v1/channel-locations/{channel}", channel_get, api, 0, NULL, 0},
    };

    api->svc = svc;
    api->holds = holds;
    memcpy(api->routes, routes, sizeof(routes));
    return sizeof(routes) / sizeof(routes[0]);
}
