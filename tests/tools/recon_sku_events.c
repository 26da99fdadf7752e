/*
 * recon_sku_events — produce the records of recon-reporter's SKU-sides test
 * (tests/integration/recon_sku_sides.sh): catalogue items, till sales, stock movements,
 * tombstones, and hostile catalogue records.
 *
 * Usage (brokers from KAFKA_BROKERS; topics are <prefix><base>):
 *   recon_sku_events <prefix> catalog <event_id> <shop> <variant> <sku> <tracked 0|1> [deleted 0|1]
 *   recon_sku_events <prefix> sale <event_id> <store> <txid> <line>...
 *       a line is a SKU, or "ns:<code>" for a non-stock line (carrier bag, fee)
 *   recon_sku_events <prefix> movement <event_id> <store_code or -> <location> <sku>
 *   recon_sku_events <prefix> tombstone <shop> <variant>
 *   recon_sku_events <prefix> hostile <utf8|time|longsku|noshop|garbage> <event_id>
 *   recon_sku_events <prefix> loyalty <event_id>      (a points award, recorded only)
 *   recon_sku_events <prefix> posorder <event_id> <shop> <order_id> <location> <sku>
 *       a Shopify POS sale (shop.orders.v1 created, in_store_sale) of one unit at location
 * The shop is a Shopify domain; the record key is "shopify/<shop>/<variant>". Exits 0 once the
 * broker acknowledged the record.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka.h"
#include "tillsync/v1/catalog.pb-c.h"
#include "tillsync/v1/loyalty.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

static struct kafka_producer *producer;
static const char *prefix;

static int send_rec(const char *base, const char *key, const ProtobufCMessage *msg,
                    const char *event_id)
{
    char topic[256], err[256] = "";
    struct ce_headers ce = {.id = event_id, .source = "/tillsync/test/recon_sku_events"};
    size_t len = msg ? protobuf_c_message_get_packed_size(msg) : 0;
    uint8_t *buf = msg ? malloc(len ? len : 1) : NULL;
    int rc;

    if (msg && !buf)
        return 1;
    if (msg)
        protobuf_c_message_pack(msg, buf);
    ce.type = msg ? msg->descriptor->name : "tombstone";
    snprintf(topic, sizeof(topic), "%s%s", prefix, base);
    rc = kafka_producer_send_sync(producer, topic, key, strlen(key), buf, len,
                                  event_id ? &ce : NULL, NULL, 0, 15000, err, sizeof(err));
    if (rc)
        fprintf(stderr, "recon_sku_events: send to %s: %s\n", topic, err);
    free(buf);
    return rc ? 1 : 0;
}

static void envelope(Tillsync__V1__Envelope *env, const char *id)
{
    tillsync__v1__envelope__init(env);
    env->event_id = (char *)id;
    env->tenant_id = "acme";
    env->occurred_at_ms = clock_now_ms();
    env->recorded_at_ms = clock_now_ms();
    env->source_name = "recon_sku_events";
    env->producer = "recon_sku_events";
}

static int catalog(const char *id, const char *shop, const char *variant, const char *sku,
                   int tracked, int deleted, const char *hostile)
{
    Tillsync__V1__CatalogItemEvent ev = TILLSYNC__V1__CATALOG_ITEM_EVENT__INIT;
    Tillsync__V1__CatalogItem it = TILLSYNC__V1__CATALOG_ITEM__INIT;
    Tillsync__V1__PlatformId var = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__Envelope env;
    char key[512], *big = NULL;
    int rc;

    envelope(&env, id);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPIFY;
    var.id = (char *)variant;
    it.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
    it.shop_id = (char *)shop;
    it.sku = (char *)sku;
    it.variant = &var;
    it.tracked = tracked;
    it.deleted = deleted;
    it.platform_updated_at_ms = clock_now_ms();
    if (hostile && !strcmp(hostile, "utf8"))
        it.sku = "SKU-\xff\xfe";
    else if (hostile && !strcmp(hostile, "time"))
        env.occurred_at_ms = INT64_MAX;
    else if (hostile && !strcmp(hostile, "noshop"))
        it.shop_id = "";
    else if (hostile && !strcmp(hostile, "longsku")) {
        big = malloc(8193);
        if (!big)
            return 1;
        memset(big, 'X', 8192);
        big[8192] = '\0';
        it.sku = big;
    }
    ev.envelope = &env;
    ev.item = &it;
    snprintf(key, sizeof(key), "shopify/%s/%s", shop, variant);
    rc = send_rec("catalog.items.v1", key, &ev.base, id);
    free(big);
    return rc;
}

static int sale(const char *id, const char *store, const char *txid, char **specs, int n)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__TransactionLine lines[16], *lp[16];
    Tillsync__V1__Money net[16], total = TILLSYNC__V1__MONEY__INIT;
    Tillsync__V1__Envelope env;
    char key[256], loc[160];

    if (n > 16)
        return 2;
    envelope(&env, id);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    snprintf(loc, sizeof(loc), "loc-%s", store);
    for (int i = 0; i < n; i++) {
        bool ns = !strncmp(specs[i], "ns:", 3);
        tillsync__v1__transaction_line__init(&lines[i]);
        tillsync__v1__money__init(&net[i]);
        net[i].minor_units = 100;
        net[i].currency = "GBP";
        lines[i].line_id = "1";
        lines[i].sku = ns ? "" : specs[i];
        lines[i].non_stock_code = ns ? specs[i] + 3 : "";
        lines[i].ledger_code = ns ? "4000" : "";
        lines[i].quantity = 1;
        lines[i].net_amount = &net[i];
        lines[i].sku_known = true;
        lp[i] = &lines[i];
    }
    total.minor_units = 100 * n;
    total.currency = "GBP";
    tx.transaction_id = (char *)txid;
    tx.store_code = (char *)store;
    tx.till_id = "T1";
    tx.location_id = loc;
    tx.kind = TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE;
    tx.lines = lp;
    tx.n_lines = (size_t)n;
    tx.currency = "GBP";
    tx.total = &total;
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;
    snprintf(key, sizeof(key), "%s/T1", store);
    return send_rec("pos.transactions.v1", key, &ev.base, id);
}

static int movement(const char *id, const char *store, const char *location, const char *sku)
{
    Tillsync__V1__StockMovementEvent ev = TILLSYNC__V1__STOCK_MOVEMENT_EVENT__INIT;
    Tillsync__V1__StockMovement mv = TILLSYNC__V1__STOCK_MOVEMENT__INIT;
    Tillsync__V1__MovementLine line = TILLSYNC__V1__MOVEMENT_LINE__INIT, *lp = &line;
    Tillsync__V1__Envelope env;

    envelope(&env, id);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_WMS;
    line.sku = (char *)sku;
    line.quantity = 5;
    line.sku_known = true;
    mv.movement_id = (char *)id;
    mv.kind = TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_RECEIVED;
    mv.location_id = (char *)location;
    mv.store_code = strcmp(store, "-") ? (char *)store : "";
    mv.lines = &lp;
    mv.n_lines = 1;
    ev.envelope = &env;
    ev.movement = &mv;
    return send_rec("stock.movements.v1", location, &ev.base, id);
}

static int garbage(const char *id)
{
    char topic[256], err[256] = "";
    struct ce_headers ce = {.id = id,
                            .source = "/tillsync/test/recon_sku_events",
                            .type = "tillsync.v1.CatalogItemEvent"};

    snprintf(topic, sizeof(topic), "%scatalog.items.v1", prefix);
    if (kafka_producer_send_sync(producer, topic, "shopify/x/1", 11, "\xff\xff\xff", 3, &ce, NULL,
                                 0, 15000, err, sizeof(err))) {
        fprintf(stderr, "recon_sku_events: %s\n", err);
        return 1;
    }
    return 0;
}

static int loyalty(const char *id)
{
    Tillsync__V1__LoyaltyPointsEvent ev = TILLSYNC__V1__LOYALTY_POINTS_EVENT__INIT;
    Tillsync__V1__PointsChange ch = TILLSYNC__V1__POINTS_CHANGE__INIT;
    Tillsync__V1__Envelope env;

    envelope(&env, id);
    ch.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
    ch.shop_id = "shop-a.myshopify.com";
    ch.member_id = "M1";
    ch.kind = TILLSYNC__V1__POINTS_CHANGE_KIND__POINTS_CHANGE_KIND_AWARD;
    ch.points = 10;
    ch.status = TILLSYNC__V1__POINTS_CHANGE_STATUS__POINTS_CHANGE_STATUS_APPLIED;
    ev.envelope = &env;
    ev.change = &ch;
    return send_rec("loyalty.points.v1", "shopify/shop-a.myshopify.com/M1", &ev.base, id);
}

static int posorder(const char *id, const char *shop, const char *order_id, const char *location,
                    const char *sku)
{
    Tillsync__V1__ShopOrderEvent ev = TILLSYNC__V1__SHOP_ORDER_EVENT__INIT;
    Tillsync__V1__ShopOrder o = TILLSYNC__V1__SHOP_ORDER__INIT;
    Tillsync__V1__PlatformId oid = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__OrderLine line = TILLSYNC__V1__ORDER_LINE__INIT, *lp = &line;
    Tillsync__V1__Money price = TILLSYNC__V1__MONEY__INIT, total = TILLSYNC__V1__MONEY__INIT;
    Tillsync__V1__Envelope env;
    char key[512];

    envelope(&env, id);
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPIFY;
    oid.id = (char *)order_id;
    price.minor_units = total.minor_units = 500;
    price.currency = total.currency = "GBP";
    line.line_id = "1";
    line.sku = (char *)sku;
    line.quantity = 1;
    line.unit_price = &price;
    o.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
    o.shop_id = (char *)shop;
    o.order = &oid;
    o.order_name = "#1";
    o.source_name = "pos";
    o.in_store_sale = true;
    o.location_id = (char *)location;
    o.currency = "GBP";
    o.total = &total;
    o.platform_updated_at_ms = clock_now_ms();
    o.n_lines = 1;
    o.lines = &lp;
    ev.envelope = &env;
    ev.kind = TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED;
    ev.order = &o;
    snprintf(key, sizeof(key), "shopify/%s/%s", shop, order_id);
    return send_rec("shop.orders.v1", key, &ev.base, id);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: KAFKA_BROKERS=... recon_sku_events <prefix> "
            "catalog|sale|movement|tombstone|hostile|loyalty|posorder ... (see the source)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    char err[256] = "", key[512];
    const char *cmd;
    int rc;

    if (argc < 3 || !brokers || !*brokers)
        return usage();
    prefix = argv[1];
    cmd = argv[2];
    producer = kafka_producer_new(brokers, "recon_sku_events", NULL, err, sizeof(err));
    if (!producer) {
        fprintf(stderr, "recon_sku_events: %s\n", err);
        return 1;
    }
    if (!strcmp(cmd, "catalog") && (argc == 8 || argc == 9))
        rc = catalog(argv[3], argv[4], argv[5], argv[6], (int)strtol(argv[7], NULL, 10),
                     argc == 9 ? (int)strtol(argv[8], NULL, 10) : 0, NULL);
    else if (!strcmp(cmd, "sale") && argc >= 7)
        rc = sale(argv[3], argv[4], argv[5], argv + 6, argc - 6);
    else if (!strcmp(cmd, "movement") && argc == 7)
        rc = movement(argv[3], argv[4], argv[5], argv[6]);
    else if (!strcmp(cmd, "tombstone") && argc == 5) {
        snprintf(key, sizeof(key), "shopify/%s/%s", argv[3], argv[4]);
        rc = send_rec("catalog.items.v1", key, NULL, NULL);
    } else if (!strcmp(cmd, "hostile") && argc == 5 && !strcmp(argv[3], "garbage"))
        rc = garbage(argv[4]);
    else if (!strcmp(cmd, "loyalty") && argc == 4)
        rc = loyalty(argv[3]);
    else if (!strcmp(cmd, "posorder") && argc == 8)
        rc = posorder(argv[3], argv[4], argv[5], argv[6], argv[7]);
    else if (!strcmp(cmd, "hostile") && argc == 5)
        rc = catalog(argv[4], "hostile.myshopify.com", "666", "SKU-H", 1, 0, argv[3]);
    else
        rc = usage();
    kafka_producer_free(producer);
    return rc;
}
