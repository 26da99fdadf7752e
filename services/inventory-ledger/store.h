/*
 * store — applies decoded events to the Postgres ledger, a whole consumed batch in ONE
 * transaction: dedupe on event id (applied_events' primary key), ledger entries as one
 * COPY, balances as one UPDATE, level outbox rows, exception outbox rows and
 * the consumer offsets, then COMMIT. Either all of a batch's effects and its offsets are
 * durable, or none: a kill -9 anywhere replays the batch, whose events are then duplicates.
 *
 * Concurrency: every (sku, location) a batch touches is locked (row lock on balances, in key
 * order, so replicas never deadlock on each other) before its balances are written, so counts
 * and late-sale corrections see a stable ledger for their keys. A batch that only moves stock
 * writes its entries before the lock and checks under it that no key's last count moved
 * (store_prepare()).
 *
 * Counts: a cycle count or snapshot at time T sets on_hand as of T: its entry is
 * counted − Σ(on_hand entries with occurred_at ≤ T), and T becomes the key's last count. An
 * on_hand entry arriving later with occurred_at ≤ the last count is recorded, plus a
 * "count_correction" entry of the opposite sign at the count's time: the count already saw
 * its effect, so it is not deducted twice. A count older than the last one is recorded with
 * delta 0 ("…_superseded").
 */
#ifndef INVENTORY_LEDGER_STORE_H
#define INVENTORY_LEDGER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "ledger.h"

/* Who applies: strings borrowed for the call. */
struct store_ctx {
    const char *tenant_id;
    const char *group_id; /* consumer group whose offsets are stored */
    /* Optional call-out run at the end of every batch inside its transaction, after the
     * entries and before the offsets and COMMIT, with every event of the batch (duplicates
     * included); a non-zero return rolls the batch back. Used by holds (holds_batch_hook()). */
    int (*batch_hook)(void *opaque, PGconn *conn, const struct ledger_event *evs, size_t n,
                      char *err, size_t errlen);
    void *batch_hook_opaque;
};

/* Next offset to consume of one partition, stored with the batch. */
struct store_offset {
    const char *topic;
    int32_t partition;
    int64_t next_offset;
};

/* What a batch did. */
struct store_stats {
    size_t events;     /* new events applied */
    size_t duplicates; /* events already applied (or repeated in the batch) */
    size_t entries;    /* ledger entries written */
    size_t exceptions; /* exception outbox rows written */
};

/*
 * Apply evs[0..n) (in order; each an event decoded by ledger_event_decode) and store
 * offs[0..noffs) in one transaction on conn (idle on entry, idle on return). Returns 0 once
 * committed; -EAGAIN on a deadlock or serialization failure (retry the batch), -EIO on another
 * database error, -ENOMEM; err says why. Nothing is applied when it fails.
 */
int store_apply(PGconn *conn, const struct store_ctx *ctx, const struct ledger_event *evs, size_t n,
                const struct store_offset *offs, size_t noffs, struct store_stats *st, char *err,
                size_t errlen);

/*
 * store_apply() in steps, so that a batch's first part can run while the batch before it
 * commits on another connection (app.c):
 * - store_begin() opens the transaction on conn and dedupes. Returns 0 with *out set, or what
 *   store_apply() returns (nothing left open).
 * - store_prepare(): when every new event only moves stock (no count, void or release), reads
 *   each key's last count without a lock and writes the entries under a savepoint; otherwise
 *   nothing. It takes no lock the batch before could wait for. Returns 0, or what
 *   store_apply() returns (*b rolled back and freed).
 * - then exactly one of: store_commit(), which locks the keys; if a key's last count moved
 *   since it was read, rolls back to the savepoint and derives the entries again; then
 *   balances, hook, exceptions, offsets and COMMIT. Returns like store_apply(); *b is freed
 *   either way. Or store_abort(): rolls back and frees *b.
 * Dedupe inserts the batch's event ids, so a batch must not start its store_begin() before the
 * batch before it returned from its own: if k+1 held an id of k first, k would wait for k+1
 * and k+1 for k's commit, a wait Postgres cannot see. evs, ctx and conn must stay valid until
 * the end; err is where store_begin() and store_prepare() write, store_commit() takes its own.
 */
struct store_batch;
int store_begin(PGconn *conn, const struct store_ctx *ctx, const struct ledger_event *evs, size_t n,
                struct store_batch **out, char *err, size_t errlen);
int store_prepare(struct store_batch *b);
int store_commit(struct store_batch *b, const struct store_offset *offs, size_t noffs,
                 struct store_stats *st, char *err, size_t errlen);
void store_abort(struct store_batch *b);

/*
 * Set .offset of every partition of parts to the next offset stored for group_id, leaving
 * RD_KAFKA_OFFSET_BEGINNING where none is stored. Returns 0 or -EIO with err.
 */
int store_offsets_load(PGconn *conn, const char *group_id, rd_kafka_topic_partition_list_t *parts,
                       char *err, size_t errlen);

#endif
