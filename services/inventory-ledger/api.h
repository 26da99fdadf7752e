/*
 * api — the ledger's HTTP API (documented in openapi.yaml):
 *   GET  /v1/stock/{sku}                          figures per location and channel location
 *   GET  /v1/ledger/{sku}/{location}              entries with their source references
 *   PUT  /v1/skus/{sku}                           register a SKU
 *   PUT  /v1/locations/{location}                 register a store or warehouse
 *   PUT  /v1/safety-stock/{sku}/{location}        set safety stock
 *   PUT  /v1/channel-locations/{channel}          platform location, buffer and mapping
 *   GET  /v1/channel-locations/{channel}
 * Bad input answers 400/404 with the JSON error shape and changes nothing; a database that
 * cannot be reached answers 503. Admin changes queue the affected levels for publication.
 */
#ifndef INVENTORY_LEDGER_API_H
#define INVENTORY_LEDGER_API_H

#include <stddef.h>

#include "availability.h"
#include "http.h"
#include "service.h"

/* What the handlers share; svc and holds must outlive the HTTP server. */
struct api {
    struct service *svc;
    struct availability_holds *holds;
    struct http_route routes[7];
};

/* Fill api's route table (handlers get api as opaque). Returns the number of routes. */
size_t api_routes_init(struct api *api, struct service *svc, struct availability_holds *holds);

#endif
