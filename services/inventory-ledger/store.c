/*
 * store — one consumed batch, one transaction. See store.h for the model.
 *
 * Phases of store_apply():
 *   1. dedupe: BEGIN, a savepoint and a COPY of the batch's distinct event ids into
 *      applied_events (sorted, so concurrent replicas lock in the same order) as one query;
 *      only when the primary key refuses one, roll back to the savepoint, look the ids up and
 *      COPY the new ones (see dedupe());
 *   2. look up the existing entries of the sources that voids and order releases refer to;
 *   3. lock every touched balance row (key order; missing ones created first) and read its
 *      last count time and whether SKU and location are known;
 *   4. turn operations into entries in memory (counts query Σ on_hand as of their time);
 *   5. write entries (one COPY), balances (+ level outbox), the batch hook; then exceptions,
 *      offsets and COMMIT in one libpq pipeline (one round trip, see pipeline_collect()).
 *
 * A batch whose new events only move stock (sales, returns, receipts, transfers, damage; no
 * count, void or release) has phases 3-5 split by store_prepare(): its entries depend on
 * nothing but each key's last count, so they are derived from an unlocked read of it and
 * written (phase 5's COPY, under the savepoint "early") before the lock, while the batch before
 * may still be committing. store_commit() then locks (phase 3) and compares: a last count
 * that moved meanwhile (a count of a replica or of the batch before) means rolling back to
 * "early" and deriving the entries again under the lock, as phase 4 does for other batches.
 *
 * Cost per batch of 1000 one-line events (debug log "batch phases us"): the entries' COPY is
 * the bulk; COPY rather than INSERT … SELECT unnest() because it skips the executor per row.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "pgarr.h"
#include "tillsync/v1/exception.pb-c.h"

/* One (sku, location) the batch touches. sku/loc are borrowed from the events or a PGresult
 * that lives as long as the applier. */
struct key {
    const char *sku, *loc;
    int64_t last_count; /* occurred-at of the newest count, 0 = none */
    int64_t seen_count; /* last_count as read before the lock (store_prepare()) */
    int64_t d[3];       /* deltas of the batch per bucket */
    bool counted;       /* last_count moved in this batch */
    bool known_sku, known_loc;
    bool used; /* an entry of a new event touches it */
    size_t first_ev;
};

/* One entry to write. */
struct row {
    size_t key;
    enum ledger_bucket bucket;
    int64_t delta;
    const char *reason;
    size_t ev;
    const char *line_ref;
    int64_t occurred;
};

/* One exception to write to the outbox. */
struct exc {
    int type;
    char dedupe[320];
    char summary[320];
    size_t ev;
    const char *sku, *loc;
};

struct applier {
    PGconn *conn;
    const struct store_ctx *ctx;
    const struct ledger_event *evs;
    size_t n;
    bool *isnew;
    struct key *keys;
    size_t nkeys, capkeys;
    size_t *slots; /* open addressing: key index + 1, 0 = empty */
    size_t nslots;
    struct row *rows;
    size_t nrows, caprows;
    struct exc *excs;
    size_t nexcs, capexcs;
    PGresult *lookups; /* source_ref, sku, location_id, bucket, sum */
    PGresult *locked;  /* rows of the lock statement (their strings back keys) */
    char *err;
    size_t errlen;
    bool unique_violation; /* the last failed statement broke a unique key (23505) */
    const char *queued[4]; /* what of each statement sent in the tail's pipeline */
    size_t nqueued;
    bool pipeline;   /* the connection is in pipeline mode (batch_finish()) */
    bool peeked_all; /* the unlocked read (store_prepare()) found every key's row */
};

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t c = *cap ? *cap : 16;
    void *n;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    n = realloc(*p, c * size);
    if (!n)
        return -ENOMEM;
    *p = n;
    *cap = c;
    return 0;
}

/* Monotonic microseconds, for the phase timings in the debug log. */
static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t key_hash(const char *sku, const char *loc)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = sku; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = loc; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static int slots_rebuild(struct applier *a, size_t nslots)
{
    size_t *s = calloc(nslots, sizeof(*s));

    if (!s)
        return -ENOMEM;
    free(a->slots);
    a->slots = s;
    a->nslots = nslots;
    for (size_t i = 0; i < a->nkeys; i++) {
        size_t j = key_hash(a->keys[i].sku, a->keys[i].loc) & (nslots - 1);

        while (s[j])
            j = (j + 1) & (nslots - 1);
        s[j] = i + 1;
    }
    return 0;
}

/* Index of (sku, loc), added when absent; (size_t)-1 when out of memory. */
static size_t key_get(struct applier *a, const char *sku, const char *loc, bool add)
{
    size_t j;

    if (a->nslots == 0 || (a->nkeys + 1) * 2 > a->nslots)
        if (slots_rebuild(a, a->nslots ? a->nslots * 2 : 256))
            return (size_t)-1;
    j = key_hash(sku, loc) & (a->nslots - 1);
    while (a->slots[j]) {
        struct key *k = &a->keys[a->slots[j] - 1];

        if (strcmp(k->sku, sku) == 0 && strcmp(k->loc, loc) == 0)
            return a->slots[j] - 1;
        j = (j + 1) & (a->nslots - 1);
    }
    if (!add)
        return (size_t)-1;
    if (grow((void **)&a->keys, &a->capkeys, a->nkeys + 1, sizeof(*a->keys)))
        return (size_t)-1;
    a->keys[a->nkeys] = (struct key){.sku = sku, .loc = loc};
    a->slots[j] = ++a->nkeys;
    return a->nkeys - 1;
}

static int sql_fail(struct applier *a, PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int rc = -EIO;

    a->unique_violation = state && strcmp(state, "23505") == 0;
    /* deadlock, serialization failure, or a replica applied the same event id concurrently
     * (applied_events' primary key): the batch is retried, and its event is then a duplicate */
    if (state &&
        (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0 || strcmp(state, "23505") == 0))
        rc = -EAGAIN;
    snprintf(a->err, a->errlen, "%s: %s", what,
             res ? PQresultErrorMessage(res) : PQerrorMessage(a->conn));
    PQclear(res);
    return rc;
}

/* Run a statement; *out gets the result when the caller wants rows. */
static int run(struct applier *a, const char *what, const char *sql, int nparams,
               const char *const *params, PGresult **out)
{
    PGresult *res = PQexecParams(a->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return sql_fail(a, res, what);
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

/* Rows of a COPY … FROM STDIN in text format, built in memory. Invariant: buf[0..len) holds
 * whole rows so far (plus the current one); oom is set once memory ran out. */
struct copybuf {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void copy_put(struct copybuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        char *nb;

        while (b->len + n > cap)
            cap *= 2;
        nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

/* Append a text field, escaped for COPY's text format; sep is '\t' or '\n' (end of row). */
static void copy_text(struct copybuf *b, const char *s, char sep)
{
    const char *p = s ? s : "", *from = p;

    for (; *p; p++) {
        const char *esc = *p == '\\'   ? "\\\\"
                          : *p == '\t' ? "\\t"
                          : *p == '\n' ? "\\n"
                          : *p == '\r' ? "\\r"
                                       : NULL;

        if (!esc)
            continue;
        copy_put(b, from, (size_t)(p - from));
        copy_put(b, esc, 2);
        from = p + 1;
    }
    copy_put(b, from, (size_t)(p - from));
    copy_put(b, &sep, 1);
}

static void copy_int(struct copybuf *b, int64_t v, char sep)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%" PRId64 "%c", v, sep);

    copy_put(b, num, (size_t)n);
}

/*
 * Send b's rows with sql ("COPY t (…) FROM STDIN"): cheaper per row than a multi-row INSERT
 * (no executor per row, heap pages filled in bulk). Returns 0, or what sql_fail() returns.
 */
static int copy_rows(struct applier *a, const char *what, const char *sql, const struct copybuf *b)
{
    PGresult *res, *extra;
    int rc = 0;

    a->unique_violation = false;
    if (b->oom) {
        snprintf(a->err, a->errlen, "out of memory");
        return -ENOMEM;
    }
    res = PQexec(a->conn, sql);
    if (!res || PQresultStatus(res) != PGRES_COPY_IN)
        return sql_fail(a, res, what);
    PQclear(res);
    if (PQputCopyData(a->conn, b->buf ? b->buf : "", (int)b->len) != 1 ||
        PQputCopyEnd(a->conn, NULL) != 1) {
        snprintf(a->err, a->errlen, "%s: %s", what, PQerrorMessage(a->conn));
        rc = -EIO;
    }
    /* the outcome of the COPY, then nothing (drained so the connection is idle again) */
    res = PQgetResult(a->conn);
    if (rc == 0 && (!res || PQresultStatus(res) != PGRES_COMMAND_OK)) {
        rc = sql_fail(a, res, what);
        res = NULL;
    }
    PQclear(res);
    while ((extra = PQgetResult(a->conn)))
        PQclear(extra);
    return rc;
}

static int exc_add(struct applier *a, int type, size_t ev, const char *sku, const char *loc,
                   const char *dedupe_fmt, const char *summary)
{
    struct exc *x;

    if (grow((void **)&a->excs, &a->capexcs, a->nexcs + 1, sizeof(*a->excs)))
        return -ENOMEM;
    x = &a->excs[a->nexcs++];
    x->type = type;
    x->ev = ev;
    x->sku = sku ? sku : "";
    x->loc = loc ? loc : "";
    snprintf(x->dedupe, sizeof(x->dedupe), "%s/%s/%s", dedupe_fmt, x->loc, x->sku);
    snprintf(x->summary, sizeof(x->summary), "%s", summary);
    return 0;
}

/* ---- phase 1: dedupe */

static int cmp_idx_by_id(const void *x, const void *y, void *evs)
{
    const struct ledger_event *e = evs;

    return strcmp(e[*(const size_t *)x].event_id, e[*(const size_t *)y].event_id);
}

/*
 * Open the batch's transaction and find which events are new. The first occurrence in batch
 * order of each distinct id is the candidate; later ones are duplicates. The candidates' ids
 * are COPYed into applied_events (sorted, so concurrent replicas take the index locks in the
 * same order) under a savepoint, sent with the BEGIN and the SAVEPOINT as one query: in the
 * common case none was applied before and that one round trip is the whole dedupe. When
 * the primary key refuses one (a replay after a crash or a rebalance), the savepoint is rolled
 * back, the ids already there are looked up, and only the others are COPYed.
 *
 * A replica inserting the same id concurrently makes the COPY wait for its transaction; if it
 * commits, the COPY fails on the key: on the first try that is the fallback above (which then
 * finds the id), on the second the batch fails with -EAGAIN and is retried. Either way the
 * event is applied once.
 */
static int dedupe(struct applier *a, struct store_stats *st)
{
    size_t *order = malloc((a->n ? a->n : 1) * sizeof(*order));
    size_t *firsts = malloc((a->n ? a->n : 1) * sizeof(*firsts)); /* candidates, sorted by id */
    struct pgarr ids;
    struct copybuf all = {0}, fresh = {0};
    PGresult *res = NULL;
    const char *params[1];
    size_t nfirst = 0, nfresh = 0;
    int rc = -ENOMEM;

    pgarr_init(&ids);
    if (!order || !firsts)
        goto out;
    for (size_t i = 0; i < a->n; i++)
        order[i] = i;
    qsort_r(order, a->n, sizeof(*order), cmp_idx_by_id, (void *)a->evs);
    /* runs of equal ids in order: the run's smallest batch index is the candidate */
    for (size_t i = 0; i < a->n;) {
        size_t j = i, first = order[i];

        while (j < a->n && strcmp(a->evs[order[j]].event_id, a->evs[order[i]].event_id) == 0) {
            if (order[j] < first)
                first = order[j];
            j++;
        }
        firsts[nfirst++] = first;
        copy_text(&all, a->evs[first].event_id, '\n');
        i = j;
    }
    if (nfirst == 0) {
        rc = run(a, "begin", "BEGIN; SAVEPOINT dedupe", 0, NULL, NULL);
        goto out;
    }
    /* one round trip: the transaction, the savepoint and the COPY (simple query protocol) */
    rc = copy_rows(a, "dedupe insert",
                   "BEGIN; SAVEPOINT dedupe; COPY applied_events (event_id) FROM STDIN", &all);
    if (rc == 0) {
        for (size_t i = 0; i < nfirst; i++)
            a->isnew[firsts[i]] = true;
        goto count;
    }
    if (!a->unique_violation)
        goto out;
    /* some were applied before: keep the others */
    if ((rc = run(a, "dedupe rollback", "ROLLBACK TO SAVEPOINT dedupe", 0, NULL, NULL)))
        goto out;
    for (size_t i = 0; i < nfirst; i++)
        pgarr_text(&ids, a->evs[firsts[i]].event_id);
    rc = -ENOMEM;
    params[0] = pgarr_finish(&ids);
    if (!params[0])
        goto out;
    rc = run(a, "dedupe lookup",
             "SELECT event_id FROM applied_events WHERE event_id = ANY($1::text[]) "
             "ORDER BY event_id COLLATE \"C\"",
             1, params, &res);
    if (rc)
        goto out;
    /* both lists are sorted by id (strcmp order: C collation): merge them */
    for (size_t i = 0, r = 0; i < nfirst; i++) {
        const char *id = a->evs[firsts[i]].event_id;
        int c = -1;

        while (r < (size_t)PQntuples(res) && (c = strcmp(PQgetvalue(res, (int)r, 0), id)) < 0)
            r++;
        if (r < (size_t)PQntuples(res) && c == 0)
            continue;
        a->isnew[firsts[i]] = true;
        copy_text(&fresh, id, '\n');
        nfresh++;
    }
    if (nfresh)
        rc = copy_rows(a, "dedupe insert", "COPY applied_events (event_id) FROM STDIN", &fresh);
    if (rc)
        goto out;
count:
    for (size_t i = 0; i < a->n; i++) {
        if (a->isnew[i])
            st->events++;
        else
            st->duplicates++;
    }
out:
    PQclear(res);
    pgarr_release(&ids);
    free(all.buf);
    free(fresh.buf);
    free(firsts);
    free(order);
    return rc;
}

/* ---- phase 2: sources that voids and releases refer to */

static int lookups_load(struct applier *a)
{
    struct pgarr refs;
    const char *params[2];
    int rc = -ENOMEM;

    pgarr_init(&refs);
    for (size_t i = 0; i < a->n; i++) {
        if (!a->isnew[i])
            continue;
        for (size_t j = 0; j < a->evs[i].nops; j++) {
            const struct ledger_op *op = &a->evs[i].ops[j];

            if (op->kind == LEDGER_OP_REVERSE)
                pgarr_text(&refs, op->ref);
            else if (op->kind == LEDGER_OP_RELEASE)
                pgarr_text(&refs, a->evs[i].source_ref);
        }
    }
    if (refs.n == 0) {
        rc = 0;
        goto out;
    }
    params[0] = a->ctx->tenant_id;
    params[1] = pgarr_finish(&refs);
    if (!params[1])
        goto out;
    rc = run(a, "source lookup",
             "SELECT source_ref, sku, location_id, bucket, sum(delta)::bigint FROM ledger_entries "
             "WHERE tenant_id = $1 AND source_ref = ANY($2::text[]) GROUP BY 1, 2, 3, 4",
             2, params, &a->lookups);
    if (rc)
        goto out;
    for (int r = 0; r < PQntuples(a->lookups); r++)
        if (key_get(a, PQgetvalue(a->lookups, r, 1), PQgetvalue(a->lookups, r, 2), true) ==
            (size_t)-1) {
            rc = -ENOMEM;
            goto out;
        }
out:
    pgarr_release(&refs);
    return rc;
}

/* ---- phase 3: lock the keys */

static int cmp_keys(const void *x, const void *y)
{
    const struct key *p = *(const struct key *const *)x, *q = *(const struct key *const *)y;
    int c = strcmp(p->sku, q->sku);

    return c ? c : strcmp(p->loc, q->loc);
}

/* Each key's balance row: its last count time, whether SKU and location are known (KEYS_KNOWN,
 * left out when they were read already), locked in key order (KEYS_LOCK). */
#define KEYS_COUNT "SELECT b.sku, b.location_id, b.last_count_at_ms "
#define KEYS_KNOWN                                                                                 \
    ", EXISTS (SELECT 1 FROM skus s WHERE s.tenant_id = $1 AND s.sku = b.sku), "                   \
    "  EXISTS (SELECT 1 FROM locations l WHERE l.tenant_id = $1 "                                  \
    "          AND l.location_id = b.location_id) "
#define KEYS_FROM                                                                                  \
    "FROM balances b JOIN unnest($2::text[], $3::text[]) AS k(s, l) "                              \
    "  ON b.tenant_id = $1 AND b.sku = k.s AND b.location_id = k.l "
#define KEYS_LOCK "ORDER BY b.sku COLLATE \"C\", b.location_id COLLATE \"C\" FOR UPDATE OF b"

/*
 * Read every key's balance row: its last count time and whether SKU and location are known.
 * lock: lock the rows first (phase 3). Without: a plain read for store_prepare()'s early
 * entries, where a key with no row yet has no count; keys_moved() later compares the figures
 * with the locked ones. The lock after such a read reads only the counts when every key had
 * its row then (a key's SKU or location known a moment later changes no figure).
 */
static int keys_read(struct applier *a, bool lock)
{
    bool known = !lock || !a->peeked_all;
    struct key **sorted = NULL;
    struct pgarr skus, locs;
    const char *params[3];
    int rc = -ENOMEM;

    pgarr_init(&skus);
    pgarr_init(&locs);
    if (a->nkeys == 0)
        return 0;
    sorted = malloc(a->nkeys * sizeof(*sorted));
    if (!sorted)
        goto out;
    for (size_t i = 0; i < a->nkeys; i++)
        sorted[i] = &a->keys[i];
    qsort(sorted, a->nkeys, sizeof(*sorted), cmp_keys);
    for (size_t i = 0; i < a->nkeys; i++) {
        pgarr_text(&skus, sorted[i]->sku);
        pgarr_text(&locs, sorted[i]->loc);
    }
    params[0] = a->ctx->tenant_id;
    params[1] = pgarr_finish(&skus);
    params[2] = pgarr_finish(&locs);
    if (!params[1] || !params[2])
        goto out;
    /* Lock the existing rows (most keys, once a key has been seen) in key order; C collation
     * for the ORDER BY so Postgres locks in the order we sorted (strcmp). Only when some are
     * missing: create them (sorted too) and lock again — rows already held are no-ops then. A
     * deadlock with a replica creating the same keys is retried (-EAGAIN) like any other. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (!lock || (size_t)PQntuples(a->locked) >= a->nkeys)
                break;
            rc = run(a, "create balances",
                     "INSERT INTO balances (tenant_id, sku, location_id) "
                     "SELECT $1, s, l FROM unnest($2::text[], $3::text[]) AS k(s, l) "
                     "ORDER BY s COLLATE \"C\", l COLLATE \"C\" ON CONFLICT DO NOTHING",
                     3, params, NULL);
            if (rc)
                goto out;
        }
        PQclear(a->locked);
        a->locked = NULL;
        if (pass == 1)
            known = true; /* the rows created have not been read */
        rc = run(a, lock ? "lock balances" : "peek balances",
                 !lock   ? KEYS_COUNT KEYS_KNOWN KEYS_FROM
                 : known ? KEYS_COUNT KEYS_KNOWN KEYS_FROM KEYS_LOCK
                         : KEYS_COUNT KEYS_FROM KEYS_LOCK,
                 3, params, &a->locked);
        if (rc)
            goto out;
    }
    if (!lock)
        a->peeked_all = (size_t)PQntuples(a->locked) == a->nkeys;
    for (int r = 0; r < PQntuples(a->locked); r++) {
        size_t k = key_get(a, PQgetvalue(a->locked, r, 0), PQgetvalue(a->locked, r, 1), false);

        if (k == (size_t)-1)
            continue;
        a->keys[k].last_count = strtoll(PQgetvalue(a->locked, r, 2), NULL, 10);
        if (!known)
            continue;
        a->keys[k].known_sku = PQgetvalue(a->locked, r, 3)[0] == 't';
        a->keys[k].known_loc = PQgetvalue(a->locked, r, 4)[0] == 't';
    }
    for (size_t i = 0; !lock && i < a->nkeys; i++)
        a->keys[i].seen_count = a->keys[i].last_count;
out:
    pgarr_release(&skus);
    pgarr_release(&locs);
    free(sorted);
    return rc;
}

/* ---- phase 4: operations → entries */

static int row_add(struct applier *a, size_t key, enum ledger_bucket b, int64_t delta,
                   const char *reason, size_t ev, const char *line_ref, int64_t occurred)
{
    struct key *k = &a->keys[key];

    if (grow((void **)&a->rows, &a->caprows, a->nrows + 1, sizeof(*a->rows)))
        return -ENOMEM;
    a->rows[a->nrows++] = (struct row){key, b, delta, reason, ev, line_ref, occurred};
    k->d[b] += delta;
    if (!k->used) {
        k->used = true;
        k->first_ev = ev;
    }
    return 0;
}

/* An on_hand/committed/in_transit movement, corrected when a count already saw it. */
static int move_apply(struct applier *a, size_t ev, size_t key, enum ledger_bucket b, int64_t delta,
                      const char *reason, const char *line_ref)
{
    int64_t at = a->evs[ev].occurred_at_ms;
    int rc;

    if (delta == 0)
        return 0;
    rc = row_add(a, key, b, delta, reason, ev, line_ref, at);
    if (rc == 0 && b == LEDGER_ON_HAND && a->keys[key].last_count && at <= a->keys[key].last_count)
        rc = row_add(a, key, b, -delta, "count_correction", ev, line_ref, a->keys[key].last_count);
    return rc;
}

static int count_apply(struct applier *a, size_t ev, const struct ledger_op *op, size_t key)
{
    struct key *k = &a->keys[key];
    int64_t at = a->evs[ev].occurred_at_ms, sum;
    char atbuf[32];
    const char *params[4];
    PGresult *res = NULL;
    int rc;

    if (k->last_count && at < k->last_count) {
        const char *reason =
            strcmp(op->reason, "snapshot") == 0 ? "snapshot_superseded" : "cycle_count_superseded";

        /* kept for history; the newer count stands */
        if (grow((void **)&a->rows, &a->caprows, a->nrows + 1, sizeof(*a->rows)))
            return -ENOMEM;
        a->rows[a->nrows++] = (struct row){key, LEDGER_ON_HAND, 0, reason, ev, op->line_ref, at};
        return 0;
    }
    snprintf(atbuf, sizeof(atbuf), "%" PRId64, at);
    params[0] = a->ctx->tenant_id;
    params[1] = k->sku;
    params[2] = k->loc;
    params[3] = atbuf;
    rc = run(a, "count",
             "SELECT coalesce(sum(delta), 0)::bigint FROM ledger_entries WHERE tenant_id = $1 "
             "AND sku = $2 AND location_id = $3 AND bucket = 'on_hand' AND occurred_at_ms <= $4",
             4, params, &res);
    if (rc)
        return rc;
    sum = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    for (size_t i = 0; i < a->nrows; i++)
        if (a->rows[i].key == key && a->rows[i].bucket == LEDGER_ON_HAND &&
            a->rows[i].occurred <= at)
            sum += a->rows[i].delta;
    rc = row_add(a, key, LEDGER_ON_HAND, op->qty - sum, op->reason, ev, op->line_ref, at);
    k->last_count = at;
    k->counted = true;
    k->used = true;
    return rc;
}

/* Net per (key, bucket) of every entry of source ref so far (database + this batch). */
struct net {
    size_t key;
    enum ledger_bucket bucket;
    int64_t sum;
};

static int net_add(struct net **nets, size_t *n, size_t *cap, size_t key, enum ledger_bucket b,
                   int64_t v)
{
    for (size_t i = 0; i < *n; i++)
        if ((*nets)[i].key == key && (*nets)[i].bucket == b) {
            (*nets)[i].sum += v;
            return 0;
        }
    if (grow((void **)nets, cap, *n + 1, sizeof(**nets)))
        return -ENOMEM;
    (*nets)[(*n)++] = (struct net){key, b, v};
    return 0;
}

static enum ledger_bucket bucket_parse(const char *s)
{
    if (strcmp(s, "committed") == 0)
        return LEDGER_COMMITTED;
    if (strcmp(s, "in_transit") == 0)
        return LEDGER_IN_TRANSIT;
    return LEDGER_ON_HAND;
}

static int nets_of(struct applier *a, const char *ref, struct net **nets, size_t *n, size_t *cap)
{
    int rc = 0;

    *n = 0;
    for (int r = 0; a->lookups && rc == 0 && r < PQntuples(a->lookups); r++) {
        size_t k;

        if (strcmp(PQgetvalue(a->lookups, r, 0), ref) != 0)
            continue;
        k = key_get(a, PQgetvalue(a->lookups, r, 1), PQgetvalue(a->lookups, r, 2), false);
        if (k != (size_t)-1)
            rc = net_add(nets, n, cap, k, bucket_parse(PQgetvalue(a->lookups, r, 3)),
                         strtoll(PQgetvalue(a->lookups, r, 4), NULL, 10));
    }
    for (size_t i = 0; rc == 0 && i < a->nrows; i++)
        if (strcmp(a->evs[a->rows[i].ev].source_ref, ref) == 0)
            rc = net_add(nets, n, cap, a->rows[i].key, a->rows[i].bucket, a->rows[i].delta);
    return rc;
}

static int reverse_apply(struct applier *a, size_t ev, const struct ledger_op *op)
{
    struct net *nets = NULL;
    size_t n = 0, cap = 0;
    bool any = false;
    int rc = nets_of(a, op->ref, &nets, &n, &cap);

    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (nets[i].sum == 0)
            continue;
        any = true;
        rc = move_apply(a, ev, nets[i].key, nets[i].bucket, -nets[i].sum, op->reason, op->line_ref);
    }
    if (rc == 0 && !any && n == 0)
        rc = exc_add(a, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_TRANSACTION_NOT_APPLIED, ev,
                     "", op->location_id, "void_target_unknown",
                     "void of a till transaction the ledger never applied");
    free(nets);
    return rc;
}

static int release_apply(struct applier *a, size_t ev, const struct ledger_op *op)
{
    struct net *nets = NULL;
    size_t n = 0, cap = 0;
    int64_t left = op->qty;
    int rc = nets_of(a, a->evs[ev].source_ref, &nets, &n, &cap);

    for (size_t i = 0; rc == 0 && i < n && left != 0; i++) {
        int64_t take;

        if (nets[i].bucket != LEDGER_COMMITTED || nets[i].sum <= 0)
            continue;
        if (*op->sku && strcmp(a->keys[nets[i].key].sku, op->sku) != 0)
            continue;
        take = left < 0 || left > nets[i].sum ? nets[i].sum : left;
        rc = move_apply(a, ev, nets[i].key, LEDGER_COMMITTED, -take, op->reason, op->line_ref);
        if (left > 0)
            left -= take;
    }
    free(nets);
    return rc;
}

static int ops_apply(struct applier *a)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < a->n; i++) {
        const struct ledger_event *e = &a->evs[i];

        if (!a->isnew[i])
            continue;
        for (size_t j = 0; rc == 0 && j < e->nops; j++) {
            const struct ledger_op *op = &e->ops[j];
            size_t k = (size_t)-1;

            if (op->kind == LEDGER_OP_MOVE || op->kind == LEDGER_OP_COUNT) {
                k = key_get(a, op->sku, op->location_id, false);
                if (k == (size_t)-1)
                    return -ENOMEM; /* registered in phase 2 */
            }
            switch (op->kind) {
            case LEDGER_OP_MOVE:
                rc = move_apply(a, i, k, op->bucket, op->qty, op->reason, op->line_ref);
                break;
            case LEDGER_OP_COUNT:
                rc = count_apply(a, i, op, k);
                break;
            case LEDGER_OP_REVERSE:
                rc = reverse_apply(a, i, op);
                break;
            case LEDGER_OP_RELEASE:
                rc = release_apply(a, i, op);
                break;
            }
        }
        for (size_t j = 0; rc == 0 && j < e->nproblems; j++) {
            const struct ledger_problem *p = &e->problems[j];
            const char *tag =
                p->type == TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NON_STOCK_UNMAPPED
                    ? "non_stock_unmapped"
                : p->type == TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_UNKNOWN_LOCATION
                    ? "unknown_location"
                    : "transaction_not_applied";

            rc = exc_add(a, p->type, i, p->sku, p->location_id, tag, p->what);
        }
    }
    return rc;
}

/* ---- phase 5: writes */

#define ENTRIES_COPY                                                                               \
    "COPY ledger_entries (tenant_id, sku, location_id, bucket, delta, reason, event_id, "          \
    "source_ref, line_ref, occurred_at_ms, recorded_at_ms) FROM STDIN"

/* The batch's entries, in one COPY (the ledger's id keeps their order); with savepoint, the
 * savepoint "early" is set first, in the same query (store_begin()). */
static int entries_write(struct applier *a, int64_t now, bool savepoint)
{
    struct copybuf b = {0};
    int rc;

    if (a->nrows == 0)
        return 0;
    for (size_t i = 0; i < a->nrows; i++) {
        const struct row *r = &a->rows[i];
        const struct ledger_event *e = &a->evs[r->ev];

        copy_text(&b, a->ctx->tenant_id, '\t');
        copy_text(&b, a->keys[r->key].sku, '\t');
        copy_text(&b, a->keys[r->key].loc, '\t');
        copy_text(&b, ledger_bucket_name(r->bucket), '\t');
        copy_int(&b, r->delta, '\t');
        copy_text(&b, r->reason, '\t');
        copy_text(&b, e->event_id, '\t');
        copy_text(&b, e->source_ref, '\t');
        copy_text(&b, r->line_ref, '\t');
        copy_int(&b, r->occurred, '\t');
        copy_int(&b, now, '\n');
    }
    rc = copy_rows(a, "ledger insert", savepoint ? "SAVEPOINT early; " ENTRIES_COPY : ENTRIES_COPY,
                   &b);
    free(b.buf);
    return rc;
}

static int balances_write(struct applier *a, int64_t now)
{
    struct pgarr c[6];
    const char *params[8];
    char nowbuf[32];
    PGresult *res = NULL;
    size_t changed = 0;
    int rc = -ENOMEM;

    for (int i = 0; i < 6; i++)
        pgarr_init(&c[i]);
    for (size_t i = 0; i < a->nkeys; i++) {
        const struct key *k = &a->keys[i];

        if (!k->used)
            continue;
        changed++;
        pgarr_text(&c[0], k->sku);
        pgarr_text(&c[1], k->loc);
        pgarr_int(&c[2], k->d[LEDGER_ON_HAND]);
        pgarr_int(&c[3], k->d[LEDGER_COMMITTED]);
        pgarr_int(&c[4], k->d[LEDGER_IN_TRANSIT]);
        pgarr_int(&c[5], k->counted ? k->last_count : 0);
    }
    if (changed == 0) {
        rc = 0;
        goto out;
    }
    snprintf(nowbuf, sizeof(nowbuf), "%" PRId64, now);
    params[0] = a->ctx->tenant_id;
    params[7] = nowbuf;
    for (int i = 0; i < 6; i++)
        if (!(params[i + 1] = pgarr_finish(&c[i])))
            goto out;
    rc = run(a, "balances update",
             "WITH d AS (SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], "
             "  $5::bigint[], $6::bigint[], $7::bigint[]) AS d(s, l, oh, co, it, lc)), "
             "b AS (UPDATE balances SET on_hand = on_hand + d.oh, committed = committed + d.co, "
             "  in_transit = in_transit + d.it, "
             "  last_count_at_ms = greatest(last_count_at_ms, d.lc), updated_at_ms = $8 "
             "  FROM d WHERE balances.tenant_id = $1 AND balances.sku = d.s "
             "  AND balances.location_id = d.l "
             "  RETURNING balances.sku, balances.location_id, balances.on_hand, "
             "  balances.committed, d.oh, d.co), "
             "o AS (INSERT INTO level_outbox (tenant_id, skus, locations) "
             "  SELECT $1, array_agg(sku), array_agg(location_id) FROM b HAVING count(*) > 0) "
             "SELECT sku, location_id, on_hand, committed FROM b "
             "WHERE (on_hand < 0 AND oh < 0) OR (on_hand - committed < 0 AND (oh < 0 OR co > 0))",
             8, params, &res);
    if (rc)
        goto out;
    for (int r = 0; rc == 0 && r < PQntuples(res); r++) {
        size_t k = key_get(a, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), false);
        char summary[256];

        if (k == (size_t)-1)
            continue;
        snprintf(summary, sizeof(summary), "%s at %s: on_hand %s, committed %s",
                 strtoll(PQgetvalue(res, r, 2), NULL, 10) < 0 ? "negative stock" : "oversold",
                 a->keys[k].loc, PQgetvalue(res, r, 2), PQgetvalue(res, r, 3));
        rc =
            exc_add(a, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NEGATIVE_STOCK,
                    a->keys[k].first_ev, a->keys[k].sku, a->keys[k].loc, "negative_stock", summary);
    }
out:
    PQclear(res);
    for (int i = 0; i < 6; i++)
        pgarr_release(&c[i]);
    return rc;
}

/* ---- the tail of a batch: one pipeline */

/*
 * Send one statement of the batch's tail (exception outbox rows, offsets) on the pipeline
 * opened by batch_finish(): libpq copies sql and params into its output buffer, so they may
 * be freed on return. The result is read by batch_finish(). Returns 0, or -EIO with err.
 */
static int send_stmt(struct applier *a, const char *what, const char *sql, int nparams,
                     const char *const *params)
{
    if (a->nqueued >= sizeof(a->queued) / sizeof(a->queued[0]) ||
        PQsendQueryParams(a->conn, sql, nparams, NULL, params, NULL, NULL, 0) != 1) {
        snprintf(a->err, a->errlen, "%s: %s", what, PQerrorMessage(a->conn));
        return -EIO;
    }
    a->queued[a->nqueued++] = what;
    return 0;
}

/*
 * The results of the pipeline: one per queued statement, then PGRES_PIPELINE_SYNC; leaves
 * pipeline mode. The first failure is kept (later statements come back PIPELINE_ABORTED:
 * the server skipped them and the transaction is aborted, left for the caller's ROLLBACK).
 * COMMIT counts as done only with the command tag COMMIT (a COMMIT of an aborted
 * transaction answers ROLLBACK). Returns 0, or what sql_fail() returns.
 */
static int pipeline_collect(struct applier *a)
{
    int rc = 0;
    bool synced = false;

    for (size_t i = 0; i < a->nqueued; i++) {
        PGresult *res = PQgetResult(a->conn), *extra;
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        bool commit = i + 1 == a->nqueued;

        if (!res) {
            if (rc == 0)
                rc = sql_fail(a, NULL, a->queued[i]);
            break;
        }

        if (rc == 0 && st != PGRES_COMMAND_OK) {
            rc = st == PGRES_PIPELINE_ABORTED ? -EIO : sql_fail(a, res, a->queued[i]);
            if (st == PGRES_PIPELINE_ABORTED) {
                snprintf(a->err, a->errlen, "%s: skipped", a->queued[i]);
                PQclear(res);
            }
            res = NULL;
        } else if (rc == 0 && commit && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
            snprintf(a->err, a->errlen, "commit: answered %s", PQcmdStatus(res));
            rc = -EIO;
        }
        PQclear(res);
        if (!res && PQstatus(a->conn) == CONNECTION_BAD)
            break;
        while ((extra = PQgetResult(a->conn))) /* the NULL that ends each statement */
            PQclear(extra);
    }
    for (int tries = 0; tries < 8 && PQstatus(a->conn) != CONNECTION_BAD; tries++) {
        PGresult *res = PQgetResult(a->conn);

        if (!res)
            continue;
        synced = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
        PQclear(res);
        if (synced)
            break;
    }
    if (!synced && rc == 0) {
        snprintf(a->err, a->errlen, "pipeline: %s", PQerrorMessage(a->conn));
        rc = -EIO;
    }
    if (PQexitPipelineMode(a->conn) == 1)
        a->pipeline = false;
    a->nqueued = 0;
    return rc;
}

static const char *topic_base(enum ledger_topic t)
{
    switch (t) {
    case LEDGER_TOPIC_POS:
        return "pos.transactions.v1";
    case LEDGER_TOPIC_STOCK:
        return "stock.movements.v1";
    case LEDGER_TOPIC_ORDERS:
        return "shop.orders.v1";
    default:
        return "";
    }
}

static int exceptions_write(struct applier *a, int64_t now, struct store_stats *st)
{
    struct pgarr c[7];
    const char *params[9];
    char nowbuf[32];
    int rc = -ENOMEM;

    /* unknown SKUs and locations of the keys new entries touched */
    for (size_t i = 0; i < a->nkeys; i++) {
        const struct key *k = &a->keys[i];

        if (!k->used)
            continue;
        if (!k->known_sku && exc_add(a, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN,
                                     k->first_ev, k->sku, k->loc, "sku_unknown",
                                     "stock moved for a SKU the ledger does not know"))
            return -ENOMEM;
        if (!k->known_loc &&
            exc_add(a, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_UNKNOWN_LOCATION, k->first_ev,
                    "", k->loc, "unknown_location",
                    "stock moved at a location the ledger does not know"))
            return -ENOMEM;
    }
    if (a->nexcs == 0)
        return 0;
    for (int i = 0; i < 7; i++)
        pgarr_init(&c[i]);
    for (size_t i = 0; i < a->nexcs; i++) {
        const struct exc *x = &a->excs[i];

        pgarr_int(&c[0], x->type);
        pgarr_text(&c[1], x->dedupe);
        pgarr_text(&c[2], x->summary);
        pgarr_text(&c[3], a->evs[x->ev].event_id);
        pgarr_text(&c[4], topic_base(a->evs[x->ev].topic));
        pgarr_text(&c[5], x->sku);
        pgarr_text(&c[6], x->loc);
    }
    snprintf(nowbuf, sizeof(nowbuf), "%" PRId64, now);
    params[0] = a->ctx->tenant_id;
    params[8] = nowbuf;
    for (int i = 0; i < 7; i++)
        if (!(params[i + 1] = pgarr_finish(&c[i])))
            goto out;
    rc = send_stmt(
        a, "exceptions insert",
        "INSERT INTO exception_outbox (tenant_id, type, dedupe_key, summary, event_id, "
        "topic, sku, location_id, created_at_ms) SELECT $1, t, d, s, e, tp, sk, l, $9 "
        "FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
        "$8::text[]) AS u(t, d, s, e, tp, sk, l)",
        9, params);
    if (rc == 0)
        st->exceptions += a->nexcs;
out:
    for (int i = 0; i < 7; i++)
        pgarr_release(&c[i]);
    return rc;
}

static int offsets_write(struct applier *a, const struct store_offset *offs, size_t noffs)
{
    struct pgarr t, p, o;
    const char *params[4];
    int rc = -ENOMEM;

    if (noffs == 0)
        return 0;
    pgarr_init(&t);
    pgarr_init(&p);
    pgarr_init(&o);
    for (size_t i = 0; i < noffs; i++) {
        pgarr_text(&t, offs[i].topic);
        pgarr_int(&p, offs[i].partition);
        pgarr_int(&o, offs[i].next_offset);
    }
    params[0] = a->ctx->group_id;
    params[1] = pgarr_finish(&t);
    params[2] = pgarr_finish(&p);
    params[3] = pgarr_finish(&o);
    if (params[1] && params[2] && params[3])
        rc = send_stmt(a, "offsets upsert",
                       "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
                       "SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) "
                       "AS u(t, p, o) ORDER BY 2, 3 "
                       "ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = "
                       "greatest(consumer_offsets.next_offset, EXCLUDED.next_offset)",
                       4, params);
    pgarr_release(&t);
    pgarr_release(&p);
    pgarr_release(&o);
    return rc;
}

/* Register the keys of every MOVE and COUNT of new events. */
static int keys_collect(struct applier *a)
{
    for (size_t i = 0; i < a->n; i++) {
        if (!a->isnew[i])
            continue;
        for (size_t j = 0; j < a->evs[i].nops; j++) {
            const struct ledger_op *op = &a->evs[i].ops[j];

            if ((op->kind == LEDGER_OP_MOVE || op->kind == LEDGER_OP_COUNT) &&
                key_get(a, op->sku, op->location_id, true) == (size_t)-1)
                return -ENOMEM;
        }
    }
    return 0;
}

/* Whether every new event only moves stock (no count, void or release): its entries then
 * depend on nothing but each key's last count. */
static bool moves_only(const struct applier *a)
{
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; a->isnew[i] && j < a->evs[i].nops; j++)
            if (a->evs[i].ops[j].kind != LEDGER_OP_MOVE)
                return false;
    return true;
}

/* Whether a key's last count moved between the unlocked read and the lock (keys_read()). */
static bool keys_moved(const struct applier *a)
{
    for (size_t i = 0; i < a->nkeys; i++)
        if (a->keys[i].last_count != a->keys[i].seen_count)
            return true;
    return false;
}

/* Forget the entries, deltas and exceptions ops_apply() derived (to derive them again). */
static void ops_forget(struct applier *a)
{
    a->nrows = 0;
    a->nexcs = 0;
    for (size_t i = 0; i < a->nkeys; i++) {
        struct key *k = &a->keys[i];

        memset(k->d, 0, sizeof(k->d));
        k->used = false;
        k->counted = false;
        k->first_ev = 0;
    }
}

enum { PH_DEDUPE, PH_EARLY, PH_LOCK, PH_ENTRIES, PH_BALANCES, PH_SEND, PH_COMMIT, PH_N };

struct store_batch {
    struct applier a;
    struct store_stats local;
    int64_t now;
    bool early;     /* the entries were derived (and written) before the keys were locked */
    bool savepoint; /* … and the savepoint "early" precedes them */
    int64_t us[PH_N];
};

static void batch_free(struct store_batch *b)
{
    struct applier *a = &b->a;

    PQclear(a->lookups);
    PQclear(a->locked);
    free(a->isnew);
    free(a->keys);
    free(a->slots);
    free(a->rows);
    free(a->excs);
    free(b);
}

/* Roll the batch's transaction back and free it; returns rc, said in err when -ENOMEM. */
static int batch_rollback(struct store_batch *b, int rc)
{
    struct applier *a = &b->a;

    if (rc == -ENOMEM)
        snprintf(a->err, a->errlen, "out of memory");
    if (a->pipeline) {
        /* a statement could not be sent: end the pipeline (the server runs what it got,
         * then the ROLLBACK below undoes it) */
        char keep[512];

        snprintf(keep, sizeof(keep), "%s", a->err);
        if (PQpipelineSync(a->conn) == 1)
            pipeline_collect(a);
        else
            PQexitPipelineMode(a->conn);
        snprintf(a->err, a->errlen, "%s", keep);
    }
    PQclear(PQexec(a->conn, "ROLLBACK"));
    batch_free(b);
    return rc;
}

int store_begin(PGconn *conn, const struct store_ctx *ctx, const struct ledger_event *evs, size_t n,
                struct store_batch **out, char *err, size_t errlen)
{
    struct store_batch *b = calloc(1, sizeof(*b));
    bool *isnew = calloc(n ? n : 1, sizeof(*isnew));
    struct applier *a;
    int64_t t0 = mono_us();
    int rc;

    *out = NULL;
    if (!b || !isnew) {
        free(b);
        free(isnew);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a = &b->a;
    *a = (struct applier){
        .conn = conn, .ctx = ctx, .evs = evs, .n = n, .isnew = isnew, .err = err, .errlen = errlen};
    b->now = clock_now_ms();
    if ((rc = dedupe(a, &b->local)))
        goto fail;
    b->us[PH_DEDUPE] = mono_us() - t0;
    *out = b;
    return 0;
fail:
    return batch_rollback(b, rc);
}

int store_prepare(struct store_batch *b)
{
    struct applier *a = &b->a;
    int64_t t0 = mono_us();
    int rc;

    if (!moves_only(a))
        return 0;
    b->early = true;
    if ((rc = keys_collect(a)) || (rc = keys_read(a, false)) || (rc = ops_apply(a)))
        goto fail;
    b->savepoint = a->nrows > 0;
    if ((rc = entries_write(a, b->now, true)))
        goto fail;
    b->us[PH_EARLY] = mono_us() - t0;
    return 0;
fail:
    return batch_rollback(b, rc);
}

void store_abort(struct store_batch *b)
{
    char err[512];

    if (!b)
        return;
    b->a.err = err;
    b->a.errlen = sizeof(err);
    batch_rollback(b, 0);
}

int store_commit(struct store_batch *b, const struct store_offset *offs, size_t noffs,
                 struct store_stats *st, char *err, size_t errlen)
{
    struct applier *a = &b->a;
    PGconn *conn = a->conn;
    int64_t t0 = mono_us();
    int rc;

    a->err = err;
    a->errlen = errlen;
    if (b->early) {
        if ((rc = keys_read(a, true)))
            goto rollback;
        b->us[PH_LOCK] = mono_us() - t0;
        t0 = mono_us();
        /* a key's last count moved since the peek (a count committed meanwhile): derive the
         * entries again under the lock, as a batch without early entries does */
        if (keys_moved(a)) {
            log_kv(LOG_LVL_DEBUG, "a count moved under the batch, entries derived again", NULL);
            if (b->savepoint &&
                (rc = run(a, "early rollback", "ROLLBACK TO SAVEPOINT early", 0, NULL, NULL)))
                goto rollback;
            ops_forget(a);
            if ((rc = ops_apply(a)) || (rc = entries_write(a, b->now, false)))
                goto rollback;
        }
    } else {
        if ((rc = keys_collect(a)) || (rc = lookups_load(a)) || (rc = keys_read(a, true)))
            goto rollback;
        b->us[PH_LOCK] = mono_us() - t0;
        t0 = mono_us();
        if ((rc = ops_apply(a)) || (rc = entries_write(a, b->now, false)))
            goto rollback;
    }
    b->us[PH_ENTRIES] = mono_us() - t0;
    t0 = mono_us();
    if ((rc = balances_write(a, b->now)))
        goto rollback;
    /* call-out (holds, issue 4): same transaction, its own statements */
    if (a->ctx->batch_hook &&
        (rc = a->ctx->batch_hook(a->ctx->batch_hook_opaque, conn, a->evs, a->n, err, errlen)))
        goto rollback;
    b->us[PH_BALANCES] = mono_us() - t0;
    t0 = mono_us();
    /* the tail in one round trip: exception rows, offsets and COMMIT pipelined */
    if (PQenterPipelineMode(conn) != 1) {
        rc = sql_fail(a, NULL, "pipeline");
        goto rollback;
    }
    a->pipeline = true;
    if ((rc = exceptions_write(a, b->now, &b->local)) || (rc = offsets_write(a, offs, noffs)) ||
        (rc = send_stmt(a, "commit", "COMMIT", 0, NULL)))
        goto rollback;
    if (PQpipelineSync(conn) != 1) {
        rc = sql_fail(a, NULL, "commit");
        goto rollback;
    }
    b->us[PH_SEND] = mono_us() - t0;
    t0 = mono_us();
    if ((rc = pipeline_collect(a)))
        goto rollback;
    b->us[PH_COMMIT] = mono_us() - t0;
    {
        char buf[160];

        snprintf(buf, sizeof(buf), "%lld %lld %lld %lld %lld %lld %lld %s",
                 (long long)b->us[PH_DEDUPE], (long long)b->us[PH_EARLY], (long long)b->us[PH_LOCK],
                 (long long)b->us[PH_ENTRIES], (long long)b->us[PH_BALANCES],
                 (long long)b->us[PH_SEND], (long long)b->us[PH_COMMIT],
                 b->early ? "early" : "locked");
        log_kv(LOG_LVL_DEBUG, "batch phases us", "dedupe_early_lock_entries_balances_send_commit",
               buf, NULL);
    }
    if (st) {
        st->events += b->local.events;
        st->duplicates += b->local.duplicates;
        st->entries += a->nrows;
        st->exceptions += b->local.exceptions;
    }
    batch_free(b);
    return 0;
rollback:
    return batch_rollback(b, rc);
}

int store_apply(PGconn *conn, const struct store_ctx *ctx, const struct ledger_event *evs, size_t n,
                const struct store_offset *offs, size_t noffs, struct store_stats *st, char *err,
                size_t errlen)
{
    struct store_batch *b;
    int rc = store_begin(conn, ctx, evs, n, &b, err, errlen);

    if (rc == 0)
        rc = store_prepare(b);
    return rc ? rc : store_commit(b, offs, noffs, st, err, errlen);
}

int store_offsets_load(PGconn *conn, const char *group_id, rd_kafka_topic_partition_list_t *parts,
                       char *err, size_t errlen)
{
    const char *params[1] = {group_id};
    PGresult *res = PQexecParams(conn,
                                 "SELECT topic, partition, next_offset FROM consumer_offsets "
                                 "WHERE group_id = $1",
                                 1, NULL, params, NULL, NULL, 0);

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "offsets load: %s",
                 res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        return -EIO;
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];

        p->offset = RD_KAFKA_OFFSET_BEGINNING;
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, 0), p->topic) == 0 &&
                strtol(PQgetvalue(res, r, 1), NULL, 10) == p->partition)
                p->offset = strtoll(PQgetvalue(res, r, 2), NULL, 10);
    }
    PQclear(res);
    return 0;
}
