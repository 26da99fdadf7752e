/*
 * holds — checkout and pickup holds in Redis (issue 4; DESIGN.md flow 5).
 *
 * A hold takes units of one or more SKUs at one scope — a channel location (online checkout)
 * or a ledger location (click & collect pickup store) — for a time-to-live. Its lines are
 * all-or-nothing.
 *
 * Redis (every key under "ts:{<tenant>}:" so one tenant's keys share a cluster slot):
 *   f:<scope>:<sku>  hash  b = available-to-sell BEFORE holds, as of the last sync from
 *                          Postgres; m = member locations (channel scope); c = channels
 *                          containing the location (location scope)
 *   z:<scope>:<sku>  zset  live hold lines "<hold id>|<qty>" scored by expiry (ms, Redis TIME);
 *                          every script first drops members whose score ≤ now, so an expired
 *                          hold stops counting at once, without a sweeper
 *   q:<scope>:<sku>  string the sum of z's quantities, kept by every script that adds or
 *                          removes a line (so a check costs O(expired lines), not O(live))
 *   k:<scope>:<sku>  zset  hold lines consumed by an order event, scored by when (kept 15 min)
 *   h:<hold id>      hash  the hold (state, expiry, scope, lines, idempotency fingerprint)
 *   x:chk:<id>, x:cart:<token>  → hold id, to match orders by checkout id / cart token
 *   dirty            set of "<scope>\t<sku>" whose figure a hold changed (→ inventory.levels.v1)
 *   exp              zset of "<scope>\t<sku>" scored at or before the earliest expiry of its
 *                    live lines (ZADD LT, so a hold that expires after it writes nothing here);
 *                    when that time is up the sync publishes the scope and moves the entry to
 *                    the next expiry in z (until 2026-12-05: one entry "<hold id>\t<scope>\t<sku>"
 *                    per line, still read and dropped when due)
 *   synced           present once the figures were fully loaded since Redis last lost data
 * scope is "l:<location>" or "c:<channel location>".
 *
 * Check-and-hold is one Lua script: available(scope, sku) = b − live holds counted against
 * the scope (a channel also counts the pickup holds at its member locations; a pickup hold is
 * also checked against every channel containing its store), all lines or none.
 *
 * Never counted twice (hold and committed). The ledger applies an order that names a hold in
 * the batch transaction that adds its `committed`, and records a hold_events row there (the
 * batch call-out holds_batch_hook()). The sync (holds_sync_round()) reads, in ONE
 * repeatable-read snapshot, the pending hold events and the figures of every key changed
 * since the last sync, then writes those figures AND consumes those holds in ONE Lua script.
 * So in Redis `b` reflects a confirmation exactly when the hold is no longer live: the
 * check-and-hold sees each unit once. Readers that take figures from Postgres and holds from
 * Redis (level publication, GET /v1/stock: availability_reserved()) get, in the same SQL
 * statement as the figures, the hold references that statement's snapshot shows confirmed
 * (holds_confirmed_in()), and count a hold — live or already consumed in Redis — only
 * when it is not among them: if the snapshot has the confirmation its `committed` counts the
 * units, else the hold does. Either way once.
 */
#ifndef INVENTORY_LEDGER_HOLDS_H
#define INVENTORY_LEDGER_HOLDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "availability.h"
#include "ledger.h"
#include "service.h"

#define HOLDS_MAX_LINES 100
#define HOLDS_MAX_TTL_S 86400

struct holds;

/*
 * The holds as availability sees them (availability.h's opaque type). `confirmed` is the
 * newline-separated list of hold references that the caller's Postgres snapshot shows
 * confirmed (NULL = none); `cache` holds prefetched reserved figures; `failed` is set when
 * Redis could not be read (the caller must not publish figures then).
 */
struct availability_holds {
    struct holds *h;
    const char *confirmed;
    struct holds_cache *cache;
    bool failed;
};

/* One line of a hold. */
struct hold_line {
    char sku[201];
    int64_t quantity;
    int64_t available; /* on a refusal: units available for this line (≥ 0) */
    bool short_;       /* on a refusal: this line could not be held */
};

/* A hold as created or read. */
struct hold {
    char id[37];
    char state[16]; /* held, expired, confirmed, released */
    bool channel;   /* scope is a channel location, else a ledger (pickup) location */
    char scope_id[201];
    char checkout_id[201], cart_token[201];
    int64_t created_at_ms, expires_at_ms, ttl_s;
    struct hold_line lines[HOLDS_MAX_LINES];
    size_t nlines;
};

/* Results of holds operations besides 0. */
enum {
    HOLDS_ERR_UNAVAILABLE = -1000, /* Redis unreachable or figures not loaded: 503 */
    HOLDS_ERR_SHORT,               /* not enough stock: 409, lines[].available set */
    HOLDS_ERR_CONFLICT,            /* idempotency key reused with another request: 422 */
    HOLDS_ERR_NOT_FOUND,           /* 404 */
    HOLDS_ERR_STATE,               /* not held any more (expired, confirmed, released): 409 */
};

/*
 * Create the holds of svc (its Redis pool, Postgres pool, tenant; all outlive the result) and
 * start the sync thread running holds_sync_round() every interval_ms (none when interval_ms
 * is 0). Returns NULL with err. Free with holds_free().
 */
struct holds *holds_new(struct service *svc, long interval_ms, char *err, size_t errlen);

/* Stop the sync thread (idempotent); h stays usable for requests still in flight. NULL is
 * fine. */
void holds_stop(struct holds *h);

/* Stop the sync thread, answer the creates still queued, stop the sender threads and free.
 * NULL is fine. */
void holds_free(struct holds *h);

/* The view to hand to levels/availability code (no confirmations, no cache); owned by h. */
struct availability_holds *holds_view(struct holds *h);

/*
 * A request to hold req->lines (SKUs distinct) at req's scope for req->ttl_s seconds, under
 * hold id uuid_from_name("hold/<tenant>/<idem_key>"). The caller fills the first fields and
 * keeps everything alive until done(c) has been called; the rest is holds.c's.
 */
struct holds_create {
    const char *idem_key;
    struct hold *req;
    char *err; /* why, on an error */
    size_t errlen;
    void (*done)(struct holds_create *c); /* on a sender thread, once; then holds_create_finish */
    void *arg;                            /* the caller's */
    /* holds.c's */
    int rc;
    char fp[17], scope[256];
    struct holds_create *next;
};

/*
 * Queue c and return at once; c->done(c) is called on a sender thread once c's answer is in.
 * Concurrent creates go to Redis together, in one script call per batch that checks and takes
 * each hold in turn, exactly as if each had been its own call (a Redis failure fails the whole
 * batch with 503s). Thread-safe. done must not block: it runs between other holds' answers.
 */
void holds_create_submit(struct holds *h, struct holds_create *c);

/*
 * After done: the result. 0 with req filled (id, state, times), or 1 when the same request was
 * made before (req then holds the stored hold: this reads it from Redis, so call it where a
 * round trip may block). Errors: HOLDS_ERR_SHORT (req->lines[i].available/short_ set),
 * HOLDS_ERR_CONFLICT, HOLDS_ERR_UNAVAILABLE; c->err says why.
 */
int holds_create_finish(struct holds *h, struct holds_create *c);

/* Read hold id into out. 0, HOLDS_ERR_NOT_FOUND or HOLDS_ERR_UNAVAILABLE. */
int holds_get(struct holds *h, const char *id, struct hold *out, char *err, size_t errlen);

/* Set a live hold's expiry to now + ttl_s. 0 (out filled), HOLDS_ERR_NOT_FOUND,
 * HOLDS_ERR_STATE (expired, confirmed or released), HOLDS_ERR_UNAVAILABLE. */
int holds_extend(struct holds *h, const char *id, int64_t ttl_s, struct hold *out, char *err,
                 size_t errlen);

/* Release a hold (idempotent). 0 (out filled), HOLDS_ERR_NOT_FOUND, HOLDS_ERR_STATE when it
 * was confirmed by an order, HOLDS_ERR_UNAVAILABLE. */
int holds_release(struct holds *h, const char *id, struct hold *out, char *err, size_t errlen);

/*
 * Available-to-sell of sku at a scope as check-and-hold sees it, unclamped: *base (figure
 * before holds), *held (live holds counted against the scope), *available (the least over the
 * scope and, for a location, the channels containing it). 0 or HOLDS_ERR_UNAVAILABLE.
 */
int holds_availability(struct holds *h, bool channel, const char *scope_id, const char *sku,
                       int64_t *base, int64_t *held, int64_t *available, char *err, size_t errlen);

/*
 * One sync: write the figures of changed keys (all keys when Redis lost its data) to Redis
 * together with the consumption or release of the holds named by pending order events, then
 * queue level publications for scopes whose figure holds changed (and expired). Only one
 * replica syncs at a time (advisory lock). Returns the number of figures and events written,
 * or negative with err.
 */
int holds_sync_round(struct holds *h, char *err, size_t errlen);

/*
 * store_ctx batch call-out: inside the ledger's batch transaction on conn, record a
 * hold_events row for every order event of evs that names a hold (hold id, checkout id or
 * cart token): created → confirm, cancelled → release. Duplicates change nothing. opaque is
 * the tenant id (const char *). Returns 0 or -EIO with err.
 */
int holds_batch_hook(void *opaque, PGconn *conn, const struct ledger_event *evs, size_t n,
                     char *err, size_t errlen);

/*
 * Prefetch into view (a stack copy of holds_view() with `confirmed` set by the caller) the
 * reserved figures of the given (location, sku) pairs and (channel, sku) pairs in one Redis
 * call, so availability_reserved()/availability_channel() do not call Redis per key. Sets
 * view->failed when Redis cannot be read. Free with holds_view_release().
 */
void holds_view_prefetch(struct availability_holds *view, const char *const *scopes,
                         const char *const *skus, size_t n);

/* Free the view's cache. */
void holds_view_release(struct availability_holds *view);

/* Reserved units of sku at scope ("l:<loc>" / "c:<channel>") in view: from the prefetched
 * cache, else one Redis call. Sets view->failed on a Redis failure (returns 0 then). */
int64_t holds_view_reserved(struct availability_holds *view, const char *scope, const char *sku);

#endif
