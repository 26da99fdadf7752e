/*
 * checks — see checks.h. Mark and sweep: every run gets a new run id; a finding upserts its
 * recon_check_state row with that id (raising the exception when the row is new or its
 * fingerprint changed); afterwards the rows of that check left with an older run id are findings
 * that went away, so their exceptions are cleared and the rows deleted.
 */
#include "checks.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "events.h"
#include "exstore.h"
#include "json_util.h"
#include "skuside.h"

/* Record a finding; raise its exception when it is new or changed. */
static int check_flag(PGconn *conn, const char *check, int64_t run, const char *fingerprint,
                      const struct exstore_sighting *s, struct checks_result *res, char *err,
                      size_t errlen)
{
    char runbuf[32];
    const char *p[] = {s->dedupe_key, check, fingerprint, db_int(runbuf, sizeof(runbuf), run)};
    PGresult *r;
    bool changed;

    r = db_query(conn,
                 "INSERT INTO recon_check_state AS c (dedupe_key, check_name, fingerprint, run_id) "
                 "VALUES ($1, $2, $3, $4::bigint) ON CONFLICT (dedupe_key) DO UPDATE SET "
                 "run_id = EXCLUDED.run_id, fingerprint = EXCLUDED.fingerprint "
                 "RETURNING (xmax = 0) AS inserted, "
                 "(SELECT fingerprint FROM recon_check_state WHERE dedupe_key = $1) AS old",
                 4, p, err, errlen);
    if (!r)
        return -EIO;
    changed = !strcmp(PQgetvalue(r, 0, 0), "t") || PQgetisnull(r, 0, 1) ||
              strcmp(PQgetvalue(r, 0, 1), fingerprint) != 0;
    PQclear(r);
    if (!changed)
        return 0;
    res->raised++;
    return exstore_raise(conn, s, NULL, err, errlen);
}

/* Clear the findings of check not seen in run. */
static int check_sweep(PGconn *conn, const char *check, int64_t run, struct checks_result *res,
                       char *err, size_t errlen)
{
    char runbuf[32];
    const char *p[] = {check, db_int(runbuf, sizeof(runbuf), run)};
    PGresult *r;
    int rc = 0;

    r = db_query(conn,
                 "DELETE FROM recon_check_state WHERE check_name = $1 AND run_id <> $2::bigint "
                 "RETURNING dedupe_key",
                 2, p, err, errlen);
    if (!r)
        return -EIO;
    for (int i = 0; i < PQntuples(r) && rc >= 0; i++) {
        rc = exstore_clear(conn, PQgetvalue(r, i, 0), NULL, err, errlen);
        if (rc > 0)
            res->cleared++;
    }
    PQclear(r);
    return rc < 0 ? rc : 0;
}

static int check_deadlines(PGconn *conn, const struct checks_opts *o, int64_t run,
                           struct checks_result *res, char *err, size_t errlen)
{
    char dl[32];
    const char *p[] = {db_int(dl, sizeof(dl), o->deadline_s)};
    PGresult *r;
    int rc = 0;

    /* inventory-ledger in the same database: an event it applied has had its effect */
    rc = db_exec(conn,
                 "DO $$ BEGIN IF to_regclass('applied_events') IS NOT NULL THEN "
                 "UPDATE recon_pending p SET reflected_at = now(), reflected_event_id = "
                 "'ledger:applied_events' WHERE p.reflected_at IS NULL AND EXISTS (SELECT 1 "
                 "FROM applied_events a WHERE a.event_id = p.event_id); END IF; END $$",
                 0, NULL, err, errlen);
    if (rc)
        return rc;
    r = db_query(conn,
                 "SELECT kind, ref, event_id, store_code, "
                 "to_char(seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                 "FROM recon_pending WHERE reflected_at IS NULL AND NOT cancelled "
                 "AND seen_at < now() - make_interval(secs => $1::bigint) ORDER BY seen_at",
                 1, p, err, errlen);
    if (!r)
        return -EIO;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        bool pos = !strcmp(PQgetvalue(r, i, 0), "pos");
        const char *ref = PQgetvalue(r, i, 1), *event_id = PQgetvalue(r, i, 2);
        char key[512], summary[512], refs[512], details[256];
        json_t *jr = json_object(), *jd = json_object();
        char *rs, *ds;
        struct exstore_sighting s = {0};

        snprintf(key, sizeof(key), "%s/%s", pos ? "transaction_not_applied" : "order_not_reflected",
                 ref);
        snprintf(summary, sizeof(summary),
                 "%s %s has no effect on stock %" PRId64 " s after it was seen (%s)",
                 pos ? "POS transaction" : "Online order", ref, o->deadline_s, PQgetvalue(r, i, 4));
        json_object_set_new(jr, pos ? "pos_transaction_id" : "platform_order_id", json_string(ref));
        if (*PQgetvalue(r, i, 3))
            json_object_set_new(jr, "store_code", json_string(PQgetvalue(r, i, 3)));
        json_object_set_new(jd, "deadline_s", json_integer(o->deadline_s));
        json_object_set_new(jd, "seen_at", json_string(PQgetvalue(r, i, 4)));
        rs = json_dumps(jr, JSON_COMPACT | JSON_SORT_KEYS);
        ds = json_dumps(jd, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(refs, sizeof(refs), "%s", rs ? rs : "{}");
        snprintf(details, sizeof(details), "%s", ds ? ds : "{}");
        free(rs);
        free(ds);
        json_decref(jr);
        json_decref(jd);
        s.dedupe_key = key;
        s.type = pos ? "transaction_not_applied" : "order_not_reflected";
        s.owner = "operations";
        s.severity = "error";
        s.summary = summary;
        s.explanation = pos ? "A till transaction has had no effect on stock within its deadline."
                            : "An online order has not reached the stock ledger within its "
                              "deadline.";
        s.action = "Check the ledger flow (dashboard: flow health) for lag, pauses or dead "
                   "letters; replay the event once the cause is fixed.";
        s.topic = pos ? "pos.transactions.v1" : "shop.orders.v1";
        s.store_code = PQgetvalue(r, i, 3);
        s.refs_json = refs;
        s.details_json = details;
        s.related = &event_id;
        s.nrelated = 1;
        rc = check_flag(conn, "deadline", run, "late", &s, res, err, errlen);
    }
    PQclear(r);
    return rc ? rc : check_sweep(conn, "deadline", run, res, err, errlen);
}

static int check_takings(PGconn *conn, const struct checks_opts *o, int64_t run,
                         struct checks_result *res, char *err, size_t errlen)
{
    char tol[32], settle[32];
    /* a declaration is checked once it is deadline_s old: tenders may still be arriving */
    const char *p[] = {db_int(tol, sizeof(tol), o->takings_tolerance),
                       db_int(settle, sizeof(settle), o->deadline_s)};
    PGresult *r;
    int rc = 0;

    /* recorded: Σ tenders of the till's day, grouped as the declaration groups them */
    r = db_query(conn,
                 "WITH rec AS (SELECT store_code, till_id, business_date, "
                 "  sum(amount) FILTER (WHERE key = 'cash') AS cash, "
                 "  sum(amount) FILTER (WHERE key = 'card') AS card, "
                 "  sum(amount) FILTER (WHERE key NOT IN ('cash', 'card')) AS other "
                 "  FROM recon_facts WHERE channel = 'pos' AND metric = 'tenders' "
                 "  GROUP BY store_code, till_id, business_date) "
                 "SELECT t.store_code, t.till_id, t.business_date::text, t.currency, t.event_id, "
                 "  t.cash, coalesce(r.cash, 0), t.card, coalesce(r.card, 0), t.other, "
                 "  coalesce(r.other, 0) FROM recon_takings t LEFT JOIN rec r USING "
                 "  (store_code, till_id, business_date) JOIN recon_events e ON "
                 "  e.event_id = t.event_id "
                 "WHERE e.seen_at < now() - make_interval(secs => $2::bigint) AND ("
                 "   abs(t.cash - coalesce(r.cash, 0)) > $1::bigint "
                 "   OR abs(t.card - coalesce(r.card, 0)) > $1::bigint "
                 "   OR abs(t.other - coalesce(r.other, 0)) > $1::bigint)",
                 2, p, err, errlen);
    if (!r)
        return -EIO;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        const char *store = PQgetvalue(r, i, 0), *till = PQgetvalue(r, i, 1),
                   *date = PQgetvalue(r, i, 2), *currency = PQgetvalue(r, i, 3),
                   *event_id = PQgetvalue(r, i, 4);
        static const char *const groups[] = {"cash", "card", "other"};
        char key[512], summary[768], fp[256] = "", part[160], refs[512];
        json_t *jd = json_object(), *jr = json_object();
        char *ds, *rs;
        struct exstore_sighting s = {0};
        size_t used = 0;

        for (int g = 0; g < 3; g++) {
            int64_t declared = strtoll(PQgetvalue(r, i, 5 + 2 * g), NULL, 10);
            int64_t recorded = strtoll(PQgetvalue(r, i, 6 + 2 * g), NULL, 10);
            char d[48], rr[48], v[48], name[64];

            money_format(declared, currency, d, sizeof(d));
            money_format(recorded, currency, rr, sizeof(rr));
            money_format(declared - recorded, currency, v, sizeof(v));
            snprintf(name, sizeof(name), "%s_declared", groups[g]);
            json_object_set_new(jd, name, json_string(d));
            snprintf(name, sizeof(name), "%s_recorded", groups[g]);
            json_object_set_new(jd, name, json_string(rr));
            if (declared != recorded) {
                snprintf(part, sizeof(part), "%s%s declared %s, recorded %s (variance %s)",
                         used ? "; " : "", groups[g], d, rr, v);
                snprintf(fp + used, sizeof(fp) - used, "%s", part);
                used = strlen(fp);
            }
        }
        json_object_set_new(jd, "currency", json_string(currency));
        json_object_set_new(jd, "business_date", json_string(date));
        json_object_set_new(jr, "store_code", json_string(store));
        json_object_set_new(jr, "till_id", json_string(till));
        ds = json_dumps(jd, JSON_COMPACT | JSON_SORT_KEYS);
        rs = json_dumps(jr, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(refs, sizeof(refs), "%s", rs ? rs : "{}");
        snprintf(key, sizeof(key), "takings_variance/%s/%s/%s", store, till, date);
        snprintf(summary, sizeof(summary), "Takings variance at %s till %s on %s: %s", store, till,
                 date, fp);
        s.dedupe_key = key;
        s.type = "takings_variance";
        s.owner = "finance";
        s.severity = "error";
        s.summary = summary;
        s.explanation = "Declared takings differ from recorded tenders.";
        s.action = "Recount the till and check voids and refunds of the day; the figure "
                   "'tenders' of the day's reconciliation lists the transactions behind it.";
        s.topic = "pos.transactions.v1";
        s.store_code = store;
        s.refs_json = refs;
        s.details_json = ds ? ds : "{}";
        s.related = &event_id;
        s.nrelated = 1;
        rc = check_flag(conn, "takings", run, fp, &s, res, err, errlen);
        free(ds);
        free(rs);
        json_decref(jd);
        json_decref(jr);
    }
    PQclear(r);
    return rc ? rc : check_sweep(conn, "takings", run, res, err, errlen);
}

static int check_payouts(PGconn *conn, int64_t run, struct checks_result *res, char *err,
                         size_t errlen)
{
    PGresult *r;
    int rc = 0;

    r = db_query(conn,
                 "WITH p AS (SELECT order_id, max(currency) AS currency, "
                 "  sum(amount) FILTER (WHERE kind = 'charge') AS charges, "
                 "  sum(amount) FILTER (WHERE kind = 'refund') AS refunds, "
                 "  string_agg(DISTINCT payout_id, ',') AS payouts FROM recon_payout_lines "
                 "  GROUP BY order_id) "
                 "SELECT p.order_id, p.currency, p.payouts, coalesce(p.charges, 0), "
                 "  coalesce(o.total, 0), coalesce(p.refunds, 0), coalesce(o.refunded, 0), "
                 "  o.order_id IS NULL, coalesce(o.event_id, '') "
                 "FROM p LEFT JOIN recon_orders o ON o.order_id = p.order_id "
                 "WHERE o.order_id IS NULL OR coalesce(p.charges, 0) <> o.total "
                 "   OR coalesce(p.refunds, 0) <> o.refunded",
                 0, NULL, err, errlen);
    if (!r)
        return -EIO;
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        const char *order = PQgetvalue(r, i, 0), *currency = PQgetvalue(r, i, 1);
        const char *event_id = PQgetvalue(r, i, 8);
        bool missing = !strcmp(PQgetvalue(r, i, 7), "t");
        char paid[48], total[48], refunds[48], refunded[48], key[512], summary[768], fp[256];
        char refs[512];
        struct exstore_sighting s = {0};
        json_t *jd = json_object();
        char *ds;

        money_format(strtoll(PQgetvalue(r, i, 3), NULL, 10), currency, paid, sizeof(paid));
        money_format(strtoll(PQgetvalue(r, i, 4), NULL, 10), currency, total, sizeof(total));
        money_format(strtoll(PQgetvalue(r, i, 5), NULL, 10), currency, refunds, sizeof(refunds));
        money_format(strtoll(PQgetvalue(r, i, 6), NULL, 10), currency, refunded, sizeof(refunded));
        if (missing)
            snprintf(summary, sizeof(summary),
                     "Payout %s pays order %s, which tillsync never saw (charges %s %s)",
                     PQgetvalue(r, i, 2), order, paid, currency);
        else
            snprintf(summary, sizeof(summary),
                     "Order %s: payout charges %s vs order total %s, payout refunds %s vs "
                     "refunded %s (%s)",
                     order, paid, total, refunds, refunded, currency);
        snprintf(fp, sizeof(fp), "%s/%s/%s/%s/%d", paid, total, refunds, refunded, missing);
        snprintf(key, sizeof(key), "payout_variance/%s", order);
        snprintf(refs, sizeof(refs), "{\"platform_order_id\":%s}", "null");
        {
            json_t *jr = json_pack("{s:s}", "platform_order_id", order);
            char *rs = jr ? json_dumps(jr, JSON_COMPACT) : NULL;
            snprintf(refs, sizeof(refs), "%s", rs ? rs : "{}");
            free(rs);
            json_decref(jr);
        }
        json_object_set_new(jd, "payouts", json_string(PQgetvalue(r, i, 2)));
        json_object_set_new(jd, "payout_charges", json_string(paid));
        json_object_set_new(jd, "order_total", json_string(total));
        json_object_set_new(jd, "payout_refunds", json_string(refunds));
        json_object_set_new(jd, "order_refunded", json_string(refunded));
        json_object_set_new(jd, "currency", json_string(currency));
        ds = json_dumps(jd, JSON_COMPACT | JSON_SORT_KEYS);
        s.dedupe_key = key;
        s.type = "payout_variance";
        s.owner = "finance";
        s.severity = "error";
        s.summary = summary;
        s.explanation = "A platform payout differs from the orders and refunds it covers.";
        s.action = "Compare the payout file with the order and its refunds on the platform.";
        s.topic = "shop.orders.v1";
        s.store_code = "online";
        s.refs_json = refs;
        s.details_json = ds ? ds : "{}";
        s.related = &event_id;
        s.nrelated = *event_id ? 1 : 0;
        rc = check_flag(conn, "payouts", run, fp, &s, res, err, errlen);
        free(ds);
        json_decref(jd);
    }
    PQclear(r);
    return rc ? rc : check_sweep(conn, "payouts", run, res, err, errlen);
}

/*
 * inventory-ledger's schema (services/inventory-ledger/migrations): balances(tenant_id, sku,
 * location_id, on_hand, committed, in_transit) must equal Σ ledger_entries.delta per bucket.
 */
static int check_ledger(PGconn *conn, int64_t run, struct checks_result *res, char *err,
                        size_t errlen)
{
    PGresult *r;
    int rc = 0;

    r = db_query(conn,
                 "SELECT to_regclass('balances') IS NOT NULL AND "
                 "to_regclass('ledger_entries') IS NOT NULL",
                 0, NULL, err, errlen);
    if (!r)
        return -EIO;
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        PQclear(r);
        snprintf(res->ledger, sizeof(res->ledger),
                 "unavailable: inventory-ledger's tables balances and ledger_entries are not in "
                 "this database");
        return 0;
    }
    PQclear(r);
    r = db_query(
        conn,
        "WITH e AS (SELECT tenant_id, sku, location_id, "
        "  coalesce(sum(delta) FILTER (WHERE bucket = 'on_hand'), 0) AS on_hand, "
        "  coalesce(sum(delta) FILTER (WHERE bucket = 'committed'), 0) AS committed, "
        "  coalesce(sum(delta) FILTER (WHERE bucket = 'in_transit'), 0) AS in_transit "
        "  FROM ledger_entries GROUP BY 1, 2, 3) "
        "SELECT tenant_id, sku, location_id, "
        "  coalesce(b.on_hand, 0) || '/' || coalesce(b.committed, 0) || '/' || "
        "  coalesce(b.in_transit, 0), coalesce(e.on_hand, 0) || '/' || coalesce(e.committed, 0) "
        "  || '/' || coalesce(e.in_transit, 0) "
        "FROM balances b FULL JOIN e USING (tenant_id, sku, location_id) "
        "WHERE coalesce(b.on_hand, 0) <> coalesce(e.on_hand, 0) "
        "   OR coalesce(b.committed, 0) <> coalesce(e.committed, 0) "
        "   OR coalesce(b.in_transit, 0) <> coalesce(e.in_transit, 0) LIMIT 1000",
        0, NULL, err, errlen);
    if (!r) {
        snprintf(res->ledger, sizeof(res->ledger), "unavailable: %.200s", err);
        return 0; /* a ledger of another shape: reported, not fatal */
    }
    snprintf(res->ledger, sizeof(res->ledger), "ok");
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        const char *sku = PQgetvalue(r, i, 1), *loc = PQgetvalue(r, i, 2);
        char key[512], summary[512], fp[160];
        json_t *jr = json_pack("{s:s,s:s}", "sku", sku, "location_id", loc);
        json_t *jd = json_pack("{s:s,s:s,s:s}", "tenant_id", PQgetvalue(r, i, 0),
                               "stored_on_hand/committed/in_transit", PQgetvalue(r, i, 3),
                               "ledger_sum_on_hand/committed/in_transit", PQgetvalue(r, i, 4));
        char *rs = jr ? json_dumps(jr, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        char *ds = jd ? json_dumps(jd, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        struct exstore_sighting s = {0};

        snprintf(key, sizeof(key), "balance_mismatch/%s/%s/%s", PQgetvalue(r, i, 0), loc, sku);
        snprintf(summary, sizeof(summary),
                 "Stored balance of %s at %s (on hand/committed/in transit %s) differs from its "
                 "ledger (%s)",
                 sku, loc, PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
        snprintf(fp, sizeof(fp), "%s|%s", PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
        s.dedupe_key = key;
        s.type = "balance_mismatch";
        s.owner = "operations";
        s.severity = "critical";
        s.summary = summary;
        s.explanation = "A stored stock balance differs from the sum of its ledger.";
        s.action = "Escalate to engineering; do not adjust stock by hand.";
        s.store_code = loc;
        s.refs_json = rs ? rs : "{}";
        s.details_json = ds ? ds : "{}";
        rc = check_flag(conn, "ledger", run, fp, &s, res, err, errlen);
        free(rs);
        free(ds);
        json_decref(jr);
        json_decref(jd);
    }
    PQclear(r);
    return rc ? rc : check_sweep(conn, "ledger", run, res, err, errlen);
}

/*
 * SKU known on one side only (skuside.h). The till side: sightings from till transactions, and
 * from movements at a store (sent by a till, or at a location a till transaction named); a
 * warehouse's movements do not count. Unavailable — and nothing raised or cleared — until both
 * sides have data: before the catalogue (or the tills) have been seen at all, every SKU of the
 * other side would be flagged.
 */
static int check_sku_sides(PGconn *conn, const struct checks_opts *o, int64_t run,
                           struct checks_result *res, char *err, size_t errlen)
{
    char grace[32];
    const char *p[] = {db_int(grace, sizeof(grace), o->sku_side_grace_s)};
    bool have_catalogue, have_tills;
    PGresult *r;
    int rc = 0;

    r = db_query(conn,
                 "SELECT EXISTS (SELECT 1 FROM recon_catalog_items), "
                 "EXISTS (SELECT 1 FROM recon_sku_sightings WHERE store_code <> '')",
                 0, NULL, err, errlen);
    if (!r)
        return -EIO;
    have_catalogue = !strcmp(PQgetvalue(r, 0, 0), "t");
    have_tills = !strcmp(PQgetvalue(r, 0, 1), "t");
    PQclear(r);
    if (!have_catalogue || !have_tills) {
        snprintf(res->sku_sides, sizeof(res->sku_sides), "unavailable: %s%s%s",
                 have_catalogue ? "" : "no catalog.items.v1 record seen yet",
                 !have_catalogue && !have_tills ? "; " : "",
                 have_tills ? "" : "no till sale, return or store movement seen yet");
        return 0;
    }
    /* times as RFC 3339 (UTC), formatted by the outer select */
    r = db_query(
        conn,
        "WITH store_locations AS (SELECT DISTINCT location_id FROM recon_sku_sightings "
        "  WHERE store_code <> '' AND location_id <> ''), "
        "till AS (SELECT s.sku, "
        "  string_agg(DISTINCT nullif(s.store_code, ''), ',') AS stores, "
        "  string_agg(DISTINCT nullif(s.location_id, ''), ',') AS locations, "
        "  min(s.first_seen) AS first_seen, max(s.last_seen) AS last_seen, sum(s.lines) AS lines, "
        "  (array_agg(s.last_event_id ORDER BY s.last_seen DESC))[1] AS event_id "
        "  FROM recon_sku_sightings s WHERE s.store_code <> '' "
        "  OR s.location_id IN (SELECT location_id FROM store_locations) GROUP BY s.sku), "
        "cat AS (SELECT c.sku, "
        "  string_agg(DISTINCT c.platform || ':' || c.shop_id, ',') FILTER (WHERE NOT c.deleted) "
        "    AS listed_in, "
        "  string_agg(DISTINCT c.platform || ':' || c.shop_id, ',') FILTER (WHERE c.deleted) "
        "    AS formerly, "
        "  bool_or(NOT c.deleted) AS listed, "
        "  min(c.listed_since) FILTER (WHERE NOT c.deleted AND c.tracked) AS tracked_since, "
        "  (array_agg(c.event_id ORDER BY c.updated_at DESC))[1] AS event_id "
        "  FROM recon_catalog_items c WHERE c.sku <> '' GROUP BY c.sku), "
        "f AS (SELECT 'till' AS side, t.sku, '' AS listed_in, "
        "  coalesce(c.formerly, '') AS formerly, NULL::timestamptz AS since, "
        "  coalesce(t.stores, '') AS stores, "
        "  coalesce(t.locations, '') AS locations, t.first_seen, t.last_seen, t.lines, t.event_id "
        "  FROM till t LEFT JOIN cat c USING (sku) WHERE c.listed IS NOT TRUE "
        "  UNION ALL "
        "  SELECT 'platform', c.sku, c.listed_in, coalesce(c.formerly, ''), c.tracked_since, '', "
        "  '', NULL, NULL, 0, c.event_id FROM cat c "
        "  WHERE c.tracked_since <= now() - make_interval(secs => $1::bigint) "
        "  AND NOT EXISTS (SELECT 1 FROM till t WHERE t.sku = c.sku)) "
        "SELECT side, sku, listed_in, formerly, "
        "  coalesce(to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
        "  stores, locations, "
        "  coalesce(to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
        "  coalesce(to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), "
        "  lines, event_id FROM f ORDER BY sku",
        1, p, err, errlen);
    if (!r)
        return -EIO;
    snprintf(res->sku_sides, sizeof(res->sku_sides), "ok");
    for (int i = 0; i < PQntuples(r) && rc == 0; i++) {
        struct skuside_finding f = {
            .side =
                !strcmp(PQgetvalue(r, i, 0), "till") ? SKUSIDE_TILL_ONLY : SKUSIDE_PLATFORM_ONLY,
            .sku = PQgetvalue(r, i, 1),
            .listed_in = PQgetvalue(r, i, 2),
            .formerly_listed_in = PQgetvalue(r, i, 3),
            .listed_since = PQgetvalue(r, i, 4),
            .till_stores = PQgetvalue(r, i, 5),
            .till_locations = PQgetvalue(r, i, 6),
            .till_first_seen = PQgetvalue(r, i, 7),
            .till_last_seen = PQgetvalue(r, i, 8),
            .till_lines = strtoll(PQgetvalue(r, i, 9), NULL, 10),
            .grace_s = o->sku_side_grace_s,
        };
        const char *event_id = PQgetvalue(r, i, 10);
        struct exstore_sighting s = {0};
        struct skuside_text t;

        rc = skuside_describe(&f, &t);
        if (rc) {
            snprintf(err, errlen, "sku_one_side_only: cannot describe SKU %.100s", f.sku);
            skuside_text_release(&t);
            break;
        }
        s.dedupe_key = t.dedupe_key;
        s.type = exstore_type_name(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_ONE_SIDE_ONLY);
        s.owner = exstore_owner_name(
            exception_owner(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_ONE_SIDE_ONLY));
        s.severity = "info";
        s.summary = t.summary;
        s.explanation = t.explanation;
        s.action = t.action;
        s.topic = t.topic;
        s.store_code = t.store_code;
        s.refs_json = t.refs_json;
        s.details_json = t.details_json;
        s.related = &event_id;
        s.nrelated = *event_id ? 1 : 0;
        rc = check_flag(conn, "sku_sides", run, t.fingerprint, &s, res, err, errlen);
        skuside_text_release(&t);
    }
    PQclear(r);
    return rc ? rc : check_sweep(conn, "sku_sides", run, res, err, errlen);
}

/*
 * One run at a time, across this process's timer and API and across replicas: two interleaved
 * runs would each sweep (clear) what the other just found.
 */
#define CHECKS_LOCK "SELECT pg_%s(hashtext('recon-reporter:checks'))"

static int checks_run_locked(PGconn *conn, const struct checks_opts *o, struct checks_result *res,
                             char *err, size_t errlen);

int checks_run(PGconn *conn, const struct checks_opts *o, struct checks_result *res, char *err,
               size_t errlen)
{
    char q[80];
    int rc;

    memset(res, 0, sizeof(*res));
    snprintf(res->ledger, sizeof(res->ledger), "not run");
    snprintf(res->sku_sides, sizeof(res->sku_sides), "not run");
    snprintf(q, sizeof q, CHECKS_LOCK, "advisory_lock");
    if (db_exec(conn, q, 0, NULL, err, errlen))
        return -EIO;
    rc = checks_run_locked(conn, o, res, err, errlen);
    if (PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK")); /* a failed step left its transaction open */
    snprintf(q, sizeof q, CHECKS_LOCK, "advisory_unlock");
    if (db_exec(conn, q, 0, NULL, rc ? (char[256]){0} : err, rc ? 256 : errlen)) {
        PQreset(conn); /* the session (and its lock) must not outlive a failed unlock */
        rc = rc ? rc : -EIO;
    }
    return rc;
}

static int checks_run_locked(PGconn *conn, const struct checks_opts *o, struct checks_result *res,
                             char *err, size_t errlen)
{
    PGresult *r;
    int64_t run;
    int rc = 0, one;

    r = db_query(conn, "SELECT coalesce(max(run_id), 0) + 1 FROM recon_check_state", 0, NULL, err,
                 errlen);
    if (!r)
        return -EIO;
    run = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    /* each check runs even when an earlier one failed; the first error is returned */
    one = check_deadlines(conn, o, run, res, err, errlen);
    rc = rc ? rc : one;
    one = check_takings(conn, o, run, res, rc ? (char[256]){0} : err, rc ? 256 : errlen);
    rc = rc ? rc : one;
    one = check_payouts(conn, run, res, rc ? (char[256]){0} : err, rc ? 256 : errlen);
    rc = rc ? rc : one;
    one = check_ledger(conn, run, res, rc ? (char[256]){0} : err, rc ? 256 : errlen);
    rc = rc ? rc : one;
    one = check_sku_sides(conn, o, run, res, rc ? (char[256]){0} : err, rc ? 256 : errlen);
    rc = rc ? rc : one;
    return rc;
}
