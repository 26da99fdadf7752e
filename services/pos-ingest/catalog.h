/*
 * catalog — the shop catalogue as tills need it, kept in memory from the compacted topic
 * catalog.items.v1 (every replica reads the whole topic from the start with its own consumer
 * group, so the map is complete after the first catch-up; nothing is persisted).
 *
 * Thread-safety: one writer (the consumer loop) and many readers (HTTP workers) under a
 * read-write lock.
 */
#ifndef POS_INGEST_CATALOG_H
#define POS_INGEST_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct catalog;

/* A new empty catalogue. Never NULL (aborts on OOM). Free with catalog_free(). */
struct catalog *catalog_new(void);

void catalog_free(struct catalog *c);

/*
 * Apply one record of catalog.items.v1: key "<platform>/<shop>/<variant>", payload a
 * CatalogItemEvent; an empty payload (tombstone) or item.deleted removes the key.
 * Returns 0, or -EINVAL with err when the payload does not decode (the record is skipped).
 */
int catalog_apply(struct catalog *c, const void *key, size_t keylen, const void *payload,
                  size_t len, char *err, size_t errlen);

/* true when some live item carries sku; *requires_shipping then says whether it ships.
 * Matches posjson_ctx.sku_lookup (opaque = the catalog). */
bool catalog_sku_lookup(void *opaque, const char *sku, bool *requires_shipping);

/*
 * Items changed at or after since_ms (platform update or price change), or with
 * price_changes_only only those whose price changed at or after since_ms; at most limit,
 * ordered by SKU then key. Returns a new JSON array (caller decrefs); *more is set when
 * the limit cut the list.
 */
json_t *catalog_list(struct catalog *c, int64_t since_ms, bool price_changes_only, size_t limit,
                     bool *more);

/* Number of live items. */
size_t catalog_size(struct catalog *c);

#endif
