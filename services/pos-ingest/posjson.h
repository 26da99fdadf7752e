/*
 * posjson — turns one till request body (already parsed JSON) into the protobuf fact it
 * describes: a transaction (sale, return, exchange, void), a stock movement (received,
 * transfers, count, damage, shrinkage, snapshot, adjustment) or an end-of-day takings
 * declaration. All validation lives here, with no network and no global state but the pool of
 * released item memory (posjson_pool_limit), so it can be unit-tested and fuzzed: every problem
 * is reported with the HTTP status it deserves, a stable code and the JSON path of the field
 * ("lines[2].quantity").
 *
 * Memory: everything a parsed item points to (protobuf messages, strings copied out of the
 * JSON) lives in the item's own arena; pos_item_release() frees it all at once, keeping its
 * blocks for the next items up to posjson_pool_limit().
 */
#ifndef POS_INGEST_POSJSON_H
#define POS_INGEST_POSJSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mapping.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

/* What the validation needs to know about the world. */
struct posjson_ctx {
    const char *tenant_id;         /* namespaces the deterministic event ids */
    const struct mapping *mapping; /* store codes, locations, non-stock codes; never NULL */
    const char *auth_store;        /* the store the API key belongs to; NULL = any store */
    int64_t now_ms;                /* wall clock, for "in the future" checks */
    int64_t max_future_ms;         /* how far ahead of now an occurred_at may be */
    bool uploaded_late;            /* the item came in an offline batch */
    /* SKU lookup: true when the catalogue knows sku; *requires_shipping set then. NULL = every
     * SKU is known (requires shipping). Called on the caller's thread. */
    bool (*sku_lookup)(void *opaque, const char *sku, bool *requires_shipping);
    void *sku_opaque;
};

/* A validation failure: HTTP status (400/403/422), a stable code, the field's JSON path
 * (may be "" for the body as a whole) and a sentence naming it. */
struct posjson_error {
    int status;
    char code[40];
    char field[160];
    char message[512];
};

enum pos_item_kind { POS_ITEM_TRANSACTION = 1, POS_ITEM_MOVEMENT, POS_ITEM_TAKINGS };

struct pos_arena_block;

/* A validated fact ready to publish. Invariant once posjson_* returned 0: exactly the message
 * of `kind` is set; event_id is the deterministic id of the fact; key is the Kafka key;
 * body_hash fingerprints the request (a reused id with other content is a conflict). */
struct pos_item {
    enum pos_item_kind kind;
    Tillsync__V1__PosTransaction *transaction;
    Tillsync__V1__StockMovement *movement;
    Tillsync__V1__TakingsDeclaration *takings;
    int64_t occurred_at_ms;
    char event_id[37];
    char key[300];
    char body_hash[65];
    const char *source_name;   /* the till / WMS / ERP that sent it */
    int source;                /* Tillsync__V1__SourceSystem */
    const char **unknown_skus; /* SKUs not in the catalogue (exceptions to raise) */
    size_t n_unknown_skus;
    const char **unmapped_codes; /* non-stock codes without a ledger code */
    size_t n_unmapped_codes;
    struct pos_arena_block *arena;
};

/* Keep up to `bytes` of released item memory for the next items (0, the default until called:
 * none; lowering it frees the excess at once). Any thread. */
void posjson_pool_limit(size_t bytes);

/* Bytes of released item memory the pool keeps now. */
size_t posjson_pool_kept(void);

/* Validate a transaction / movement / takings object and fill out (caller-owned, need not be
 * initialised). Returns 0, or -EINVAL with e filled (out then holds nothing to release, but
 * pos_item_release is still safe). */
int posjson_transaction(const json_t *obj, const struct posjson_ctx *ctx, struct pos_item *out,
                        struct posjson_error *e);
int posjson_movement(const json_t *obj, const struct posjson_ctx *ctx, struct pos_item *out,
                     struct posjson_error *e);
int posjson_takings(const json_t *obj, const struct posjson_ctx *ctx, struct pos_item *out,
                    struct posjson_error *e);

/* One item of an offline batch: its array (0 "transactions", 1 "movements") and its bytes. */
struct posjson_span {
    int group;
    size_t off, len;
};

/*
 * Fast path for an offline batch: splits b[0..n) = {"transactions":[{...},...],
 * "movements":[{...},...]} into the byte spans of its items without building the whole tree,
 * so each item can be parsed, validated and freed alone (a 12 MB batch as one jansson tree
 * takes hundreds of MB). Transactions come first, then movements, each in body order.
 * Returns the item count (>= 1) with *out malloc'd (the caller frees it), or -EINVAL when the
 * body is anything else: not JSON, another or a repeated or an escaped key, an item that is
 * not an object, nesting deeper than 64, no items or more than max_items. The caller then
 * parses the whole body, which names the problem. The items are read as strictly as
 * json_loadb(..., JSON_REJECT_DUPLICATES) reads them (UTF-8, escapes, number ranges, repeated
 * keys): a body split here is JSON, so the caller may act on its first items before it has
 * parsed the last.
 */
int posjson_batch_split(const char *b, size_t n, size_t max_items, struct posjson_span **out);

/* Free everything the item holds. Safe on a zeroed or already released item. */
void pos_item_release(struct pos_item *it);

#endif
