/*
 * holds_api — the HTTP API of checkout and pickup holds (openapi.yaml, tag holds):
 *   POST /v1/holds                      create (idempotent per Idempotency-Key / idempotency_key)
 *   GET  /v1/holds/{hold}               read
 *   POST /v1/holds/{hold}/extend        new time-to-live from now
 *   POST /v1/holds/{hold}/release       give the units back (idempotent)
 *   GET  /v1/availability/{sku}         ?location_id= or ?channel_location_id=: what
 *                                       check-and-hold sees (figure before holds, held, available)
 * 400 bad input, 404 unknown hold, 409 not enough stock (with what is available per line) or
 * hold no longer live, 422 idempotency key reused for another request, 503 when Redis is
 * unreachable (holds fail closed).
 */
#ifndef INVENTORY_LEDGER_HOLDS_API_H
#define INVENTORY_LEDGER_HOLDS_API_H

#include <stddef.h>

#include "holds.h"
#include "http.h"

#define HOLDS_API_NROUTES 5

/* Fill routes[0..HOLDS_API_NROUTES) with handlers taking h as opaque (h outlives the server).
 * Returns HOLDS_API_NROUTES. */
size_t holds_api_routes(struct http_route *routes, struct holds *h);

#endif
