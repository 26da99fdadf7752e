/*
 * ingest — pos-ingest's HTTP API: authenticate the store, validate (posjson), claim the fact's
 * idempotency record (claims), publish to Kafka and answer only after the delivery report,
 * raise exceptions for unknown SKUs and unmapped non-stock codes, and serve the catalogue.
 *
 * Routes (services/pos-ingest/openapi.yaml):
 *   POST /v1/transactions   one sale / return / exchange / void → pos.transactions.v1
 *   POST /v1/takings        end-of-day takings declaration     → pos.transactions.v1
 *   POST /v1/movements      one stock movement or snapshot      → stock.movements.v1
 *   POST /v1/batches        {"transactions":[…],"movements":[…]}, per-item results
 *   GET  /v1/catalog/items          items changed since ?since=
 *   GET  /v1/catalog/price-changes  items whose price changed since ?since=
 */
#ifndef POS_INGEST_INGEST_H
#define POS_INGEST_INGEST_H

#include <stddef.h>

#include "apikeys.h"
#include "catalog.h"
#include "http.h"
#include "mapping.h"
#include "service.h"

struct ingest_opts {
    long kafka_timeout_ms;  /* message.timeout.ms of the producer: the longest a till waits */
    long max_future_ms;     /* occurred_at may be this far ahead of our clock */
    long batch_max_items;   /* items per batch */
    long batch_max_body;    /* bytes per batch body */
    long batch_concurrency; /* batches taken at once (http_route.max_inflight) */
    long claim_lease_ms;    /* how long a claim protects a publish in flight */
};

struct ingest;

/*
 * Build the API over svc (its producer and Postgres pool are used; borrowed). mapping,
 * catalog and keys are borrowed too and must outlive the ingest. NULL (logged) when the
 * pipeline's threads cannot start.
 */
struct ingest *ingest_new(struct service *svc, const struct ingest_opts *opts,
                          const struct mapping *mapping, struct catalog *catalog,
                          struct apikeys *keys);

/* The route table (owned by ing, valid while it lives). */
const struct http_route *ingest_routes(struct ingest *ing, size_t *n);

/*
 * Stop taking facts: requests arriving from now on are answered 503 (retry), and this returns
 * once every request in flight has been answered. Call before the HTTP server is stopped
 * (suspended requests must be resumed first). NULL is fine.
 */
void ingest_close(struct ingest *ing);

/* Close (if not yet) and free. NULL is fine. */
void ingest_free(struct ingest *ing);

#endif
