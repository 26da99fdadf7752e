/*
 * journal — loyalty-sync's Postgres record of awards and changes (migrations/0001_journal.sql).
 * Checked before every platform write and written right after it, so a redelivered or
 * replayed event never applies a change twice. A change row carries everything needed to
 * redo it (amounts, identity), so replay never needs the original Kafka record.
 */
#ifndef LOYALTY_JOURNAL_H
#define LOYALTY_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

enum change_kind {
    CHANGE_AWARD,    /* points for a source (sale, order) */
    CHANGE_REVERSAL, /* proportional take-back of a source's award */
    CHANGE_UNLINKED, /* a return with no known original: rules applied to the amount */
};

enum change_state {
    CHANGE_NEW, /* not in the journal */
    CHANGE_IN_FLIGHT,
    CHANGE_APPLIED,
    CHANGE_NOOP,
    CHANGE_FAILED,
    CHANGE_WAITING, /* reversal whose award is not there yet */
    CHANGE_AMBIGUOUS,
};

/*
 * expected_version of an in_flight change whose last write is known not to have landed (the
 * platform answered with a collision, or the call was never sent) when a shutdown interrupted
 * its retries: the next attempt may write again without checking the member's version.
 */
#define JOURNAL_VERSION_NOT_WRITTEN (-2)

/* One change. Strings are fixed buffers; amount_minor -1 = the whole remaining award. */
struct journal_change {
    char idem_key[256];
    enum change_kind kind;
    enum change_state state;
    char source_key[200];
    char member_id[64];
    int64_t points;
    int64_t balance_after;    /* -1 unknown; in_flight: the balance if the write lands */
    int64_t expected_version; /* -1 unknown; JOURNAL_VERSION_NOT_WRITTEN: see below */
    int64_t amount_minor;
    char currency[8];
    int64_t occurred_at_ms;
    char source_event_id[64];
    char loyalty_id[64];
    char email[256];
    char phone[48];
    char customer_name[128];
    char failure_reason[256];
    int attempts;
    bool published;
};

/* An award row. member_id "" = nobody credited. */
struct journal_award {
    char source_key[200];
    char member_id[64];
    int64_t qualifying_minor;
    char currency[8];
    int64_t points;
    int64_t refunded_minor;
    int64_t occurred_at_ms;
    char rule_id[64];
};

const char *change_state_name(enum change_state s);
const char *change_kind_name(enum change_kind k);

/* Read change idem_key into c. Returns 0, -ENOENT (c->state = CHANGE_NEW), -EIO with err. */
int journal_change_get(PGconn *db, const char *idem_key, struct journal_change *c, char *err,
                       size_t errlen);

/* Insert or overwrite change c (all columns). Returns 0 or -EIO. */
int journal_change_put(PGconn *db, const struct journal_change *c, char *err, size_t errlen);

/* Read the award of source_key. Returns 0, -ENOENT, -EIO. */
int journal_award_get(PGconn *db, const char *source_key, struct journal_award *a, char *err,
                      size_t errlen);

/*
 * In one transaction: write change c (its final state) and, for an award, insert award a
 * (ignored when already there); for a reversal add refunded to the award's refunded_minor.
 * a may be NULL (unlinked). Returns 0 or -EIO.
 */
int journal_commit(PGconn *db, const struct journal_change *c, const struct journal_award *a,
                   int64_t refunded, char *err, size_t errlen);

/* Mark c published. Returns 0 or -EIO. */
int journal_mark_published(PGconn *db, const char *idem_key, char *err, size_t errlen);

/* Our applied writes to one member, other than except_key, by the version they replaced. */
struct journal_member_writes {
    int64_t at_base;      /* how many replaced version base */
    int64_t after;        /* how many replaced a version in (base, upto) */
    int64_t after_points; /* and the points they added */
};

/* Fill w for member_id. Returns 0 or -EIO. */
int journal_member_writes(PGconn *db, const char *member_id, const char *except_key, int64_t base,
                          int64_t upto, struct journal_member_writes *w, char *err, size_t errlen);

/*
 * Idempotency keys of open changes, oldest first: states failed, ambiguous, in_flight and
 * waiting, plus applied ones not yet published; only_source (may be NULL) restricts to one
 * source, only_waiting to waiting ones. *keys is a malloc'd array of malloc'd strings
 * (free each and the array). Returns 0 or -EIO.
 */
int journal_open_keys(PGconn *db, const char *only_source, bool only_waiting, char ***keys,
                      size_t *n, char *err, size_t errlen);

#endif
