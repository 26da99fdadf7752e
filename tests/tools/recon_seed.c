/*
 * recon_seed — produce one business day of tillsync events with planted problems for
 * recon-reporter's tests, and write the figures and exceptions a correct reconciliation must
 * show, computed here from the seeded data alone (never from recon-reporter's code).
 *
 * Usage: recon_seed <topic_prefix> <expected.json>   (brokers from KAFKA_BROKERS)
 * The topics <prefix><base> and their .dlq must exist. Exits 0 once every record is acknowledged.
 *
 * The day (2026-03-14): stores S1 (tills T1, T2) and S2 (till T1) sell, return and void; the
 * shop shop1.myshopify.com takes three orders (one refunded, one cancelled, one never reflected
 * in stock); stock is received, damaged and transferred. Planted problems: an unknown SKU
 * (raised twice by pos-ingest), a tax mapping failure, a stock drift (plus one that clears), a
 * takings variance (S1/T2 declares 5.00 card, recorded 5.25), a stalled order (O2, no level),
 * a dead-lettered order payload (dead-lettered twice) and an undecodable stock movement that
 * recon-reporter itself dead-letters.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "clock.h"
#include "events.h"
#include "json_util.h"
#include "kafka.h"
#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/inventory.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

#define DATE "2026-03-14"
#define CUR  "GBP"

static struct kafka_producer *producer;
static const char *prefix;
static int64_t day_ms; /* 2026-03-14T00:00:00Z */
static int seq;

/* ---- expected figures, accumulated the way docs/operations.md defines them */
struct expect {
    char store[32], channel[64], metric[32], key[64], currency[8];
    long long amount, qty, events;
    char last_event[96];
};
static struct expect expects[256];
static size_t nexpects;

static void expect(const char *store, const char *channel, const char *metric, const char *key,
                   const char *currency, long long amount, long long qty, const char *event_id)
{
    struct expect *e = NULL;

    for (size_t i = 0; i < nexpects; i++)
        if (!strcmp(expects[i].store, store) && !strcmp(expects[i].channel, channel) &&
            !strcmp(expects[i].metric, metric) && !strcmp(expects[i].key, key) &&
            !strcmp(expects[i].currency, currency))
            e = &expects[i];
    if (!e) {
        if (nexpects == sizeof(expects) / sizeof(expects[0])) {
            fprintf(stderr, "recon_seed: too many figures\n");
            exit(1);
        }
        e = &expects[nexpects++];
        snprintf(e->store, sizeof(e->store), "%s", store);
        snprintf(e->channel, sizeof(e->channel), "%s", channel);
        snprintf(e->metric, sizeof(e->metric), "%s", metric);
        snprintf(e->key, sizeof(e->key), "%s", key);
        snprintf(e->currency, sizeof(e->currency), "%s", currency);
    }
    e->amount += amount;
    e->qty += qty;
    if (strcmp(e->last_event, event_id) != 0) {
        e->events++;
        snprintf(e->last_event, sizeof(e->last_event), "%s", event_id);
    }
}

/* ---- producing */
static void send_raw(const char *base, const char *key, const void *payload, size_t len,
                     const char *event_id, const char *type, const struct kafka_header *extra,
                     size_t nextra)
{
    char topic[256], err[256] = "", time[40];
    struct ce_headers ce = {.id = event_id, .source = "/tillsync/test/recon_seed", .type = type};

    snprintf(topic, sizeof(topic), "%s%s", prefix, base);
    clock_format_rfc3339(day_ms + 36000000, time, sizeof(time));
    ce.time = time;
    if (kafka_producer_send_sync(producer, topic, key, strlen(key), payload, len,
                                 event_id ? &ce : NULL, extra, nextra, 15000, err, sizeof(err))) {
        fprintf(stderr, "recon_seed: send to %s: %s\n", topic, err);
        exit(1);
    }
}

static void send_msg(const char *base, const char *key, const ProtobufCMessage *msg,
                     const char *event_id)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);

    if (!buf)
        exit(1);
    protobuf_c_message_pack(msg, buf);
    send_raw(base, key, buf, len, event_id, msg->descriptor->name, NULL, 0);
    free(buf);
}

static void new_id(char *out, size_t cap)
{
    snprintf(out, cap, "%sev-%03d", prefix, ++seq);
}

static void envelope(Tillsync__V1__Envelope *env, const char *id, int minute,
                     Tillsync__V1__BusinessRefs *refs)
{
    tillsync__v1__envelope__init(env);
    env->event_id = (char *)id;
    env->tenant_id = "acme";
    env->occurred_at_ms = day_ms + 8 * 3600000LL + minute * 60000LL;
    env->recorded_at_ms = clock_now_ms();
    env->source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    env->source_name = "recon_seed";
    env->producer = "recon_seed";
    env->refs = refs;
}

/* ---- till transactions */
struct line_spec {
    const char *sku, *non_stock;
    long long qty, unit, discount;
    const char *disc_code;
    const char *tax_code;    /* "VAT" */
    long long rate_ppm, tax; /* tax amount as sent (negative on returned lines) */
    const char *tax_key;     /* what the figure key must read, e.g. "VAT@20%" */
    bool known;
};
struct tender_spec {
    Tillsync__V1__TenderType type;
    const char *name; /* figure key */
    long long amount;
};
struct tx_spec {
    const char *store, *till, *txid, *kind_name;
    Tillsync__V1__TransactionKind kind;
    const struct line_spec *lines;
    size_t nlines;
    const struct tender_spec *tenders;
    size_t ntenders;
};

static long long line_net(const struct line_spec *l)
{
    return l->qty * l->unit - l->discount;
}

/* The figures a transaction contributes (mult -1 for its void, under the void's event id). */
static void expect_tx(const struct tx_spec *t, int mult, const char *event_id)
{
    for (size_t i = 0; i < t->nlines; i++) {
        const struct line_spec *l = &t->lines[i];
        long long sign = l->qty < 0 ? -1 : 1;
        expect(t->store, "pos", l->qty < 0 ? "returns" : "sales", l->sku ? "stock" : "non_stock",
               CUR, mult * sign * line_net(l), mult * sign * l->qty, event_id);
        if (l->discount)
            expect(t->store, "pos", "discounts", l->disc_code, CUR, mult * sign * l->discount, 0,
                   event_id);
        if (l->tax_code)
            expect(t->store, "pos", "tax", l->tax_key, CUR, mult * l->tax, 0, event_id);
    }
    for (size_t i = 0; i < t->ntenders; i++)
        expect(t->store, "pos", "tenders", t->tenders[i].name, CUR, mult * t->tenders[i].amount,
               mult, event_id);
}

static void money(Tillsync__V1__Money *m, long long v)
{
    tillsync__v1__money__init(m);
    m->minor_units = v;
    m->currency = CUR;
}

/* Produce a transaction (twice when dup) and expect its figures; writes its event id. */
static void pos_tx(const struct tx_spec *t, int minute, bool dup, char *id_out, size_t idcap)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__Envelope env;
    Tillsync__V1__TransactionLine lines[8], *lp[8];
    Tillsync__V1__Money unit[8], net[8], disc_amt[8], tax_amt[8], tender_amt[8], total;
    Tillsync__V1__Discount disc[8], *dp[8];
    Tillsync__V1__TaxLine tax[8], *tp[8];
    Tillsync__V1__Tender tenders[8], *tdp[8];
    char key[64];
    long long sum = 0;

    new_id(id_out, idcap);
    refs.pos_transaction_id = (char *)t->txid;
    refs.store_code = (char *)t->store;
    refs.till_id = (char *)t->till;
    envelope(&env, id_out, minute, &refs);
    for (size_t i = 0; i < t->nlines; i++) {
        const struct line_spec *l = &t->lines[i];
        tillsync__v1__transaction_line__init(&lines[i]);
        lines[i].line_id = "1";
        lines[i].sku = (char *)(l->sku ? l->sku : "");
        lines[i].non_stock_code = (char *)(l->non_stock ? l->non_stock : "");
        lines[i].ledger_code = l->non_stock ? "4000" : "";
        lines[i].quantity = l->qty;
        lines[i].sku_known = l->known;
        money(&unit[i], l->unit);
        money(&net[i], line_net(l));
        lines[i].unit_price = &unit[i];
        lines[i].net_amount = &net[i];
        sum += line_net(l) + l->tax;
        if (l->discount) {
            tillsync__v1__discount__init(&disc[i]);
            disc[i].code = (char *)l->disc_code;
            money(&disc_amt[i], l->discount);
            disc[i].amount = &disc_amt[i];
            dp[i] = &disc[i];
            lines[i].discounts = &dp[i];
            lines[i].n_discounts = 1;
        }
        if (l->tax_code) {
            tillsync__v1__tax_line__init(&tax[i]);
            tax[i].code = (char *)l->tax_code;
            tax[i].rate_ppm = l->rate_ppm;
            money(&tax_amt[i], l->tax);
            tax[i].amount = &tax_amt[i];
            tp[i] = &tax[i];
            lines[i].tax_lines = &tp[i];
            lines[i].n_tax_lines = 1;
        }
        lp[i] = &lines[i];
    }
    for (size_t i = 0; i < t->ntenders; i++) {
        tillsync__v1__tender__init(&tenders[i]);
        tenders[i].type = t->tenders[i].type;
        money(&tender_amt[i], t->tenders[i].amount);
        tenders[i].amount = &tender_amt[i];
        tdp[i] = &tenders[i];
    }
    money(&total, sum);
    tx.transaction_id = (char *)t->txid;
    tx.store_code = (char *)t->store;
    tx.till_id = (char *)t->till;
    tx.location_id = (char *)t->store;
    tx.kind = t->kind;
    tx.lines = lp;
    tx.n_lines = t->nlines;
    tx.tenders = tdp;
    tx.n_tenders = t->ntenders;
    tx.currency = CUR;
    tx.total = &total;
    tx.business_date = DATE;
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;
    snprintf(key, sizeof(key), "%s/%s", t->store, t->till);
    send_msg("pos.transactions.v1", key, &ev.base, id_out);
    if (dup) /* a redelivery: same event id, must count once */
        send_msg("pos.transactions.v1", key, &ev.base, id_out);
    expect(t->store, "pos", "transactions", t->kind_name, CUR, sum, 1, id_out);
    expect_tx(t, 1, id_out);
}

static void pos_void(const struct tx_spec *voided, const char *txid, int minute)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__Envelope env;
    char id[96], key[64];

    new_id(id, sizeof(id));
    envelope(&env, id, minute, NULL);
    tx.transaction_id = (char *)txid;
    tx.store_code = (char *)voided->store;
    tx.till_id = (char *)voided->till;
    tx.kind = TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID;
    tx.voided_transaction_id = (char *)voided->txid;
    tx.currency = CUR;
    tx.business_date = DATE;
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;
    snprintf(key, sizeof(key), "%s/%s", voided->store, voided->till);
    send_msg("pos.transactions.v1", key, &ev.base, id);
    expect_tx(voided, -1, id);
    expect(voided->store, "pos", "transactions", "void", CUR, 0, 1, id);
}

static void takings(const char *store, const char *till, long long cash, long long card,
                    long long other, int minute)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__TakingsDeclaration d = TILLSYNC__V1__TAKINGS_DECLARATION__INIT;
    Tillsync__V1__Money m[3];
    Tillsync__V1__Envelope env;
    char id[96], key[64];

    new_id(id, sizeof(id));
    envelope(&env, id, minute, NULL);
    money(&m[0], cash);
    money(&m[1], card);
    money(&m[2], other);
    d.store_code = (char *)store;
    d.till_id = (char *)till;
    d.business_date = DATE;
    d.cash_counted = &m[0];
    d.card_total = &m[1];
    d.other_total = &m[2];
    d.declared_by = "manager";
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS;
    ev.takings = &d;
    snprintf(key, sizeof(key), "%s/%s", store, till);
    send_msg("pos.transactions.v1", key, &ev.base, id);
    expect(store, "pos", "takings_declared", "cash", CUR, cash, 0, id);
    expect(store, "pos", "takings_declared", "card", CUR, card, 0, id);
    expect(store, "pos", "takings_declared", "other", CUR, other, 0, id);
}

/* ---- online orders (shop1, Shopify) */
#define SHOP    "shop1.myshopify.com"
#define CHANNEL "shopify:" SHOP

static void order_event(Tillsync__V1__OrderEventKind kind, const char *oid, const char *sku,
                        long long unit, long long tax_amt, long long refund, int minute,
                        char *id_out, size_t idcap)
{
    Tillsync__V1__ShopOrderEvent ev = TILLSYNC__V1__SHOP_ORDER_EVENT__INIT;
    Tillsync__V1__ShopOrder o = TILLSYNC__V1__SHOP_ORDER__INIT;
    Tillsync__V1__PlatformId pid = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__OrderLine line = TILLSYNC__V1__ORDER_LINE__INIT, *lp = &line;
    Tillsync__V1__TaxLine tax = TILLSYNC__V1__TAX_LINE__INIT, *tp = &tax;
    Tillsync__V1__Refund rf = TILLSYNC__V1__REFUND__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__Money u, t, total, ra;
    Tillsync__V1__Envelope env;
    char key[128];

    new_id(id_out, idcap);
    refs.platform_order_id = (char *)oid;
    refs.shop_id = SHOP;
    envelope(&env, id_out, minute, &refs);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPIFY;
    pid.id = (char *)oid;
    money(&u, unit);
    money(&t, tax_amt);
    money(&total, unit + tax_amt);
    tax.code = "VAT";
    tax.rate_ppm = 200000;
    tax.amount = &t;
    line.line_id = "L1";
    line.sku = (char *)sku;
    line.quantity = 1;
    line.unit_price = &u;
    line.tax_lines = &tp;
    line.n_tax_lines = 1;
    o.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
    o.shop_id = SHOP;
    o.order = &pid;
    o.order_name = (char *)oid;
    o.source_name = "web";
    o.lines = &lp;
    o.n_lines = 1;
    o.currency = CUR;
    o.total = &total;
    ev.envelope = &env;
    ev.kind = kind;
    ev.order = &o;
    if (kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED) {
        money(&ra, refund);
        rf.refund_id = "R1";
        rf.amount = &ra;
        ev.refund = &rf;
    }
    snprintf(key, sizeof(key), "shopify/%s/%s", SHOP, oid);
    send_msg("shop.orders.v1", key, &ev.base, id_out);
}

/* ---- levels: the ledger's effect, tied by correlation id or business identifiers */
static void level(const char *sku, const char *loc, const char *correlation, const char *txid,
                  const char *order_id, int minute)
{
    Tillsync__V1__InventoryLevelEvent ev = TILLSYNC__V1__INVENTORY_LEVEL_EVENT__INIT;
    Tillsync__V1__InventoryLevel l = TILLSYNC__V1__INVENTORY_LEVEL__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__Envelope env;
    char id[96], key[128];

    new_id(id, sizeof(id));
    refs.pos_transaction_id = (char *)(txid ? txid : "");
    refs.platform_order_id = (char *)(order_id ? order_id : "");
    envelope(&env, id, minute, &refs);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_TILLSYNC;
    env.correlation_id = (char *)(correlation ? correlation : "");
    l.sku = (char *)sku;
    l.location_id = (char *)loc;
    l.on_hand = 7;
    l.available = 7;
    l.version = seq;
    ev.envelope = &env;
    ev.level = &l;
    snprintf(key, sizeof(key), "%s/%s", loc, sku);
    send_msg("inventory.levels.v1", key, &ev.base, id);
}

static void movement(const char *store, Tillsync__V1__MovementKind kind, const char *kind_name,
                     const char *sku, long long qty, long long expected_qty, int minute)
{
    Tillsync__V1__StockMovementEvent ev = TILLSYNC__V1__STOCK_MOVEMENT_EVENT__INIT;
    Tillsync__V1__StockMovement mv = TILLSYNC__V1__STOCK_MOVEMENT__INIT;
    Tillsync__V1__MovementLine line = TILLSYNC__V1__MOVEMENT_LINE__INIT, *lp = &line;
    Tillsync__V1__Envelope env;
    char id[96];

    new_id(id, sizeof(id));
    envelope(&env, id, minute, NULL);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_WMS;
    line.sku = (char *)sku;
    line.quantity = qty;
    line.sku_known = true;
    mv.movement_id = id;
    mv.kind = kind;
    mv.location_id = (char *)store;
    mv.store_code = (char *)store;
    mv.lines = &lp;
    mv.n_lines = 1;
    ev.envelope = &env;
    ev.movement = &mv;
    send_msg("stock.movements.v1", store, &ev.base, id);
    expect(store, "stock", "stock_movements", kind_name, "", 0, expected_qty, id);
}

/* ---- exceptions raised by the other services */
static void raise_exc(Tillsync__V1__ExceptionType type, const char *dedupe, const char *summary,
                      const char *store, bool cleared, int minute)
{
    Tillsync__V1__ExceptionEvent ev = TILLSYNC__V1__EXCEPTION_EVENT__INIT;
    Tillsync__V1__RaisedException x = TILLSYNC__V1__RAISED_EXCEPTION__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__ExceptionDetail d = TILLSYNC__V1__EXCEPTION_DETAIL__INIT, *dp = &d;
    Tillsync__V1__Envelope env;
    char id[96];

    new_id(id, sizeof(id));
    refs.store_code = (char *)(store ? store : "");
    envelope(&env, id, minute, &refs);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_TILLSYNC;
    x.dedupe_key = (char *)dedupe;
    x.type = type;
    x.owner = exception_owner(type); /* what event_raise_exception() sends */
    x.severity = TILLSYNC__V1__SEVERITY__SEVERITY_ERROR;
    x.signal = cleared ? TILLSYNC__V1__EXCEPTION_SIGNAL__EXCEPTION_SIGNAL_CLEARED
                       : TILLSYNC__V1__EXCEPTION_SIGNAL__EXCEPTION_SIGNAL_RAISED;
    x.summary = (char *)summary;
    x.explanation = (char *)exception_default_explanation(type);
    x.suggested_action = (char *)exception_default_action(type);
    d.key = "seeded_by";
    d.value = "recon_seed";
    x.details = &dp;
    x.n_details = 1;
    ev.envelope = &env;
    ev.exception = &x;
    send_msg("recon.exceptions.v1", dedupe, &ev.base, id);
}

static void dead_letter(const char *orig_offset)
{
    char id[96], orig_topic[256];
    const char *payload = "{not protobuf";
    struct kafka_header h[] = {
        {"dlq_error_code", "decode_failed", 13},
        {"dlq_error_message", "unexpected end of payload", 25},
        {"dlq_original_topic", orig_topic, 0},
        {"dlq_original_partition", "0", 1},
        {"dlq_original_offset", orig_offset, strlen(orig_offset)},
        {"dlq_failed_at", "2026-03-14T10:00:00Z", 20},
        {"dlq_service", "inventory-ledger", 16},
    };

    snprintf(orig_topic, sizeof(orig_topic), "%sshop.orders.v1", prefix);
    h[2].len = strlen(orig_topic);
    snprintf(id, sizeof(id), "%sev-orig-of-dlq", prefix);
    send_raw("shop.orders.v1.dlq", "shopify/" SHOP "/O9", payload, strlen(payload), id,
             "tillsync.v1.ShopOrderEvent", h, sizeof(h) / sizeof(h[0]));
}

static json_t *expected_json(void)
{
    json_t *figs = json_array();

    for (size_t i = 0; i < nexpects; i++) {
        const struct expect *e = &expects[i];
        char amount[48];
        json_t *f =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "store_code", e->store, "channel",
                      e->channel, "metric", e->metric, "key", e->key, "currency", e->currency,
                      "quantity", (json_int_t)e->qty, "event_count", (json_int_t)e->events);
        if (*e->currency) {
            money_format(e->amount, e->currency, amount, sizeof(amount));
            json_object_set_new(f, "amount", json_string(amount));
        } else {
            json_object_set_new(f, "amount", json_null());
        }
        json_array_append_new(figs, f);
    }
    /* the unresolved exceptions, one per planted problem, with the owner DESIGN.md gives */
    return json_pack("{s:s,s:o,s:[{s:s,s:s,s:i},{s:s,s:s,s:i},{s:s,s:s,s:i},{s:s,s:s,s:i},"
                     "{s:s,s:s,s:i},{s:s,s:s,s:i},{s:s,s:s,s:i}],s:[{s:s,s:s,s:s}]}",
                     "date", DATE, "figures", figs, "exceptions", "type", "sku_unknown", "owner",
                     "ecommerce", "count", 2, "type", "tax_mapping_failed", "owner", "finance",
                     "count", 1, "type", "stock_drift", "owner", "operations", "count", 1, "type",
                     "takings_variance", "owner", "finance", "count", 1, "type",
                     "order_not_reflected", "owner", "operations", "count", 1, "type",
                     "dead_lettered", "owner", "ecommerce", "count", 2, "type", "dead_lettered",
                     "owner", "ecommerce", "count", 1, "cleared", "type", "stock_drift", "owner",
                     "operations", "resolution", "cleared");
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    char err[256] = "", id[96], tx1[96], tx2[96], tx3[96], tx5[96], o1[96], o2[96], o3[96];
    struct tm tm = {.tm_year = 2026 - 1900, .tm_mon = 2, .tm_mday = 14};
    json_t *doc;
    int rc;

    if (argc != 3 || !brokers || !*brokers) {
        fprintf(stderr, "usage: KAFKA_BROKERS=... recon_seed <topic_prefix> <expected.json>\n");
        return 2;
    }
    prefix = argv[1];
    day_ms = (int64_t)timegm(&tm) * 1000;
    producer = kafka_producer_new(brokers, "recon_seed", NULL, err, sizeof(err));
    if (!producer) {
        fprintf(stderr, "recon_seed: %s\n", err);
        return 1;
    }

    /* S1 till T1: a sale with a carrier bag, a discounted sale, a return */
    const struct line_spec l1[] = {
        {"SKU-1", NULL, 2, 1000, 0, NULL, "VAT", 200000, 400, "VAT@20%", true},
        {NULL, "BAG", 1, 10, 0, NULL, NULL, 0, 0, NULL, true}};
    const struct tender_spec t1[] = {{TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CASH, "cash", 2410}};
    const struct tx_spec s1a = {
        "S1", "T1", "TX1", "sale", TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE,
        l1,   2,    t1,    1};
    const struct line_spec l2[] = {
        {"SKU-2", NULL, 1, 5000, 500, "PROMO10", "VAT", 200000, 900, "VAT@20%", true}};
    const struct tender_spec t2[] = {{TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CARD, "card", 5400}};
    const struct tx_spec s1b = {
        "S1", "T1", "TX2", "sale", TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE,
        l2,   1,    t2,    1};
    const struct line_spec l3[] = {
        {"SKU-1", NULL, -1, 1000, 0, NULL, "VAT", 200000, -200, "VAT@20%", true}};
    const struct tender_spec t3[] = {{TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CASH, "cash", -1200}};
    const struct tx_spec s1c = {
        "S1", "T1", "TX3", "return", TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_RETURN,
        l3,   1,    t3,    1};
    /* S1 till T2: a sale of a SKU the catalogue does not know, at a reduced rate */
    const struct line_spec l4[] = {
        {"SKU-UNKNOWN", NULL, 1, 500, 0, NULL, "VAT", 50000, 25, "VAT@5%", false}};
    const struct tender_spec t4[] = {{TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CARD, "card", 525}};
    const struct tx_spec s1d = {
        "S1", "T2", "TX4", "sale", TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE,
        l4,   1,    t4,    1};
    /* S2 till T1: a sale, and a sale that is voided */
    const struct line_spec l5[] = {
        {"SKU-3", NULL, 3, 1000, 0, NULL, "VAT", 200000, 600, "VAT@20%", true}};
    const struct tender_spec t5[] = {{TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CARD, "card", 3600}};
    const struct tx_spec s2a = {
        "S2", "T1", "TX5", "sale", TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE,
        l5,   1,    t5,    1};
    const struct line_spec l6[] = {
        {"SKU-3", NULL, 1, 1000, 0, NULL, "VAT", 200000, 200, "VAT@20%", true}};
    const struct tender_spec t6[] = {{TILLSYNC__V1__TENDER_TYPE__TENDER_TYPE_CASH, "cash", 1200}};
    const struct tx_spec s2b = {
        "S2", "T1", "TX6", "sale", TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE,
        l6,   1,    t6,    1};

    pos_tx(&s1a, 1, true, tx1, sizeof(tx1));
    pos_tx(&s1b, 2, false, tx2, sizeof(tx2));
    pos_tx(&s1c, 3, false, tx3, sizeof(tx3));
    pos_tx(&s1d, 4, false, id, sizeof(id));
    pos_tx(&s2a, 5, false, tx5, sizeof(tx5));
    pos_tx(&s2b, 6, false, id, sizeof(id));
    pos_void(&s2b, "TX7", 7);
    /* declarations: S1/T1 and S2/T1 agree with their tenders; S1/T2 declares 5.00, not 5.25 */
    takings("S1", "T1", 1210, 5400, 0, 600);
    takings("S1", "T2", 0, 500, 0, 601);
    takings("S2", "T1", 0, 3600, 0, 602);

    /* online: O1 paid then partly refunded, O2 never reflected in stock, O3 cancelled */
    order_event(TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED, "O1", "SKU-1", 5000, 1000,
                0, 10, o1, sizeof(o1));
    expect("online", CHANNEL, "orders", "online", CUR, 6000, 1, o1);
    expect("online", CHANNEL, "tax", "VAT@20%", CUR, 1000, 0, o1);
    order_event(TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED, "O2", "SKU-2", 2500, 500,
                0, 11, o2, sizeof(o2));
    expect("online", CHANNEL, "orders", "online", CUR, 3000, 1, o2);
    expect("online", CHANNEL, "tax", "VAT@20%", CUR, 500, 0, o2);
    order_event(TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED, "O3", "SKU-3", 1250, 250,
                0, 12, o3, sizeof(o3));
    expect("online", CHANNEL, "orders", "online", CUR, 1500, 1, o3);
    expect("online", CHANNEL, "tax", "VAT@20%", CUR, 250, 0, o3);
    order_event(TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED, "O1", "SKU-1", 5000,
                1000, 2000, 20, id, sizeof(id));
    expect("online", CHANNEL, "refunds", "", CUR, 2000, 1, id);
    order_event(TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED, "O3", "SKU-3", 1250,
                250, 0, 21, id, sizeof(id));
    expect("online", CHANNEL, "cancellations", "", CUR, 1500, 1, id);

    /* the ledger's effects: by correlation id, by transaction id, by order id; none for O2 */
    level("SKU-1", "S1", tx1, NULL, NULL, 30);
    level("SKU-2", "S1", tx2, NULL, NULL, 31);
    level("SKU-1", "S1", tx3, NULL, NULL, 32);
    level("SKU-UNKNOWN", "S1", NULL, "TX4", NULL, 33);
    level("SKU-3", "S2", tx5, NULL, NULL, 34);
    level("SKU-1", "WH", NULL, NULL, "O1", 35);

    movement("S1", TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_RECEIVED, "received", "SKU-1", 10, 10,
             40);
    movement("S1", TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_DAMAGE, "damage", "SKU-2", 1, -1, 41);
    movement("S2", TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_OUT, "transfer_out", "SKU-3",
             2, -2, 42);
    /* an undecodable movement: recon-reporter dead-letters it itself */
    send_raw("stock.movements.v1", "S1", "\xff\xff\xff", 3, NULL, NULL, NULL, 0);

    /* problems the other services raise */
    raise_exc(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN,
              "sku_unknown/S1/SKU-UNKNOWN", "SKU-UNKNOWN sold at S1/T2 is not in the catalogue",
              "S1", false, 50);
    raise_exc(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN,
              "sku_unknown/S1/SKU-UNKNOWN", "SKU-UNKNOWN sold at S1/T2 is not in the catalogue",
              "S1", false, 51);
    raise_exc(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_TAX_MAPPING_FAILED,
              "tax_mapping_failed/" SHOP "/O1/GST-X", "Tax line GST-X of order O1 has no mapping",
              NULL, false, 52);
    raise_exc(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_STOCK_DRIFT,
              "stock_drift/" SHOP "/S1/SKU-2", "Platform shows 9 of SKU-2 at S1, ledger 7", "S1",
              false, 53);
    raise_exc(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_STOCK_DRIFT,
              "stock_drift/" SHOP "/S1/SKU-9", "Platform shows 3 of SKU-9 at S1, ledger 2", "S1",
              false, 54);
    raise_exc(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_STOCK_DRIFT,
              "stock_drift/" SHOP "/S1/SKU-9", "SKU-9 at S1 corrected", "S1", true, 55);
    dead_letter("17");
    dead_letter("17"); /* dead-lettered again (a replay that failed): the same exception */

    doc = expected_json();
    rc = json_dump_file(doc, argv[2], JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(doc);
    kafka_producer_free(producer);
    if (rc) {
        fprintf(stderr, "recon_seed: cannot write %s\n", argv[2]);
        return 1;
    }
    return 0;
}
