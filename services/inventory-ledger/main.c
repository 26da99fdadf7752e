/*
 * inventory-ledger — the exactly-once stock ledger, available-to-sell and checkout holds.
 * The process life (configuration, connections, HTTP, signals) is service_main()'s; the
 * service's parts are in app.c.
 */
#include <stdlib.h>

#include "app.h"
#include "service.h"

static const struct service_spec spec = {
    .name = "inventory-ledger",
    .migrations_dir = TILLSYNC_MIGRATIONS_DIR,
    /* LEDGER_IN_FLIGHT (2) batch workers, the outbox publisher, the holds' sync and the API */
    .pg_pool_default = "5",
    .kafka = true,
    .postgres = true,
    .redis = true,
    .extra = app_config,
    .nextra = APP_NCONFIG,
};

int main(int argc, char **argv)
{
    return service_main(&spec, &app_hooks, argc, argv);
}
