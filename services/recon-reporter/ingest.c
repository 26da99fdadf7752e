/*
 * ingest — see ingest.h.
 *
 * Design note: a figure of the daily reconciliation is never stored as a running total. Each
 * event adds rows to recon_facts (one per contribution: a line's net, a tax line, a tender…)
 * and the report sums them, so every figure lists the event ids behind it. Signs: sales and
 * tenders are as the till sent them; "returns" is the positive value of lines with a negative
 * quantity; a void adds the negation of the voided transaction's facts.
 */
#include "ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "db.h"
#include "events.h"
#include "exstore.h"
#include "skuside.h"
#include "utf8.h"
#include "tillsync/v1/catalog.pb-c.h"
#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/inventory.pb-c.h"
#include "tillsync/v1/loyalty.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

const char *const ingest_topics[] = {
    "pos.transactions.v1", "stock.movements.v1", "shop.orders.v1",      "catalog.items.v1",
    "inventory.levels.v1", "loyalty.points.v1",  "recon.exceptions.v1", NULL,
};

void ingest_date(int64_t ms, char *out, size_t outcap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0)
        t = time(NULL);
    gmtime_r(&t, &tm);
    strftime(out, outcap, "%Y-%m-%d", &tm);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* Longest identifier (SKU, store code, location, shop, variant) stored in an indexed column. */
#define ID_MAX 512
/* Latest envelope time accepted (9999-12-31T23:59:59.999Z): Postgres takes it as a timestamp. */
#define TIME_MAX_MS INT64_C(253402300799999)

/* Walk m: every set string field (nested messages and repeated fields included, only the set
 * member of a oneof) must be valid UTF-8, and an Envelope's times must be timestamps. */
static int check_message(const ProtobufCMessage *m, int depth, char *err, size_t errlen)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    if (depth > 32) {
        snprintf(err, errlen, "%s: messages nested too deep", d->name);
        return -EPROTO;
    }
    if (d == &tillsync__v1__envelope__descriptor) {
        const Tillsync__V1__Envelope *e = (const Tillsync__V1__Envelope *)m;
        if (e->occurred_at_ms > TIME_MAX_MS || e->recorded_at_ms > TIME_MAX_MS) {
            snprintf(err, errlen, "envelope time after the year 9999");
            return -EPROTO;
        }
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *member = (const char *)m + f->offset;
        void *const *elems = (void *const *)member;
        size_t n = 1;

        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            elems = *(void *const *const *)member;
        }
        for (size_t k = 0; k < n; k++) {
            if (!elems || !elems[k])
                continue;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int r = check_message(elems[k], depth + 1, err, errlen);
                if (r)
                    return r;
            } else if (!utf8_valid(elems[k])) {
                snprintf(err, errlen, "%s.%s is not valid UTF-8", d->name, f->name);
                return -EPROTO;
            }
        }
    }
    return 0;
}

int ingest_record_check(const ProtobufCMessage *msg, char *err, size_t errlen)
{
    return check_message(msg, 0, err, errlen);
}

/* -EPROTO with err when the identifier s (what names it) is too long to index. */
static int id_check(const char *what, const char *s, char *err, size_t errlen)
{
    if (s && strlen(s) > ID_MAX) {
        snprintf(err, errlen, "%s longer than %d bytes", what, ID_MAX);
        return -EPROTO;
    }
    return 0;
}

/* The business identifiers as a JSON object of the fields that are set (malloc'd). */
static char *refs_json(const Tillsync__V1__BusinessRefs *r)
{
    json_t *o = json_object();
    char *out;

    if (r) {
#define REF(f)                                                                                     \
    if (r->f && *r->f)                                                                             \
        json_object_set_new(o, #f, json_string(r->f));
        REF(pos_transaction_id)
        REF(till_id)
        REF(store_code)
        REF(platform_order_id)
        REF(platform_order_gid)
        REF(fulfillment_id)
        REF(payment_transaction_id)
        REF(sku)
        REF(platform_variant_id)
        REF(platform_inventory_item_id)
        REF(customer_id)
        REF(return_reference)
        REF(refund_reference)
        REF(shop_id)
        REF(location_id)
        REF(movement_id)
#undef REF
        if (r->n_line_ids) {
            json_t *a = json_array();
            for (size_t i = 0; i < r->n_line_ids; i++)
                json_array_append_new(a, json_string(nz(r->line_ids[i])));
            json_object_set_new(o, "line_ids", a);
        }
    }
    out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return out;
}

/* What every handler knows about the record being applied. */
struct rec {
    const struct kafka_message *m;
    const char *base; /* topic without prefix */
    char event_id[160];
    char ce_type[128]; /* the ce_type header, invalid UTF-8 replaced */
    char date[16];
    int64_t occurred_ms; /* the envelope's occurred-at, 0 when unknown */
};

/* Insert the event row; returns 1 when new, 0 when already seen, negative on error. */
static int event_record(PGconn *conn, struct rec *rc, const Tillsync__V1__Envelope *env,
                        const char *summary, char *err, size_t errlen)
{
    char part[16], off[32], occ[32], recd[32];
    char *refs = refs_json(env ? env->refs : NULL);
    const char *p[11];
    PGresult *r;
    int out;

    if (!refs) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!rc->event_id[0]) /* neither ce_id nor envelope id: name it by its position */
        snprintf(rc->event_id, sizeof(rc->event_id), "rec/%s/%" PRId32 "/%" PRId64, rc->base,
                 rc->m->partition, rc->m->offset);
    p[0] = rc->event_id;
    p[1] = rc->base;
    p[2] = db_int(part, sizeof(part), rc->m->partition);
    p[3] = db_int(off, sizeof(off), rc->m->offset);
    p[4] = rc->ce_type;
    p[5] = env ? nz(env->tenant_id) : "";
    p[6] = env && env->occurred_at_ms > 0 ? db_int(occ, sizeof(occ), env->occurred_at_ms) : NULL;
    p[7] = env && env->recorded_at_ms > 0 ? db_int(recd, sizeof(recd), env->recorded_at_ms) : NULL;
    p[8] = env ? nz(env->correlation_id) : "";
    p[9] = summary;
    p[10] = refs;
    r = db_query(conn,
                 "INSERT INTO recon_events (event_id, topic, partition, kafka_offset, ce_type, "
                 "tenant_id, occurred_at, recorded_at, correlation_id, summary, refs) VALUES "
                 "($1, $2, $3::int, $4::bigint, $5, $6, to_timestamp($7::bigint / 1000.0), "
                 "to_timestamp($8::bigint / 1000.0), $9, $10, $11::jsonb) "
                 "ON CONFLICT (event_id) DO NOTHING RETURNING 1",
                 11, p, err, errlen);
    free(refs);
    if (!r)
        return -EIO;
    out = PQntuples(r) == 1;
    PQclear(r);
    return out;
}

/* One contribution to a figure. */
struct fact {
    const char *event_id, *date, *store, *channel, *metric, *key, *currency, *till, *source_ref;
    int64_t amount, quantity;
};

static int fact_add(PGconn *conn, const struct fact *f, char *err, size_t errlen)
{
    char amt[32], qty[32];
    const char *p[] = {f->event_id,
                       f->date,
                       nz(f->store),
                       nz(f->channel),
                       f->metric,
                       nz(f->key),
                       nz(f->currency),
                       db_int(amt, sizeof(amt), f->amount),
                       db_int(qty, sizeof(qty), f->quantity),
                       nz(f->till),
                       nz(f->source_ref)};

    return db_exec(conn,
                   "INSERT INTO recon_facts (event_id, business_date, store_code, channel, "
                   "metric, key, currency, amount, quantity, till_id, source_ref) VALUES "
                   "($1, $2::date, $3, $4, $5, $6, $7, $8::bigint, $9::bigint, $10, $11)",
                   11, p, err, errlen);
}

static int64_t minor(const Tillsync__V1__Money *m)
{
    return m ? m->minor_units : 0;
}

static const char *cur(const Tillsync__V1__Money *m, const char *fallback)
{
    return m && m->currency && *m->currency ? m->currency : nz(fallback);
}

/* "VAT@20%" / "VAT@5.5%": a tax line's code and rate, the key of the "tax" figures. */
static void tax_key(const Tillsync__V1__TaxLine *t, char *out, size_t cap)
{
    int64_t ppm = t->rate_ppm, whole = ppm / 10000, frac = ppm % 10000;
    char rate[48];

    if (frac == 0) {
        snprintf(rate, sizeof(rate), "%" PRId64 "%%", whole);
    } else {
        snprintf(rate, sizeof(rate), "%" PRId64 ".%04" PRId64, whole, frac < 0 ? -frac : frac);
        size_t l = strlen(rate);
        while (l > 0 && rate[l - 1] == '0')
            rate[--l] = '\0';
        snprintf(rate + l, sizeof(rate) - l, "%%");
    }
    snprintf(out, cap, "%s@%s", t->code && *t->code ? t->code : "untaxed", rate);
}

static void lower_suffix(const char *enum_name, const char *prefix, char *out, size_t cap)
{
    size_t pl = strlen(prefix), i = 0;
    const char *s = strncmp(enum_name, prefix, pl) == 0 ? enum_name + pl : enum_name;

    for (; s[i] && i + 1 < cap; i++)
        out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    out[i] = '\0';
}

static void enum_lower(const ProtobufCEnumDescriptor *d, int v, const char *prefix, char *out,
                       size_t cap)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);

    lower_suffix(ev ? ev->name : "UNSPECIFIED", prefix, out, cap);
}

static int pending_add(PGconn *conn, const char *kind, const char *ref, const char *event_id,
                       const char *store, char *err, size_t errlen)
{
    const char *p[] = {kind, ref, event_id, nz(store)};
    const char *q[] = {kind, ref,
                       !strcmp(kind, "pos") ? "pos_transaction_id" : "platform_order_id"};
    int r;

    if (!ref || !*ref)
        return 0;
    r = db_exec(conn,
                "INSERT INTO recon_pending (kind, ref, event_id, store_code) VALUES "
                "($1, $2, $3, $4) ON CONFLICT (kind, ref) DO NOTHING",
                4, p, err, errlen);
    /* Topics are not ordered with each other: the level may have come first. */
    if (r == 0)
        r = db_exec(conn,
                    "UPDATE recon_pending p SET reflected_at = now(), reflected_event_id = "
                    "e.event_id FROM recon_events e WHERE p.kind = $1 AND p.ref = $2 AND "
                    "p.reflected_at IS NULL AND e.topic = 'inventory.levels.v1' AND "
                    "(e.correlation_id = p.event_id OR e.refs->>$3 = p.ref)",
                    3, q, err, errlen);
    return r;
}

static int pending_cancel(PGconn *conn, const char *kind, const char *ref, char *err, size_t errlen)
{
    const char *p[] = {kind, nz(ref)};

    return db_exec(conn, "UPDATE recon_pending SET cancelled = true WHERE kind = $1 AND ref = $2",
                   2, p, err, errlen);
}

/* The till side of the SKU check: sku was sold, returned or moved at store / location. */
static int sighting_add(PGconn *conn, const struct rec *rc, const char *sku, const char *store,
                        const char *location, const char *source, char *err, size_t errlen)
{
    char occ[32];
    const char *p[] = {sku,
                       nz(store),
                       nz(location),
                       source,
                       rc->occurred_ms > 0 ? db_int(occ, sizeof(occ), rc->occurred_ms) : NULL,
                       rc->event_id};

    return db_exec(conn,
                   "INSERT INTO recon_sku_sightings AS s (sku, store_code, location_id, source, "
                   "first_seen, last_seen, last_event_id) VALUES ($1, $2, $3, $4, "
                   "coalesce(to_timestamp($5::bigint / 1000.0), now()), "
                   "coalesce(to_timestamp($5::bigint / 1000.0), now()), $6) "
                   "ON CONFLICT (sku, store_code, location_id, source) DO UPDATE SET "
                   "first_seen = least(s.first_seen, EXCLUDED.first_seen), "
                   "last_seen = greatest(s.last_seen, EXCLUDED.last_seen), "
                   "last_event_id = CASE WHEN EXCLUDED.last_seen >= s.last_seen "
                   "  THEN EXCLUDED.last_event_id ELSE s.last_event_id END, "
                   "lines = s.lines + 1",
                   6, p, err, errlen);
}

/* Identifiers of a transaction that go into indexed columns must fit (checked before any
 * effect, so a bad record is dead-lettered whole). */
static int pos_transaction_check(const Tillsync__V1__PosTransaction *t, char *err, size_t errlen)
{
    int r = id_check("store_code", t->store_code, err, errlen);

    if (r == 0)
        r = id_check("location_id", t->location_id, err, errlen);
    for (size_t i = 0; r == 0 && i < t->n_lines; i++)
        r = id_check("lines.sku", t->lines[i]->sku, err, errlen);
    return r;
}

static int pos_transaction(PGconn *conn, struct rec *rc, const Tillsync__V1__PosTransaction *t,
                           char *err, size_t errlen)
{
    char kind[32], key[96];
    struct fact f = {.event_id = rc->event_id,
                     .date = rc->date,
                     .store = nz(t->store_code),
                     .channel = "pos",
                     .currency = nz(t->currency),
                     .till = nz(t->till_id),
                     .source_ref = nz(t->transaction_id)};
    bool stock = false;
    int r;

    if (t->business_date && strlen(t->business_date) == 10)
        f.date = t->business_date;
    enum_lower(&tillsync__v1__transaction_kind__descriptor, (int)t->kind, "TRANSACTION_KIND_", kind,
               sizeof(kind));
    if (t->kind == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID) {
        const char *p[] = {rc->event_id, nz(t->voided_transaction_id), nz(t->store_code),
                           nz(t->transaction_id)};
        r = db_exec(
            conn,
            "INSERT INTO recon_facts (event_id, business_date, store_code, channel, metric, "
            "key, currency, amount, quantity, till_id, source_ref) SELECT $1, "
            "business_date, store_code, channel, metric, key, currency, -amount, "
            "-quantity, till_id, $4 FROM recon_facts WHERE source_ref = $2 AND "
            "store_code = $3 AND channel = 'pos' AND metric <> 'transactions'",
            4, p, err, errlen);
        if (r == 0)
            r = pending_cancel(conn, "pos", t->voided_transaction_id, err, errlen);
        f.metric = "transactions";
        f.key = "void";
        f.quantity = 1;
        return r ? r : fact_add(conn, &f, err, errlen);
    }
    f.metric = "transactions";
    f.key = kind;
    f.amount = minor(t->total);
    f.quantity = 1;
    if ((r = fact_add(conn, &f, err, errlen)))
        return r;
    for (size_t i = 0; i < t->n_lines; i++) {
        const Tillsync__V1__TransactionLine *l = t->lines[i];
        int64_t sign = l->quantity < 0 ? -1 : 1;

        if (l->sku && *l->sku)
            stock = true;
        if (skuside_line_is_stock(l->sku, l->non_stock_code) &&
            (r = sighting_add(conn, rc, l->sku, t->store_code, t->location_id, "pos", err, errlen)))
            return r;
        f.key = l->sku && *l->sku ? "stock" : "non_stock";
        f.metric = l->quantity < 0 ? "returns" : "sales";
        f.amount = sign * minor(l->net_amount);
        f.quantity = sign * l->quantity;
        f.currency = cur(l->net_amount, t->currency);
        if ((r = fact_add(conn, &f, err, errlen)))
            return r;
        for (size_t d = 0; d < l->n_discounts; d++) {
            f.metric = "discounts";
            f.key = l->discounts[d]->code && *l->discounts[d]->code ? l->discounts[d]->code : "";
            f.amount = sign * minor(l->discounts[d]->amount);
            f.quantity = 0;
            f.currency = cur(l->discounts[d]->amount, t->currency);
            if ((r = fact_add(conn, &f, err, errlen)))
                return r;
        }
        for (size_t x = 0; x < l->n_tax_lines; x++) {
            tax_key(l->tax_lines[x], key, sizeof(key));
            f.metric = "tax";
            f.key = key;
            f.amount = minor(l->tax_lines[x]->amount);
            f.quantity = 0;
            f.currency = cur(l->tax_lines[x]->amount, t->currency);
            if ((r = fact_add(conn, &f, err, errlen)))
                return r;
        }
    }
    for (size_t i = 0; i < t->n_tenders; i++) {
        char tender[32];
        enum_lower(&tillsync__v1__tender_type__descriptor, (int)t->tenders[i]->type, "TENDER_TYPE_",
                   tender, sizeof(tender));
        f.metric = "tenders";
        f.key = tender;
        f.amount = minor(t->tenders[i]->amount);
        f.quantity = 1;
        f.currency = cur(t->tenders[i]->amount, t->currency);
        if ((r = fact_add(conn, &f, err, errlen)))
            return r;
    }
    if (stock)
        return pending_add(conn, "pos", t->transaction_id, rc->event_id, t->store_code, err,
                           errlen);
    return 0;
}

static int pos_takings(PGconn *conn, struct rec *rc, const Tillsync__V1__TakingsDeclaration *d,
                       char *err, size_t errlen)
{
    char cash[32], card[32], other[32];
    const char *currency = cur(d->cash_counted, cur(d->card_total, cur(d->other_total, "")));
    const char *date =
        d->business_date && strlen(d->business_date) == 10 ? d->business_date : rc->date;
    const char *p[] = {nz(d->store_code),
                       nz(d->till_id),
                       date,
                       currency,
                       db_int(cash, sizeof(cash), minor(d->cash_counted)),
                       db_int(card, sizeof(card), minor(d->card_total)),
                       db_int(other, sizeof(other), minor(d->other_total)),
                       nz(d->declared_by),
                       rc->event_id};
    struct fact f = {.event_id = rc->event_id,
                     .date = date,
                     .store = nz(d->store_code),
                     .channel = "pos",
                     .metric = "takings_declared",
                     .currency = currency,
                     .till = nz(d->till_id)};
    int r;

    r = db_exec(conn,
                "INSERT INTO recon_takings (store_code, till_id, business_date, currency, cash, "
                "card, other, declared_by, event_id) VALUES ($1, $2, $3::date, $4, $5::bigint, "
                "$6::bigint, $7::bigint, $8, $9) ON CONFLICT (store_code, till_id, business_date) "
                "DO UPDATE SET currency = EXCLUDED.currency, cash = EXCLUDED.cash, card = "
                "EXCLUDED.card, other = EXCLUDED.other, declared_by = EXCLUDED.declared_by, "
                "event_id = EXCLUDED.event_id",
                9, p, err, errlen);
    f.key = "cash";
    f.amount = minor(d->cash_counted);
    if (r == 0)
        r = fact_add(conn, &f, err, errlen);
    f.key = "card";
    f.amount = minor(d->card_total);
    if (r == 0)
        r = fact_add(conn, &f, err, errlen);
    f.key = "other";
    f.amount = minor(d->other_total);
    if (r == 0)
        r = fact_add(conn, &f, err, errlen);
    return r;
}

static int on_pos(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__PosTransactionEvent *ev =
        tillsync__v1__pos_transaction_event__unpack(NULL, rc->m->len, rc->m->payload);
    char summary[256] = "";
    int r;

    if (!ev) {
        snprintf(err, errlen, "does not decode as PosTransactionEvent");
        return -EBADMSG;
    }
    r = ingest_record_check(&ev->base, err, errlen);
    if (r == 0 && ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION)
        r = pos_transaction_check(ev->transaction, err, errlen);
    if (r)
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    rc->occurred_ms = ev->envelope ? ev->envelope->occurred_at_ms : 0;
    ingest_date(ev->envelope ? ev->envelope->occurred_at_ms : 0, rc->date, sizeof(rc->date));
    if (ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION)
        snprintf(summary, sizeof(summary), "POS transaction %s at %s/%s",
                 nz(ev->transaction->transaction_id), nz(ev->transaction->store_code),
                 nz(ev->transaction->till_id));
    else if (ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS)
        snprintf(summary, sizeof(summary), "Takings declared at %s/%s for %s",
                 nz(ev->takings->store_code), nz(ev->takings->till_id),
                 nz(ev->takings->business_date));
    r = event_record(conn, rc, ev->envelope, summary, err, errlen);
    if (r == 1) {
        r = 0;
        if (ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION)
            r = pos_transaction(conn, rc, ev->transaction, err, errlen);
        else if (ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS)
            r = pos_takings(conn, rc, ev->takings, err, errlen);
    }
out:
    tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

/* Insert the order when first seen (any event kind); adds its "orders" facts. */
static int order_first_seen(PGconn *conn, struct rec *rc, const Tillsync__V1__ShopOrder *o,
                            struct fact *f, const char *platform, char *err, size_t errlen)
{
    char total[32], key[96];
    const char *oid = o->order ? nz(o->order->id) : "";
    const char *p[] = {platform,     nz(o->shop_id),  oid,
                       rc->event_id, nz(o->currency), db_int(total, sizeof(total), minor(o->total)),
                       rc->date};
    PGresult *res;
    bool fresh, stock = false;
    int r = 0;

    res = db_query(conn,
                   "INSERT INTO recon_orders (platform, shop_id, order_id, event_id, currency, "
                   "total, business_date) VALUES ($1, $2, $3, $4, $5, $6::bigint, $7::date) "
                   "ON CONFLICT DO NOTHING RETURNING 1",
                   7, p, err, errlen);
    if (!res)
        return -EIO;
    fresh = PQntuples(res) == 1;
    PQclear(res);
    if (!fresh)
        return 0;
    f->metric = "orders";
    f->key = o->in_store_sale ? "in_store" : (o->pickup ? "pickup" : "online");
    f->amount = minor(o->total);
    f->quantity = 1;
    if ((r = fact_add(conn, f, err, errlen)))
        return r;
    if (minor(o->discount_total)) {
        f->metric = "discounts";
        f->key = "order";
        f->amount = minor(o->discount_total);
        f->quantity = 0;
        if ((r = fact_add(conn, f, err, errlen)))
            return r;
    }
    for (size_t i = 0; i < o->n_lines; i++) {
        const Tillsync__V1__OrderLine *l = o->lines[i];
        if (l->sku && *l->sku)
            stock = true;
        for (size_t x = 0; x < l->n_tax_lines; x++) {
            tax_key(l->tax_lines[x], key, sizeof(key));
            f->metric = "tax";
            f->key = key;
            f->amount = minor(l->tax_lines[x]->amount);
            f->quantity = 0;
            if ((r = fact_add(conn, f, err, errlen)))
                return r;
        }
    }
    if (stock)
        r = pending_add(conn, "order", oid, rc->event_id, f->store, err, errlen);
    return r;
}

static int on_order(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__ShopOrderEvent *ev =
        tillsync__v1__shop_order_event__unpack(NULL, rc->m->len, rc->m->payload);
    const Tillsync__V1__ShopOrder *o;
    char summary[256] = "", platform[32], kind[32], channel[192];
    struct fact f = {0};
    int r;

    if (!ev) {
        snprintf(err, errlen, "does not decode as ShopOrderEvent");
        return -EBADMSG;
    }
    if ((r = ingest_record_check(&ev->base, err, errlen)))
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    ingest_date(ev->envelope ? ev->envelope->occurred_at_ms : 0, rc->date, sizeof(rc->date));
    o = ev->order;
    enum_lower(&tillsync__v1__order_event_kind__descriptor, (int)ev->kind, "ORDER_EVENT_KIND_",
               kind, sizeof(kind));
    enum_lower(&tillsync__v1__platform__descriptor, o ? (int)o->platform : 0, "PLATFORM_", platform,
               sizeof(platform));
    if (o)
        snprintf(summary, sizeof(summary), "Order %s (%s) %s on %s", nz(o->order_name),
                 o->order ? nz(o->order->id) : "", kind, nz(o->shop_id));
    r = event_record(conn, rc, ev->envelope, summary, err, errlen);
    if (r != 1 || !o)
        goto out;
    snprintf(channel, sizeof(channel), "%s:%s", platform, nz(o->shop_id));
    f.event_id = rc->event_id;
    f.date = rc->date;
    f.store = o->in_store_sale && o->location_id && *o->location_id ? o->location_id : "online";
    f.channel = channel;
    f.currency = nz(o->currency);
    f.source_ref = o->order ? nz(o->order->id) : "";
    r = order_first_seen(conn, rc, o, &f, platform, err, errlen);
    if (r)
        goto out;
    /* A platform POS sale (Shopify POS) is a till sale too: its SKUs count as sold in store for
     * the SKU check, once per order (at its creation). */
    if (o->in_store_sale && o->location_id && *o->location_id &&
        ev->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED) {
        for (size_t i = 0; i < o->n_lines && r == 0; i++) {
            const Tillsync__V1__OrderLine *l = o->lines[i];
            if (skuside_line_is_stock(l->sku, l->ledger_code))
                r = sighting_add(conn, rc, l->sku, o->location_id, o->location_id, "platform_pos",
                                 err, errlen);
        }
        if (r)
            goto out;
    }
    if (ev->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED) {
        const char *p[] = {platform, nz(o->shop_id), f.source_ref};
        PGresult *res = db_query(conn,
                                 "UPDATE recon_orders SET cancelled = true WHERE platform = $1 "
                                 "AND shop_id = $2 AND order_id = $3 AND NOT cancelled "
                                 "RETURNING total",
                                 3, p, err, errlen);
        if (!res) {
            r = -EIO;
            goto out;
        }
        if (PQntuples(res) == 1) {
            f.metric = "cancellations";
            f.key = "";
            f.amount = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
            f.quantity = 1;
            r = fact_add(conn, &f, err, errlen);
        }
        PQclear(res);
        if (r == 0)
            r = pending_cancel(conn, "order", f.source_ref, err, errlen);
    } else if (ev->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED &&
               ev->refund) {
        char amt[32];
        int64_t amount = minor(ev->refund->amount);
        const char *p[] = {platform, nz(o->shop_id), f.source_ref,
                           db_int(amt, sizeof(amt), amount)};
        f.metric = "refunds";
        f.key = "";
        f.amount = amount;
        f.quantity = 1;
        f.currency = cur(ev->refund->amount, o->currency);
        r = fact_add(conn, &f, err, errlen);
        if (r == 0)
            r = db_exec(conn,
                        "UPDATE recon_orders SET refunded = refunded + $4::bigint WHERE "
                        "platform = $1 AND shop_id = $2 AND order_id = $3",
                        4, p, err, errlen);
    }
out:
    tillsync__v1__shop_order_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

static int on_movement(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__StockMovementEvent *ev =
        tillsync__v1__stock_movement_event__unpack(NULL, rc->m->len, rc->m->payload);
    const Tillsync__V1__StockMovement *mv;
    char summary[256] = "", kind[32];
    struct fact f = {0};
    int r;

    if (!ev) {
        snprintf(err, errlen, "does not decode as StockMovementEvent");
        return -EBADMSG;
    }
    mv = ev->movement;
    r = ingest_record_check(&ev->base, err, errlen);
    if (r == 0 && mv)
        r = id_check("store_code", mv->store_code, err, errlen);
    if (r == 0 && mv)
        r = id_check("location_id", mv->location_id, err, errlen);
    for (size_t i = 0; r == 0 && mv && i < mv->n_lines; i++)
        r = id_check("lines.sku", mv->lines[i]->sku, err, errlen);
    if (r)
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    rc->occurred_ms = ev->envelope ? ev->envelope->occurred_at_ms : 0;
    ingest_date(ev->envelope ? ev->envelope->occurred_at_ms : 0, rc->date, sizeof(rc->date));
    enum_lower(&tillsync__v1__movement_kind__descriptor, mv ? (int)mv->kind : 0, "MOVEMENT_KIND_",
               kind, sizeof(kind));
    if (mv)
        snprintf(summary, sizeof(summary), "Stock movement %s (%s) at %s", nz(mv->movement_id),
                 kind, nz(mv->location_id));
    r = event_record(conn, rc, ev->envelope, summary, err, errlen);
    if (r != 1 || !mv)
        goto out;
    r = 0;
    f.event_id = rc->event_id;
    f.date = rc->date;
    f.store = mv->store_code && *mv->store_code ? mv->store_code : nz(mv->location_id);
    f.channel = "stock";
    f.metric = "stock_movements";
    f.key = kind;
    f.source_ref = nz(mv->movement_id);
    for (size_t i = 0; r == 0 && i < mv->n_lines; i++) {
        const Tillsync__V1__MovementLine *l = mv->lines[i];
        switch (mv->kind) {
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_OUT:
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_DAMAGE:
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SHRINKAGE:
            f.quantity = -l->quantity;
            break;
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_CYCLE_COUNT:
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SNAPSHOT:
            f.quantity = l->counted_quantity; /* an absolute count, not a delta */
            break;
        default:
            f.quantity = l->quantity;
        }
        r = fact_add(conn, &f, err, errlen);
        /* the till side of the SKU check (a warehouse's movements are told apart there) */
        if (r == 0 && l->sku && *l->sku)
            r = sighting_add(conn, rc, l->sku, mv->store_code, mv->location_id, "stock", err,
                             errlen);
    }
out:
    tillsync__v1__stock_movement_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

/*
 * A level record is the ledger's effect becoming visible: it marks pending transactions and
 * orders reflected when its envelope's correlation_id is their event id, or its business
 * identifiers name them (pos_transaction_id / platform_order_id).
 */
static int on_level(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__InventoryLevelEvent *ev =
        tillsync__v1__inventory_level_event__unpack(NULL, rc->m->len, rc->m->payload);
    const Tillsync__V1__InventoryLevel *l;
    const Tillsync__V1__BusinessRefs *refs;
    char summary[256] = "", oh[32], av[32], ver[32];
    int r;

    if (!ev) {
        snprintf(err, errlen, "does not decode as InventoryLevelEvent");
        return -EBADMSG;
    }
    if ((r = ingest_record_check(&ev->base, err, errlen)))
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    l = ev->level;
    if (l)
        snprintf(summary, sizeof(summary),
                 "Level of %s at %s: on hand %" PRId64 ", available %" PRId64, nz(l->sku),
                 nz(l->location_id), l->on_hand, l->available);
    r = event_record(conn, rc, ev->envelope, summary, err, errlen);
    if (r != 1)
        goto out;
    r = 0;
    if (l) {
        const char *p[] = {nz(l->location_id),
                           nz(l->sku),
                           db_int(oh, sizeof(oh), l->on_hand),
                           db_int(av, sizeof(av), l->available),
                           db_int(ver, sizeof(ver), l->version),
                           rc->event_id};
        r = db_exec(conn,
                    "INSERT INTO recon_levels AS v (location_id, sku, on_hand, available, version, "
                    "event_id) VALUES ($1, $2, $3::bigint, $4::bigint, $5::bigint, $6) "
                    "ON CONFLICT (location_id, sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, "
                    "available = EXCLUDED.available, version = EXCLUDED.version, event_id = "
                    "EXCLUDED.event_id WHERE v.version <= EXCLUDED.version",
                    6, p, err, errlen);
    }
    refs = ev->envelope ? ev->envelope->refs : NULL;
    if (r == 0) {
        const char *p[] = {ev->envelope ? nz(ev->envelope->correlation_id) : "",
                           refs ? nz(refs->pos_transaction_id) : "",
                           refs ? nz(refs->platform_order_id) : "", rc->event_id};
        r = db_exec(conn,
                    "UPDATE recon_pending SET reflected_at = now(), reflected_event_id = $4 "
                    "WHERE reflected_at IS NULL AND (($1 <> '' AND event_id = $1) OR "
                    "($2 <> '' AND kind = 'pos' AND ref = $2) OR "
                    "($3 <> '' AND kind = 'order' AND ref = $3))",
                    4, p, err, errlen);
    }
out:
    tillsync__v1__inventory_level_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

static int on_exception(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__ExceptionEvent *ev =
        tillsync__v1__exception_event__unpack(NULL, rc->m->len, rc->m->payload);
    const Tillsync__V1__RaisedException *x;
    const Tillsync__V1__BusinessRefs *refs;
    struct exstore_sighting s = {0};
    char *refs_text = NULL, *details_text = NULL;
    json_t *details = NULL;
    int r;

    if (!ev) {
        snprintf(err, errlen, "does not decode as ExceptionEvent");
        return -EBADMSG;
    }
    if ((r = ingest_record_check(&ev->base, err, errlen)))
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    x = ev->exception;
    r = event_record(conn, rc, ev->envelope, x ? nz(x->summary) : "", err, errlen);
    if (r != 1 || !x || !x->dedupe_key || !*x->dedupe_key)
        goto out;
    if (x->signal == TILLSYNC__V1__EXCEPTION_SIGNAL__EXCEPTION_SIGNAL_CLEARED) {
        r = exstore_clear(conn, x->dedupe_key, rc->event_id, err, errlen);
        goto out;
    }
    refs = ev->envelope ? ev->envelope->refs : NULL;
    refs_text = refs_json(refs);
    details = json_object();
    for (size_t i = 0; i < x->n_details; i++)
        if (x->details[i]->key)
            json_object_set_new(details, x->details[i]->key, json_string(nz(x->details[i]->value)));
    details_text = json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS);
    if (!refs_text || !details_text) {
        r = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    s.dedupe_key = x->dedupe_key;
    s.type = exstore_type_name(x->type);
    s.owner = exstore_owner_name(x->owner);
    s.severity = exstore_severity_name(x->severity);
    s.summary = x->summary;
    s.explanation = x->explanation;
    s.action = x->suggested_action;
    s.topic = x->topic;
    s.store_code = refs && refs->store_code && *refs->store_code ? refs->store_code
                   : refs                                        ? refs->location_id
                                                                 : NULL;
    s.refs_json = refs_text;
    s.details_json = details_text;
    s.seen_at_ms = ev->envelope ? ev->envelope->occurred_at_ms : 0;
    s.event_id = rc->event_id;
    s.related = (const char *const *)x->related_event_ids;
    s.nrelated = x->n_related_event_ids;
    r = exstore_raise(conn, &s, NULL, err, errlen);
out:
    json_decref(details);
    free(refs_text);
    free(details_text);
    tillsync__v1__exception_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

/* loyalty.points.v1: recorded for flow health only. */
static int on_loyalty(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__LoyaltyPointsEvent *ev =
        tillsync__v1__loyalty_points_event__unpack(NULL, rc->m->len, rc->m->payload);
    int r;

    if (!ev) {
        snprintf(err, errlen, "does not decode as LoyaltyPointsEvent");
        return -EBADMSG;
    }
    if ((r = ingest_record_check(&ev->base, err, errlen)))
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    r = event_record(conn, rc, ev->envelope, "", err, errlen);
out:
    tillsync__v1__loyalty_points_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

/* The record key of a catalogue record into key ("" when it has none); -EPROTO with err when
 * it cannot be stored. */
static int catalog_key(const struct kafka_message *m, char *key, size_t cap, char *err,
                       size_t errlen)
{
    key[0] = '\0';
    if (!m->key || m->keylen == 0)
        return 0;
    if (m->keylen >= cap || memchr(m->key, '\0', m->keylen)) {
        snprintf(err, errlen, "record key longer than %zu bytes or with a NUL byte", cap - 1);
        return -EPROTO;
    }
    memcpy(key, m->key, m->keylen);
    key[m->keylen] = '\0';
    if (!utf8_valid(key)) {
        snprintf(err, errlen, "record key is not valid UTF-8");
        return -EPROTO;
    }
    return 0;
}

/*
 * catalog.items.v1: the online side of the SKU check. One row per record key
 * ("<platform>/<shop_id>/<variant id>", else built from the item) in recon_catalog_items, as the
 * newest record says (an older platform_updated_at_ms does not overwrite a newer one). A deleted
 * item or a tombstone (no value) keeps the row, marked deleted. listed_since starts when the
 * variant starts listing its SKU (again after a SKU change, an undelete, or tracking turned on).
 */
static int on_catalog(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    Tillsync__V1__CatalogItemEvent *ev = NULL;
    const Tillsync__V1__CatalogItem *it;
    char key[2 * ID_MAX + 8], platform[32], summary[768] = "", upd[32];
    int r;

    if ((r = catalog_key(rc->m, key, sizeof(key), err, errlen)))
        return r;
    if (!rc->m->payload) { /* a tombstone: the variant is gone */
        snprintf(summary, sizeof(summary), "Catalogue tombstone %s", key);
        r = event_record(conn, rc, NULL, summary, err, errlen);
        if (r == 1 && key[0]) {
            const char *p[] = {key, rc->event_id};
            r = db_exec(conn,
                        "UPDATE recon_catalog_items SET deleted = true, listed_since = NULL, "
                        "deleted_at = coalesce(deleted_at, now()), event_id = $2, "
                        "updated_at = now() WHERE record_key = $1",
                        2, p, err, errlen);
        }
        return r < 0 ? r : 0;
    }
    ev = tillsync__v1__catalog_item_event__unpack(NULL, rc->m->len, rc->m->payload);
    if (!ev) {
        snprintf(err, errlen, "does not decode as CatalogItemEvent");
        return -EBADMSG;
    }
    it = ev->item;
    r = ingest_record_check(&ev->base, err, errlen);
    if (r == 0 && it) {
        r = id_check("item.shop_id", it->shop_id, err, errlen);
        if (r == 0)
            r = id_check("item.sku", it->sku, err, errlen);
        if (r == 0)
            r = id_check("item.variant.id", it->variant ? it->variant->id : NULL, err, errlen);
        if (r == 0 && (!it->shop_id || !*it->shop_id)) {
            snprintf(err, errlen, "catalogue item without shop_id");
            r = -EPROTO;
        }
        if (r == 0 && !key[0] && !(it->variant && it->variant->id && *it->variant->id)) {
            snprintf(err, errlen, "catalogue item with neither a record key nor a variant id");
            r = -EPROTO;
        }
    }
    if (r)
        goto out;
    if (ev->envelope && !rc->event_id[0])
        snprintf(rc->event_id, sizeof(rc->event_id), "%s", nz(ev->envelope->event_id));
    if (it) {
        enum_lower(&tillsync__v1__platform__descriptor, (int)it->platform, "PLATFORM_", platform,
                   sizeof(platform));
        if (!key[0])
            snprintf(key, sizeof(key), "%s/%s/%s", platform, it->shop_id, it->variant->id);
        snprintf(summary, sizeof(summary), "Catalogue item %s (%s:%s variant %s)%s%s",
                 *nz(it->sku) ? it->sku : "without SKU", platform, it->shop_id,
                 it->variant ? nz(it->variant->id) : "", it->tracked ? "" : ", untracked",
                 it->deleted ? ", deleted" : "");
    }
    r = event_record(conn, rc, ev->envelope, summary, err, errlen);
    if (r != 1 || !it)
        goto out;
    {
        const char *p[] = {key,
                           platform,
                           it->shop_id,
                           it->variant ? nz(it->variant->id) : "",
                           nz(it->sku),
                           it->tracked ? "true" : "false",
                           it->deleted ? "true" : "false",
                           db_int(upd, sizeof(upd), it->platform_updated_at_ms),
                           rc->event_id};
        r = db_exec(
            conn,
            "INSERT INTO recon_catalog_items AS c (record_key, platform, shop_id, variant_id, "
            "sku, tracked, deleted, platform_updated_at_ms, listed_since, deleted_at, event_id) "
            "VALUES ($1, $2, $3, $4, $5, $6::boolean, $7::boolean, $8::bigint, "
            "  CASE WHEN $7::boolean OR $5 = '' THEN NULL ELSE now() END, "
            "  CASE WHEN $7::boolean THEN now() END, $9) "
            "ON CONFLICT (record_key) DO UPDATE SET platform = EXCLUDED.platform, "
            "  shop_id = EXCLUDED.shop_id, variant_id = EXCLUDED.variant_id, sku = EXCLUDED.sku, "
            "  tracked = EXCLUDED.tracked, deleted = EXCLUDED.deleted, "
            "  platform_updated_at_ms = EXCLUDED.platform_updated_at_ms, "
            "  listed_since = CASE WHEN EXCLUDED.listed_since IS NULL THEN NULL "
            "    WHEN c.listed_since IS NOT NULL AND NOT c.deleted AND c.sku = EXCLUDED.sku "
            "      AND (c.tracked OR NOT EXCLUDED.tracked) THEN c.listed_since "
            "    ELSE EXCLUDED.listed_since END, "
            "  deleted_at = CASE WHEN EXCLUDED.deleted THEN coalesce(c.deleted_at, now()) END, "
            "  event_id = EXCLUDED.event_id, updated_at = now() "
            "WHERE EXCLUDED.platform_updated_at_ms = 0 "
            "   OR c.platform_updated_at_ms <= EXCLUDED.platform_updated_at_ms",
            9, p, err, errlen);
    }
out:
    tillsync__v1__catalog_item_event__free_unpacked(ev, NULL);
    return r < 0 ? r : 0;
}

/* Header value as a NUL-terminated copy into out ("" when absent). */
static void header_get(const struct kafka_message *m, const char *name, char *out, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;

    out[0] = '\0';
    if (!m->raw || rd_kafka_message_headers((const rd_kafka_message_t *)m->raw, &h) ||
        rd_kafka_header_get_last(h, name, &v, &len) || !v)
        return;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    utf8_scrub(out);
}

/* A dead-lettered record: one DEAD_LETTERED exception per original record. */
static int on_dlq(PGconn *conn, struct rec *rc, char *err, size_t errlen)
{
    static const char *const names[] = {"dlq_error_code",
                                        "dlq_error_message",
                                        "dlq_original_topic",
                                        "dlq_original_partition",
                                        "dlq_original_offset",
                                        "dlq_failed_at",
                                        "dlq_service",
                                        "ce_id",
                                        "ce_type"};
    char vals[9][512], key[768], summary[1024], orig[256];
    json_t *details = json_object();
    char *details_text = NULL;
    struct exstore_sighting s = {0};
    const char *related[1];
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    size_t plen;
    int r;

    for (size_t i = 0; i < 9; i++) {
        header_get(rc->m, names[i], vals[i], sizeof(vals[i]));
        if (vals[i][0])
            json_object_set_new(details, names[i], json_string(vals[i]));
    }
    snprintf(rc->event_id, sizeof(rc->event_id), "dlq/%s/%" PRId32 "/%" PRId64, rc->base,
             rc->m->partition, rc->m->offset);
    /* the original topic without the tenant prefix, else the dlq topic without ".dlq" */
    plen = strlen(rc->m->topic) - strlen(rc->base); /* prefix length */
    if (vals[2][0])
        snprintf(orig, sizeof(orig), "%s", strlen(vals[2]) > plen ? vals[2] + plen : vals[2]);
    else
        snprintf(orig, sizeof(orig), "%.*s", (int)(strlen(rc->base) - 4), rc->base);
    snprintf(summary, sizeof(summary), "Record %s/%s/%s dead-lettered by %s: %s %s", orig,
             vals[3][0] ? vals[3] : "?", vals[4][0] ? vals[4] : "?",
             vals[6][0] ? vals[6] : "unknown service", vals[0], vals[1]);
    env.occurred_at_ms = rc->m->timestamp_ms > 0 ? rc->m->timestamp_ms : 0;
    r = event_record(conn, rc, &env, summary, err, errlen);
    if (r != 1)
        goto out;
    if (vals[3][0] && vals[4][0])
        snprintf(key, sizeof(key), "dead_lettered/%s/%s/%s", orig, vals[3], vals[4]);
    else
        snprintf(key, sizeof(key), "dead_lettered/%s", rc->event_id);
    details_text = json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS);
    if (!details_text) {
        r = -ENOMEM;
        goto out;
    }
    s.dedupe_key = key;
    s.type = "dead_lettered";
    s.owner = exstore_owner_name(
        exception_owner(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_DEAD_LETTERED));
    s.severity = "error";
    s.summary = summary;
    s.explanation = "A message could not be processed and was put on a dead-letter topic.";
    s.action = "Read the error headers, fix the cause, replay the message "
               "(docs/operations.md, \"Replaying a dead-lettered record\").";
    s.topic = orig;
    s.details_json = details_text;
    s.seen_at_ms = env.occurred_at_ms;
    s.event_id = rc->event_id;
    related[0] = vals[7];
    s.related = related;
    s.nrelated = vals[7][0] ? 1 : 0;
    r = exstore_raise(conn, &s, NULL, err, errlen);
out:
    free(details_text);
    json_decref(details);
    return r < 0 ? r : 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/*
 * A record of a main topic recon-reporter cannot apply — it does not decode (-EBADMSG:
 * "decode_failed"), or decodes to something Postgres cannot store or the check cannot use
 * (-EPROTO: "validation_failed", e.g. text that is not UTF-8) — is dead-lettered to its topic's
 * .dlq with reason in dlq_error_message (or, without a producer, recorded as the exception
 * directly). Nothing else of it is applied: handlers validate before their first write.
 */
static int on_undecodable(PGconn *conn, const struct ingest *in, struct rec *rc, int why,
                          const char *reason, char *err, size_t errlen)
{
    char dlq[320], msg[512];
    struct exstore_sighting s = {0};
    char key[512];

    snprintf(msg, sizeof(msg), "recon-reporter cannot apply a %s record: %s", rc->base,
             *reason ? reason : "does not decode");
    if (in->producer) {
        snprintf(dlq, sizeof(dlq), "%s.dlq", rc->m->topic);
        return kafka_dead_letter(in->producer, dlq, rc->m,
                                 why == -EBADMSG ? "decode_failed" : "validation_failed", msg,
                                 in->service ? in->service : "recon-reporter", err, errlen);
    }
    snprintf(key, sizeof(key), "dead_lettered/%s/%" PRId32 "/%" PRId64, rc->base, rc->m->partition,
             rc->m->offset);
    s.dedupe_key = key;
    s.type = "dead_lettered";
    s.owner = "ecommerce";
    s.severity = "error";
    s.summary = msg;
    s.topic = rc->base;
    return exstore_raise(conn, &s, NULL, err, errlen);
}

static int apply_one(PGconn *conn, const struct ingest *in, const struct kafka_message *m,
                     char *err, size_t errlen)
{
    struct rec rc = {.m = m};
    size_t plen = in->prefix ? strlen(in->prefix) : 0;
    int r;

    rc.base = strncmp(m->topic, nz(in->prefix), plen) == 0 ? m->topic + plen : m->topic;
    /* header values go into text columns: Postgres refuses invalid UTF-8 (a truncated ce_id
     * may end inside a character) */
    snprintf(rc.event_id, sizeof(rc.event_id), "%s", m->ce_id);
    utf8_scrub(rc.event_id);
    snprintf(rc.ce_type, sizeof(rc.ce_type), "%s", m->ce_type);
    utf8_scrub(rc.ce_type);
    ingest_date(m->timestamp_ms, rc.date, sizeof(rc.date));
    if (ends_with(rc.base, ".dlq"))
        return on_dlq(conn, &rc, err, errlen);
    if (!strcmp(rc.base, "pos.transactions.v1"))
        r = on_pos(conn, &rc, err, errlen);
    else if (!strcmp(rc.base, "shop.orders.v1"))
        r = on_order(conn, &rc, err, errlen);
    else if (!strcmp(rc.base, "stock.movements.v1"))
        r = on_movement(conn, &rc, err, errlen);
    else if (!strcmp(rc.base, "inventory.levels.v1"))
        r = on_level(conn, &rc, err, errlen);
    else if (!strcmp(rc.base, "recon.exceptions.v1"))
        r = on_exception(conn, &rc, err, errlen);
    else if (!strcmp(rc.base, "catalog.items.v1"))
        r = on_catalog(conn, &rc, err, errlen);
    else /* loyalty.points.v1, the last of ingest_topics */
        r = on_loyalty(conn, &rc, err, errlen);
    if (r == -EBADMSG || r == -EPROTO) {
        char reason[256];

        snprintf(reason, sizeof(reason), "%s", err);
        return on_undecodable(conn, in, &rc, r, reason, err, errlen);
    }
    return r;
}

int ingest_batch(PGconn *conn, const struct ingest *in, const struct kafka_message *msgs, size_t n,
                 char *err, size_t errlen)
{
    int r = 0;

    if (pg_exec(conn, "BEGIN", err, errlen))
        return -EIO;
    for (size_t i = 0; i < n && r == 0; i++) {
        const struct kafka_message *m = &msgs[i];
        char part[16], off[32];
        const char *p[] = {m->topic, db_int(part, sizeof(part), m->partition),
                           db_int(off, sizeof(off), m->offset)};
        PGresult *res;
        bool done;

        /* Already applied (a redelivery after a crash between commit and Kafka's view)? */
        res = db_query(conn,
                       "SELECT 1 FROM recon_offsets WHERE topic = $1 AND partition = $2::int "
                       "AND next_offset > $3::bigint",
                       3, p, err, errlen);
        if (!res) {
            r = -EIO;
            break;
        }
        done = PQntuples(res) == 1;
        PQclear(res);
        if (!done)
            r = apply_one(conn, in, m, err, errlen);
        if (r == 0)
            r = db_exec(conn,
                        "INSERT INTO recon_offsets AS o (topic, partition, next_offset) VALUES "
                        "($1, $2::int, $3::bigint + 1) ON CONFLICT (topic, partition) DO UPDATE "
                        "SET next_offset = greatest(o.next_offset, EXCLUDED.next_offset), "
                        "updated_at = now()",
                        3, p, err, errlen);
    }
    if (r == 0 && pg_exec(conn, "COMMIT", err, errlen) == 0)
        return 0;
    if (r == 0)
        r = -EIO;
    {
        char ignored[128];
        pg_exec(conn, "ROLLBACK", ignored, sizeof(ignored));
    }
    return r;
}

int ingest_load_offsets(PGconn *conn, rd_kafka_topic_partition_list_t *parts, char *err,
                        size_t errlen)
{
    for (int i = 0; i < parts->cnt; i++) {
        char part[16];
        const char *p[] = {parts->elems[i].topic,
                           db_int(part, sizeof(part), parts->elems[i].partition)};
        PGresult *res = db_query(conn,
                                 "SELECT next_offset FROM recon_offsets WHERE topic = $1 AND "
                                 "partition = $2::int",
                                 2, p, err, errlen);
        if (!res)
            return -EIO;
        if (PQntuples(res) == 1)
            parts->elems[i].offset = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }
    return 0;
}
