/* Unit tests: rawjson (exact big ids), webhook HMAC vectors, and the adapters' payload parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hmac.h"
#include "platform.h"
#include "rawjson.h"
#include "shops.h"

static void quote_big_ints(void **state)
{
    (void)state;
    const char *in = "{\"a\":9007199254740993,\"b\":18057039439794751459380282,\"c\":12,"
                     "\"d\":\"123456789012345678\",\"e\":1.5e300,\"f\":[-12345678901234567,0],"
                     "\"g\":\"x\\\"9999999999999999\"}";
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(rawjson_quote_big_ints(in, strlen(in), &out, &len), 0);
    assert_string_equal(out, "{\"a\":\"9007199254740993\",\"b\":\"18057039439794751459380282\","
                             "\"c\":12,\"d\":\"123456789012345678\",\"e\":1.5e300,"
                             "\"f\":[\"-12345678901234567\",0],\"g\":\"x\\\"9999999999999999\"}");
    free(out);
}

static void ids_exact(void **state)
{
    (void)state;
    char err[200], buf[64];
    const char *in = "{\"sf\":9007199254740993,\"sl\":18057039439794751459380282,\"small\":42,"
                     "\"gid\":\"gid://shopify/Order/9007199254740993\",\"bad\":true}";
    json_t *root = rawjson_parse(in, strlen(in), err, sizeof(err));
    assert_non_null(root);
    assert_int_equal(rawjson_get_id(root, "sf", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "9007199254740993"); /* 2^53 + 1: a double would give ...992 */
    assert_int_equal(rawjson_get_id(root, "sl", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "18057039439794751459380282");
    assert_int_equal(rawjson_get_id(root, "small", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "42");
    assert_int_equal(rawjson_get_id(root, "gid", buf, sizeof(buf)), 0);
    char tail[64];
    rawjson_gid_tail(buf, tail, sizeof(tail));
    assert_string_equal(tail, "9007199254740993");
    assert_int_equal(rawjson_get_id(root, "bad", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(rawjson_get_id(root, "absent", buf, sizeof(buf)), -ENOENT);
    assert_int_equal(rawjson_get_id(root, "sl", buf, 10), -ENOSPC);
    json_decref(root);
    /* malformed input is reported, not crashed on */
    assert_null(rawjson_parse("{\"a\":123456789012345678901", 27, err, sizeof(err)));
    assert_null(rawjson_parse("{\"a\":1,\"a\":2}", 13, err, sizeof(err)));
}

/* RFC 4231 test case 2 (key "Jefe"), published HMAC-SHA256 vector, in the encodings the
 * platforms send: base64 (Shopify, Shopline docs) and hex (Shopline SDK). */
static void hmac_vectors(void **state)
{
    (void)state;
    const char *body = "what do ya want for nothing?";
    const char *hex = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const char *b64 = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";
    size_t n = strlen(body);
    assert_true(hmac_verify("Jefe", NULL, body, n, b64));
    assert_true(hmac_verify("Jefe", NULL, body, n, hex));
    assert_true(hmac_verify("new-secret", "Jefe", body, n, b64)); /* previous secret */
    assert_false(hmac_verify("wrong", NULL, body, n, b64));
    assert_false(hmac_verify("Jefe", NULL, "what do ya want for nothing!", n, b64));
    assert_false(hmac_verify("Jefe", NULL, body, n, NULL));
    assert_false(hmac_verify("Jefe", NULL, body, n, ""));
}

static const char shops_json[] =
    "{\"shops\":[{\"platform\":\"shopify\",\"domain\":\"a.myshopify.com\",\"api_base\":"
    "\"http://x\",\"access_token\":\"t\",\"webhook_secret\":\"s\",\"locations\":[{\"id\":"
    "9007199254740995,\"name\":\"Store A\",\"ledger\":\"STORE-A\"}]},{\"platform\":\"shopline\","
    "\"domain\":\"b.myshopline.com\",\"api_base\":\"http://x\",\"access_token\":\"t\","
    "\"webhook_secret\":\"s\"}]}";

static void shops_config(void **state)
{
    (void)state;
    struct shop_set set = {0};
    char err[256];
    assert_int_equal(shops_parse(&set, shops_json, strlen(shops_json), err, sizeof(err)), 0);
    assert_int_equal(set.n, 2);
    struct shop *s = shops_find(&set, "shopify", "A.myshopify.com");
    assert_non_null(s);
    assert_string_equal(s->key, "shopify/a.myshopify.com");
    assert_string_equal(shop_location_ledger(s, "9007199254740995"), "STORE-A");
    assert_null(shop_location_ledger(s, "9007199254740994"));
    shops_release(&set);
    const char *bad = "{\"shops\":[{\"platform\":\"shopify\",\"domain\":\"a\",\"api_base\":\"x\","
                      "\"access_token\":\"t\"}]}";
    assert_int_equal(shops_parse(&set, bad, strlen(bad), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "webhook_secret"));
    shops_release(&set);
    const char *unknown =
        "{\"shops\":[{\"platform\":\"etsy\",\"domain\":\"a\",\"api_base\":\"x\"}]}";
    assert_int_equal(shops_parse(&set, unknown, strlen(unknown), err, sizeof(err)), -EINVAL);
    shops_release(&set);
}

static const char sf_order[] =
    "{\"id\":9007199254740993,\"admin_graphql_api_id\":\"gid://shopify/Order/9007199254740993\","
    "\"name\":\"#1001\",\"updated_at\":\"2026-11-24T10:00:00.123Z\",\"cancelled_at\":null,"
    "\"currency\":\"USD\",\"financial_status\":\"paid\",\"source_name\":\"pos\",\"location_id\":"
    "9007199254740995,\"subtotal_price\":\"20.00\",\"total_discounts\":\"0.00\",\"total_tax\":"
    "\"2.00\",\"total_price\":\"22.00\",\"line_items\":[{\"id\":9007199254741001,\"variant_id\":"
    "9007199254741003,\"product_id\":9007199254741005,\"sku\":\"SKU-1\",\"title\":\"T\","
    "\"quantity\":2,\"price\":\"10.00\",\"requires_shipping\":false,\"tax_lines\":[{\"title\":"
    "\"VAT\",\"rate\":0.1,\"price\":\"2.00\"}],\"discount_allocations\":[]}],\"fulfillments\":"
    "[{\"id\":9007199254741007,\"location_id\":9007199254740995,\"status\":\"success\","
    "\"created_at\":\"2026-11-24T10:00:00.123Z\",\"line_items\":[{\"id\":9007199254741001,"
    "\"sku\":\"SKU-1\",\"quantity\":2}]}],\"refunds\":[{\"id\":9007199254741009,\"created_at\":"
    "\"2026-11-24T11:00:00Z\",\"refund_line_items\":[{\"line_item_id\":9007199254741001,"
    "\"quantity\":1,\"restock_type\":\"return\",\"location_id\":9007199254740995,\"subtotal\":"
    "\"10.00\",\"total_tax\":\"1.00\",\"line_item\":{\"sku\":\"SKU-1\"}}]}]}";

static void shopify_pos_order(void **state)
{
    (void)state;
    struct shop_set set = {0};
    char err[256];
    assert_int_equal(shops_parse(&set, shops_json, strlen(shops_json), err, sizeof(err)), 0);
    struct shop *s = shops_find(&set, "shopify", "a.myshopify.com");
    json_t *root = rawjson_parse(sf_order, strlen(sf_order), err, sizeof(err));
    assert_non_null(root);
    struct arena a = {0};
    struct order_doc doc;
    assert_int_equal(s->ops->parse_order(s, "orders/create", root, &a, &doc, err, sizeof(err)), 0);
    assert_int_equal(doc.kind, DOC_ORDER);
    assert_string_equal(doc.order->order->id, "9007199254740993");
    assert_string_equal(doc.order->order->gid, "gid://shopify/Order/9007199254740993");
    assert_true(doc.order->in_store_sale);
    assert_string_equal(doc.order->platform_location_id, "9007199254740995");
    assert_true(doc.paid);
    assert_false(doc.cancelled);
    assert_int_equal(doc.order->n_lines, 1);
    assert_string_equal(doc.order->lines[0]->variant->id, "9007199254741003");
    assert_int_equal(doc.order->lines[0]->unit_price->minor_units, 1000);
    assert_int_equal(doc.order->lines[0]->tax_lines[0]->rate_ppm, 100000);
    assert_int_equal(doc.order->total->minor_units, 2200);
    assert_int_equal(doc.nfulfillments, 1);
    assert_string_equal(doc.fulfillments[0]->fulfillment_id, "9007199254741007");
    assert_int_equal(doc.nrefunds, 1);
    assert_int_equal(doc.refunds[0]->lines[0]->restock_type,
                     TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_RETURN);
    assert_int_equal(doc.refunds[0]->amount->minor_units, 1100);
    json_decref(root);
    /* a payload with an unknown restock type is refused, not guessed */
    char *bad = strdup(sf_order);
    char *p = strstr(bad, "\"return\"");
    memcpy(p, "\"retXrn\"", 8);
    root = rawjson_parse(bad, strlen(bad), err, sizeof(err));
    assert_int_equal(s->ops->parse_order(s, "orders/updated", root, &a, &doc, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "restock_type"));
    json_decref(root);
    free(bad);
    /* an order without updated_at is refused */
    root = rawjson_parse("{\"id\":1,\"line_items\":[]}", 24, err, sizeof(err));
    assert_int_equal(s->ops->parse_order(s, "orders/create", root, &a, &doc, err, sizeof(err)),
                     -EINVAL);
    json_decref(root);
    arena_release(&a);
    shops_release(&set);
}

static void shopline_refund_26_digits(void **state)
{
    (void)state;
    struct shop_set set = {0};
    char err[256];
    assert_int_equal(shops_parse(&set, shops_json, strlen(shops_json), err, sizeof(err)), 0);
    struct shop *s = shops_find(&set, "shopline", "b.myshopline.com");
    const char *in = "{\"id\":18057039439794751459380290,\"order_id\":18057039439794751459380282,"
                     "\"created_at\":\"2026-11-24T10:00:00Z\",\"refund_line_items\":[{"
                     "\"line_item_id\":18057039439794751459380283,\"quantity\":1,"
                     "\"restock_type\":\"no_restock\",\"location_id\":null,\"subtotal\":\"5.00\","
                     "\"total_tax\":\"0.00\",\"line_item\":{\"sku\":\"S\"}}]}";
    json_t *root = rawjson_parse(in, strlen(in), err, sizeof(err));
    assert_non_null(root);
    struct arena a = {0};
    struct order_doc doc;
    assert_int_equal(s->ops->parse_order(s, "refunds/create", root, &a, &doc, err, sizeof(err)), 0);
    assert_int_equal(doc.kind, DOC_REFUND);
    assert_string_equal(doc.order->order->id, "18057039439794751459380282");
    assert_string_equal(doc.refunds[0]->refund_id, "18057039439794751459380290");
    assert_string_equal(doc.refunds[0]->lines[0]->line_id, "18057039439794751459380283");
    assert_int_equal(doc.refunds[0]->lines[0]->restock_type,
                     TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_NO_RESTOCK);
    assert_int_equal(s->ops->parse_order(s, "app/uninstalled", root, &a, &doc, err, sizeof(err)),
                     0);
    assert_int_equal(doc.kind, DOC_IGNORED);
    json_decref(root);
    arena_release(&a);
    shops_release(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quote_big_ints),    cmocka_unit_test(ids_exact),
        cmocka_unit_test(hmac_vectors),      cmocka_unit_test(shops_config),
        cmocka_unit_test(shopify_pos_order), cmocka_unit_test(shopline_refund_26_digits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
