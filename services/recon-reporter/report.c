/* report — see report.h. The CSV is rendered from the JSON document, so the two cannot differ. */
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "json_util.h"

int report_date_valid(const char *date)
{
    struct tm tm = {0};
    const char *end;
    char back[16];
    time_t t;

    if (!date || strlen(date) != 10)
        return 0;
    end = strptime(date, "%Y-%m-%d", &tm);
    if (!end || *end)
        return 0;
    t = timegm(&tm); /* normalises 2026-02-30 to 2026-03-02, which then differs */
    if (t == (time_t)-1 || !gmtime_r(&t, &tm))
        return 0;
    strftime(back, sizeof(back), "%Y-%m-%d", &tm);
    return strcmp(back, date) == 0;
}

/* Percent-encode s into out (query value). */
static void url_encode(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static json_t *group_get(json_t *groups, const char *store, const char *channel)
{
    size_t i;
    json_t *g;

    json_array_foreach(groups, i, g)
    {
        if (!strcmp(json_string_value(json_object_get(g, "store_code")), store) &&
            !strcmp(json_string_value(json_object_get(g, "channel")), channel))
            return g;
    }
    g = json_pack("{s:s,s:s,s:[]}", "store_code", store, "channel", channel, "figures");
    json_array_append_new(groups, g);
    return g;
}

json_t *report_build(PGconn *conn, const char *tenant, const char *date, const char *store,
                     char *err, size_t errlen)
{
    const char *p[] = {date, store && *store ? store : NULL};
    json_t *doc = NULL, *groups;
    PGresult *r = NULL;

    r = db_query(conn,
                 "SELECT store_code, channel, metric, key, currency, sum(amount), sum(quantity), "
                 "count(DISTINCT event_id) FROM recon_facts WHERE business_date = $1::date AND "
                 "($2::text IS NULL OR store_code = $2) GROUP BY 1, 2, 3, 4, 5 "
                 "ORDER BY 1, 2, 3, 4, 5",
                 2, p, err, errlen);
    if (!r)
        return NULL;
    doc = json_pack("{s:s,s:s,s:[]}", "tenant_id", tenant ? tenant : "", "date", date, "groups");
    groups = json_object_get(doc, "groups");
    for (int i = 0; i < PQntuples(r); i++) {
        const char *st = PQgetvalue(r, i, 0), *ch = PQgetvalue(r, i, 1),
                   *metric = PQgetvalue(r, i, 2), *key = PQgetvalue(r, i, 3),
                   *currency = PQgetvalue(r, i, 4);
        long long amount = strtoll(PQgetvalue(r, i, 5), NULL, 10);
        long long qty = strtoll(PQgetvalue(r, i, 6), NULL, 10);
        long long events = strtoll(PQgetvalue(r, i, 7), NULL, 10);
        char money[48], trace[1024], e_st[160], e_ch[160], e_m[96], e_k[256], e_c[32];
        json_t *fig;

        url_encode(st, e_st, sizeof(e_st));
        url_encode(ch, e_ch, sizeof(e_ch));
        url_encode(metric, e_m, sizeof(e_m));
        url_encode(key, e_k, sizeof(e_k));
        url_encode(currency, e_c, sizeof(e_c));
        snprintf(trace, sizeof(trace),
                 "/v1/reconciliation/trace?date=%s&store_code=%s&channel=%s&metric=%s&key=%s"
                 "&currency=%s",
                 date, e_st, e_ch, e_m, e_k, e_c);
        fig = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s}", "metric", metric, "key", key, "currency",
                        currency, "quantity", (json_int_t)qty, "event_count", (json_int_t)events,
                        "trace", trace);
        if (*currency) {
            money_format(amount, currency, money, sizeof(money));
            json_object_set_new(fig, "amount", json_string(money));
        } else {
            json_object_set_new(fig, "amount", json_null());
        }
        json_array_append_new(json_object_get(group_get(groups, st, ch), "figures"), fig);
    }
    PQclear(r);
    /* exceptions still open, per store, by owner and type */
    r = db_query(conn,
                 "SELECT store_code, owner || '/' || type, count(*) FROM recon_exceptions WHERE "
                 "status = 'open' AND ($2::text IS NULL OR store_code = $2) AND $1::date IS NOT "
                 "NULL GROUP BY 1, 2 ORDER BY 1, 2",
                 2, p, err, errlen);
    if (!r) {
        json_decref(doc);
        return NULL;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        char trace[512], e_st[160];
        const char *st = PQgetvalue(r, i, 0), *key = PQgetvalue(r, i, 1);
        const char *slash = strchr(key, '/');

        url_encode(st, e_st, sizeof(e_st));
        snprintf(trace, sizeof(trace), "/v1/exceptions?status=open&store_code=%s&type=%s", e_st,
                 slash ? slash + 1 : "");
        json_array_append_new(json_object_get(group_get(groups, st, "exceptions"), "figures"),
                              json_pack("{s:s,s:s,s:s,s:n,s:I,s:I,s:s}", "metric",
                                        "open_exceptions", "key", key, "currency", "", "amount",
                                        "quantity",
                                        (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10),
                                        "event_count", (json_int_t)0, "trace", trace));
    }
    PQclear(r);
    return doc;
}

int report_csv_cell(char **buf, size_t *len, size_t *cap, const char *s, int last)
{
    size_t need = strlen(s) * 2 + 5;
    int quote = strpbrk(s, ",\"\r\n") != NULL;

    if (*len + need >= *cap) {
        size_t nc = (*cap + need) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    if (quote)
        (*buf)[(*len)++] = '"';
    for (; *s; s++) {
        if (*s == '"')
            (*buf)[(*len)++] = '"';
        (*buf)[(*len)++] = *s;
    }
    if (quote)
        (*buf)[(*len)++] = '"';
    if (last) {
        (*buf)[(*len)++] = '\r';
        (*buf)[(*len)++] = '\n';
    } else {
        (*buf)[(*len)++] = ',';
    }
    (*buf)[*len] = '\0';
    return 0;
}

char *report_csv(const json_t *report)
{
    static const char *const header[] = {"date",     "tenant_id",  "store_code", "channel",
                                         "metric",   "key",        "currency",   "amount",
                                         "quantity", "event_count"};
    const char *date = json_string_value(json_object_get(report, "date"));
    const char *tenant = json_string_value(json_object_get(report, "tenant_id"));
    char *buf = NULL;
    size_t len = 0, cap = 0, gi, fi;
    json_t *g, *f;
    int rc = 0;

    for (int i = 0; i < 10 && rc == 0; i++)
        rc = report_csv_cell(&buf, &len, &cap, header[i], i == 9);
    json_array_foreach(json_object_get(report, "groups"), gi, g)
    {
        json_array_foreach(json_object_get(g, "figures"), fi, f)
        {
            char qty[32], events[32];
            const char *amount = json_string_value(json_object_get(f, "amount"));
            const char *cells[10];

            snprintf(qty, sizeof(qty), "%lld",
                     (long long)json_integer_value(json_object_get(f, "quantity")));
            snprintf(events, sizeof(events), "%lld",
                     (long long)json_integer_value(json_object_get(f, "event_count")));
            cells[0] = date ? date : "";
            cells[1] = tenant ? tenant : "";
            cells[2] = json_string_value(json_object_get(g, "store_code"));
            cells[3] = json_string_value(json_object_get(g, "channel"));
            cells[4] = json_string_value(json_object_get(f, "metric"));
            cells[5] = json_string_value(json_object_get(f, "key"));
            cells[6] = json_string_value(json_object_get(f, "currency"));
            cells[7] = amount ? amount : "";
            cells[8] = qty;
            cells[9] = events;
            for (int i = 0; i < 10 && rc == 0; i++)
                rc = report_csv_cell(&buf, &len, &cap, cells[i] ? cells[i] : "", i == 9);
        }
    }
    if (rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

json_t *report_trace(PGconn *conn, const char *date, const char *store, const char *channel,
                     const char *metric, const char *key, const char *currency, char *err,
                     size_t errlen)
{
    const char *p[] = {date, store, channel, metric, key ? key : "", currency ? currency : ""};
    PGresult *r;
    json_t *doc, *events;
    long long total = 0, qty = 0;
    char money[48];

    r = db_query(conn,
                 "SELECT f.event_id, sum(f.amount), sum(f.quantity), e.topic, e.partition, "
                 "e.kafka_offset, to_char(e.occurred_at AT TIME ZONE 'UTC', "
                 "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), e.summary, e.refs::text "
                 "FROM recon_facts f LEFT JOIN recon_events e ON e.event_id = f.event_id "
                 "WHERE f.business_date = $1::date AND f.store_code = $2 AND f.channel = $3 "
                 "AND f.metric = $4 AND f.key = $5 AND f.currency = $6 "
                 "GROUP BY f.event_id, e.topic, e.partition, e.kafka_offset, e.occurred_at, "
                 "e.summary, e.refs::text ORDER BY e.occurred_at, f.event_id",
                 6, p, err, errlen);
    if (!r)
        return NULL;
    events = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        long long a = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        long long q = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        json_t *refs = json_loads(PQgetvalue(r, i, 8), 0, NULL);
        json_t *ev = json_pack("{s:s,s:I,s:s,s:s,s:s}", "event_id", PQgetvalue(r, i, 0), "quantity",
                               (json_int_t)q, "topic", PQgetvalue(r, i, 3), "occurred_at",
                               PQgetvalue(r, i, 6), "summary", PQgetvalue(r, i, 7));
        total += a;
        qty += q;
        if (*p[5]) {
            money_format(a, currency, money, sizeof(money));
            json_object_set_new(ev, "amount", json_string(money));
        } else {
            json_object_set_new(ev, "amount", json_null());
        }
        json_object_set_new(ev, "partition", json_integer(strtoll(PQgetvalue(r, i, 4), NULL, 10)));
        json_object_set_new(ev, "offset", json_integer(strtoll(PQgetvalue(r, i, 5), NULL, 10)));
        json_object_set_new(ev, "refs", refs ? refs : json_object());
        json_array_append_new(events, ev);
    }
    PQclear(r);
    doc = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I},s:o}", "figure", "date", date,
                    "store_code", store, "channel", channel, "metric", metric, "key", p[4],
                    "currency", p[5], "quantity", (json_int_t)qty, "event_count",
                    (json_int_t)json_array_size(events), "events", events);
    if (*p[5]) {
        money_format(total, currency, money, sizeof(money));
        json_object_set_new(json_object_get(doc, "figure"), "amount", json_string(money));
    } else {
        json_object_set_new(json_object_get(doc, "figure"), "amount", json_null());
    }
    return doc;
}
