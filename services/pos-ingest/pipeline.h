/*
 * pipeline — claims, publishes and settles the facts of many till requests together, on two
 * threads of its own, so that no HTTP worker waits for Postgres or Kafka (the request's
 * connection is suspended meanwhile: http_response_defer()).
 *
 * A job is one request's facts (distinct event ids). Jobs flow through two stages:
 *   claim   (claim thread): every job waiting is claimed in ONE statement (claims_claim(); ids
 *           repeated across requests are resolved there), then each fact the job now owns is
 *           queued to Kafka through job->publish; a job with nothing to publish goes on at once;
 *   settle  (settle thread): once every delivery report of a job is in (pipeline_delivered()),
 *           the acknowledged facts of every job waiting are marked published and the failed ones
 *           released, one statement each, and then job->done(job) is called.
 * While one round is in Postgres or Kafka the next gathers, so the statement and the produce
 * calls are shared by all the requests that arrive meanwhile (group commit without a leader).
 * A fact is answered to its till only after its mark, as before the pipeline existed.
 */
#ifndef POS_INGEST_PIPELINE_H
#define POS_INGEST_PIPELINE_H

#include <stddef.h>

#include "claims.h"
#include "pg.h"

struct pipeline;
struct pipeline_job;

/* One fact of a job: what to claim and, once done, what happened to it. */
struct pipeline_fact {
    struct claim claim; /* event_id and body_hash in; state set by the claim stage */
    int claim_rc;       /* 0, or -EIO when the claim statement failed (logged) */
    int kafka_error;    /* owned facts: 0 = acknowledged by Kafka, else the failure */
    char kafka_errstr[320];
    struct pipeline_job *job; /* set by pipeline_submit */
};

struct pipeline_job {
    struct pipeline_fact *facts; /* n facts with distinct event ids; owned by the submitter */
    size_t n;
    /*
     * Queue facts[k] (owned by this job now) to Kafka. Its delivery callback must end in
     * pipeline_delivered(&facts[k], ...), exactly once. Returns 0 when queued, or negative with
     * err (then no delivery callback comes). Called on the claim thread.
     */
    int (*publish)(struct pipeline_job *job, size_t k, char *err, size_t errlen);
    /* Called once, on the settle thread, when every fact is settled; the job is the
     * submitter's again. Must not block (resume the request and return). */
    void (*done)(struct pipeline_job *job);
    void *opaque; /* the submitter's */
    /* the pipeline's own */
    struct pipeline *pl;
    struct pipeline_job *next;
    size_t pending; /* delivery reports outstanding (+1 while publishing) */
};

/*
 * Start the two threads over pg (borrowed; must outlive the pipeline). lease_ms: how long a
 * claim protects a publish in flight (claims.h). Returns NULL with err when a thread cannot start.
 */
struct pipeline *pipeline_new(struct pg *pg, long lease_ms, char *err, size_t errlen);

/*
 * Hand job over (job->facts, n, publish, done set; n > 0). Returns 0 (done will be called), or
 * -ESHUTDOWN when the pipeline is closing (the job is untouched and stays the caller's).
 */
int pipeline_submit(struct pipeline *pl, struct pipeline_job *job);

/* A delivery report for an owned fact: error 0 = acknowledged. Any thread. */
void pipeline_delivered(struct pipeline_fact *f, int error, const char *errstr);

/* Refuse new jobs, wait until every job submitted is done, stop the threads. Idempotent. */
void pipeline_close(struct pipeline *pl);

/* Close (if not yet) and free. NULL is fine. */
void pipeline_free(struct pipeline *pl);

#endif
