/*
 * availability — available-to-sell, the one place it is computed (DESIGN.md "Inventory model").
 *
 * Seam for checkout and pickup holds (issue 4): availability_reserved() is the only source of
 * the `reserved` figure of a (sku, location), and availability_channel() the only computation
 * of a channel location's figure; holds code plugs in there (struct availability_holds is
 * theirs to define) and every caller — level publication and the HTTP API — follows.
 */
#ifndef INVENTORY_LEDGER_AVAILABILITY_H
#define INVENTORY_LEDGER_AVAILABILITY_H

#include <stddef.h>
#include <stdint.h>

/* Live holds as one reader sees them (defined in holds.h); NULL = no holds. */
struct availability_holds;

/* The figures of one (sku, ledger location). */
struct stock_figures {
    const char *location_id;
    int64_t on_hand;
    int64_t committed;
    int64_t reserved;
    int64_t in_transit;
    int64_t safety_stock;
};

/*
 * Units of sku held at location_id by live pickup holds that the reader's Postgres snapshot
 * does not already count as committed (holds.h). 0 when holds is NULL. A Redis failure sets
 * holds->failed and counts 0: the caller must not use the figure then.
 */
int64_t availability_reserved(struct availability_holds *holds, const char *sku,
                              const char *location_id);

/* Units of sku held by live checkout holds at the channel location itself (same rules). */
int64_t availability_channel_held(struct availability_holds *holds, const char *channel_location_id,
                                  const char *sku);

/* Available-to-sell at one ledger location: on_hand − committed − reserved − safety_stock,
 * never below 0. */
int64_t availability_location(const struct stock_figures *f);

/*
 * Available-to-sell of sku at a channel location made of the ledger locations locs[0..n):
 * Σ (on_hand − committed − reserved) − Σ safety_stock − buffer − checkout holds at the channel
 * (availability_channel_held()), never below 0. Each locs[i].reserved must come from
 * availability_reserved().
 */
int64_t availability_channel(struct availability_holds *holds, const char *channel_location_id,
                             const char *sku, const struct stock_figures *locs, size_t n,
                             int64_t buffer);

#endif
