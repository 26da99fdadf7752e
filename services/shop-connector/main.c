/*
 * shop-connector — Shopify and Shopline webhooks in, available-to-sell out, within API limits.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s.
 */
#include "service.h"

static const struct service_spec spec = {
    .name = "shop-connector",
    .kafka = true,
    .redis = true,
};

int main(int argc, char **argv)
{
    return service_main(&spec, NULL, argc, argv);
}
