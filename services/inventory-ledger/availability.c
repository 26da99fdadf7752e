/* availability — available-to-sell. See availability.h. */
#include "availability.h"

#include <stdio.h>

#include "holds.h"

int64_t availability_reserved(struct availability_holds *holds, const char *sku,
                              const char *location_id)
{
    char scope[256];

    if (!holds || !holds->h)
        return 0;
    snprintf(scope, sizeof(scope), "l:%s", location_id);
    return holds_view_reserved(holds, scope, sku);
}

int64_t availability_channel_held(struct availability_holds *holds, const char *channel_location_id,
                                  const char *sku)
{
    char scope[256];

    if (!holds || !holds->h)
        return 0;
    snprintf(scope, sizeof(scope), "c:%s", channel_location_id);
    return holds_view_reserved(holds, scope, sku);
}

int64_t availability_location(const struct stock_figures *f)
{
    int64_t a = f->on_hand - f->committed - f->reserved - f->safety_stock;

    return a > 0 ? a : 0;
}

int64_t availability_channel(struct availability_holds *holds, const char *channel_location_id,
                             const char *sku, const struct stock_figures *locs, size_t n,
                             int64_t buffer)
{
    int64_t a = 0;

    for (size_t i = 0; i < n; i++)
        a += locs[i].on_hand - locs[i].committed - locs[i].reserved - locs[i].safety_stock;
    a -= buffer;
    a -= availability_channel_held(holds, channel_location_id, sku);
    return a > 0 ? a : 0;
}
