/*
 * ledger — what an event means for stock: decodes one record of pos.transactions.v1,
 * stock.movements.v1 or shop.orders.v1 into a list of ledger operations, without touching the
 * database (store.h applies them). Pure, so unit tests drive it with hand-built events.
 *
 * Operations:
 *   MOVE     a signed delta of one bucket (on_hand, committed, in_transit) at (sku, location)
 *   COUNT    an absolute on_hand figure as of the event's occurred-at (cycle count, snapshot)
 *   REVERSE  undo every entry of another source reference (a void of a till transaction)
 *   RELEASE  release committed units this order still holds for sku (qty < 0: all of it;
 *            sku "" with qty < 0: every SKU), taken from the locations that hold them
 * plus problems found while decoding (unmapped non-stock line, no location), which become
 * exceptions.
 */
#ifndef INVENTORY_LEDGER_LEDGER_H
#define INVENTORY_LEDGER_LEDGER_H

#include <stddef.h>
#include <stdint.h>

enum ledger_bucket { LEDGER_ON_HAND = 0, LEDGER_COMMITTED = 1, LEDGER_IN_TRANSIT = 2 };

enum ledger_op_kind { LEDGER_OP_MOVE, LEDGER_OP_COUNT, LEDGER_OP_REVERSE, LEDGER_OP_RELEASE };

/* Which topic a record came from. */
enum ledger_topic {
    LEDGER_TOPIC_UNKNOWN = 0,
    LEDGER_TOPIC_POS,
    LEDGER_TOPIC_STOCK,
    LEDGER_TOPIC_ORDERS,
};

/* One operation. Strings are borrowed from the decoded message (or static), valid until
 * ledger_event_release(). */
struct ledger_op {
    enum ledger_op_kind kind;
    const char *sku;
    const char *location_id;
    enum ledger_bucket bucket;
    int64_t qty; /* MOVE: delta; COUNT: counted figure; RELEASE: units, < 0 = all */
    const char *reason;
    const char *line_ref;
    const char *ref; /* REVERSE: the source reference to undo */
};

/* A problem to raise as an exception (type is a Tillsync__V1__ExceptionType value). */
struct ledger_problem {
    int type;
    const char *sku;
    const char *location_id;
    const char *what; /* static text */
};

/*
 * One decoded event. Invariant: ops and problems point into msg (or static strings); the
 * struct owns msg and both arrays. Fill with ledger_event_decode(), free with
 * ledger_event_release().
 */
struct ledger_event {
    enum ledger_topic topic;
    char event_id[128];
    int64_t occurred_at_ms;
    char source_ref[256];
    char reverse_ref[256]; /* a void: the source reference it undoes */
    struct ledger_op *ops;
    size_t nops, capops;
    struct ledger_problem *problems;
    size_t nproblems, capproblems;
    void *msg; /* the unpacked protobuf message */
};

/* The topic a full topic name ends with (a prefixed name such as acme.pos.transactions.v1 →
 * LEDGER_TOPIC_POS). */
enum ledger_topic ledger_topic_of(const char *topic);

/*
 * Decode payload of a record of topic into ev (caller-owned, zeroed here). fallback_id is the
 * event id to use when the envelope has none (e.g. the ce_id header), may be NULL.
 * default_location is the ledger location of online orders that name none.
 * Returns 0; -EINVAL when the payload does not decode or lacks its body (err says why; ev
 * holds nothing to release but releasing is harmless); -ENOMEM.
 */
int ledger_event_decode(struct ledger_event *ev, const char *topic, const void *payload, size_t len,
                        const char *fallback_id, const char *default_location, char *err,
                        size_t errlen);

/* Free what ev owns and zero it. NULL is fine. */
void ledger_event_release(struct ledger_event *ev);

/* "on_hand", "committed", "in_transit". */
const char *ledger_bucket_name(enum ledger_bucket b);

#endif
