/*
 * mapping — the tenant's static intake configuration, read from a JSON file (POS_MAPPING_FILE):
 * which ledger location each till store code stands for, which other ledger locations exist
 * (warehouses, for movements sent by a WMS or ERP), and the ledger code and "needs no shipping"
 * flag of each non-stock code (carrier bag, service charge, gift card sale, repair fee).
 *
 *   {"stores":    {"S001": {"location_id": "LOC-S001"}},
 *    "locations": ["WH-1"],
 *    "non_stock": {"BAG": {"ledger_code": "4010", "needs_no_shipping": true}}}
 *
 * A loaded mapping is immutable, so lookups need no lock and may run on any thread.
 */
#ifndef POS_INGEST_MAPPING_H
#define POS_INGEST_MAPPING_H

#include <stdbool.h>
#include <stddef.h>

struct mapping;

/* Build a mapping from JSON text. Returns NULL with err naming the bad entry
 * (e.g. "stores.S001.location_id: missing"). Free with mapping_free(). */
struct mapping *mapping_parse(const char *text, size_t len, char *err, size_t errlen);

/* Read and parse the file at path. Returns NULL with err on an unreadable or bad file. */
struct mapping *mapping_load(const char *path, char *err, size_t errlen);

/* An empty mapping (no stores, no codes): every store is unknown. Never NULL (aborts on OOM). */
struct mapping *mapping_empty(void);

/* The ledger location of a store code, or NULL when the store is unknown. Owned by m. */
const char *mapping_store_location(const struct mapping *m, const char *store_code);

/* true when location_id is a known ledger location (a store's or a listed one). */
bool mapping_location_known(const struct mapping *m, const char *location_id);

/* The ledger code and needs-no-shipping flag of a non-stock code. Returns 0 (ledger_code owned
 * by m), or -ENOENT when the code is not mapped. */
int mapping_non_stock(const struct mapping *m, const char *code, const char **ledger_code,
                      bool *needs_no_shipping);

void mapping_free(struct mapping *m);

#endif
