/* Unit tests of the SKU-one-side-only finding (skuside.c) and of the record check ingest runs
 * before applying a record (ingest_record_check, utf8_valid). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ingest.h"
#include "skuside.h"
#include "utf8.h"
#include "tillsync/v1/catalog.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"

static void test_line_is_stock(void **state)
{
    (void)state;
    assert_true(skuside_line_is_stock("SKU-1", ""));
    assert_true(skuside_line_is_stock("SKU-1", NULL));
    assert_false(skuside_line_is_stock("", "BAG"));      /* carrier bag */
    assert_false(skuside_line_is_stock(NULL, "REPAIR")); /* a fee */
    assert_false(skuside_line_is_stock("", ""));
    assert_false(skuside_line_is_stock("SKU-1", "BAG")); /* both: not trusted as a SKU */
}

static void test_list_short(void **state)
{
    char out[64];

    (void)state;
    assert_string_equal(skuside_list_short("S1", 3, out, sizeof(out)), "S1");
    assert_string_equal(skuside_list_short("S1,S2,S3", 3, out, sizeof(out)), "S1, S2, S3");
    assert_string_equal(skuside_list_short("S1,S2,S3,S4,S5", 2, out, sizeof(out)),
                        "S1, S2 and 3 more");
    assert_string_equal(skuside_list_short(",S1,,S2,", 5, out, sizeof(out)), "S1, S2");
    assert_string_equal(skuside_list_short("", 3, out, sizeof(out)), "");
    assert_string_equal(skuside_list_short(NULL, 3, out, sizeof(out)), "");
    /* never overflows */
    assert_string_equal(skuside_list_short("abcdefgh,ijkl", 5, out, 6), "abcde");
}

static json_t *details_of(const struct skuside_text *t)
{
    json_t *d = json_loads(t->details_json, 0, NULL);

    assert_non_null(d);
    return d;
}

static void test_till_only(void **state)
{
    struct skuside_finding f = {.side = SKUSIDE_TILL_ONLY,
                                .sku = "SKU-C",
                                .formerly_listed_in = "shopify:a.myshopify.com",
                                .till_stores = "S1,S2",
                                .till_locations = "loc-1,loc-2",
                                .till_first_seen = "2026-03-01T09:00:00Z",
                                .till_last_seen = "2026-03-14T10:30:00Z",
                                .till_lines = 7};
    struct skuside_text t;
    json_t *d;

    (void)state;
    assert_int_equal(skuside_describe(&f, &t), 0);
    assert_string_equal(t.dedupe_key, "sku_one_side_only/SKU-C");
    assert_string_equal(t.fingerprint, "till_only");
    assert_string_equal(t.summary, "SKU SKU-C is on the tills only: sold or moved at S1, S2 (last "
                                   "2026-03-14), listed in no shop catalogue (deleted from "
                                   "shopify:a.myshopify.com)");
    assert_string_equal(t.topic, "pos.transactions.v1");
    assert_string_equal(t.store_code, ""); /* two stores: none in particular */
    assert_string_equal(t.refs_json, "{\"sku\":\"SKU-C\"}");
    assert_non_null(strstr(t.action, "shop catalogue"));
    d = details_of(&t);
    assert_string_equal(json_string_value(json_object_get(d, "missing_on")), "platform");
    assert_string_equal(json_string_value(json_object_get(d, "side")), "till_only");
    assert_int_equal(json_array_size(json_object_get(d, "till_stores")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "till_stores"), 1)),
                        "S2");
    assert_int_equal(json_integer_value(json_object_get(d, "till_lines")), 7);
    assert_string_equal(json_string_value(json_object_get(d, "till_first_seen")),
                        "2026-03-01T09:00:00Z");
    /* keys of the other side are present and null, so a re-raise overwrites them */
    assert_true(json_is_null(json_object_get(d, "listed_in")));
    assert_true(json_is_null(json_object_get(d, "listed_since")));
    assert_true(json_is_null(json_object_get(d, "grace_s")));
    json_decref(d);
    skuside_text_release(&t);

    /* one store: the exception belongs to it */
    f.till_stores = "S1";
    f.formerly_listed_in = NULL;
    assert_int_equal(skuside_describe(&f, &t), 0);
    assert_string_equal(t.store_code, "S1");
    assert_null(strstr(t.summary, "deleted"));
    skuside_text_release(&t);

    /* a store's location without a store code (a WMS receipt) names the location */
    f.till_stores = "";
    f.till_locations = "loc-9";
    assert_int_equal(skuside_describe(&f, &t), 0);
    assert_non_null(strstr(t.summary, "sold or moved at loc-9 "));
    skuside_text_release(&t);
}

static void test_platform_only(void **state)
{
    struct skuside_finding f = {.side = SKUSIDE_PLATFORM_ONLY,
                                .sku = "SKU-B",
                                .listed_in = "shopify:a.myshopify.com,shopline:b.myshopline.com",
                                .listed_since = "2026-03-07T08:00:00Z",
                                .grace_s = 604800};
    struct skuside_text t;
    json_t *d;

    (void)state;
    assert_int_equal(skuside_describe(&f, &t), 0);
    assert_string_equal(t.fingerprint, "platform_only");
    assert_string_equal(t.summary,
                        "SKU SKU-B is on the platform only: tracked in shopify:a.myshopify.com, "
                        "shopline:b.myshopline.com since 2026-03-07, never sold or moved at a "
                        "till");
    assert_string_equal(t.topic, "catalog.items.v1");
    assert_string_equal(t.store_code, "");
    d = details_of(&t);
    assert_string_equal(json_string_value(json_object_get(d, "missing_on")), "tills");
    assert_int_equal(json_array_size(json_object_get(d, "listed_in")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "grace_s")), 604800);
    assert_string_equal(json_string_value(json_object_get(d, "listed_since")),
                        "2026-03-07T08:00:00Z");
    assert_true(json_is_null(json_object_get(d, "till_stores")));
    assert_true(json_is_null(json_object_get(d, "till_lines")));
    json_decref(d);
    skuside_text_release(&t);
}

static void test_no_sku(void **state)
{
    struct skuside_finding f = {.side = SKUSIDE_TILL_ONLY, .sku = ""};
    struct skuside_text t;

    (void)state;
    assert_int_equal(skuside_describe(&f, &t), -EINVAL);
    skuside_text_release(&t);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(utf8_valid(""));
    assert_true(utf8_valid("SKU-1"));
    assert_true(utf8_valid("Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x8d")); /* é € 🛍 */
    assert_false(utf8_valid("\xff"));
    assert_false(utf8_valid("abc\xc3"));          /* truncated */
    assert_false(utf8_valid("\xc0\xaf"));         /* overlong '/' */
    assert_false(utf8_valid("\xed\xa0\x80"));     /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
    assert_false(utf8_valid("\xe2\x82"));         /* cut at the end */
}

/* A nested, repeated string and a oneof member are checked; the envelope's times too. */
static void test_record_check(void **state)
{
    Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;
    Tillsync__V1__PosTransaction tx = TILLSYNC__V1__POS_TRANSACTION__INIT;
    Tillsync__V1__TransactionLine l1 = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine l2 = TILLSYNC__V1__TRANSACTION_LINE__INIT;
    Tillsync__V1__TransactionLine *lines[] = {&l1, &l2};
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__CatalogItemEvent cev = TILLSYNC__V1__CATALOG_ITEM_EVENT__INIT;
    Tillsync__V1__CatalogItem item = TILLSYNC__V1__CATALOG_ITEM__INIT;
    char err[256] = "";

    (void)state;
    env.event_id = "e1";
    env.occurred_at_ms = 1773446400000; /* 2026-03-14 */
    l1.sku = "SKU-1";
    l2.sku = "SKU-2";
    tx.lines = lines;
    tx.n_lines = 2;
    tx.store_code = "S1";
    ev.envelope = &env;
    ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
    ev.transaction = &tx;
    assert_int_equal(ingest_record_check(&ev.base, err, sizeof(err)), 0);

    l2.sku = "SKU-\xff";
    assert_int_equal(ingest_record_check(&ev.base, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "TransactionLine.sku"));
    l2.sku = "SKU-2";

    env.occurred_at_ms = INT64_MAX; /* Postgres cannot take it as a timestamp */
    assert_int_equal(ingest_record_check(&ev.base, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "9999"));
    env.occurred_at_ms = 1773446400000;

    /* catalogue: the item's strings, and a record without an item is fine */
    item.shop_id = "a.myshopify.com";
    item.sku = "SKU-\xc3\x28";
    cev.envelope = &env;
    assert_int_equal(ingest_record_check(&cev.base, err, sizeof(err)), 0);
    cev.item = &item;
    assert_int_equal(ingest_record_check(&cev.base, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "CatalogItem.sku"));
    item.sku = "SKU-B";
    assert_int_equal(ingest_record_check(&cev.base, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_is_stock), cmocka_unit_test(test_list_short),
        cmocka_unit_test(test_till_only),     cmocka_unit_test(test_platform_only),
        cmocka_unit_test(test_no_sku),        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_record_check),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
