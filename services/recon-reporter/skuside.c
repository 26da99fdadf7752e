/* skuside — see skuside.h. */
#include "skuside.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char *nz(const char *s)
{
    return s ? s : "";
}

bool skuside_line_is_stock(const char *sku, const char *non_stock_code)
{
    return sku && *sku && !(non_stock_code && *non_stock_code);
}

const char *skuside_list_short(const char *csv, size_t max_items, char *out, size_t cap)
{
    const char *p = nz(csv);
    size_t used = 0, shown = 0, more = 0;

    if (cap == 0)
        return out;
    out[0] = '\0';
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len > 0) {
            if (shown < max_items) {
                int n = snprintf(out + used, cap - used, "%s%.*s", shown ? ", " : "", (int)len, p);
                used = n < 0 || (size_t)n >= cap - used ? cap - 1 : used + (size_t)n;
                shown++;
            } else {
                more++;
            }
        }
        p = end ? end + 1 : p + len;
    }
    if (more && used < cap - 1)
        snprintf(out + used, cap - used, " and %zu more", more);
    return out;
}

/* The comma-separated list as a JSON array (empty items dropped); null when there is none. */
static json_t *list_json(const char *csv)
{
    json_t *a;
    const char *p = nz(csv);

    if (!*p)
        return json_null();
    a = json_array();
    while (a && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (len > 0)
            json_array_append_new(a, json_stringn(p, len));
        p = end ? end + 1 : p + len;
    }
    return a;
}

static json_t *text_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

void skuside_text_release(struct skuside_text *t)
{
    free(t->refs_json);
    free(t->details_json);
    t->refs_json = NULL;
    t->details_json = NULL;
}

int skuside_describe(const struct skuside_finding *f, struct skuside_text *out)
{
    bool till = f->side == SKUSIDE_TILL_ONLY;
    char where[384], shops[384], former[384];
    json_t *refs = NULL, *details = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!f->sku || !*f->sku)
        return -EINVAL;
    snprintf(out->dedupe_key, sizeof(out->dedupe_key), "sku_one_side_only/%s", f->sku);
    if (till) {
        /* stores first; a movement at a store's location without a store code names the
         * location only */
        skuside_list_short(f->till_stores && *f->till_stores ? f->till_stores : f->till_locations,
                           5, where, sizeof(where));
        skuside_list_short(f->formerly_listed_in, 3, former, sizeof(former));
        snprintf(out->summary, sizeof(out->summary),
                 "SKU %s is on the tills only: sold or moved at %s (last %.10s), listed in no "
                 "shop catalogue%s%s%s",
                 f->sku, *where ? where : "a store", nz(f->till_last_seen),
                 *former ? " (deleted from " : "", former, *former ? ")" : "");
        out->fingerprint = "till_only";
        out->explanation =
            "The tills sell or move this SKU, but no online shop's catalogue lists it: it cannot "
            "be sold online, the platforms get no stock figure for it, and its till price does "
            "not follow the platform's.";
        out->action =
            "Add the product with exactly this SKU to the shop catalogue, or correct the SKU in "
            "the tills' item file (a typo, an old code). If it is sold in stores only on "
            "purpose, resolve it with a note: it is raised again only if it changes side or "
            "goes away and comes back.";
        out->topic = "pos.transactions.v1";
        out->store_code =
            f->till_stores && *f->till_stores && !strchr(f->till_stores, ',') ? f->till_stores : "";
    } else {
        skuside_list_short(f->listed_in, 3, shops, sizeof(shops));
        snprintf(out->summary, sizeof(out->summary),
                 "SKU %s is on the platform only: tracked in %s since %.10s, never sold or moved "
                 "at a till",
                 f->sku, *shops ? shops : "a shop catalogue", nz(f->listed_since));
        out->fingerprint = "platform_only";
        out->explanation =
            "A shop catalogue tracks stock for this SKU, but no till has sold or returned it and "
            "no store has received, counted or moved it since it was listed: the stores do not "
            "know it under this code.";
        out->action =
            "Compare the SKU with the tills' item code (spelling, case, spaces, leading zeros). "
            "If stores should sell it, add it to the tills' item file and receive stock for it "
            "at a store. If it is sold online only, resolve it with a note: it is raised again "
            "only if it changes side or goes away and comes back.";
        out->topic = "catalog.items.v1";
        out->store_code = "";
    }
    refs = json_pack("{s:s}", "sku", f->sku);
    /* every key always set: a re-raise merges details into the old ones */
    details =
        json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "sku", f->sku,
                  "side", out->fingerprint, "missing_on", till ? "platform" : "tills", "listed_in",
                  list_json(f->listed_in), "formerly_listed_in", list_json(f->formerly_listed_in),
                  "listed_since", till ? json_null() : text_or_null(f->listed_since), "grace_s",
                  till ? json_null() : json_integer(f->grace_s), "till_stores",
                  till ? list_json(f->till_stores) : json_null(), "till_locations",
                  till ? list_json(f->till_locations) : json_null(), "till_first_seen",
                  till ? text_or_null(f->till_first_seen) : json_null(), "till_last_seen",
                  till ? text_or_null(f->till_last_seen) : json_null(), "till_lines",
                  till ? json_integer(f->till_lines) : json_null());
    out->refs_json = refs ? json_dumps(refs, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    out->details_json = details ? json_dumps(details, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!out->refs_json || !out->details_json)
        rc = -ENOMEM;
    json_decref(refs);
    json_decref(details);
    return rc;
}
