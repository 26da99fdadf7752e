/*
 * shops — which shops this connector serves, read from a JSON file (SHOPS_FILE).
 *
 *   {"shops": [{
 *      "platform": "shopify" | "shopline",
 *      "domain": "acme.myshopify.com",          shop domain as the webhook headers carry it
 *      "api_base": "https://acme.myshopify.com", (tests: the simulator's http://127.0.0.1:PORT)
 *      "api_version": "2025-01" | "v20240301",
 *      "currency": "USD",                        fallback when a payload has none
 *      "access_token": "...",  or "access_token_env": "VAR" (VAR or VAR_FILE is read)
 *                              or "access_token_file": "/run/secrets/x"
 *      "webhook_secret": ..., "webhook_secret_env": ..., "webhook_secret_file": ...
 *      "previous_webhook_secret"(_env|_file): the secret before a rotation, accepted too
 *      "locations": [{"id": "<platform location id>", "name": "Store A", "ledger": "STORE-A"}],
 *      "tax_codes": [{"title": "VAT", "rate": 0.2, "code": "GB-VAT-STD"}, ...]
 *   }]}
 *
 * tax_codes maps the payload's tax lines (title, rate as a fraction) to the tenant's accounting
 * tax codes: the first entry whose title (case-insensitive, when given) and rate (exactly, in
 * parts per million, when given) match. With tax_codes configured, an order with a tax line no
 * entry matches is dead-lettered (TAX_MAPPING_FAILED); a shop without tax_codes requires no
 * mapping and its tax lines keep the payload's title as code.
 *
 * Secrets are better given by _env or _file than inline. A shop's key is
 * "<platform>/<domain>" (the Kafka key prefix of its orders).
 */
#ifndef SHOP_SHOPS_H
#define SHOP_SHOPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct platform_ops;

/* A platform location and the ledger location it stands for. */
struct shop_location {
    char *platform_id; /* decimal id text */
    char *name;        /* may be "" */
    char *ledger;      /* ledger location code */
};

/* One tax_codes entry. */
struct shop_tax_code {
    char *title;      /* "" = any title */
    int64_t rate_ppm; /* -1 = any rate */
    char *code;       /* accounting tax code, never "" */
};

/* One configured shop; every string is owned by the shop_set. */
/*
 * The shop's API budget, shared with the outbound push, other replicas and loyalty-sync (one
 * token bucket per tenant, shop and API in Redis). The intake attaches it after parsing; the
 * adapters' own calls (catalogue pages, the missed-webhook poll) take their cost from it before
 * each request and report what the platform says is left. NULL: no shared budget.
 */
struct shop;

struct shop_rate {
    /* Wait until cost tokens are taken; false with err when the budget stays unavailable. */
    bool (*take)(void *ctx, const struct shop *shop, long cost, char *err, size_t errlen);
    /* The platform reported available tokens left (Shopify's throttleStatus). */
    void (*correct)(void *ctx, const struct shop *shop, long available);
    void *ctx;
};

struct shop {
    const struct platform_ops *ops;
    const struct shop_rate *rate; /* set by the intake; NULL = none */
    char *platform;               /* "shopify" */
    char *domain;
    char *key; /* "shopify/acme.myshopify.com" */
    char *api_base;
    char *api_version;
    char *currency;
    char *access_token;
    char *webhook_secret;
    char *previous_webhook_secret; /* "" when none */
    struct shop_location *locations;
    size_t nlocations;
    struct shop_tax_code *tax_codes; /* in file order; NULL when none */
    size_t ntax_codes;               /* 0 = tax lines need no mapping */
};

struct shop_set {
    struct shop *shops;
    size_t n;
};

/* Parse the configuration text into set (caller-owned, zeroed). Returns 0, or -EINVAL with
 * err naming the shop and field ("shops[1].webhook_secret: missing"). Release with
 * shops_release() whatever this returns. */
int shops_parse(struct shop_set *set, const char *text, size_t len, char *err, size_t errlen);

/* Read and parse the file at path. Returns 0 or negative with err. */
int shops_load_file(struct shop_set *set, const char *path, char *err, size_t errlen);

/* Free the contents of set. */
void shops_release(struct shop_set *set);

/* The shop of platform and domain (case-insensitive domain), or NULL. */
struct shop *shops_find(const struct shop_set *set, const char *platform, const char *domain);

/* The ledger location of a platform location id, or NULL when unmapped. */
const char *shop_location_ledger(const struct shop *shop, const char *platform_id);

/* The location whose name equals name (case-insensitive), or NULL. */
const struct shop_location *shop_location_by_name(const struct shop *shop, const char *name);

/* The accounting code of a tax line titled title at rate_ppm: the first of shop's tax_codes that
 * matches, or NULL (always NULL for a shop without tax_codes). Borrowed from the shop. */
const char *shop_tax_code(const struct shop *shop, const char *title, int64_t rate_ppm);

#endif
