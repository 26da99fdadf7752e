/*
 * ledger_events — produce tillsync events for the inventory-ledger tests through the common
 * producer (the real protobuf contracts and CloudEvents headers).
 *
 *   ledger_events script          events described one per line on stdin (grammar below)
 *   ledger_events gen N SEED FILE N mixed events (sales, returns, receipts, transfers, damage,
 *                                 online orders and fulfilments) over 8 locations and 50 SKUs;
 *                                 writes the balances they must produce to FILE as lines
 *                                 "sku location on_hand committed in_transit"
 *   ledger_events bench N SEED    N one-line events (receipts and till sales) for the benchmark
 * Topics: $TOPIC_PREFIX + pos.transactions.v1 / stock.movements.v1 / shop.orders.v1; brokers
 * from KAFKA_BROKERS. Exits 0 once every record was acknowledged.
 *
 * Script grammar (fields separated by spaces, "-" = empty, times in Unix ms, '#' comments):
 *   pos EVENT_ID sale|return|exchange|void LOCATION TX_ID AT VOIDED_TX LINE...
 *       LINE = SKU:QTY[:r]  (r = restock)  or  @CODE:QTY[:LEDGER_CODE]  (non-stock)
 *   mov EVENT_ID received|transfer_out|transfer_in|count|snapshot|damage|shrinkage|adjustment
 *       LOCATION MOVEMENT_ID AT COUNTERPART LINE...      LINE = SKU:QTY
 *   ord EVENT_ID created|cancelled|fulfilled|picked_up|refunded|ready ORDER_ID LOCATION AT
 *       web|pickup|instore FULFIL_LOCATION LINE...
 *       LINE = SKU:QTY  or  @CODE:QTY[:LEDGER_CODE]; for refunded SKU:QTY:no|cancel|return:LOC
 *       or a hold reference of the order: hold=HOLD_ID, checkout=CHECKOUT_ID, cart=CART_TOKEN
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

#define MAXTOK 64

static struct kafka_producer *prod;
static char topic_pos[256], topic_mov[256], topic_ord[256];
static long sent;
static long failed;
static const char *till = "T1"; /* gen and bench spread events over tills (partitions) */

static void delivered(void *opaque, int error, const char *errstr, int32_t partition,
                      int64_t offset)
{
    (void)opaque;
    (void)partition;
    (void)offset;
    if (error) {
        if (failed++ == 0)
            fprintf(stderr, "ledger_events: delivery failed: %s\n", errstr);
    }
}

static int publish(const char *topic, const char *key, const ProtobufCMessage *m, const char *id,
                   const char *type)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    unsigned char *buf = malloc(len ? len : 1);
    struct ce_headers ce = {id, "/tillsync/test/ledger_events", type, NULL, NULL};
    char err[256];
    int rc;

    if (!buf)
        return -ENOMEM;
    protobuf_c_message_pack(m, buf);
    rc = kafka_producer_send(prod, topic, key, strlen(key), buf, len, &ce, NULL, 0, delivered, NULL,
                             err, sizeof(err));
    free(buf);
    if (rc)
        fprintf(stderr, "ledger_events: send: %s\n", err);
    else
        sent++;
    return rc;
}

static void envelope(Tillsync__V1__Envelope *env, const char *id, long long at)
{
    env->event_id = (char *)id;
    env->tenant_id = "test";
    env->occurred_at_ms = at;
    env->recorded_at_ms = clock_now_ms();
    env->source_name = "ledger_events";
    env->producer = "ledger_events";
}

static long long num(const char *s)
{
    return strtoll(s, NULL, 10);
}

/* Split "a:b:c" in place into up to 4 parts. */
static int parts(char *s, char **p)
{
    int n = 0;

    p[n++] = s;
    for (char *c = s; *c && n < 4; c++)
        if (*c == ':') {
            *c = '\0';
            p[n++] = c + 1;
        }
    for (int i = n; i < 4; i++)
        p[i] = "";
    return n;
}

static const char *dash(const char *s)
{
    return strcmp(s, "-") == 0 ? "" : s;
}

static int pos_event(char **t, int n)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__TransactionLine lines[MAXTOK], *lp[MAXTOK];
    char key[256];
    int nl = 0;

    if (n < 7)
        return -EINVAL;
    envelope(&env, t[1], num(t[5]));
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    tx.kind =
        strcmp(t[2], "sale") == 0     ? TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE
        : strcmp(t[2], "return") == 0 ? TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_RETURN
        : strcmp(t[2], "void") == 0   ? TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID
                                      : TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_EXCHANGE;
    tx.location_id = t[3];
    tx.store_code = t[3];
    tx.till_id = (char *)till;
    tx.transaction_id = t[4];
    tx.voided_transaction_id = (char *)dash(t[6]);
    for (int i = 7; i < n && nl < MAXTOK; i++, nl++) {
        char *p[4];

        tillsync__v1__transaction_line__init(&lines[nl]);
        parts(t[i], p);
        snprintf(key, sizeof(key), "%d", nl + 1);
        lines[nl].line_id = strdup(key);
        if (p[0][0] == '@') {
            lines[nl].non_stock_code = p[0] + 1;
            lines[nl].ledger_code = p[2];
        } else {
            lines[nl].sku = p[0];
            lines[nl].sku_known = 1;
            lines[nl].restock = strcmp(p[2], "r") == 0;
        }
        lines[nl].quantity = num(p[1]);
        lp[nl] = &lines[nl];
    }
    tx.n_lines = (size_t)nl;
    tx.lines = lp;
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;
    snprintf(key, sizeof(key), "%s/%s", t[3], till);
    n = publish(topic_pos, key, &ev.base, t[1], "tillsync.v1.PosTransactionEvent");
    for (int i = 0; i < nl; i++)
        free(lines[i].line_id);
    return n;
}

static int mov_event(char **t, int n)
{
    static const char *kinds[] = {"",       "received",  "transfer_out", "transfer_in", "count",
                                  "damage", "shrinkage", "snapshot",     "adjustment"};
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__StockMovement m = TILLSYNC__V1__STOCK_MOVEMENT__INIT;
    Tillsync__V1__StockMovementEvent ev = TILLSYNC__V1__STOCK_MOVEMENT_EVENT__INIT;
    Tillsync__V1__MovementLine lines[MAXTOK], *lp[MAXTOK];
    int nl = 0;

    if (n < 7)
        return -EINVAL;
    envelope(&env, t[1], num(t[5]));
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_WMS;
    for (int k = 1; k < 9; k++)
        if (strcmp(t[2], kinds[k]) == 0)
            m.kind = (Tillsync__V1__MovementKind)k;
    m.location_id = t[3];
    m.movement_id = t[4];
    m.counterpart_location_id = (char *)dash(t[6]);
    for (int i = 7; i < n && nl < MAXTOK; i++, nl++) {
        char *p[4];

        tillsync__v1__movement_line__init(&lines[nl]);
        parts(t[i], p);
        lines[nl].sku = p[0];
        if (m.kind == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_CYCLE_COUNT ||
            m.kind == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SNAPSHOT)
            lines[nl].counted_quantity = num(p[1]);
        else
            lines[nl].quantity = num(p[1]);
        lp[nl] = &lines[nl];
    }
    m.n_lines = (size_t)nl;
    m.lines = lp;
    ev.envelope = &env;
    ev.movement = &m;
    return publish(topic_mov, t[3], &ev.base, t[1], "tillsync.v1.StockMovementEvent");
}

static int ord_event(char **t, int n)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__PlatformId oid = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__ShopOrder o = TILLSYNC__V1__SHOP_ORDER__INIT;
    Tillsync__V1__Refund refund = TILLSYNC__V1__REFUND__INIT;
    Tillsync__V1__Fulfillment f = TILLSYNC__V1__FULFILLMENT__INIT;
    Tillsync__V1__ShopOrderEvent ev = TILLSYNC__V1__SHOP_ORDER_EVENT__INIT;
    Tillsync__V1__OrderLine lines[MAXTOK], *lp[MAXTOK];
    Tillsync__V1__RefundLine rl[MAXTOK], *rlp[MAXTOK];
    Tillsync__V1__FulfillmentLine fl[MAXTOK], *flp[MAXTOK];
    char key[256];
    int nl = 0;
    bool refunded = strcmp(t[2], "refunded") == 0;
    bool fulfil = strcmp(t[2], "fulfilled") == 0 || strcmp(t[2], "picked_up") == 0;

    if (n < 8)
        return -EINVAL;
    envelope(&env, t[1], num(t[5]));
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_SHOPIFY;
    ev.kind = strcmp(t[2], "created") == 0
                  ? TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED
              : strcmp(t[2], "cancelled") == 0
                  ? TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED
              : strcmp(t[2], "fulfilled") == 0
                  ? TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_FULFILLED
              : strcmp(t[2], "picked_up") == 0
                  ? TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_PICKED_UP
              : refunded ? TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED
                         : TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_READY_FOR_PICKUP;
    o.platform = TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
    o.shop_id = "shop.example";
    oid.id = t[3];
    o.order = &oid;
    o.location_id = (char *)dash(t[4]);
    o.pickup = strcmp(t[6], "pickup") == 0;
    o.in_store_sale = strcmp(t[6], "instore") == 0;
    o.source_name = o.in_store_sale ? "pos" : "web";
    f.fulfillment_id = "F1";
    f.location_id = (char *)dash(t[7]);
    refund.refund_id = "R1";
    for (int i = 8; i < n && nl < MAXTOK; i++, nl++) {
        char *p[4];

        /* hold references (issue 4): hold=ID checkout=ID cart=TOKEN */
        if (strncmp(t[i], "hold=", 5) == 0 || strncmp(t[i], "checkout=", 9) == 0 ||
            strncmp(t[i], "cart=", 5) == 0) {
            char *v = strchr(t[i], '=') + 1;

            if (t[i][0] == 'h')
                o.hold_id = v;
            else if (t[i][1] == 'h')
                o.checkout_id = v;
            else
                o.cart_token = v;
            nl--;
            continue;
        }
        parts(t[i], p);
        tillsync__v1__order_line__init(&lines[nl]);
        tillsync__v1__refund_line__init(&rl[nl]);
        tillsync__v1__fulfillment_line__init(&fl[nl]);
        lines[nl].line_id = "L";
        if (p[0][0] == '@') {
            lines[nl].ledger_code = p[2];
            lines[nl].title = p[0] + 1;
        } else {
            lines[nl].sku = p[0];
        }
        lines[nl].quantity = num(p[1]);
        rl[nl].sku = p[0];
        rl[nl].quantity = num(p[1]);
        rl[nl].restock_type =
            strcmp(p[2], "cancel") == 0   ? TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_CANCEL
            : strcmp(p[2], "return") == 0 ? TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_RETURN
                                          : TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_NO_RESTOCK;
        rl[nl].location_id = p[3];
        fl[nl].sku = p[0];
        fl[nl].quantity = num(p[1]);
        lp[nl] = &lines[nl];
        rlp[nl] = &rl[nl];
        flp[nl] = &fl[nl];
    }
    if (refunded) {
        refund.n_lines = (size_t)nl;
        refund.lines = rlp;
        ev.refund = &refund;
    } else if (fulfil) {
        f.n_lines = (size_t)nl;
        f.lines = flp;
        ev.fulfillment = &f;
    } else {
        o.n_lines = (size_t)nl;
        o.lines = lp;
    }
    ev.envelope = &env;
    ev.order = &o;
    snprintf(key, sizeof(key), "shopify/shop.example/%s", t[3]);
    return publish(topic_ord, key, &ev.base, t[1], "tillsync.v1.ShopOrderEvent");
}

static int script(void)
{
    char line[8192];
    int lineno = 0;

    while (fgets(line, sizeof(line), stdin)) {
        char *t[MAXTOK + 8], *save = NULL;
        int n = 0, rc;

        lineno++;
        for (char *tok = strtok_r(line, " \t\r\n", &save); tok && n < MAXTOK + 8;
             tok = strtok_r(NULL, " \t\r\n", &save))
            t[n++] = tok;
        if (n == 0 || t[0][0] == '#')
            continue;
        rc = strcmp(t[0], "pos") == 0   ? pos_event(t, n)
             : strcmp(t[0], "mov") == 0 ? mov_event(t, n)
             : strcmp(t[0], "ord") == 0 ? ord_event(t, n)
                                        : -EINVAL;
        if (rc) {
            fprintf(stderr, "ledger_events: line %d: cannot produce\n", lineno);
            return 1;
        }
    }
    return 0;
}

/* ---- generated mixed workload with its expected balances */

#define NLOC 8
#define NSKU 50

static long long expect[NSKU][NLOC][3];
static unsigned long long rng;

static unsigned rnd(unsigned n)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((rng >> 33) % n);
}

struct pend {
    int sku, from, to, qty;
    char id[64];
};

static int gen(long n, unsigned long long seed, const char *file)
{
    static struct pend transfers[4096], orders[4096];
    int ntr = 0, nord = 0;
    char *t[16], b[16][128];
    FILE *out;

    rng = seed;
    for (int i = 0; i < 16; i++)
        t[i] = b[i];
    for (long i = 0; i < n; i++) {
        unsigned r = rnd(100);
        int sku = (int)rnd(NSKU), loc = (int)rnd(NLOC), q = 1 + (int)rnd(3), rc;
        long long at = 1700000000000LL + i;
        static char tillbuf[16];

        snprintf(tillbuf, sizeof(tillbuf), "T%ld", i % 8);
        till = tillbuf;
        snprintf(b[1], 128, "gen-%llu-%ld", seed, i);
        snprintf(b[5], 128, "%lld", at);
        if (r < 30) { /* till sale */
            snprintf(b[0], 128, "pos");
            snprintf(b[2], 128, "sale");
            snprintf(b[3], 128, "L%d", loc);
            snprintf(b[4], 128, "TX-%llu-%ld", seed, i);
            snprintf(b[6], 128, "-");
            snprintf(b[7], 128, "S%d:%d", sku, q);
            snprintf(b[8], 128, "@BAG:1:LC-BAG");
            expect[sku][loc][0] -= q;
            rc = pos_event(t, 9);
        } else if (r < 40) { /* till return, restocked */
            snprintf(b[0], 128, "pos");
            snprintf(b[2], 128, "return");
            snprintf(b[3], 128, "L%d", loc);
            snprintf(b[4], 128, "TX-%llu-%ld", seed, i);
            snprintf(b[6], 128, "-");
            snprintf(b[7], 128, "S%d:-%d:r", sku, q);
            expect[sku][loc][0] += q;
            rc = pos_event(t, 8);
        } else if (r < 60 || (r < 70 && ntr == 0) || (r < 85 && nord == 0)) { /* received */
            snprintf(b[0], 128, "mov");
            snprintf(b[2], 128, "received");
            snprintf(b[3], 128, "L%d", loc);
            snprintf(b[4], 128, "M-%llu-%ld", seed, i);
            snprintf(b[6], 128, "-");
            snprintf(b[7], 128, "S%d:%d", sku, 5 + q * 3);
            expect[sku][loc][0] += 5 + q * 3;
            rc = mov_event(t, 8);
        } else if (r < 65 && ntr < 4096) { /* transfer out */
            int to = (loc + 1) % NLOC;
            struct pend *p = &transfers[ntr++];

            *p = (struct pend){sku, loc, to, q, ""};
            snprintf(b[0], 128, "mov");
            snprintf(b[2], 128, "transfer_out");
            snprintf(b[3], 128, "L%d", loc);
            snprintf(b[4], 128, "M-%llu-%ld", seed, i);
            snprintf(b[6], 128, "L%d", to);
            snprintf(b[7], 128, "S%d:%d", sku, q);
            expect[sku][loc][0] -= q;
            expect[sku][to][2] += q;
            rc = mov_event(t, 8);
        } else if (r < 70 && ntr > 0) { /* the oldest transfer arrives */
            struct pend p = transfers[0];

            memmove(transfers, transfers + 1, (size_t)--ntr * sizeof(*transfers));
            snprintf(b[0], 128, "mov");
            snprintf(b[2], 128, "transfer_in");
            snprintf(b[3], 128, "L%d", p.to);
            snprintf(b[4], 128, "M-%llu-%ld", seed, i);
            snprintf(b[6], 128, "L%d", p.from);
            snprintf(b[7], 128, "S%d:%d", p.sku, p.qty);
            expect[p.sku][p.to][0] += p.qty;
            expect[p.sku][p.to][2] -= p.qty;
            rc = mov_event(t, 8);
        } else if (r < 75) { /* damage */
            snprintf(b[0], 128, "mov");
            snprintf(b[2], 128, "damage");
            snprintf(b[3], 128, "L%d", loc);
            snprintf(b[4], 128, "M-%llu-%ld", seed, i);
            snprintf(b[6], 128, "-");
            snprintf(b[7], 128, "S%d:1", sku);
            expect[sku][loc][0] -= 1;
            rc = mov_event(t, 8);
        } else if (r < 85 && nord < 4096) { /* online order, committed at L0 */
            struct pend *p = &orders[nord++];

            *p = (struct pend){sku, 0, 0, q, ""};
            snprintf(p->id, sizeof(p->id), "O-%llu-%ld", seed, i);
            snprintf(b[0], 128, "ord");
            snprintf(b[2], 128, "created");
            snprintf(b[3], 128, "%s", p->id);
            snprintf(b[4], 128, "L0");
            snprintf(b[6], 128, "web");
            snprintf(b[7], 128, "-");
            snprintf(b[8], 128, "S%d:%d", sku, q);
            expect[sku][0][1] += q;
            rc = ord_event(t, 9);
        } else if (nord > 0) { /* the oldest order ships from L0 */
            struct pend p = orders[0];

            memmove(orders, orders + 1, (size_t)--nord * sizeof(*orders));
            snprintf(b[0], 128, "ord");
            snprintf(b[2], 128, "fulfilled");
            snprintf(b[3], 128, "%s", p.id);
            snprintf(b[4], 128, "L0");
            snprintf(b[6], 128, "web");
            snprintf(b[7], 128, "L0");
            snprintf(b[8], 128, "S%d:%d", p.sku, p.qty);
            expect[p.sku][0][1] -= p.qty;
            expect[p.sku][0][0] -= p.qty;
            rc = ord_event(t, 9);
        } else {
            snprintf(b[0], 128, "mov");
            snprintf(b[2], 128, "adjustment");
            snprintf(b[3], 128, "L%d", loc);
            snprintf(b[4], 128, "M-%llu-%ld", seed, i);
            snprintf(b[6], 128, "-");
            snprintf(b[7], 128, "S%d:%d", sku, q);
            expect[sku][loc][0] += q;
            rc = mov_event(t, 8);
        }
        if (rc)
            return 1;
    }
    out = fopen(file, "w");
    if (!out)
        return 1;
    for (int s = 0; s < NSKU; s++)
        for (int l = 0; l < NLOC; l++)
            if (expect[s][l][0] || expect[s][l][1] || expect[s][l][2])
                fprintf(out, "S%d L%d %lld %lld %lld\n", s, l, expect[s][l][0], expect[s][l][1],
                        expect[s][l][2]);
    fclose(out);
    return 0;
}

/* N one-line events for the benchmark: a receipt of 4 then a sale of 1-3 of the same key, the
 * pairs going round 8 x 50 keys, so stock grows and a sale rarely finds a key short (only when
 * its partition runs ahead of the receipt's on a key's first visits). */
static int bench(long n, unsigned long long seed)
{
    char *t[16], b[16][128];

    for (int i = 0; i < 16; i++)
        t[i] = b[i];
    for (long i = 0; i < n; i++) {
        long k = i / 2;
        int sku = (int)(k % NSKU), loc = (int)((k / NSKU) % NLOC), rc;
        static char tillbuf[16];

        snprintf(tillbuf, sizeof(tillbuf), "T%ld", i % 8);
        till = tillbuf;
        snprintf(b[1], 128, "bench-%llu-%ld", seed, i);
        snprintf(b[3], 128, "L%d", loc);
        snprintf(b[4], 128, "B-%llu-%ld", seed, i);
        snprintf(b[5], 128, "%lld", 1700000000000LL + i);
        snprintf(b[6], 128, "-");
        snprintf(b[7], 128, "S%d:%d", sku, i % 2 ? 1 + (int)(k % 3) : 4);
        if (i % 2) {
            snprintf(b[0], 128, "pos");
            snprintf(b[2], 128, "sale");
            rc = pos_event(t, 8);
        } else {
            snprintf(b[0], 128, "mov");
            snprintf(b[2], 128, "received");
            rc = mov_event(t, 8);
        }
        if (rc)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    const char *prefix = getenv("TOPIC_PREFIX");
    char err[256];
    int rc;

    if (!brokers || argc < 2) {
        fprintf(stderr, "usage: KAFKA_BROKERS=… ledger_events script | gen N SEED FILE\n");
        return 2;
    }
    kafka_topic_name(prefix, "pos.transactions.v1", topic_pos, sizeof(topic_pos));
    kafka_topic_name(prefix, "stock.movements.v1", topic_mov, sizeof(topic_mov));
    kafka_topic_name(prefix, "shop.orders.v1", topic_ord, sizeof(topic_ord));
    prod = kafka_producer_new(brokers, "ledger_events", NULL, err, sizeof(err));
    if (!prod) {
        fprintf(stderr, "ledger_events: %s\n", err);
        return 1;
    }
    if (strcmp(argv[1], "bench") == 0 && argc == 4)
        rc = bench(strtol(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
    else if (strcmp(argv[1], "gen") == 0 && argc == 5)
        rc = gen(strtol(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), argv[4]);
    else
        rc = script();
    if (kafka_producer_flush(prod, 60000) != 0 || failed)
        rc = 1;
    kafka_producer_free(prod);
    if (rc == 0)
        fprintf(stderr, "ledger_events: %ld records acknowledged\n", sent);
    return rc;
}
