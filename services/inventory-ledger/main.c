/*
 * inventory-ledger — the exactly-once stock ledger, available-to-sell and checkout holds.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s.
 */
#include "service.h"

static const struct service_spec spec = {
    .name = "inventory-ledger",
    .kafka = true,
    .postgres = true,
    .redis = true,
};

int main(int argc, char **argv)
{
    return service_main(&spec, NULL, argc, argv);
}
