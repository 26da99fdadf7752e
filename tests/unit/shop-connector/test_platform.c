/*
 * Unit tests: the adapters' product parsing (both platforms share rest_product_parse with
 * their own field names) and the per-shop tax code mapping of SHOPS_FILE.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "platform.h"
#include "rawjson.h"
#include "shops.h"

static const char shops_json[] =
    "{\"shops\":[{\"platform\":\"shopify\",\"domain\":\"a.myshopify.com\",\"api_base\":\"x\","
    "\"access_token\":\"t\",\"webhook_secret\":\"s\",\"currency\":\"GBP\",\"tax_codes\":["
    "{\"title\":\"VAT\",\"rate\":0.2,\"code\":\"GB-STD\"},"
    "{\"title\":\"vat\",\"rate\":0.05,\"code\":\"GB-RED\"},"
    "{\"title\":\"Zero\",\"code\":\"GB-ZERO\"},"
    "{\"rate\":0.0825,\"code\":\"US-TX\"}]},"
    "{\"platform\":\"shopline\",\"domain\":\"b.myshopline.com\",\"api_base\":\"x\","
    "\"access_token\":\"t\",\"webhook_secret\":\"s\"}]}";

static struct shop_set load(void)
{
    struct shop_set set = {0};
    char err[256] = "";
    int rc = shops_parse(&set, shops_json, strlen(shops_json), err, sizeof(err));
    if (rc != 0)
        fail_msg("shops_parse: %s", err);
    return set;
}

static void shopify_product(void **state)
{
    (void)state;
    struct shop_set set = load();
    struct shop *s = shops_find(&set, "shopify", "a.myshopify.com");
    const char *in =
        "{\"id\":9007199254740993,\"admin_graphql_api_id\":\"gid://shopify/Product/"
        "9007199254740993\",\"title\":\"Shirt\",\"updated_at\":\"2026-11-24T10:00:00Z\","
        "\"variants\":[{\"id\":9007199254741001,\"admin_graphql_api_id\":\"gid://shopify/"
        "ProductVariant/9007199254741001\",\"title\":\"S\",\"sku\":\"SH-S\",\"barcode\":\"123\","
        "\"price\":\"12.50\",\"inventory_item_id\":9007199254741011,\"requires_shipping\":true,"
        "\"required_shipping\":false,\"inventory_management\":\"shopify\"},"
        "{\"id\":9007199254741002,\"title\":\"M\",\"sku\":\"SH-M\",\"price\":\"13.00\","
        "\"requires_shipping\":false,\"inventory_management\":null}]}";
    char err[256];
    json_t *root = rawjson_parse(in, strlen(in), err, sizeof(err));
    assert_non_null(root);
    struct arena a = {0};
    struct catalog_page page = {0};
    assert_true(s->ops->is_product_topic("products/update"));
    assert_false(s->ops->is_product_topic("orders/create"));
    assert_int_equal(s->ops->parse_product(s, root, &a, &page, err, sizeof(err)), 0);
    assert_int_equal(page.n, 2);
    Tillsync__V1__CatalogItem *it = page.items[0];
    assert_int_equal(it->platform, TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY);
    assert_string_equal(it->shop_id, "a.myshopify.com");
    assert_string_equal(it->sku, "SH-S");
    assert_string_equal(it->barcode, "123");
    assert_string_equal(it->title, "Shirt");
    assert_string_equal(it->variant_title, "S");
    assert_string_equal(it->product->id, "9007199254740993");
    assert_string_equal(it->product->gid, "gid://shopify/Product/9007199254740993");
    assert_string_equal(it->variant->id, "9007199254741001");
    assert_string_equal(it->variant->gid, "gid://shopify/ProductVariant/9007199254741001");
    assert_string_equal(it->inventory_item->id, "9007199254741011");
    assert_string_equal(it->inventory_item->gid, "gid://shopify/InventoryItem/9007199254741011");
    assert_int_equal(it->price->minor_units, 1250);
    assert_string_equal(it->price->currency, "GBP");
    assert_true(it->requires_shipping); /* Shopify's field, not Shopline's */
    assert_true(it->tracked);
    assert_int_equal(it->platform_updated_at_ms, 1795514400000LL);
    it = page.items[1];
    assert_string_equal(it->variant->gid, "");
    assert_string_equal(it->inventory_item->id, "");
    assert_string_equal(it->inventory_item->gid, ""); /* no item id, no GID */
    assert_false(it->requires_shipping);
    assert_false(it->tracked);
    /* a second product appends to the page */
    assert_int_equal(s->ops->parse_product(s, root, &a, &page, err, sizeof(err)), 0);
    assert_int_equal(page.n, 4);
    assert_string_equal(page.items[0]->sku, "SH-S");
    assert_string_equal(page.items[3]->sku, "SH-M");
    json_decref(root);

    /* refusals: no product id, a variant without id, a bad price, a bad updated_at */
    const char *bad[] = {
        "{\"title\":\"x\",\"variants\":[]}",
        "{\"id\":1,\"variants\":[{\"sku\":\"A\"}]}",
        "{\"id\":1,\"variants\":[{\"id\":2,\"price\":\"ten\"}]}",
        "{\"id\":1,\"updated_at\":\"yesterday\",\"variants\":[]}",
    };
    const char *what[] = {"product id", "variants[0].id", "", "updated_at"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        root = rawjson_parse(bad[i], strlen(bad[i]), err, sizeof(err));
        assert_non_null(root);
        err[0] = '\0';
        assert_int_equal(s->ops->parse_product(s, root, &a, &page, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, what[i]));
        json_decref(root);
    }
    arena_release(&a);
    shops_release(&set);
}

static void shopline_product(void **state)
{
    (void)state;
    struct shop_set set = load();
    struct shop *s = shops_find(&set, "shopline", "b.myshopline.com");
    const char *in = "{\"id\":18057039439794751459380282,\"title\":\"Mug\",\"updated_at\":"
                     "\"2026-11-24T10:00:00Z\",\"admin_graphql_api_id\":\"ignored\",\"variants\":"
                     "[{\"id\":18057039439794751459380283,\"title\":\"Blue\",\"sku\":\"MUG-B\","
                     "\"barcode\":\"\",\"price\":\"8.00\",\"inventory_item_id\":"
                     "18057039439794751459380284,\"required_shipping\":true,\"requires_shipping\":"
                     "false,\"inventory_tracker\":true,\"admin_graphql_api_id\":\"ignored\"},"
                     "{\"id\":18057039439794751459380285,\"sku\":\"MUG-R\",\"price\":\"8.00\","
                     "\"required_shipping\":false,\"inventory_tracker\":\"shopify\","
                     "\"inventory_management\":\"shopify\"}]}";
    char err[256];
    json_t *root = rawjson_parse(in, strlen(in), err, sizeof(err));
    assert_non_null(root);
    struct arena a = {0};
    struct catalog_page page = {0};
    assert_int_equal(s->ops->parse_product(s, root, &a, &page, err, sizeof(err)), 0);
    assert_int_equal(page.n, 2);
    Tillsync__V1__CatalogItem *it = page.items[0];
    assert_int_equal(it->platform, TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE);
    assert_string_equal(it->product->id, "18057039439794751459380282");
    assert_string_equal(it->product->gid, ""); /* Shopline has no GIDs */
    assert_string_equal(it->variant->id, "18057039439794751459380283");
    assert_string_equal(it->variant->gid, "");
    assert_string_equal(it->inventory_item->id, "18057039439794751459380284");
    assert_string_equal(it->inventory_item->gid, "");
    assert_string_equal(it->price->currency, "USD");
    assert_int_equal(it->price->minor_units, 800);
    assert_true(it->requires_shipping); /* Shopline's "required_shipping" */
    assert_true(it->tracked);           /* inventory_tracker: true */
    it = page.items[1];
    assert_false(it->requires_shipping);
    assert_false(it->tracked); /* only a JSON true counts on Shopline */
    json_decref(root);
    arena_release(&a);
    shops_release(&set);
}

static void tax_codes(void **state)
{
    (void)state;
    struct shop_set set = load();
    struct shop *sf = shops_find(&set, "shopify", "a.myshopify.com");
    struct shop *sl = shops_find(&set, "shopline", "b.myshopline.com");
    assert_int_equal(sf->ntax_codes, 4);
    assert_int_equal(sl->ntax_codes, 0);
    assert_string_equal(shop_tax_code(sf, "VAT", 200000), "GB-STD");
    assert_string_equal(shop_tax_code(sf, "vat", 200000), "GB-STD"); /* title: any case */
    assert_string_equal(shop_tax_code(sf, "VAT", 50000), "GB-RED");
    assert_null(shop_tax_code(sf, "VAT", 100000));                /* known title, unknown rate */
    assert_null(shop_tax_code(sf, "Sales tax", 200000));          /* unknown title */
    assert_string_equal(shop_tax_code(sf, "Zero", 0), "GB-ZERO"); /* no rate: any rate */
    assert_string_equal(shop_tax_code(sf, "Zero", 123), "GB-ZERO");
    assert_string_equal(shop_tax_code(sf, "TX State Tax", 82500), "US-TX"); /* no title */
    assert_null(shop_tax_code(sf, NULL, 1));
    /* a shop without tax_codes maps nothing: the intake then requires no mapping */
    assert_null(shop_tax_code(sl, "VAT", 200000));
    shops_release(&set);

    /* configuration errors name the entry */
    const char *bad[] = {
        "[{\"title\":\"VAT\",\"rate\":0.2}]",                    /* no code */
        "[{\"code\":\"X\"}]",                                    /* neither title nor rate */
        "[{\"title\":\"VAT\",\"rate\":\"0.2\",\"code\":\"X\"}]", /* rate not a number */
        "[{\"title\":\"VAT\",\"rate\":-0.1,\"code\":\"X\"}]",    /* negative */
        "{\"VAT\":\"X\"}",                                       /* not an array */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512], err[256] = "";
        snprintf(text, sizeof(text),
                 "{\"shops\":[{\"platform\":\"shopline\",\"domain\":\"b\",\"api_base\":\"x\","
                 "\"access_token\":\"t\",\"webhook_secret\":\"s\",\"tax_codes\":%s}]}",
                 bad[i]);
        struct shop_set s2 = {0};
        assert_int_equal(shops_parse(&s2, text, strlen(text), err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "shops[0].tax_codes"));
        shops_release(&s2);
    }
}

/* Tax lines of a parsed order keep the payload's title as name and code until the intake maps
 * them; a rate written as a decimal string (Shopline) is read like a number. */
static void tax_lines_parsed(void **state)
{
    (void)state;
    struct shop_set set = load();
    struct shop *sl = shops_find(&set, "shopline", "b.myshopline.com");
    const char *in = "{\"id\":18057039439794751459380282,\"updated_at\":\"2026-11-24T10:00:00Z\","
                     "\"line_items\":[{\"id\":1,\"sku\":\"A\",\"quantity\":1,\"price\":\"10.00\","
                     "\"tax_lines\":[{\"title\":\"GST\",\"rate\":\"0.09\",\"price\":\"0.90\"},"
                     "{\"title\":\"Levy\",\"rate\":0.015,\"price\":\"0.15\"},"
                     "{\"title\":\"Odd\",\"rate\":\"lots\",\"price\":\"0.00\"}]}]}";
    char err[256];
    json_t *root = rawjson_parse(in, strlen(in), err, sizeof(err));
    assert_non_null(root);
    struct arena a = {0};
    struct order_doc doc;
    assert_int_equal(sl->ops->parse_order(sl, "orders/create", root, &a, &doc, err, sizeof(err)),
                     0);
    Tillsync__V1__OrderLine *ln = doc.order->lines[0];
    assert_int_equal(ln->n_tax_lines, 3);
    assert_string_equal(ln->tax_lines[0]->name, "GST");
    assert_string_equal(ln->tax_lines[0]->code, "GST");
    assert_int_equal(ln->tax_lines[0]->rate_ppm, 90000);
    assert_int_equal(ln->tax_lines[0]->amount->minor_units, 90);
    assert_int_equal(ln->tax_lines[1]->rate_ppm, 15000);
    assert_int_equal(ln->tax_lines[2]->rate_ppm, 0); /* unreadable rate: 0, as before */
    json_decref(root);
    arena_release(&a);
    shops_release(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shopify_product),
        cmocka_unit_test(shopline_product),
        cmocka_unit_test(tax_codes),
        cmocka_unit_test(tax_lines_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
