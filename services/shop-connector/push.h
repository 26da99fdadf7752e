/*
 * push — available-to-sell out: inventory.levels.v1 → Shopify / Shopline, within the API budget
 * (issue 7; DESIGN.md flow 4).
 *
 * Design:
 *   - The consumer (push_run, on the main thread) keeps, per served shop, one entry per
 *     (inventory item, platform location): the newest ledger figure and version seen, the
 *     version and figure confirmed on the platform, and what the platform holds as far as we
 *     know. Only CHANNEL records of configured shops count; many changes of one key between
 *     two writes are one write of the newest figure (coalescing).
 *   - One worker thread per shop writes what is due: a key is due once its first unwritten
 *     change is older than the shop's window (PUSH_WINDOW_MIN_MS when quiet, doubling up to
 *     PUSH_WINDOW_MAX_MS while the keys already due exceed two calls or the platform
 *     throttles). Due keys are ordered by urgency (figure 0 first, then at or below
 *     PUSH_LOW_STOCK, then oldest) and sent in calls of the adapter's batch size (Shopify 250,
 *     Shopline 1); when fewer than a call are due but the keys still in their window fill one,
 *     the call is topped up with those (waiting would not save a call). The decisions are the
 *     pure functions of push_plan.h.
 *   - The worker waits for a write call's budget before it picks the keys, so the call carries
 *     the newest figures and every key that fell due during the wait.
 *   - Records naming a SKU but no inventory item are resolved in the catalogue the intake
 *     synced (catalog_variant) with one query per shop and consumer batch.
 *   - Every call first takes its cost from the shared Redis bucket of (tenant, shop, API)
 *     (ratelimit.h: the same bucket every replica and loyalty-sync use); the platform's answer
 *     corrects the bucket (throttleStatus.currentlyAvailable; 0 after a 429 / THROTTLED). A
 *     throttled call backs off (Retry-After, else the time the restore rate needs) and is sent
 *     again: nothing is dropped. 5xx / timeouts back off exponentially (200 ms doubling to
 *     10 s) with full jitter.
 *   - Compare-and-set (Shopify): each quantity states the figure it replaces (the one we last
 *     wrote or read) and the call carries an idempotency key derived from its content and the
 *     ledger versions, so a retried call is the same call. COMPARE_QUANTITY_STALE means the
 *     platform changed the figure itself, most likely a sale whose order event the ledger has
 *     not applied yet. The key is then held for PUSH_CAS_SETTLE_MS (released early when a
 *     newer ledger figure arrives — usually that order), re-read, and the newest ledger figure
 *     written against the figure read. The ledger is the truth; the hold only gives the order
 *     event the time to reach it, so the write neither clobbers the sale blindly nor waits
 *     forever for an order that may never come. Shopline has no compare-and-set: it always
 *     gets the absolute figure (set.json, never adjust.json), so a retry cannot count twice; a
 *     sale there not yet seen is corrected by the ledger's next figure after its order event.
 *   - Permanent rejections (unknown item, invalid location, not stocked there, bad quantity)
 *     go to inventory.levels.v1.dlq with the reason and raise PAYLOAD_REJECTED; the key is
 *     left alone until a newer figure arrives.
 *   - Restart safety: the consumer does not commit offsets; on every assignment it reads the
 *     compacted topic from the beginning, so the newest figure of every key is recomputed from
 *     Kafka. What was confirmed on the platform is kept in Postgres (push_level: version and
 *     figure per key, written after each confirmed call), so a restart rewrites only keys whose
 *     newest version was not confirmed, with the confirmed figure as compare figure. A crash
 *     between the platform's answer and the Postgres write only repeats a write (same
 *     idempotency key, or a CAS re-read).
 *   - Drift check every DRIFT_INTERVAL_MS: reads a rotating sample of confirmed keys (all of
 *     them after an incident: a period of 5xx / timeouts), compares with the ledger figure; a
 *     difference above DRIFT_THRESHOLD for longer than DRIFT_GRACE_MS raises STOCK_DRIFT and
 *     rewrites the ledger's figure; the exception is CLEARED once the figures agree again.
 *   - Metrics per shop (/metrics): shop_push_pending, shop_push_behind_seconds (age of the
 *     oldest change not yet on the platform), calls, throttled, conflicts, rejected, staleness;
 *     GET /admin/push gives the same as JSON.
 */
#ifndef SHOP_PUSH_H
#define SHOP_PUSH_H

#include <signal.h>
#include <stddef.h>

#include "http.h"
#include "platform.h"
#include "service.h"

struct push_opts {
    const char *shops_file; /* NULL or "": no shops (records are read and ignored) */
    const char *group_id;   /* consumer group (replicas share it) */
    long session_timeout_ms;
    long fetch_wait_ms; /* the levels consumer's fetch.wait.max.ms */
    long window_min_ms, window_max_ms;
    long low_stock;
    long cas_settle_ms;
    struct platform_budgets budgets; /* the shops' shared API buckets */
    long drift_interval_ms;          /* 0 = no drift check */
    long drift_sample;
    long drift_threshold;
    long drift_grace_ms;
};

struct push;

/* Build the pusher: load the shops, their confirmed figures from Postgres, start one worker
 * thread per shop and create the consumer. svc must be connected. Returns NULL with err. */
struct push *push_new(struct service *svc, const struct push_opts *opts, char *err, size_t errlen);

/* Consume inventory.levels.v1 until *running is 0 (the main-thread loop). Returns 0 or -EIO on
 * a fatal consumer error. */
int push_run(struct push *p, volatile sig_atomic_t *running);

/* Routes: GET /admin/push (per shop status). Valid while p lives. */
const struct http_route *push_routes(struct push *p, size_t *n);

/* Stop the workers (a call in flight finishes and is recorded) and free. NULL is fine. */
void push_free(struct push *p);

#endif
