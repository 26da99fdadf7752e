/* availability — available-to-sell. See availability.h. */
#include "availability.h"

int64_t availability_reserved(struct availability_holds *holds, const char *sku,
                              const char *location_id)
{
    (void)holds;
    (void)sku;
    (void)location_id;
    return 0;
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

    (void)holds;
    (void)channel_location_id;
    (void)sku;
    for (size_t i = 0; i < n; i++)
        a += locs[i].on_hand - locs[i].committed - locs[i].reserved - locs[i].safety_stock;
    a -= buffer;
    return a > 0 ? a : 0;
}
