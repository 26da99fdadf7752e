/*
 * platform — the one interface behind which each shop platform sits (DESIGN.md "Shop
 * platforms"). One file per platform fills a struct platform_ops (platform_shopify.c,
 * platform_shopline.c); platform_find() looks them up by name, so a third platform is one new
 * file plus one line in the table in platform.c. The outbound push (issue 7) adds its own
 * operations to this struct.
 *
 * Adapters turn platform JSON into struct order_doc: a platform-neutral view of one payload,
 * with protobuf messages (ShopOrder, Refund, Fulfillment) allocated in a caller's arena. The
 * intake (intake.c) maps SKUs and locations, decides which business facts are new and
 * publishes them; adapters never touch Kafka or Postgres.
 */
#ifndef SHOP_PLATFORM_H
#define SHOP_PLATFORM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ratelimit.h"
#include "shops.h"
#include "tillsync/v1/catalog.pb-c.h"
#include "tillsync/v1/order.pb-c.h"

/* Pseudo-topic under which polled orders (the platform API's order shape) are parsed, stored
 * in the dead-letter table and replayed. */
#define PLATFORM_TOPIC_POLLED "tillsync/polled_order"

enum doc_kind {
    DOC_IGNORED,     /* a topic the connector does not act on */
    DOC_ORDER,       /* a whole order as of updated_at */
    DOC_REFUND,      /* one refund of order_id */
    DOC_FULFILLMENT, /* one fulfillment of order_id */
    DOC_READY,       /* order_id's pickup lines were prepared */
};

/*
 * One parsed payload. Everything lives in the arena passed to the parser. `order` is always
 * set and holds at least platform, shop and order ids; for DOC_ORDER it is the whole order.
 * Lines carry the platform's variant / inventory item ids and SKU text as written; sku mapping
 * and ledger locations are filled later by the intake.
 */
struct order_doc {
    enum doc_kind kind;
    Tillsync__V1__ShopOrder *order;
    int64_t updated_at_ms; /* the payload's updated_at (refund / fulfillment time for those) */
    bool paid;             /* financial status is paid or later */
    bool cancelled;
    bool ready_for_pickup;
    int64_t cancelled_at_ms;
    Tillsync__V1__Refund **refunds;
    int64_t *refund_at_ms;
    size_t nrefunds;
    Tillsync__V1__Fulfillment **fulfillments;
    int64_t *fulfillment_at_ms;
    size_t nfulfillments;
};

/* One variant of the platform catalogue, as a CatalogItem (arena-allocated). */
struct catalog_page {
    Tillsync__V1__CatalogItem **items;
    size_t n;
};

/* ---- outbound: available-to-sell (push.c, issue 7) ---- */

/* What became of one quantity in a write call. */
enum level_outcome {
    LEVEL_NOT_APPLIED = 0, /* not written (another quantity of an atomic call failed): resend */
    LEVEL_OK,              /* written */
    LEVEL_STALE,           /* compare-and-set: the platform holds another figure; re-read */
    LEVEL_REJECTED,        /* refused for good (unknown item, invalid location, ...) */
};

/* One quantity to write; the id strings are borrowed for the call. */
struct level_write {
    const char *item_id;     /* platform inventory item id, decimal text */
    const char *location_id; /* platform location id, decimal text */
    int64_t quantity;        /* absolute available figure */
    int64_t compare;         /* figure it replaces (compare-and-set platforms only) */
    enum level_outcome outcome;
    char reason[160]; /* "CODE: message" for STALE and REJECTED */
};

/* One figure to read. */
struct level_read {
    const char *item_id;
    const char *location_id;
    bool found;        /* the platform reported this item at this location */
    int64_t available; /* its available quantity when found */
};

/* What an answer said about the platform's rate limit. */
struct platform_budget {
    long available;      /* tokens the platform says are left; -1 = not reported */
    long retry_after_ms; /* Retry-After; -1 = none */
};

/* Called for each order found by a poll: doc parsed from raw[0..rawlen) (JSON text stored for
 * dead-letter replay under PLATFORM_TOPIC_POLLED). Return 0 to go on, negative to stop. */
typedef int (*platform_order_cb)(void *opaque, const char *raw, size_t rawlen);

struct platform_ops {
    const char *name;                /* "shopify": SHOPS_FILE's platform and the key prefix */
    Tillsync__V1__Platform platform; /* protobuf enum */
    int source_system;               /* Tillsync__V1__SourceSystem */
    const char *default_api_version;
    /* webhook headers */
    const char *hdr_signature; /* "X-Shopify-Hmac-Sha256" */
    const char *hdr_topic;
    const char *hdr_domain;
    const char *hdr_webhook_id;
    const char *hdr_event_id; /* preferred dedupe id when present; NULL = webhook id only */
    /* true when "ready for pickup" arrives as its own webhook while the order payload does not
     * show it (Shopify): an order update of an unfulfilled pickup order is then that change,
     * not a separate UPDATED fact */
    bool ready_is_separate;

    /* true when signature is a valid HMAC of body under the shop's secret or previous secret. */
    bool (*verify)(const struct shop *shop, const char *body, size_t len, const char *signature);

    /* Parse one order-family payload of topic (or PLATFORM_TOPIC_POLLED) into doc.
     * Returns 0 (doc->kind DOC_IGNORED for topics not acted on) or -EINVAL with err. */
    int (*parse_order)(const struct shop *shop, const char *topic, const json_t *root,
                       struct arena *a, struct order_doc *doc, char *err, size_t errlen);

    /* true when topic is a product payload (products/create, products/update). */
    bool (*is_product_topic)(const char *topic);

    /* Parse a product payload (webhook) into CatalogItems. Returns 0 or -EINVAL with err. */
    int (*parse_product)(const struct shop *shop, const json_t *root, struct arena *a,
                         struct catalog_page *out, char *err, size_t errlen);

    /* Fetch the whole catalogue through the platform API into out. Returns 0 or negative. */
    int (*list_catalog)(const struct shop *shop, struct arena *a, struct catalog_page *out,
                        char *err, size_t errlen);

    /* List orders updated at or after since_ms through the API, oldest first, calling cb with
     * each order's JSON. *max_updated_ms gets the newest updated_at seen (unchanged when none).
     * Returns 0 or negative with err. */
    int (*list_orders_since)(const struct shop *shop, int64_t since_ms, platform_order_cb cb,
                             void *opaque, int64_t *max_updated_ms, char *err, size_t errlen);

    /* ---- outbound ---- */
    const char *rate_api;   /* ratelimit_key() api of the inventory calls: "graphql" / "rest" */
    long write_cost;        /* tokens one write call costs (Shopify mutation 10, REST call 1) */
    size_t max_write_batch; /* quantities per write call (Shopify 250, Shopline 1) */
    size_t max_read_batch;  /* figures per read call */
    bool compare_and_set;   /* writes state the figure they replace (LEVEL_STALE possible) */

    /* Tokens one read call of n figures costs. */
    long (*read_cost)(size_t n);

    /*
     * Write w[0..n) (n <= max_write_batch) as absolute available figures in one call, with
     * idem_key as the platform's idempotency key where it has one. Returns 0 when the platform
     * answered (each w[i].outcome set), -EAGAIN when throttled (429 / THROTTLED), -EIO on a
     * transient failure (5xx, timeout, transport, unreadable answer); budget is filled from the
     * answer either way. Never sends a delta.
     */
    int (*set_levels)(const struct shop *shop, struct level_write *w, size_t n,
                      const char *idem_key, struct platform_budget *budget, char *err,
                      size_t errlen);

    /* Read r[0..n) (n <= max_read_batch). Same returns as set_levels; r[i].found false when
     * the platform does not stock the item there (or does not know it). */
    int (*read_levels)(const struct shop *shop, struct level_read *r, size_t n,
                       struct platform_budget *budget, char *err, size_t errlen);
};

/* The shared API budgets of the shops as configured (SHOPIFY_BUCKET_POINTS and so on). */
struct platform_budgets {
    long shopify_bucket, shopify_restore, shopline_bucket, shopline_rate;
};

/*
 * Fill b with shop's shared bucket of tenant (the one the push, the intake and loyalty-sync all
 * take from): capacity and rate of its platform from budgets, key written into key[keycap] and
 * borrowed by b. Returns 0, or -EINVAL with err when the key does not fit.
 */
int platform_bucket(const struct shop *shop, const char *tenant,
                    const struct platform_budgets *budgets, struct ratelimit_bucket *b, char *key,
                    size_t keycap, char *err, size_t errlen);

/* The adapter registered under name, or NULL. */
const struct platform_ops *platform_find(const char *name);

/* ---- shared helpers for adapters (platform.c) ---- */

/* Fields in which two REST dialects of the same order and product shapes differ. */
struct rest_dialect {
    const char *source_field; /* "source_name" (Shopify) / "order_source" (Shopline) */
    bool gid;                 /* payload has admin_graphql_api_id; ids get GIDs alongside */
    const char *gid_prefix;   /* "gid://shopify/" */
    /* products: "requires_shipping" (Shopify) / "required_shipping" (Shopline) */
    const char *requires_shipping_field;
    /* products: the field saying stock is tracked: "inventory_management" (Shopify: tracked
     * when a non-empty string) / "inventory_tracker" (Shopline: tracked when JSON true) */
    const char *tracked_field;
    bool tracked_is_string;
};

/* Parse a REST order object (Shopify and Shopline share the shape) into doc as DOC_ORDER. */
int rest_order_parse(const struct shop *shop, const struct rest_dialect *d, const json_t *o,
                     struct arena *a, struct order_doc *doc, char *err, size_t errlen);

/* Parse a REST product object (products webhook, Shopline products.json, Shopify's GraphQL
 * catalogue rewritten into that shape): one CatalogItem per variant, appended to out (arena
 * items; out->items is replaced by a larger arena array). Returns 0 or -EINVAL with err. */
int rest_product_parse(const struct shop *shop, const struct rest_dialect *d, const json_t *p,
                       struct arena *a, struct catalog_page *out, char *err, size_t errlen);

/* Parse a REST refund (refunds/create) into a Refund; *at_ms gets created_at. */
int rest_refund_parse(const struct shop *shop, const char *currency, const json_t *r,
                      struct arena *a, Tillsync__V1__Refund **out, int64_t *at_ms, char *err,
                      size_t errlen);

/* Parse a REST fulfillment into a Fulfillment; *at_ms gets updated_at or created_at. */
int rest_fulfillment_parse(const json_t *f, struct arena *a, Tillsync__V1__Fulfillment **out,
                           int64_t *at_ms, char *err, size_t errlen);

/* A new order_doc->order with platform, shop and ids set (gid may be NULL). */
Tillsync__V1__ShopOrder *order_new(const struct shop *shop, struct arena *a, const char *id,
                                   const char *gid);

/* An arena PlatformId. */
Tillsync__V1__PlatformId *platform_id_new(struct arena *a, const char *id, const char *gid);

/* An arena Money of a decimal text amount ("12.34"); 0 when absent. -EINVAL on bad text. */
int money_new(struct arena *a, const char *text, const char *currency, Tillsync__V1__Money **out,
              char *err, size_t errlen);

/* RFC 3339 field to ms; 0 when absent or null; -EINVAL with err on bad text. */
int time_field(const json_t *o, const char *key, int64_t *ms, char *err, size_t errlen);

#endif
