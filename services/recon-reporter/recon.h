/*
 * recon — recon-reporter's process parts plugged into service_main(): its configuration, the
 * consumer of every topic and dead-letter topic (effects and offsets in one Postgres
 * transaction), the checker thread (own checks and consumer-lag watermarks every interval), and
 * the HTTP API and dashboard (api.h).
 */
#ifndef RECON_RECON_H
#define RECON_RECON_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "checks.h"
#include "ingest.h"
#include "service.h"

/* The running service's state. Fields under mu are written by the checker thread and read by
 * HTTP handlers; everything else is fixed after start. */
struct recon {
    struct service *svc;
    struct ingest ingest;
    char **topics; /* full names: every ingest_topics entry and its ".dlq" */
    size_t ntopics;
    struct checks_opts checks;
    long check_interval_ms;
    const char *group_id;
    long session_timeout_ms;

    pthread_t checker;
    bool checker_started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stopping;              /* under mu */
    struct checks_result last;  /* under mu */
    int64_t last_check_ms;      /* under mu; 0 = never */
    char last_check_error[256]; /* under mu */
    int64_t watermarks_ms;      /* under mu; when lag was last measured */
};

/* recon-reporter's own variables (main.c's config table loads them; see README.md). */
struct recon_config {
    char *group_id;          /* RECON_GROUP_ID */
    long check_interval_ms;  /* RECON_CHECK_INTERVAL_MS */
    long apply_deadline_s;   /* RECON_APPLY_DEADLINE_S */
    long takings_tolerance;  /* RECON_TAKINGS_TOLERANCE */
    long session_timeout_ms; /* RECON_KAFKA_SESSION_TIMEOUT_MS */
    long sku_side_grace_s;   /* RECON_SKU_SIDE_GRACE_S */
};
extern struct recon_config recon_config;

/* The hooks main.c hands to service_main(). */
extern const struct service_hooks recon_hooks;

/*
 * Run the checks once now, on a pooled connection, and remember the outcome for /v1/flows.
 * Returns 0 or negative with err.
 */
int recon_check_now(struct recon *r, struct checks_result *res, char *err, size_t errlen);

#endif
