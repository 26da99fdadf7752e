/*
 * kafka_produce_event — write one encoded tillsync.v1.PosTransactionEvent (a sale of 2 x
 * SKU-123 at store S001, till T1) to a topic through the common producer, with its CloudEvents
 * headers. Used by tests/integration/kafka_decode.sh.
 *
 * Usage: kafka_produce_event <topic> <event_id>   (brokers from KAFKA_BROKERS)
 * Exits 0 once the broker acknowledged the record, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka.h"
#include "tillsync/v1/pos.pb-c.h"

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__Money unit = TILLSYNC__V1__MONEY__INIT;
    Tillsync__V1__Money net = TILLSYNC__V1__MONEY__INIT;
    Tillsync__V1__TransactionLine line = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine *lines[] = {&line};
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    struct kafka_producer *p = NULL;
    uint8_t *buf = NULL;
    size_t len;
    char err[256] = "";
    int rc = 1;

    if (argc != 3 || !brokers || !*brokers) {
        fprintf(stderr, "usage: KAFKA_BROKERS=... kafka_produce_event <topic> <event_id>\n");
        return 2;
    }
    refs.pos_transaction_id = "TX-0001";
    refs.store_code = "S001";
    refs.till_id = "T1";
    env.event_id = argv[2];
    env.tenant_id = "acme";
    env.occurred_at_ms = 1764021600000;
    env.recorded_at_ms = clock_now_ms();
    env.source = TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS;
    env.source_name = "S001/T1";
    env.producer = "kafka_produce_event";
    env.refs = &refs;
    unit.minor_units = 1250;
    unit.currency = "EUR";
    net.minor_units = 2500;
    net.currency = "EUR";
    line.line_id = "1";
    line.sku = "SKU-123";
    line.quantity = 2;
    line.unit_price = &unit;
    line.net_amount = &net;
    line.sku_known = 1;
    tx.transaction_id = "TX-0001";
    tx.store_code = "S001";
    tx.till_id = "T1";
    tx.location_id = "store-s001";
    tx.kind = TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE;
    tx.n_lines = 1;
    tx.lines = lines;
    tx.currency = "EUR";
    tx.subtotal = &net;
    tx.total = &net;
    tx.business_date = "2025-11-24";
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;

    len = tillsync__v1__pos_transaction_event__get_packed_size(&ev);
    buf = malloc(len ? len : 1);
    if (!buf)
        goto out;
    tillsync__v1__pos_transaction_event__pack(&ev, buf);

    p = kafka_producer_new(brokers, "kafka_produce_event", NULL, err, sizeof(err));
    if (!p)
        goto out;
    struct ce_headers ce = {.id = argv[2],
                            .source = "tillsync/pos-ingest/S001/T1",
                            .type = "tillsync.v1.PosTransactionEvent",
                            .subject = "S001/T1"};
    if (kafka_producer_send_sync(p, argv[1], "S001/T1", 7, buf, len, &ce, NULL, 0, 15000, err,
                                 sizeof(err)) != 0)
        goto out;
    rc = 0;

out:
    if (rc)
        fprintf(stderr, "kafka_produce_event: %s\n", err[0] ? err : "out of memory");
    kafka_producer_free(p);
    free(buf);
    return rc;
}
