/*
 * publisher — sends what the ledger's transactions left in the outboxes: the levels of changed
 * (sku, location) pairs and their channel locations to inventory.levels.v1 (key
 * "<location>/<sku>", version strictly increasing per key), and exceptions to
 * recon.exceptions.v1. Rows are deleted only after the broker acknowledged every record read
 * with them, in the transaction that locked them (FOR UPDATE SKIP LOCKED, so replicas share
 * the work): a kill between the ledger's commit and the publication loses nothing, at worst a
 * level is sent twice with the same version.
 *
 * Versions: a key's version row is bumped (and so locked) BEFORE its figures are read, so a
 * higher version always carries figures at least as new, whichever replica sends it.
 */
#ifndef INVENTORY_LEDGER_PUBLISHER_H
#define INVENTORY_LEDGER_PUBLISHER_H

#include <stddef.h>

#include "availability.h"
#include "service.h"

struct publisher;

/*
 * Start a publisher thread for svc (its producer, Postgres pool, tenant and topic prefix; all
 * must outlive the publisher) that drains the outboxes every interval_ms. Returns NULL with
 * err. Free with publisher_free().
 */
struct publisher *publisher_new(struct service *svc, struct availability_holds *holds,
                                long interval_ms, char *err, size_t errlen);

/*
 * One round on the calling thread: publish up to one chunk of each outbox. Returns the number
 * of records acknowledged, or negative with err (nothing deleted then).
 */
int publisher_round(struct publisher *p, char *err, size_t errlen);

/* Stop the thread (after its current round) and free. NULL is fine. */
void publisher_free(struct publisher *p);

#endif
