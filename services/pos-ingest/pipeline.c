/* pipeline — see pipeline.h. One mutex guards both queues and every job's pending count. */
#include "pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define ROUND_MAX_FACTS 20000 /* facts per claim or mark statement (a larger job goes alone) */

struct queue {
    struct pipeline_job *head, **tail;
};

struct pipeline {
    struct pg *pg;
    long lease_ms;
    pthread_mutex_t mu;
    pthread_cond_t claim_cv, settle_cv, idle_cv;
    struct queue claimq;  /* submitted, not yet claimed */
    struct queue settleq; /* every delivery report in, not yet marked */
    size_t inflight;      /* submitted and not yet done */
    bool closing;         /* no new jobs */
    bool stop;            /* threads: exit once idle */
    int nthreads;
    pthread_t claim_thread, settle_thread;
};

static void queue_push(struct queue *q, struct pipeline_job *job)
{
    job->next = NULL;
    *q->tail = job;
    q->tail = &job->next;
}

/* Take jobs from the head of q up to ROUND_MAX_FACTS facts (at least one job). Under mu. */
static struct pipeline_job *queue_take(struct queue *q)
{
    struct pipeline_job *first = q->head, *last = first;
    size_t facts = first->n;

    while (last->next && facts + last->next->n <= ROUND_MAX_FACTS) {
        last = last->next;
        facts += last->n;
    }
    q->head = last->next;
    if (!q->head)
        q->tail = &q->head;
    last->next = NULL;
    return first;
}

/* One fewer delivery report outstanding for job; on the last, on to the settle stage. Under mu. */
static void job_unpend(struct pipeline *pl, struct pipeline_job *job)
{
    if (--job->pending > 0)
        return;
    queue_push(&pl->settleq, job);
    pthread_cond_signal(&pl->settle_cv);
}

/* ---- claim stage ------------------------------------------------------------------------- */

static void claim_round(struct pipeline *pl, struct pipeline_job *jobs)
{
    size_t total = 0, k = 0;
    struct claim **c;
    char err[256] = "";
    int rc;

    for (struct pipeline_job *j = jobs; j; j = j->next)
        total += j->n;
    c = calloc(total, sizeof(*c));
    if (!c)
        abort(); /* OOM policy */
    for (struct pipeline_job *j = jobs; j; j = j->next)
        for (size_t i = 0; i < j->n; i++)
            c[k++] = &j->facts[i].claim;
    rc = claims_claim(pl->pg, c, total, pl->lease_ms, err, sizeof(err));
    free(c);
    if (rc != 0)
        log_kv(LOG_LVL_WARN, "idempotency store unavailable", "reason", err, NULL);
    for (struct pipeline_job *j = jobs, *next; j; j = next) {
        next = j->next; /* j may be settled (and gone) once its last report is in */
        pthread_mutex_lock(&pl->mu);
        j->pending = 1; /* held while publishing: the reports may come back before we are done */
        pthread_mutex_unlock(&pl->mu);
        for (size_t i = 0; i < j->n; i++) {
            struct pipeline_fact *f = &j->facts[i];

            f->claim_rc = rc; /* the reason was logged above */
            if (rc != 0 || f->claim.state != CLAIM_OWNED)
                continue;
            pthread_mutex_lock(&pl->mu);
            j->pending++;
            pthread_mutex_unlock(&pl->mu);
            if (j->publish(j, i, f->kafka_errstr, sizeof(f->kafka_errstr)) != 0) {
                f->kafka_error = -EIO;
                pthread_mutex_lock(&pl->mu);
                job_unpend(pl, j); /* not the last: the hold above remains */
                pthread_mutex_unlock(&pl->mu);
            }
        }
        pthread_mutex_lock(&pl->mu);
        job_unpend(pl, j);
        pthread_mutex_unlock(&pl->mu);
    }
}

static void *claim_main(void *arg)
{
    struct pipeline *pl = arg;

    pthread_mutex_lock(&pl->mu);
    for (;;) {
        struct pipeline_job *jobs;

        if (!pl->claimq.head) {
            if (pl->stop)
                break;
            pthread_cond_wait(&pl->claim_cv, &pl->mu);
            continue;
        }
        jobs = queue_take(&pl->claimq);
        pthread_mutex_unlock(&pl->mu);
        claim_round(pl, jobs);
        pthread_mutex_lock(&pl->mu);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

void pipeline_delivered(struct pipeline_fact *f, int error, const char *errstr)
{
    struct pipeline_job *job = f->job;
    struct pipeline *pl = job->pl;

    f->kafka_error = error;
    if (error)
        snprintf(f->kafka_errstr, sizeof(f->kafka_errstr), "%s", errstr ? errstr : "failed");
    pthread_mutex_lock(&pl->mu);
    job_unpend(pl, job);
    pthread_mutex_unlock(&pl->mu);
}

/* ---- settle stage ------------------------------------------------------------------------ */

static void settle_round(struct pipeline *pl, struct pipeline_job *jobs)
{
    size_t total = 0, nok = 0, nbad = 0;
    const char **ok, **bad;
    char err[256];

    for (struct pipeline_job *j = jobs; j; j = j->next)
        total += j->n;
    ok = calloc(total + 1, sizeof(*ok));
    bad = calloc(total + 1, sizeof(*bad));
    if (!ok || !bad)
        abort(); /* OOM policy */
    for (struct pipeline_job *j = jobs; j; j = j->next)
        for (size_t i = 0; i < j->n; i++) {
            const struct pipeline_fact *f = &j->facts[i];

            if (f->claim_rc != 0 || f->claim.state != CLAIM_OWNED)
                continue;
            if (f->kafka_error == 0)
                ok[nok++] = f->claim.event_id;
            else
                bad[nbad++] = f->claim.event_id;
        }
    if (claims_finish(pl->pg, ok, nok, 1, err, sizeof(err)) != 0)
        log_kv(LOG_LVL_WARN,
               "published facts not marked; a retry after the lease republishes "
               "them with the same event id",
               "reason", err, NULL);
    if (claims_finish(pl->pg, bad, nbad, 0, err, sizeof(err)) != 0)
        log_kv(LOG_LVL_WARN, "failed claims not released; they free up after the lease", "reason",
               err, NULL);
    free(ok);
    free(bad);
    for (struct pipeline_job *j = jobs, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        j->done(j); /* the submitter's again */
    }
}

static void *settle_main(void *arg)
{
    struct pipeline *pl = arg;

    pthread_mutex_lock(&pl->mu);
    for (;;) {
        struct pipeline_job *jobs;
        size_t njobs = 0;

        if (!pl->settleq.head) {
            if (pl->stop)
                break;
            pthread_cond_wait(&pl->settle_cv, &pl->mu);
            continue;
        }
        jobs = queue_take(&pl->settleq);
        for (struct pipeline_job *j = jobs; j; j = j->next)
            njobs++;
        pthread_mutex_unlock(&pl->mu);
        settle_round(pl, jobs);
        pthread_mutex_lock(&pl->mu);
        pl->inflight -= njobs;
        if (pl->inflight == 0)
            pthread_cond_broadcast(&pl->idle_cv);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

struct pipeline *pipeline_new(struct pg *pg, long lease_ms, char *err, size_t errlen)
{
    struct pipeline *pl = calloc(1, sizeof(*pl));

    if (!pl)
        abort(); /* OOM policy */
    pl->pg = pg;
    pl->lease_ms = lease_ms;
    pl->claimq.tail = &pl->claimq.head;
    pl->settleq.tail = &pl->settleq.head;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->claim_cv, NULL);
    pthread_cond_init(&pl->settle_cv, NULL);
    pthread_cond_init(&pl->idle_cv, NULL);
    if (pthread_create(&pl->claim_thread, NULL, claim_main, pl) != 0) {
        snprintf(err, errlen, "cannot start the claim thread");
        pipeline_free(pl);
        return NULL;
    }
    pl->nthreads = 1;
    if (pthread_create(&pl->settle_thread, NULL, settle_main, pl) != 0) {
        snprintf(err, errlen, "cannot start the settle thread");
        pipeline_free(pl);
        return NULL;
    }
    pl->nthreads = 2;
    return pl;
}

int pipeline_submit(struct pipeline *pl, struct pipeline_job *job)
{
    pthread_mutex_lock(&pl->mu);
    if (pl->closing) {
        pthread_mutex_unlock(&pl->mu);
        return -ESHUTDOWN;
    }
    for (size_t i = 0; i < job->n; i++) {
        job->facts[i].job = job;
        job->facts[i].claim_rc = 0;
        job->facts[i].kafka_error = 0;
        job->facts[i].kafka_errstr[0] = '\0';
    }
    job->pl = pl;
    pl->inflight++;
    queue_push(&pl->claimq, job);
    pthread_cond_signal(&pl->claim_cv);
    pthread_mutex_unlock(&pl->mu);
    return 0;
}

void pipeline_close(struct pipeline *pl)
{
    pthread_mutex_lock(&pl->mu);
    pl->closing = true;
    while (pl->inflight > 0)
        pthread_cond_wait(&pl->idle_cv, &pl->mu);
    pl->stop = true;
    pthread_cond_broadcast(&pl->claim_cv);
    pthread_cond_broadcast(&pl->settle_cv);
    pthread_mutex_unlock(&pl->mu);
    if (pl->nthreads >= 1)
        pthread_join(pl->claim_thread, NULL);
    if (pl->nthreads >= 2)
        pthread_join(pl->settle_thread, NULL);
    pl->nthreads = 0;
}

void pipeline_free(struct pipeline *pl)
{
    if (!pl)
        return;
    pipeline_close(pl);
    pthread_cond_destroy(&pl->claim_cv);
    pthread_cond_destroy(&pl->settle_cv);
    pthread_cond_destroy(&pl->idle_cv);
    pthread_mutex_destroy(&pl->mu);
    free(pl);
}
