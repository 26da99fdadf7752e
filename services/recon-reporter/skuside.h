/*
 * skuside — the finding "SKU known on one side only" (sku_one_side_only, owner ecommerce): which
 * side lacks a SKU, and the wording, details and fingerprint of its exception. Pure: no I/O
 * (checks.c runs the query and raises; ingest.c records what each side saw).
 *
 * The two sides: the tills (a SKU on a pos.transactions.v1 sale/return line, or on a
 * stock.movements.v1 line at a store location) and the online shops (a catalog.items.v1 variant
 * carrying the SKU, not deleted). A SKU is flagged
 *   - till only: the tills sold or moved it and no shop catalogue lists it;
 *   - platform only: a shop catalogue lists it with inventory tracked, longer than the grace
 *     period, and no till ever sold or moved it.
 */
#ifndef RECON_SKUSIDE_H
#define RECON_SKUSIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum skuside_side {
    SKUSIDE_TILL_ONLY,     /* the platform lacks it */
    SKUSIDE_PLATFORM_ONLY, /* the tills lack it */
};

/* What the check found for one SKU. Strings are borrowed; NULL reads as "" (unknown / none).
 * Lists are comma-separated, without spaces. Times are RFC 3339 (UTC). */
struct skuside_finding {
    enum skuside_side side;
    const char *sku;                /* required */
    const char *listed_in;          /* shops listing it now, "<platform>:<shop_id>" */
    const char *formerly_listed_in; /* shops whose variant(s) with this SKU were deleted */
    const char *listed_since;       /* platform only: earliest listing of a tracked variant */
    const char *till_stores;        /* till only: store codes whose tills sold or moved it */
    const char *till_locations;     /* till only: ledger locations of those sightings */
    const char *till_first_seen;    /* till only: earliest sighting (the till's own time) */
    const char *till_last_seen;     /* till only: latest sighting */
    int64_t till_lines;             /* till only: transaction / movement lines naming it */
    int64_t grace_s;                /* platform only: the grace period applied */
};

/* The exception of one finding. */
struct skuside_text {
    char dedupe_key[640];    /* "sku_one_side_only/<sku>" */
    char summary[1024];      /* one line naming the SKU, the side that lacks it and where */
    const char *fingerprint; /* "till_only" / "platform_only": a change re-raises */
    const char *explanation; /* static */
    const char *action;      /* static */
    const char *topic;       /* static: the topic of the side that knows it */
    const char *store_code;  /* the one store that sold it, else "" (borrowed from f) */
    char *refs_json;         /* malloc'd {"sku": ...} */
    char *details_json;      /* malloc'd; every key always present (null when not applicable) */
};

/*
 * Fill out for f. Returns 0, -EINVAL when f has no SKU, -ENOMEM; release out with
 * skuside_text_release() in every case.
 */
int skuside_describe(const struct skuside_finding *f, struct skuside_text *out);

/* Free what skuside_describe() allocated in t (fine on a zeroed or released t). */
void skuside_text_release(struct skuside_text *t);

/*
 * true when a till line names a stock SKU: sku is set and non_stock_code is not. Non-stock lines
 * (carrier bags, service charges, gift cards, repair fees: pos.proto's non_stock_code) are never
 * SKUs of the catalogue, and a line claiming both is not trusted as one.
 */
bool skuside_line_is_stock(const char *sku, const char *non_stock_code);

/*
 * "a, b, c and 4 more": the comma-separated list csv, at most max_items shown, into out.
 * An empty or NULL list gives "". Returns out.
 */
const char *skuside_list_short(const char *csv, size_t max_items, char *out, size_t cap);

#endif
