/* Unit tests of ledger.c: events → ledger operations, without a database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "availability.h"
#include "ledger.h"
#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

static uint8_t buf[4096];

static size_t pack(const ProtobufCMessage *m)
{
    assert_true(protobuf_c_message_get_packed_size(m) <= sizeof(buf));
    return protobuf_c_message_pack(m, buf);
}

static void test_pos_sale_return_nonstock(void **state)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__TransactionLine l1 = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine l2 = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine l3 = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine l4 = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine *lines[] = {&l1, &l2, &l3, &l4};
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    struct ledger_event le;
    char err[128];
    size_t n;

    (void)state;
    env.event_id = "ev-1";
    env.occurred_at_ms = 42;
    tx.store_code = "S1";
    tx.till_id = "T1";
    tx.transaction_id = "TX1";
    tx.location_id = "store-1";
    tx.kind = TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_EXCHANGE;
    l1.sku = "A";
    l1.quantity = 2;
    l2.sku = "B";
    l2.quantity = -1;
    l2.restock = 1;
    l3.sku = "C";
    l3.quantity = -1;          /* returned, not restocked: no movement */
    l4.non_stock_code = "BAG"; /* no ledger code: a problem, never stock */
    l4.quantity = 1;
    tx.n_lines = 4;
    tx.lines = lines;
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;
    n = pack(&ev.base);
    assert_int_equal(ledger_event_decode(&le, "acme.pos.transactions.v1", buf, n, NULL, "online",
                                         err, sizeof(err)),
                     0);
    assert_string_equal(le.event_id, "ev-1");
    assert_string_equal(le.source_ref, "pos:S1/T1/TX1");
    assert_int_equal(le.nops, 2);
    assert_int_equal(le.ops[0].qty, -2);
    assert_string_equal(le.ops[0].reason, "sale");
    assert_int_equal(le.ops[1].qty, 1);
    assert_string_equal(le.ops[1].reason, "return_restock");
    assert_int_equal(le.nproblems, 1);
    assert_int_equal(le.problems[0].type,
                     TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NON_STOCK_UNMAPPED);
    ledger_event_release(&le);
}

static void test_transfer_and_count(void **state)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__MovementLine l = TILLSYNC__V1__MOVEMENT_LINE__INIT;
    Tillsync__V1__MovementLine *lines[] = {&l};
    Tillsync__V1__StockMovement m = TILLSYNC__V1__STOCK_MOVEMENT__INIT;
    Tillsync__V1__StockMovementEvent ev = TILLSYNC__V1__STOCK_MOVEMENT_EVENT__INIT;
    struct ledger_event le;
    char err[128];
    size_t n;

    (void)state;
    env.event_id = "ev-2";
    m.movement_id = "M1";
    m.kind = TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_OUT;
    m.location_id = "W1";
    m.counterpart_location_id = "S1";
    l.sku = "A";
    l.quantity = 5;
    m.n_lines = 1;
    m.lines = lines;
    ev.envelope = &env;
    ev.movement = &m;
    n = pack(&ev.base);
    assert_int_equal(
        ledger_event_decode(&le, "stock.movements.v1", buf, n, NULL, "", err, sizeof(err)), 0);
    assert_int_equal(le.nops, 2);
    assert_string_equal(le.ops[0].location_id, "W1");
    assert_int_equal(le.ops[0].qty, -5);
    assert_int_equal(le.ops[1].bucket, LEDGER_IN_TRANSIT);
    assert_string_equal(le.ops[1].location_id, "S1");
    assert_int_equal(le.ops[1].qty, 5);
    ledger_event_release(&le);

    m.kind = TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_CYCLE_COUNT;
    l.counted_quantity = 7;
    n = pack(&ev.base);
    assert_int_equal(
        ledger_event_decode(&le, "stock.movements.v1", buf, n, NULL, "", err, sizeof(err)), 0);
    assert_int_equal(le.nops, 1);
    assert_int_equal(le.ops[0].kind, LEDGER_OP_COUNT);
    assert_int_equal(le.ops[0].qty, 7);
    ledger_event_release(&le);
}

static void test_orders(void **state)
{
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__PlatformId id = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__OrderLine l = TILLSYNC__V1__ORDER_LINE__INIT;
    Tillsync__V1__OrderLine *lines[] = {&l};
    Tillsync__V1__ShopOrder o = TILLSYNC__V1__SHOP_ORDER__INIT;
    Tillsync__V1__ShopOrderEvent ev = TILLSYNC__V1__SHOP_ORDER_EVENT__INIT;
    struct ledger_event le;
    char err[128];
    size_t n;

    (void)state;
    env.event_id = "ev-3";
    id.id = "12345678901234567890";
    o.shop_id = "shop";
    o.order = &id;
    l.sku = "A";
    l.quantity = 3;
    o.n_lines = 1;
    o.lines = lines;
    ev.envelope = &env;
    ev.order = &o;
    ev.kind = TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED;
    n = pack(&ev.base);
    assert_int_equal(
        ledger_event_decode(&le, "shop.orders.v1", buf, n, NULL, "online", err, sizeof(err)), 0);
    assert_string_equal(le.source_ref, "order:shopify/shop/12345678901234567890");
    assert_int_equal(le.nops, 1);
    assert_int_equal(le.ops[0].bucket, LEDGER_COMMITTED);
    assert_string_equal(le.ops[0].location_id, "online");
    ledger_event_release(&le);

    o.in_store_sale = 1; /* Shopify POS: on_hand leaves the store now */
    o.location_id = "S1";
    n = pack(&ev.base);
    assert_int_equal(
        ledger_event_decode(&le, "shop.orders.v1", buf, n, NULL, "online", err, sizeof(err)), 0);
    assert_int_equal(le.ops[0].bucket, LEDGER_ON_HAND);
    assert_int_equal(le.ops[0].qty, -3);
    assert_string_equal(le.ops[0].location_id, "S1");
    ledger_event_release(&le);

    o.in_store_sale = 0;
    ev.kind = TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED;
    n = pack(&ev.base);
    assert_int_equal(
        ledger_event_decode(&le, "shop.orders.v1", buf, n, NULL, "online", err, sizeof(err)), 0);
    assert_int_equal(le.ops[0].kind, LEDGER_OP_RELEASE);
    assert_true(le.ops[0].qty < 0);
    ledger_event_release(&le);
}

static void test_bad_input(void **state)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01};
    struct ledger_event le;
    char err[128] = "";

    (void)state;
    assert_int_equal(ledger_event_decode(&le, "pos.transactions.v1", junk, sizeof(junk), NULL, "",
                                         err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "not a valid protobuf"));
    ledger_event_release(&le);
    assert_int_equal(ledger_event_decode(&le, "other.topic", junk, 0, NULL, "", err, sizeof(err)),
                     -EINVAL);
    ledger_event_release(&le);
    /* no event id anywhere */
    assert_int_equal(
        ledger_event_decode(&le, "stock.movements.v1", buf, 0, NULL, "", err, sizeof(err)),
        -EINVAL);
    ledger_event_release(&le);
    ledger_event_release(NULL);
}

static void test_availability(void **state)
{
    struct stock_figures f[2] = {{"L1", 10, 2, 0, 0, 1}, {"W1", 5, 0, 0, 3, 0}};

    (void)state;
    assert_int_equal(availability_reserved(NULL, "A", "L1"), 0);
    assert_int_equal(availability_location(&f[0]), 7);
    assert_int_equal(availability_channel(NULL, "CH", "A", f, 2, 4), 8);
    assert_int_equal(availability_channel(NULL, "CH", "A", f, 2, 40), 0); /* never below 0 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pos_sale_return_nonstock),
        cmocka_unit_test(test_transfer_and_count),
        cmocka_unit_test(test_orders),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_availability),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
