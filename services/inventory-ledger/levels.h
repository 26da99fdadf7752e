/*
 * levels — the stock figures and available-to-sell of (sku, location) pairs as published to
 * inventory.levels.v1 and shown by the HTTP API: one level per physical location asked for,
 * and one per channel location that contains any of them (for that SKU).
 */
#ifndef INVENTORY_LEDGER_LEVELS_H
#define INVENTORY_LEDGER_LEVELS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "availability.h"

/* One level. Strings are borrowed from the set's results; key is "<location>/<sku>".
 * For a channel level, members[0..nmembers) are the figures of its ledger locations. */
struct level {
    char key[512];
    const char *sku;
    const char *location_id;
    int kind; /* Tillsync__V1__LocationKind */
    const char *platform, *shop_id, *platform_location_id;
    int64_t on_hand, committed, reserved, in_transit, safety_stock, buffer, available;
    struct stock_figures *members;
    size_t nmembers;
};

/* Levels loaded together. Invariant: every string of v points into res[]. */
struct level_set {
    struct level *v;
    size_t n;
    PGresult *res[2];
};

/*
 * Load the levels of the pairs (skus[i], locs[i]) given as Postgres text array literals of the
 * same length (see pgarr.h), and of the channel locations containing them, into set
 * (caller-owned, zeroed here). reserved figures come from availability_reserved(holds, …).
 * Returns 0 or -EIO / -ENOMEM with err. Release with level_set_release() either way.
 */
int levels_load(PGconn *conn, const char *tenant, const char *skus, const char *locs,
                struct availability_holds *holds, struct level_set *set, char *err, size_t errlen);

/* Free what set holds. */
void level_set_release(struct level_set *set);

#endif
