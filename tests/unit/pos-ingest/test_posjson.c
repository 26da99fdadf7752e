/*
 * Unit tests of pos-ingest's validation (posjson), mapping and catalogue modules: no network.
 * The integration test drives the same code through HTTP and Kafka; these pin down the rules.
 */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "catalog.h"
#include "json_util.h"
#include "mapping.h"
#include "posjson.h"
#include "tillsync/v1/catalog.pb-c.h"

static const char MAP[] =
    "{\"stores\":{\"S001\":{\"location_id\":\"LOC-1\"}},\"locations\":[\"WH\"],"
    "\"non_stock\":{\"BAG\":{\"ledger_code\":\"4010\"}}}";

static struct mapping *map;

static int setup(void **state)
{
    char err[256];

    (void)state;
    map = mapping_parse(MAP, sizeof(MAP) - 1, err, sizeof(err));
    return map ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    mapping_free(map);
    return 0;
}

static void ctx_make(struct posjson_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->tenant_id = "t";
    ctx->mapping = map;
    ctx->now_ms = 1795514400000LL; /* 2026-11-24T10:00:00Z */
    ctx->max_future_ms = 60000;
}

static int tx(const char *body, struct pos_item *it, struct posjson_error *e)
{
    struct posjson_ctx ctx;
    char err[256];
    json_t *obj = json_parse_object(body, strlen(body), err, sizeof(err));
    int rc;

    assert_non_null(obj);
    ctx_make(&ctx);
    rc = posjson_transaction(obj, &ctx, it, e);
    json_decref(obj);
    return rc;
}

#define HEAD                                                                                       \
    "{\"transaction_id\":\"A1\",\"store_code\":\"S001\",\"till_id\":\"T1\",\"kind\":\"sale\","     \
    "\"occurred_at\":\"2026-11-24T09:00:00Z\",\"currency\":\"EUR\","

static void test_mapping(void **state)
{
    const char *ledger;
    bool nns = false;
    char err[256];

    (void)state;
    assert_string_equal(mapping_store_location(map, "S001"), "LOC-1");
    assert_null(mapping_store_location(map, "S002"));
    assert_true(mapping_location_known(map, "WH"));
    assert_true(mapping_location_known(map, "LOC-1"));
    assert_false(mapping_location_known(map, "X"));
    assert_int_equal(mapping_non_stock(map, "BAG", &ledger, &nns), 0);
    assert_string_equal(ledger, "4010");
    assert_true(nns); /* default: needs no shipping */
    assert_int_equal(mapping_non_stock(map, "FEE", &ledger, &nns), -ENOENT);
    assert_null(mapping_parse("{\"stores\":{\"S\":{}}}", 19, err, sizeof(err)));
    assert_non_null(strstr(err, "stores.S.location_id"));
    assert_null(mapping_parse("{\"locations\":[1]}", 17, err, sizeof(err)));
    assert_non_null(strstr(err, "locations[0]"));
    assert_null(mapping_load("/nonexistent/map.json", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/map.json"));
}

static void test_money_and_ids(void **state)
{
    struct pos_item a, b;
    struct posjson_error e;

    (void)state;
    assert_int_equal(tx(HEAD "\"lines\":[{\"sku\":\"K\",\"quantity\":3,\"unit_price\":\"2.50\","
                             "\"discounts\":[{\"amount\":\"0.50\"}],\"tax_lines\":[{\"code\":"
                             "\"V\",\"amount\":\"1.00\"}]}],\"tenders\":[{\"type\":\"cash\","
                             "\"amount\":\"8.00\"}],\"total\":\"8.00\"}",
                        &a, &e),
                     0);
    assert_int_equal(a.transaction->lines[0]->net_amount->minor_units, 700);
    assert_int_equal(a.transaction->subtotal->minor_units, 700);
    assert_int_equal(a.transaction->tax_total->minor_units, 100);
    assert_int_equal(a.transaction->total->minor_units, 800); /* tax not included: added */
    assert_string_equal(a.key, "S001/T1");
    assert_string_equal(a.transaction->business_date, "2026-11-24");
    /* the same fact with other content keeps its event id, but not its fingerprint */
    assert_int_equal(tx(HEAD "\"cashier_id\":\"Z\",\"lines\":[{\"sku\":\"K\",\"quantity\":3,"
                             "\"unit_price\":\"2.50\",\"discounts\":[{\"amount\":\"0.50\"}],"
                             "\"tax_lines\":[{\"code\":\"V\",\"amount\":\"1.00\"}]}],"
                             "\"tenders\":[{\"type\":\"cash\",\"amount\":\"8.00\"}],"
                             "\"total\":\"8.00\"}",
                        &b, &e),
                     0);
    assert_string_equal(a.event_id, b.event_id);
    assert_string_not_equal(a.body_hash, b.body_hash);
    pos_item_release(&a);
    pos_item_release(&b);
    pos_item_release(&b); /* twice is fine */
}

static void test_refusals(void **state)
{
    static const struct {
        const char *body, *field, *code;
        int status;
    } cases[] = {
        {HEAD "\"lines\":[{\"sku\":\"K\",\"quantity\":1,\"unit_price\":1,\"discounts\":[{"
              "\"amount\":2}]}],\"total\":-1}",
         "lines[0].discounts", "money_mismatch", 422},
        {HEAD "\"lines\":[{\"sku\":\"K\",\"quantity\":1,\"unit_price\":1}],\"total\":1}", "tenders",
         "missing_field", 422},
        {HEAD "\"lines\":[{\"sku\":\"K\",\"quantity\":1,\"unit_price\":1}]}", "total",
         "missing_field", 422},
        {"{\"transaction_id\":\"A\",\"store_code\":\"S001\",\"till_id\":\"T\",\"kind\":"
         "\"exchange\",\"occurred_at\":\"2026-11-24T09:00:00Z\",\"currency\":\"EUR\",\"lines\":[{"
         "\"sku\":\"K\",\"quantity\":1,\"unit_price\":1}],\"tenders\":[{\"type\":\"cash\","
         "\"amount\":1}],\"total\":1}",
         "lines", "invalid_field", 422},
        {HEAD "\"lines\":[{\"sku\":\"K\",\"quantity\":1,\"unit_price\":1}],\"tenders\":[{"
              "\"type\":\"cash\",\"amount\":1}],\"total\":1,\"customer\":{\"name\":\"x\"}}",
         "customer.loyalty_id", "missing_field", 422},
        {"{\"transaction_id\":\"A\",\"store_code\":\"S001\",\"till_id\":\"T\",\"kind\":\"sale\","
         "\"occurred_at\":\"2026-11-24T10:05:00Z\",\"currency\":\"EUR\"}",
         "occurred_at", "time_in_future", 422},
    };
    struct pos_item it;
    struct posjson_error e;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (tx(cases[i].body, &it, &e) == 0)
            fail_msg("case %zu accepted", i);
        assert_int_equal(e.status, cases[i].status);
        assert_string_equal(e.field, cases[i].field);
        assert_string_equal(e.code, cases[i].code);
        assert_non_null(strstr(e.message, cases[i].field));
        pos_item_release(&it);
    }
}

#define POOL_BODY                                                                                  \
    HEAD "\"lines\":[{\"sku\":\"K\",\"quantity\":3,\"unit_price\":\"2.50\"}],\"tenders\":[{"       \
         "\"type\":\"cash\",\"amount\":\"7.50\"}],\"total\":\"7.50\",\"cashier_id\":\"caf\u00e9 "  \
         "\\\"x\\\"\"}"

/* The fingerprint of a body is the one earlier versions stored in pos_ingest_claims (SHA-256
 * of its compact, key-sorted JSON): a re-upload across an upgrade is a duplicate, not a
 * conflict. The value was computed outside this code (Python's json.dumps(sort_keys=True,
 * separators=(',', ':'), ensure_ascii=False)). */
static void test_fingerprint_stable(void **state)
{
    struct pos_item it;
    struct posjson_error e;

    (void)state;
    assert_int_equal(tx(POOL_BODY, &it, &e), 0);
    assert_string_equal(it.body_hash,
                        "f180e758bbcf6f38376e5c9e3e4fb014bc3709a466d0d77e94cfff5888498460");
    pos_item_release(&it);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

/* Released item memory waits in the pool for the next items, up to its limit, and a pooled
 * block gives the next item the same results as fresh memory. */
static void test_item_pool(void **state)
{
    struct pos_item a[3], d;
    struct posjson_error e;
    uintptr_t where[3];
    size_t block;

    (void)state;
    posjson_pool_limit(2 * 16500); /* room for two blocks */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tx(POOL_BODY, &a[i], &e), 0);
        where[i] = (uintptr_t)a[i].transaction;
    }
    assert_int_equal(posjson_pool_kept(), 0); /* nothing released yet */
    pos_item_release(&a[0]);
    block = posjson_pool_kept(); /* one block */
    assert_true(block > 16384 && block < 16500);
    pos_item_release(&a[1]);
    pos_item_release(&a[2]); /* freed: the pool is full */
    assert_int_equal(posjson_pool_kept(), 2 * block);
#if defined(__SANITIZE_ADDRESS__)
    assert_true(__asan_address_is_poisoned((const void *)where[0])); /* a use after release */
#endif
    assert_int_equal(tx(POOL_BODY, &d, &e), 0);
    assert_int_equal(posjson_pool_kept(), block);      /* d took one */
    assert_true((uintptr_t)d.transaction == where[1]); /* the last block kept comes back first */
    assert_string_equal(d.transaction->transaction_id, "A1");
    assert_int_equal(d.transaction->total->minor_units, 750);
    assert_string_equal(d.body_hash,
                        "f180e758bbcf6f38376e5c9e3e4fb014bc3709a466d0d77e94cfff5888498460");
    pos_item_release(&d);
    assert_int_equal(posjson_pool_kept(), 2 * block);
    posjson_pool_limit(0); /* frees what it keeps */
    assert_int_equal(posjson_pool_kept(), 0);
    assert_int_equal(tx(POOL_BODY, &d, &e), 0);
    assert_string_equal(d.transaction->transaction_id, "A1");
    pos_item_release(&d);
}

static void test_catalog(void **state)
{
    struct catalog *c = catalog_new();
    Tillsync__V1__CatalogItemEvent ev = TILLSYNC__V1__CATALOG_ITEM_EVENT__INIT;
    Tillsync__V1__CatalogItem item = TILLSYNC__V1__CATALOG_ITEM__INIT;
    uint8_t buf[512];
    size_t n;
    bool ship = true, more;
    char err[256];
    json_t *list;

    (void)state;
    item.sku = "GC-50";
    item.requires_shipping = false;
    item.price_changed_at_ms = 2000;
    ev.item = &item;
    n = tillsync__v1__catalog_item_event__pack(&ev, buf);
    assert_int_equal(catalog_apply(c, "shopify/s/1", 11, buf, n, err, sizeof(err)), 0);
    assert_true(catalog_sku_lookup(c, "GC-50", &ship));
    assert_false(ship);
    assert_false(catalog_sku_lookup(c, "NOPE", &ship));
    list = catalog_list(c, 1000, true, 10, &more);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);
    list = catalog_list(c, 3000, true, 10, &more);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    assert_int_equal(catalog_apply(c, "k", 1, "\xff\xff", 2, err, sizeof(err)), -EINVAL);
    assert_int_equal(catalog_apply(c, "shopify/s/1", 11, NULL, 0, err, sizeof(err)), 0); /* tomb */
    assert_false(catalog_sku_lookup(c, "GC-50", &ship));
    assert_int_equal(catalog_size(c), 0);
    catalog_free(c);
    catalog_free(NULL);
}

/* The batch fast path: the spans it finds are exactly the items the full parse finds, and
 * every body it does not understand is left to the full parse. */
static void test_batch_split(void **state)
{
    static const struct {
        const char *body;
        int n; /* items, or -1: fall back to the full parse */
    } cases[] = {
        {"{\"transactions\":[{\"a\":1},{\"b\":[2,{\"c\":\"}]\\\"{\"}]}]}", 2},
        {" \r\n{ \"movements\" : [ {} ] , \"transactions\" : [ {\"x\":\"\\\\\"} ] }\t", 2},
        {"{\"transactions\":[],\"movements\":[{\"m\":1}]}", 1},
        {"{\"transactions\":[]}", -1}, /* no items: the full parse says so */
        {"{\"transactions\":[{}],\"transactions\":[{}]}", -1}, /* repeated key */
        {"{\"\\u0074ransactions\":[{}]}", -1},                 /* escaped key */
        {"{\"sales\":[{}]}", -1},                              /* unknown key */
        {"{\"transactions\":[1]}", -1},                        /* an item that is not an object */
        {"{\"transactions\":[{}] ]}", -1},                     /* stray bracket */
        {"{\"transactions\":[{]}]}", -1},                      /* wrong closing bracket */
        {"{\"transactions\":[{\"a\":\"}]}", -1},               /* unterminated string */
        {"{\"transactions\":[{}]}x", -1},                      /* trailing bytes */
        {"{\"transactions\":[{},]}", -1},                      /* trailing comma */
        {"{\"transactions\":[{}]", -1},                        /* truncated */
        {"[{\"transactions\":[{}]}]", -1},                     /* not an object */
        {"", -1},
        {"{\"transactions\":[{},{},{},{}]}", -1}, /* over max_items (3) */
        {"{\"transactions\":[{},{},{}]}", 3},
        /* the items are read as strictly as jansson reads them: what it accepts */
        {"{\"transactions\":[{\"a\":true,\"b\":false,\"c\":[null,-0,0.5,-1.5E+3,1e-400]}]}", 1},
        {"{\"transactions\":[{\"a\":9223372036854775807,\"b\":-9223372036854775808}]}", 1},
        {"{\"transactions\":[{\"a\":1,\"b\":{\"a\":1},\"c\":[{\"a\":2}]}]}", 1},
        {"{\"transactions\":[{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}]}", 1},
        {"{\"transactions\":[{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"}]}", 1},
    };
    /* ... and each thing jansson refuses: the split leaves the body to the full parse, which
     * names the problem (checked below: the full parse refuses each of these too) */
    static const char *const refused[] = {
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":truex}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":-}",
        "{\"a\":+1}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":1 2}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":1e309}",
        "{\"a\":-1.5e400}",
        "{\"a\":1,\"a\":2}",
        "{\"a\":{\"b\":1,\"c\":2,\"b\":3}}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"\\uZZZZ\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"\xe2\x82\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\x80\"}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{1:2}",
        "{\"a\":[1}",
        "{\"a\":\xc3\xa9}",
    };
    /* ... and what it refuses though jansson would accept: rare forms the full parse takes */
    static const char *const left[] = {
        "{\"\\u0061\":1}", /* an escaped key */
        "{\"a\":1.00000000000000000000000000000000000000000000000000000000000000001}",
    };
    struct posjson_span *sp;
    char deep[200];
    int n;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *b = cases[i].body;

        n = posjson_batch_split(b, strlen(b), 3, &sp);
        if ((n < 0 ? -1 : n) != cases[i].n || (n < 0 && n != -EINVAL))
            fail_msg("%s: %d items, want %d", b, n, cases[i].n);
        if (n < 0) {
            assert_null(sp);
            continue;
        }
        /* each span is one item of the full tree, transactions first, in order */
        {
            char err[256];
            json_t *all = json_parse_object(b, strlen(b), err, sizeof(err)), *items = json_array();

            assert_non_null(all);
            json_array_extend(items, json_object_get(all, "transactions"));
            json_array_extend(items, json_object_get(all, "movements"));
            assert_int_equal(json_array_size(items), n);
            for (int k = 0; k < n; k++) {
                json_t *one = json_loadb(b + sp[k].off, sp[k].len, 0, NULL);

                assert_non_null(one);
                assert_true(json_equal(one, json_array_get(items, (size_t)k)));
                assert_int_equal(
                    sp[k].group,
                    k < (int)json_array_size(json_object_get(all, "transactions")) ? 0 : 1);
                json_decref(one);
            }
            json_decref(items);
            json_decref(all);
        }
        free(sp);
    }
    const size_t nrefused = sizeof(refused) / sizeof(refused[0]);

    for (size_t i = 0; i < nrefused + sizeof(left) / sizeof(left[0]); i++) {
        bool is_left = i >= nrefused;
        const char *item = is_left ? left[i - nrefused] : refused[i];
        char b[256], err[256];
        json_t *all;

        snprintf(b, sizeof(b), "{\"transactions\":[{},%s]}", item);
        n = posjson_batch_split(b, strlen(b), 3, &sp);
        if (n != -EINVAL || sp)
            fail_msg("%s: split gave %d, want the full parse", item, n);
        all = json_parse_object(b, strlen(b), err, sizeof(err));
        if (is_left != (all != NULL))
            fail_msg("%s: jansson %s it", item, all ? "accepts" : "refuses");
        json_decref(all);
    }
    /* nesting deeper than any till item (64 levels) is left to the full parse */
    for (int levels = 60; levels <= 70; levels += 10) {
        size_t o = (size_t)snprintf(deep, sizeof(deep), "{\"transactions\":[{\"a\":");

        for (int i = 0; i < levels; i++)
            deep[o++] = '[';
        for (int i = 0; i < levels; i++)
            deep[o++] = ']';
        memcpy(deep + o, "}]}", 4);
        n = posjson_batch_split(deep, strlen(deep), 3, &sp);
        assert_int_equal(n, levels == 60 ? 1 : -EINVAL);
        free(sp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapping),     cmocka_unit_test(test_money_and_ids),
        cmocka_unit_test(test_refusals),    cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_batch_split), cmocka_unit_test(test_fingerprint_stable),
        cmocka_unit_test(test_item_pool),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
