/*
 * claims — the durable idempotency record (Postgres table pos_ingest_claims) that makes a
 * retried or re-uploaded fact acknowledged again but published once.
 *
 * Protocol per fact (event id = uuid_from_name of its natural key):
 *   1. claim: insert the id with claimed_at = now, or take over an existing row that is not
 *      published and whose claim is older than the lease (a crashed or failed attempt);
 *   2. publish to Kafka and wait for the delivery report;
 *   3. ack → mark published; failure → release (claimed_at = -infinity) so a retry may claim.
 * Crash window: a crash between 2 and 3 leaves an unpublished claim although the record is in
 * Kafka; the retry after the lease publishes the same event id again (at-least-once, consumers
 * dedupe on ce_id). See README "Idempotency".
 */
#ifndef POS_INGEST_CLAIMS_H
#define POS_INGEST_CLAIMS_H

#include <stddef.h>

#include "pg.h"

enum claim_state {
    CLAIM_OWNED = 1, /* ours: publish it */
    CLAIM_PUBLISHED, /* already published: a duplicate, acknowledge again */
    CLAIM_IN_FLIGHT, /* another request holds a live claim: retry later */
    CLAIM_CONFLICT,  /* the id was used with a different body */
};

/* One fact to claim: its event id and the fingerprint of its request body. */
struct claim {
    const char *event_id;
    const char *body_hash;
    enum claim_state state; /* set by claims_claim */
};

/*
 * Claim the n facts c[0..n) in one statement. An id may repeat (two requests carrying the same
 * fact): its first occurrence gets the claim's answer, a later one CLAIM_IN_FLIGHT when the first
 * is now owned, else the first's state, and CLAIM_CONFLICT when its body hash differs.
 * lease_ms: how long a claim protects a publish in flight. Returns 0 with every state set, or
 * -EIO with err (database down).
 */
int claims_claim(struct pg *pg, struct claim *const *c, size_t n, long lease_ms, char *err,
                 size_t errlen);

/* Mark ids[0..n) published (ok) or release them for a retry (!ok). Returns 0 or -EIO. */
int claims_finish(struct pg *pg, const char *const *ids, size_t n, int ok, char *err,
                  size_t errlen);

#endif
