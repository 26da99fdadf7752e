/*
 * intake — webhooks and polled orders in, business facts out (shop.orders.v1).
 *
 * Every payload (webhook, poll, replay) goes through intake_process():
 *   parse (rawjson keeps ids exact) → adapter parse → SKU / tax code (shops.h tax_codes) /
 *   location mapping (unmappable → dead letter + exception, nothing of the order published)
 *   → one Postgres transaction per order: webhook dedupe row, order
 *   row locked FOR UPDATE, payload older than the applied updated_at dropped, the facts the
 *   payload shows that were not yet published (created, paid, ready, fulfillment:<id>,
 *   refund:<id>, cancelled, or updated:<ms>) published to Kafka synchronously with
 *   deterministic event ids, recorded, commit. A Kafka failure rolls back (the webhook is
 *   answered 503 and retried by the platform); a crash after the Kafka ack but before the
 *   commit republishes the same event ids, which consumers dedupe on ce_id.
 *
 * Catalogue events and exceptions go out through events.h; facts are sent by the intake
 * itself only because they carry a ce_subject, and dead letters because they are the raw
 * platform payload with dlq_* headers.
 *
 * Admin: pause/resume per shop (webhooks queued in Postgres while paused, drained in arrival
 * order on resume), dead-letter list and replay, poll now. See openapi.yaml.
 */
#ifndef SHOP_INTAKE_H
#define SHOP_INTAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "platform.h"
#include "service.h"
#include "shops.h"

struct intake_opts {
    const char *shops_file; /* NULL or "": no shops */
    long poll_interval_ms;  /* 0 = no background poll */
    long poll_grace_ms;     /* orders updated more recently are left to their webhooks */
    long kafka_timeout_ms;
    /* The shops' shared API budgets, the same buckets as the outbound push's: catalogue pages
     * and the poll take their cost from them. A zero size or rate = none for that platform. */
    struct platform_budgets budgets;
};

/* Outcome of one payload. */
enum intake_result {
    INTAKE_PUBLISHED,     /* at least one new fact published */
    INTAKE_NOTHING_NEW,   /* every fact it shows was already published */
    INTAKE_DUPLICATE,     /* webhook id seen before */
    INTAKE_STALE,         /* older than the order's applied updated_at */
    INTAKE_IGNORED,       /* topic not acted on */
    INTAKE_QUEUED,        /* shop paused: stored for resume */
    INTAKE_DEAD_LETTERED, /* unmappable: dead-letter topic + exception */
    INTAKE_CATALOG,       /* product payload applied to the catalogue */
};

const char *intake_result_name(enum intake_result r);

struct intake;

/* Build the intake: load SHOPS_FILE, sync each shop's catalogue (failures logged, retried by
 * the poll thread), start the poll thread. svc must be connected (Kafka, Postgres). Returns
 * NULL with err. */
struct intake *intake_new(struct service *svc, const struct intake_opts *opts, char *err,
                          size_t errlen);

/* The HTTP routes (webhooks + admin); valid while the intake lives. */
const struct http_route *intake_routes(struct intake *in, size_t *n);

/*
 * Process one verified payload of shop. dedupe_id (webhook / event id) may be NULL for polled
 * and replayed payloads. from_poll marks the events; when no_dlq, an unmappable payload is
 * reported in err and returns INTAKE_DEAD_LETTERED without a new dead letter (replay).
 * Returns an intake_result (>= 0), -EAGAIN when the platform should retry later, or another
 * negative error (Kafka / Postgres down) with err.
 */
int intake_process(struct intake *in, const struct shop *shop, const char *topic,
                   const char *dedupe_id, const char *body, size_t len, bool from_poll, bool no_dlq,
                   char *err, size_t errlen);

/* Run one poll of every unpaused shop now. Returns the number of orders that brought new facts
 * (webhook gap), or negative. */
int intake_poll_once(struct intake *in, char *err, size_t errlen);

/* Stop the poll thread and free. NULL is fine. */
void intake_free(struct intake *in);

#endif
