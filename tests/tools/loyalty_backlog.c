/*
 * loyalty_backlog — write a backlog of till sales and returns for loyalty-sync to
 * pos.transactions.v1 and print the balance each customer must end with. Used by
 * tests/integration/loyalty_backlog.sh and tests/bench/loyalty_backlog.
 *
 * Usage: loyalty_backlog <topic> <run id> <customers> <transactions>
 *   (brokers from KAFKA_BROKERS). Transaction k is a sale of ((k % 7) + 1) × 10.00 GBP by
 *   customer k % customers (email c<i>@<run id>.test, phone +4477009<i>); every fifth one is
 *   instead a return of half of that customer's previous sale. Keys are the till, spread over
 *   eight tills, so one customer's events land on several partitions.
 * Prints "<email> <points>" per customer for rules of 1 point per 1.00 (points_per_unit 1,
 * unit_minor 100), sorted by customer index. Exits 0 once every record was acknowledged.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka.h"
#include "uuid.h"
#include "tillsync/v1/pos.pb-c.h"

static long arg_long(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return end && *end == '\0' && v > 0 ? v : -1;
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    char err[256] = "";
    if (argc != 5 || !brokers || !*brokers) {
        fprintf(stderr, "usage: KAFKA_BROKERS=... loyalty_backlog <topic> <run id> <customers> "
                        "<transactions>\n");
        return 2;
    }
    const char *topic = argv[1], *run = argv[2];
    long ncust = arg_long(argv[3]), ntx = arg_long(argv[4]);
    if (ncust <= 0 || ntx <= 0 || ncust > 100000) {
        fprintf(stderr, "loyalty_backlog: customers and transactions must be positive\n");
        return 2;
    }
    int64_t *points = calloc((size_t)ncust, sizeof *points);
    long *last_sale = calloc((size_t)ncust, sizeof *last_sale);
    struct kafka_producer *p =
        kafka_producer_new(brokers, "loyalty_backlog", NULL, err, sizeof err);
    if (!points || !last_sale || !p) {
        fprintf(stderr, "loyalty_backlog: %s\n", err);
        return 1;
    }
    for (long i = 0; i < ncust; i++)
        last_sale[i] = -1;
    int rc = 0;
    for (long k = 0; k < ntx && rc == 0; k++) {
        long c = k % ncust;
        bool is_return = k % 5 == 4 && last_sale[c] >= 0;
        long orig = last_sale[c];
        int64_t sale_minor = ((k % 7) + 1) * 1000;
        int64_t net = is_return ? -(((orig % 7) + 1) * 1000) / 2 : sale_minor;
        char txn[96], orig_txn[96], email[128], phone[32], event_id[40], till[16], name[200];
        snprintf(txn, sizeof txn, "%s-T%ld", run, k);
        snprintf(orig_txn, sizeof orig_txn, "%s-T%ld", run, orig);
        snprintf(email, sizeof email, "c%ld@%s.test", c, run);
        snprintf(phone, sizeof phone, "+4477009%05ld", c);
        snprintf(till, sizeof till, "T%ld", k % 8);
        snprintf(name, sizeof name, "loyalty_backlog/%s/%ld", run, k);
        uuid_from_name(name, event_id);

        Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
        Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
        Tillsync__V1__PosTransaction t = TILLSYNC__V1__POS_TRANSACTION__INIT;
        Tillsync__V1__Customer cu = TILLSYNC__V1__CUSTOMER__INIT;
        Tillsync__V1__TransactionLine ln = TILLSYNC__V1__TRANSACTION_LINE__INIT;
        Tillsync__V1__TransactionLine *lp[1] = {&ln};
        Tillsync__V1__Money m = TILLSYNC__V1__MONEY__INIT;
        env.event_id = event_id;
        env.tenant_id = (char *)run;
        env.occurred_at_ms = clock_now_ms();
        env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
        cu.email = email;
        cu.phone = phone;
        ln.line_id = "l1";
        ln.sku = "SKU-1";
        ln.quantity = is_return ? -1 : 1;
        m.minor_units = net;
        m.currency = "GBP";
        ln.net_amount = &m;
        t.transaction_id = txn;
        t.store_code = "S1";
        t.till_id = till;
        t.kind = is_return ? TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_RETURN
                           : TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE;
        t.lines = lp;
        t.n_lines = 1;
        t.customer = &cu;
        t.currency = "GBP";
        if (is_return)
            t.original_transaction_id = orig_txn;
        ev.envelope = &env;
        ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
        ev.transaction = &t;
        size_t len = tillsync__v1__pos_transaction_event__get_packed_size(&ev);
        uint8_t *buf = malloc(len);
        if (!buf)
            abort();
        tillsync__v1__pos_transaction_event__pack(&ev, buf);
        char key[32];
        snprintf(key, sizeof key, "S1/%s", till);
        struct ce_headers ce = {.id = event_id,
                                .source = "tillsync/loyalty_backlog",
                                .type = "tillsync.v1.PosTransactionEvent"};
        rc = kafka_producer_send(p, topic, key, strlen(key), buf, len, &ce, NULL, 0, NULL, NULL,
                                 err, sizeof err);
        free(buf);
        if (is_return) {
            points[c] -= (((orig % 7) + 1) * 10) / 2; /* floor(P x R / Q), R = Q / 2 */
            last_sale[c] = -1;
        } else {
            points[c] += sale_minor / 100;
            last_sale[c] = k;
        }
    }
    if (rc == 0)
        rc = kafka_producer_flush(p, 30000);
    kafka_producer_free(p);
    if (rc) {
        fprintf(stderr, "loyalty_backlog: %s\n", err[0] ? err : "flush failed");
        free(points);
        free(last_sale);
        return 1;
    }
    for (long i = 0; i < ncust; i++)
        printf("c%ld@%s.test %" PRId64 "\n", i, run, points[i]);
    free(points);
    free(last_sale);
    return 0;
}
