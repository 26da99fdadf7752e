/*
 * app — inventory-ledger's parts plugged into service_main(): its configuration variables, the
 * consumer of pos.transactions.v1, stock.movements.v1 and shop.orders.v1 (offsets kept in
 * Postgres with the effects), the outbox publisher thread and the HTTP API.
 */
#ifndef INVENTORY_LEDGER_APP_H
#define INVENTORY_LEDGER_APP_H

#include "service.h"

#define APP_NCONFIG 7

/* The service's own variables (for struct service_spec.extra). */
extern const struct config_var app_config[APP_NCONFIG];

/* The start/run/stop hooks. */
extern const struct service_hooks app_hooks;

#endif
