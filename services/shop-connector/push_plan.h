/*
 * push_plan — the pure decisions of the outbound push (push.c, issue 7), apart from Kafka, HTTP,
 * Postgres and threads so they can be unit-tested: coalescing of level records per key, when a
 * key is due and what it needs (read or write), the order and size of a write batch, the
 * adaptive window, what an answer's outcome does to a key, the staleness histogram, the cost and
 * back-off figures of the shared bucket, and the SKU -> inventory item map of one batched
 * catalogue lookup. Nothing here locks: push.c calls these under its own lock.
 */
#ifndef SHOP_PUSH_PLAN_H
#define SHOP_PUSH_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

/* ---- one key: (inventory item, platform location) of a shop */

struct plan_key {
    int64_t version;      /* newest ledger figure's version; -1 = none seen */
    int64_t quantity;     /* its available figure (never below 0) */
    int64_t as_of_ms;     /* its wall time (staleness is measured from it) */
    int64_t done_version; /* newest version confirmed on the platform or rejected; -1 = none */
    bool plat_known;      /* plat_qty is what the platform holds as far as we know */
    int64_t plat_qty;
    bool need_read;      /* compare-and-set conflict: re-read before writing */
    bool force;          /* write even though version == done_version (drift correction) */
    int64_t not_before;  /* mono ms: held (CAS settle) until then; 0 = not held */
    int64_t dirty_since; /* mono ms of the first unwritten change; 0 = clean */
    int64_t drift_since; /* mono ms a drift was first seen; 0 = none */
};

/* A key with no figure yet (versions -1, platform figure unknown). */
void plan_key_init(struct plan_key *k);

/* true when the key has a figure not yet confirmed on the platform (or a forced rewrite). */
bool plan_key_dirty(const struct plan_key *k);

/*
 * Coalescing: apply a ledger record (version, available, as_of_ms) seen at mono ms now. Only a
 * version newer than the key's is taken (replays and reordering keep the newest figure); a
 * negative figure becomes 0. The key's dirty_since is set when it turns dirty and kept while
 * it stays dirty, so many changes within the window are one write of the newest figure. A key
 * held after a conflict is released at once (the newer figure is most likely the order behind
 * it). Returns true when the record was newer and applied, false when ignored.
 */
bool plan_key_apply(struct plan_key *k, int64_t version, int64_t available, int64_t as_of_ms,
                    int64_t now);

enum plan_action {
    PLAN_IDLE,  /* nothing to do */
    PLAN_HELD,  /* held after a conflict until *at */
    PLAN_READ,  /* read the platform's figure first (conflict, or unknown compare figure) */
    PLAN_WAIT,  /* coalescing: due at *at */
    PLAN_WRITE, /* due now */
};

/*
 * What a key needs at mono ms now with the shop's current window: compare_and_set platforms
 * need the platform's figure before the first write. *at gets the time of HELD and WAIT.
 */
enum plan_action plan_key_next(const struct plan_key *k, bool compare_and_set, long window_ms,
                               int64_t now, int64_t *at);

/* The figure a write states it replaces: the platform's as far as we know, else 0. */
int64_t plan_key_compare(const struct plan_key *k);

/*
 * Apply the outcome of writing (version, quantity) at mono ms now. LEVEL_OK: confirmed (the
 * platform holds quantity; the key stays dirty, from now, if a newer figure arrived during the
 * call). LEVEL_STALE (compare-and-set conflict): the key is held cas_settle_ms, then re-read
 * and written. LEVEL_REJECTED: that version is done (dead-lettered), the platform figure is
 * unknown. LEVEL_NOT_APPLIED: nothing changes (written again).
 */
void plan_key_written(struct plan_key *k, enum level_outcome o, int64_t version, int64_t quantity,
                      int64_t now, long cas_settle_ms);

/* A figure read from the platform becomes the compare figure and ends a pending re-read. */
void plan_key_read(struct plan_key *k, bool found, int64_t available);

/* ---- batches */

/* One key due for a call (ids owned by whoever filled it). */
struct plan_job {
    char *item_id, *location_id;
    int64_t version, quantity, as_of_ms;
    int urg;       /* plan_urgency() of quantity */
    int64_t since; /* dirty_since */
};

/* Urgency class of a figure: 0 for zero, 1 at or below low_stock, 2 otherwise. */
int plan_urgency(int64_t qty, long low_stock);

/*
 * Order jobs[0..n) by urgency, then oldest change first, and return how many go in the next
 * call: at most max_batch (the platform's per-call limit; 0 is taken as 1).
 */
size_t plan_batch(struct plan_job *jobs, size_t n, size_t max_batch);

/*
 * The next coalescing window: doubled (up to max) while the backlog of dirty keys exceeds two
 * calls on a batching platform, halved (down to min) once it fits in one call, else unchanged.
 */
long plan_window_adapt(long cur, size_t pending, size_t max_batch, long min, long max);

/* The window after a throttling answer: doubled up to max. */
long plan_window_throttled(long cur, long max);

/*
 * Early flush: true when the keys already due (ndue) are fewer than a call holds but the dirty
 * keys that are not held (nready, due or waiting) fill a whole call on a batching platform:
 * waiting longer would not save a call, only add staleness, so the oldest ones go now.
 */
bool plan_flush_early(size_t ndue, size_t nready, size_t max_batch);

/* ---- staleness: ledger change to platform updated */

#define PLAN_STALE_BUCKET_MS 50
#define PLAN_STALE_BUCKETS   2400 /* 50 ms buckets up to 120 s, the last one open */

struct plan_stale {
    uint32_t hist[PLAN_STALE_BUCKETS];
    uint64_t n;
};

/* Count one staleness of ms (negative counts as 0, beyond 120 s in the last bucket). */
void plan_stale_observe(struct plan_stale *h, int64_t ms);

/* Upper bound in ms of the bucket holding the q-quantile (0..1); 0 when nothing was counted. */
long plan_stale_quantile(const struct plan_stale *h, double q);

/* ---- the shared bucket */

/* Tokens to ask the bucket for a call of cost: never more than it can hold, at least 1. */
long plan_bucket_cost(long cost, long capacity);

/*
 * How long to back off after a throttling answer: Retry-After when given (>= 0), else the time
 * the restore rate needs for one call of call_cost; never under 250 ms.
 */
long plan_throttle_wait_ms(long retry_after_ms, long call_cost, long refill_per_s);

/* The next exponential back-off after a 5xx / timeout: 200 ms, doubling, at most 10 s. */
long plan_backoff_next(long cur);

/* ---- SKU -> inventory item (one catalogue query per batch) */

/* The SKUs of one consumer batch and the inventory items the catalogue gave them. */
struct plan_skus {
    struct plan_sku *v;
    size_t n, cap;
};

/* Empty set; release with plan_skus_release(). */
void plan_skus_init(struct plan_skus *s);
void plan_skus_release(struct plan_skus *s);

/* Add sku (copied) to be looked up; a SKU already present is not added twice. */
void plan_skus_add(struct plan_skus *s, const char *sku);

/*
 * The SKUs as a Postgres text[] literal ("{\"a\",\"b\\\"c\"}", every element quoted and
 * escaped), malloc'd; the caller frees it.
 */
char *plan_skus_pg_array(const struct plan_skus *s);

/* The catalogue says sku is on inventory item item_id (one call per matching variant row). A
 * SKU on two variant rows becomes ambiguous (as if not found). SKUs not added are ignored. */
void plan_skus_found(struct plan_skus *s, const char *sku, const char *item_id);

/* The item of sku: 0 with item filled, -ENOENT when not in the catalogue, ambiguous, never
 * added, or longer than itemcap. */
int plan_skus_item(const struct plan_skus *s, const char *sku, char *item, size_t itemcap);

#endif
