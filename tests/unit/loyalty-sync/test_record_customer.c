/*
 * Unit tests of loyalty_record_customer(): the key that keeps one customer's records on one
 * worker. Every body of pos.transactions.v1 (a transaction or a takings declaration: a oneof,
 * so the two share one pointer), shop orders, and records that do not decode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "loyalty.h"
#include "member_api.h"
#include "rules.h"
#include "service.h"

#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"

struct fixture {
    struct service svc;
    struct rules rules;
    struct member_api *api;
    struct loyalty *l;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256];
    assert_non_null(f);
    struct member_api_opts ao = {
        .platform = MEMBER_PLATFORM_LOYALTY_APP, .base_url = "http://127.0.0.1:9", .token = "t"};
    f->api = member_api_new(&ao, err, sizeof err);
    assert_non_null(f->api);
    struct loyalty_opts lo = {.svc = &f->svc,
                              .rules = &f->rules,
                              .api = f->api,
                              .shop = "shop.example",
                              .default_cc = "44"};
    f->l = loyalty_new(&lo, err, sizeof err);
    assert_non_null(f->l);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    loyalty_free(f->l);
    member_api_free(f->api);
    free(f);
    return 0;
}

/* Pack a pos.transactions.v1 record: a transaction with cu, or (tx NULL) a takings body. */
static uint8_t *pack_pos(Tillsync__V1__PosTransaction *tx, Tillsync__V1__TakingsDeclaration *tk,
                         size_t *len)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    if (tx) {
        ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
        ev.transaction = tx;
    } else {
        ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS;
        ev.takings = tk;
    }
    *len = tillsync__v1__pos_transaction_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    tillsync__v1__pos_transaction_event__pack(&ev, buf);
    return buf;
}

static void key_of(struct fixture *f, const char *topic, const uint8_t *buf, size_t len,
                   const char *want)
{
    char out[300];
    memset(out, 'x', sizeof out);
    loyalty_record_customer(f->l, topic, buf, len, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_transaction_keys(void **state)
{
    struct fixture *f = *state;
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__Customer cu = TILLSYNC__V1__CUSTOMER__INIT;
    size_t len;
    uint8_t *buf;
    tx.transaction_id = "S001T1-000001";
    tx.store_code = "S001";
    buf = pack_pos(&tx, NULL, &len); /* anonymous: the transaction itself */
    key_of(f, "pos.transactions.v1", buf, len, "s:S001T1-000001");
    free(buf);
    tx.customer = &cu;
    cu.email = " Frank@Example.COM ";
    cu.phone = "07700 900123";
    buf = pack_pos(&tx, NULL, &len); /* email first, normalised */
    key_of(f, "pos.transactions.v1", buf, len, "e:frank@example.com");
    free(buf);
    cu.email = "";
    buf = pack_pos(&tx, NULL, &len); /* else the phone, in E.164 */
    key_of(f, "pos.transactions.v1", buf, len, "p:+447700900123");
    free(buf);
    cu.phone = "";
    cu.loyalty_id = "L-42";
    buf = pack_pos(&tx, NULL, &len);
    key_of(f, "pos.transactions.v1", buf, len, "l:L-42");
    free(buf);
}

/* A takings declaration is the other body of the oneof: it must never be read as a
 * transaction (its fields sit where the transaction's customer would be). */
static void test_takings_is_not_a_transaction(void **state)
{
    struct fixture *f = *state;
    Tillsync__V1__TakingsDeclaration tk = TILLSYNC__V1__TAKINGS_DECLARATION__INIT;
    size_t len;
    tk.store_code = "S001";
    tk.till_id = "T1";
    tk.business_date = "2026-11-25";
    tk.declared_by = "shop.example/sday-12345.myshopify.com/999999";
    uint8_t *buf = pack_pos(NULL, &tk, &len);
    key_of(f, "pos.transactions.v1", buf, len, "t:S001/T1");
    free(buf);
}

/* Pack a shop.orders.v1 record of order o. */
static uint8_t *pack_order(Tillsync__V1__ShopOrder *o, size_t *len)
{
    Tillsync__V1__ShopOrderEvent ev = TILLSYNC__V1__SHOP_ORDER_EVENT__INIT;
    ev.order = o;
    *len = tillsync__v1__shop_order_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    tillsync__v1__shop_order_event__pack(&ev, buf);
    return buf;
}

static void test_order_keys(void **state)
{
    struct fixture *f = *state;
    Tillsync__V1__ShopOrder o = TILLSYNC__V1__SHOP_ORDER__INIT;
    Tillsync__V1__PlatformId id = TILLSYNC__V1__PLATFORM_ID__INIT;
    Tillsync__V1__Customer cu = TILLSYNC__V1__CUSTOMER__INIT;
    size_t len;
    id.id = "9007199254746029";
    o.order = &id;
    uint8_t *buf = pack_order(&o, &len);
    key_of(f, "shop.orders.v1", buf, len, "s:9007199254746029");
    free(buf);
    o.customer = &cu;
    cu.email = "ann@example.com";
    buf = pack_order(&o, &len);
    key_of(f, "shop.orders.v1", buf, len, "e:ann@example.com");
    free(buf);
}

static void test_undecodable(void **state)
{
    struct fixture *f = *state;
    static const uint8_t junk[] = {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    key_of(f, "pos.transactions.v1", junk, sizeof junk, "");
    key_of(f, "shop.orders.v1", junk, sizeof junk, "");
    key_of(f, "some.other.v1", junk, sizeof junk, "");
    key_of(f, "pos.transactions.v1", junk, 0, ""); /* empty record: no body at all */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_transaction_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takings_is_not_a_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
