/* levels — figures and available-to-sell per physical and channel location. See levels.h. */
#include "levels.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "holds.h"
#include "tillsync/v1/inventory.pb-c.h"

static int64_t num(PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int query(PGconn *conn, const char *sql, const char *const *params, PGresult **out,
                 char *err, size_t errlen)
{
    PGresult *res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "levels: %s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return -EIO;
    }
    *out = res;
    return 0;
}

/*
 * Holds as seen from the snapshot of result r (issue 4, see holds.h): the hold references
 * that snapshot shows confirmed, and the reserved figures of the scopes of r prefetched from
 * Redis in one call. Returns 0, or -EIO with err when Postgres or Redis cannot be read.
 */
static int holds_view_load(PGconn *conn, const char *tenant, struct availability_holds *holds,
                           PGresult *r, int snapcol, bool channels, struct availability_holds *view,
                           PGresult **confirmed, char *err, size_t errlen)
{
    const char *params[3] = {tenant, NULL, ""};
    size_t n = (size_t)PQntuples(r), k = 0;
    const char **scopes = NULL, **skus = NULL;
    char *buf = NULL;
    int rc = -ENOMEM;

    *view = (struct availability_holds){0};
    if (!holds || !holds->h || n == 0)
        return 0;
    *view = *holds;
    view->cache = NULL;
    view->failed = false;
    params[1] = PQgetvalue(r, 0, snapcol);
    rc = query(conn, "SELECT holds_confirmed_in($1, $2::pg_snapshot), $3::text", params, confirmed,
               err, errlen);
    if (rc)
        return rc;
    view->confirmed = PQgetvalue(*confirmed, 0, 0);
    rc = -ENOMEM;
    scopes = calloc(2 * n, sizeof(*scopes));
    skus = calloc(2 * n, sizeof(*skus));
    buf = calloc(2 * n, 208);
    if (!scopes || !skus || !buf)
        goto out;
    for (size_t i = 0; i < n; i++) {
        /* physical rows: (sku, location); channel rows: (channel, sku, …, member location) */
        const char *sku = PQgetvalue(r, (int)i, channels ? 1 : 0);
        const char *loc = PQgetvalue(r, (int)i, channels ? 6 : 1);

        snprintf(buf + k * 208, 208, "l:%s", loc);
        scopes[k] = buf + k * 208;
        skus[k++] = sku;
        if (channels && (i == 0 || strcmp(PQgetvalue(r, (int)i - 1, 0), PQgetvalue(r, (int)i, 0)) ||
                         strcmp(PQgetvalue(r, (int)i - 1, 1), sku))) {
            snprintf(buf + k * 208, 208, "c:%s", PQgetvalue(r, (int)i, 0));
            scopes[k] = buf + k * 208;
            skus[k++] = sku;
        }
    }
    holds_view_prefetch(view, scopes, skus, k);
    rc = 0;
    if (view->failed) {
        snprintf(err, errlen, "levels: holds unavailable (Redis)");
        rc = -EIO;
    }
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(scopes);
    free(skus);
    free(buf);
    return rc;
}

int levels_load(PGconn *conn, const char *tenant, const char *skus, const char *locs,
                struct availability_holds *holds, struct level_set *set, char *err, size_t errlen)
{
    const char *params[3] = {tenant, skus, locs};
    struct availability_holds pv = {0}, cv = {0};
    PGresult *p, *c, *pconf = NULL, *cconf = NULL;
    size_t cap;
    int rc;

    memset(set, 0, sizeof(*set));
    rc = query(conn,
               "SELECT DISTINCT k.s, k.l, coalesce(b.on_hand, 0), coalesce(b.committed, 0), "
               "  coalesce(b.in_transit, 0), coalesce(ss.quantity, 0), coalesce(l.kind, ''), "
               "  pg_current_snapshot()::text "
               "FROM unnest($2::text[], $3::text[]) AS k(s, l) "
               "LEFT JOIN balances b ON b.tenant_id = $1 AND b.sku = k.s AND b.location_id = k.l "
               "LEFT JOIN safety_stock ss ON ss.tenant_id = $1 AND ss.sku = k.s "
               "  AND ss.location_id = k.l "
               "LEFT JOIN locations l ON l.tenant_id = $1 AND l.location_id = k.l",
               params, &set->res[0], err, errlen);
    if (rc)
        return rc;
    rc = query(conn,
               "WITH ch AS (SELECT DISTINCT m.channel_location_id AS c, k.s "
               "  FROM unnest($2::text[], $3::text[]) AS k(s, l) "
               "  JOIN channel_location_members m ON m.tenant_id = $1 AND m.location_id = k.l) "
               "SELECT ch.c, ch.s, c.platform, c.shop_id, c.platform_location_id, c.buffer, "
               "  m.location_id, coalesce(b.on_hand, 0), coalesce(b.committed, 0), "
               "  coalesce(b.in_transit, 0), coalesce(ss.quantity, 0), pg_current_snapshot()::text "
               "FROM ch JOIN channel_locations c ON c.tenant_id = $1 "
               "  AND c.channel_location_id = ch.c "
               "JOIN channel_location_members m ON m.tenant_id = $1 "
               "  AND m.channel_location_id = ch.c "
               "LEFT JOIN balances b ON b.tenant_id = $1 AND b.sku = ch.s "
               "  AND b.location_id = m.location_id "
               "LEFT JOIN safety_stock ss ON ss.tenant_id = $1 AND ss.sku = ch.s "
               "  AND ss.location_id = m.location_id "
               "ORDER BY 1, 2, 7",
               params, &set->res[1], err, errlen);
    if (rc)
        return rc;
    p = set->res[0];
    c = set->res[1];
    if ((rc = holds_view_load(conn, tenant, holds, p, 7, false, &pv, &pconf, err, errlen)) ||
        (rc = holds_view_load(conn, tenant, holds, c, 11, true, &cv, &cconf, err, errlen)))
        goto out;
    holds = NULL; /* from here on the views, each consistent with its own result */
    cap = (size_t)PQntuples(p) + (size_t)PQntuples(c) + 1;
    set->v = calloc(cap, sizeof(*set->v));
    if (!set->v)
        goto oom;
    for (int r = 0; r < PQntuples(p); r++) {
        struct level *lv = &set->v[set->n++];
        struct stock_figures f;
        const char *kind = PQgetvalue(p, r, 6);

        lv->sku = PQgetvalue(p, r, 0);
        lv->location_id = PQgetvalue(p, r, 1);
        snprintf(lv->key, sizeof(lv->key), "%s/%s", lv->location_id, lv->sku);
        lv->kind = strcmp(kind, "store") == 0 ? TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_STORE
                   : strcmp(kind, "warehouse") == 0
                       ? TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_WAREHOUSE
                       : TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_UNSPECIFIED;
        lv->platform = lv->shop_id = lv->platform_location_id = "";
        f = (struct stock_figures){
            lv->location_id, num(p, r, 2),
            num(p, r, 3),    availability_reserved(pv.h ? &pv : NULL, lv->sku, lv->location_id),
            num(p, r, 4),    num(p, r, 5)};
        lv->on_hand = f.on_hand;
        lv->committed = f.committed;
        lv->reserved = f.reserved;
        lv->in_transit = f.in_transit;
        lv->safety_stock = f.safety_stock;
        lv->available = availability_location(&f);
    }
    for (int r = 0; r < PQntuples(c);) {
        struct level *lv = &set->v[set->n++];
        int first = r;

        lv->location_id = PQgetvalue(c, r, 0);
        lv->sku = PQgetvalue(c, r, 1);
        snprintf(lv->key, sizeof(lv->key), "%s/%s", lv->location_id, lv->sku);
        lv->kind = TILLSYNC__V1__LOCATION_KIND__LOCATION_KIND_CHANNEL;
        lv->platform = PQgetvalue(c, r, 2);
        lv->shop_id = PQgetvalue(c, r, 3);
        lv->platform_location_id = PQgetvalue(c, r, 4);
        lv->buffer = num(c, r, 5);
        while (r < PQntuples(c) && strcmp(PQgetvalue(c, r, 0), lv->location_id) == 0 &&
               strcmp(PQgetvalue(c, r, 1), lv->sku) == 0)
            r++;
        lv->nmembers = (size_t)(r - first);
        lv->members = calloc(lv->nmembers, sizeof(*lv->members));
        if (!lv->members)
            goto oom;
        for (int i = first; i < r; i++) {
            struct stock_figures *f = &lv->members[i - first];

            f->location_id = PQgetvalue(c, i, 6);
            f->on_hand = num(c, i, 7);
            f->committed = num(c, i, 8);
            f->in_transit = num(c, i, 9);
            f->safety_stock = num(c, i, 10);
            f->reserved = availability_reserved(cv.h ? &cv : NULL, lv->sku, f->location_id);
            lv->on_hand += f->on_hand;
            lv->committed += f->committed;
            lv->reserved += f->reserved;
            lv->in_transit += f->in_transit;
            lv->safety_stock += f->safety_stock;
        }
        lv->available = availability_channel(cv.h ? &cv : NULL, lv->location_id, lv->sku,
                                             lv->members, lv->nmembers, lv->buffer);
        if (cv.h) /* channel-level holds are part of the channel's reserved figure */
            lv->reserved += availability_channel_held(&cv, lv->location_id, lv->sku);
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
    rc = -ENOMEM;
out:
    holds_view_release(&pv);
    holds_view_release(&cv);
    PQclear(pconf);
    PQclear(cconf);
    return rc;
}

void level_set_release(struct level_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; set->v && i < set->n; i++)
        free(set->v[i].members);
    free(set->v);
    PQclear(set->res[0]);
    PQclear(set->res[1]);
    memset(set, 0, sizeof(*set));
}
