/*
 * loyalty — the engine (see loyalty.h for the keys and the guarantees).
 *
 * Per-member order. The input topics are keyed by till (pos.transactions.v1) and by order
 * (shop.orders.v1), so one customer's events arrive on several partitions and replicas. We do
 * not need them in global order, only: (1) one write per member at a time — the Redis member
 * lock, held from the journal re-check to the journal commit; (2) a reversal never before the
 * award it reverses — a reversal without its award waits in the journal and is applied right
 * after that award commits; (3) nothing twice — the journal. A member's balance is a sum of
 * signed changes, each computed from the award it belongs to (never from the current balance),
 * so under (1)-(3) the final balance is the same in every arrival order; and the changes each
 * member sees are published on loyalty.points.v1 keyed by member, in the order applied.
 */
#include "loyalty.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "events.h"
#include "identity.h"
#include "journal.h"
#include "log.h"
#include "memberlock.h"
#include "uuid.h"

#include "tillsync/v1/loyalty.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"

struct loyalty {
    struct loyalty_opts o;
    char *shop;
    char *default_cc;
    pthread_mutex_t mu;
    struct loyalty_stats st;
};

#define STAT_INC(l, field)                                                                         \
    do {                                                                                           \
        pthread_mutex_lock(&(l)->mu);                                                              \
        (l)->st.field++;                                                                           \
        pthread_mutex_unlock(&(l)->mu);                                                            \
    } while (0)

struct loyalty *loyalty_new(const struct loyalty_opts *opts, char *err, size_t errlen)
{
    if (!opts || !opts->svc || !opts->rules || !opts->api || !opts->shop || !*opts->shop) {
        snprintf(err, errlen, "loyalty: service, rules, member api and shop are required");
        return NULL;
    }
    struct loyalty *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->o = *opts;
    l->shop = strdup(opts->shop);
    l->default_cc = strdup(opts->default_cc ? opts->default_cc : "");
    pthread_mutex_init(&l->mu, NULL);
    if (!l->shop || !l->default_cc) {
        loyalty_free(l);
        return NULL;
    }
    l->o.shop = l->shop;
    l->o.default_cc = l->default_cc;
    if (l->o.backoff_base_ms <= 0)
        l->o.backoff_base_ms = 100;
    if (l->o.backoff_max_ms < l->o.backoff_base_ms)
        l->o.backoff_max_ms = l->o.backoff_base_ms;
    if (l->o.lock_ttl_ms <= 0)
        l->o.lock_ttl_ms = 30000;
    if (l->o.lock_wait_ms <= 0)
        l->o.lock_wait_ms = 10000;
    return l;
}

void loyalty_free(struct loyalty *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l->shop);
    free(l->default_cc);
    free(l);
}

void loyalty_stats_get(struct loyalty *l, struct loyalty_stats *out)
{
    pthread_mutex_lock(&l->mu);
    *out = l->st;
    pthread_mutex_unlock(&l->mu);
}

static bool running(const struct loyalty *l)
{
    return !l->o.running || *l->o.running;
}

/* Sleep ms in slices of at most 50 ms; false (early) when a shutdown began. */
static bool pause_ms(const struct loyalty *l, long ms)
{
    while (ms > 0 && running(l)) {
        long slice = ms < 50 ? ms : 50;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
    return running(l);
}

/* base × 2^attempt capped at max, plus jitter in [0, base). */
static long backoff_ms(const struct loyalty *l, int attempt)
{
    long d = l->o.backoff_base_ms;
    for (int i = 0; i < attempt && d < l->o.backoff_max_ms; i++)
        d *= 2;
    if (d > l->o.backoff_max_ms)
        d = l->o.backoff_max_ms;
    unsigned int r = 0;
    RAND_bytes((unsigned char *)&r, sizeof r);
    return d + (long)(r % (unsigned long)l->o.backoff_base_ms);
}

static Tillsync__V1__Platform platform_proto(const struct loyalty *l)
{
    return l->o.platform == MEMBER_PLATFORM_SHOPLINE ? TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE
                                                     : TILLSYNC__V1__PLATFORM__PLATFORM_SHOPIFY;
}

static const char *platform_name(const struct loyalty *l)
{
    return l->o.platform == MEMBER_PLATFORM_SHOPLINE ? "shopline" : "shopify";
}

/* Publish the LoyaltyPointsEvent of an applied or failed change and mark it published. */
static int change_publish(struct loyalty *l, PGconn *db, const struct journal_change *c, char *err,
                          size_t errlen)
{
    Tillsync__V1__LoyaltyPointsEvent ev = TILLSYNC__V1__LOYALTY_POINTS_EVENT__INIT;
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    Tillsync__V1__PointsChange pc = TILLSYNC__V1__POINTS_CHANGE__INIT;
    Tillsync__V1__Customer cust = TILLSYNC__V1__CUSTOMER__INIT;
    Tillsync__V1__Money money = TILLSYNC__V1__MONEY__INIT;
    char name[400], id[37], key[256];
    bool failed = c->state == CHANGE_FAILED;

    snprintf(name, sizeof name, "loyalty/%s/%s/%s", l->o.svc->tenant_id, c->idem_key,
             failed ? "failed" : "applied");
    uuid_from_name(name, id);
    refs.shop_id = (char *)l->shop;
    refs.customer_id = (char *)c->member_id;
    if (strncmp(c->source_key, "pos:", 4) == 0)
        refs.pos_transaction_id = (char *)c->source_key + 4;
    else if (strncmp(c->source_key, "order:", 6) == 0)
        refs.platform_order_id = (char *)c->source_key + 6;
    event_envelope_fill(&env, l->o.svc, id, c->occurred_at_ms,
                        TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_TILLSYNC, "loyalty-sync", &refs);
    env.correlation_id = (char *)c->source_event_id;
    cust.customer_id = (char *)c->member_id;
    cust.loyalty_id = (char *)c->loyalty_id;
    cust.email = (char *)c->email;
    cust.phone = (char *)c->phone;
    cust.name = (char *)c->customer_name;
    money.minor_units = c->amount_minor < 0 ? 0 : c->amount_minor;
    money.currency = (char *)c->currency;
    pc.platform = platform_proto(l);
    pc.shop_id = (char *)l->shop;
    pc.member_id = (char *)c->member_id;
    pc.customer = &cust;
    pc.kind = c->kind == CHANGE_AWARD
                  ? TILLSYNC__V1__POINTS_CHANGE_KIND__POINTS_CHANGE_KIND_AWARD
                  : TILLSYNC__V1__POINTS_CHANGE_KIND__POINTS_CHANGE_KIND_REVERSAL;
    pc.points = c->points;
    pc.balance_after = c->balance_after;
    pc.idempotency_key = (char *)c->idem_key;
    pc.rule_id = (char *)l->o.rules->rule_id;
    pc.qualifying_amount = &money;
    pc.status = failed ? TILLSYNC__V1__POINTS_CHANGE_STATUS__POINTS_CHANGE_STATUS_FAILED
                       : TILLSYNC__V1__POINTS_CHANGE_STATUS__POINTS_CHANGE_STATUS_APPLIED;
    pc.failure_reason = (char *)c->failure_reason;
    pc.source_event_id = (char *)c->source_event_id;
    ev.envelope = &env;
    ev.change = &pc;
    snprintf(key, sizeof key, "%s/%s/%s", platform_name(l), l->shop,
             c->member_id[0] ? c->member_id : "unknown");
    int rc = event_publish_sync(l->o.svc, "loyalty.points.v1", key, &ev.base, id, c->occurred_at_ms,
                                30000, err, errlen);
    if (rc)
        return rc;
    STAT_INC(l, published);
    return journal_mark_published(db, c->idem_key, err, errlen);
}

static void raise_exception(struct loyalty *l, Tillsync__V1__ExceptionType type,
                            const struct journal_change *c, const char *summary)
{
    char err[256], dedupe[320];
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;
    refs.shop_id = (char *)l->shop;
    refs.customer_id = (char *)c->member_id;
    snprintf(dedupe, sizeof dedupe, "loyalty-sync/%s/%s",
             type == TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_LOYALTY_UPDATE_FAILED
                 ? "update-failed"
                 : "duplicate-customer",
             c->idem_key);
    const char *details[] = {"idempotency_key", c->idem_key, "email",           c->email, "phone",
                             c->phone,          "reason",    c->failure_reason, NULL};
    struct exception_raise x = {
        .type = type,
        .dedupe_key = dedupe,
        .summary = summary,
        .related_event_id = c->source_event_id[0] ? c->source_event_id : NULL,
        .refs = &refs,
        .details = details,
    };
    if (event_raise_exception(l->o.svc, &x, err, sizeof err))
        log_kv(LOG_LVL_ERROR, "exception not raised", "error", err, "idempotency_key", c->idem_key,
               NULL);
}

/*
 * Find the member for c's customer: the loyalty id if the platform knows it, else the members
 * matching the normalised email and the E.164 phone. Exactly one candidate (or one by email
 * when the phone is shared) = that member; none = created (under an identity lock, looked up
 * again first); several = ambiguous. Returns 0 with member_id set ("" = anonymous) and *known =
 * the member as the platform answered (points, version: saves a read before the first write),
 * 1 when ambiguous, negative on dependency errors (-ECANCELED: shutting down).
 */
static int member_resolve(struct loyalty *l, struct journal_change *c, char *member_id, size_t cap,
                          struct member *known, char *err, size_t errlen)
{
    struct member found[8];
    size_t nemail = 0, nphone = 0;
    char email[256] = "", phone[48] = "";
    int rc;
    member_id[0] = '\0';
    if (c->loyalty_id[0]) {
        struct member m;
        rc = member_api_get(l->o.api, c->loyalty_id, &m, err, errlen);
        if (rc == 0) {
            snprintf(member_id, cap, "%s", m.id);
            *known = m;
            return 0;
        }
        if (rc != -ENOENT)
            return rc;
    }
    if (identity_email_normalise(c->email, email, sizeof email))
        email[0] = '\0';
    if (identity_phone_e164(c->phone, l->default_cc, phone, sizeof phone))
        phone[0] = '\0';
    if (!email[0] && !phone[0])
        return 0;
    if (email[0]) {
        rc = member_api_find(l->o.api, email, NULL, found, 4, &nemail, err, errlen);
        if (rc)
            return rc;
        if (nemail == 1) {
            snprintf(member_id, cap, "%s", found[0].id);
            *known = found[0];
            return 0;
        }
        if (nemail > 1)
            return 1;
    }
    if (phone[0]) {
        rc = member_api_find(l->o.api, NULL, phone, found, 4, &nphone, err, errlen);
        if (rc)
            return rc;
        if (nphone == 1) {
            snprintf(member_id, cap, "%s", found[0].id);
            *known = found[0];
            return 0;
        }
        if (nphone > 1)
            return 1;
    }
    /* nobody: create, under a lock on the identity so two replicas do not both create */
    struct memberlock lk;
    char lname[320];
    snprintf(lname, sizeof lname, "identity:%s", email[0] ? email : phone);
    rc = memberlock_acquire(&lk, l->o.svc->redis, l->o.svc->tenant_id, lname, l->o.lock_ttl_ms,
                            l->o.lock_wait_ms, l->o.running, err, errlen);
    if (rc)
        return rc == -EBUSY ? -EAGAIN : rc;
    size_t n = 0;
    rc = member_api_find(l->o.api, email[0] ? email : NULL, phone[0] ? phone : NULL, found, 4, &n,
                         err, errlen);
    if (rc == 0 && n == 1) {
        snprintf(member_id, cap, "%s", found[0].id);
        *known = found[0];
    } else if (rc == 0 && n > 1) {
        rc = 1;
    } else if (rc == 0) {
        struct member m;
        rc = member_api_create(l->o.api, email[0] ? email : NULL, phone[0] ? phone : NULL,
                               c->customer_name, &m, err, errlen);
        if (rc == 0) {
            snprintf(member_id, cap, "%s", m.id);
            *known = m;
            log_kv(LOG_LVL_INFO, "member created", "member_id", m.id, NULL);
        }
    }
    memberlock_release(&lk, l->o.svc->redis);
    return rc;
}

/* Record c as decided without a platform write (noop), updating the award row. */
static int change_noop(struct loyalty *l, PGconn *db, struct journal_change *c,
                       const struct journal_award *a, int64_t refunded, char *err, size_t errlen)
{
    c->state = CHANGE_NOOP;
    c->points = 0;
    c->published = true; /* nothing changed on the platform: nothing to announce */
    int rc = journal_commit(db, c, a, refunded, err, errlen);
    if (rc == 0)
        STAT_INC(l, noop);
    return rc;
}

/*
 * A shutdown interrupted the retries of c (under the member lock) after a write that is known not
 * to have landed: if this call left c in_flight, say so in the journal, so the next attempt
 * writes again instead of taking the member's changed version for a landed write. Returns
 * -ECANCELED (or the journal's error).
 */
static int change_write_cancel(struct loyalty *l, PGconn *db, struct journal_change *c,
                               bool put_in_flight, char *err, size_t errlen)
{
    (void)l;
    if (put_in_flight) {
        c->expected_version = JOURNAL_VERSION_NOT_WRITTEN;
        int rc = journal_change_put(db, c, err, errlen);
        if (rc)
            return rc;
    }
    snprintf(err, errlen, "shutting down: %s left for redelivery", c->idem_key);
    return -ECANCELED;
}

/*
 * The write itself, under the member lock: read the member's version (the first attempt may use
 * known, the member as resolved just before, when not NULL), write the change with it, retry
 * collisions with backoff. A shutdown is checked before every read and write (never between a
 * write and its journal entry). Returns 0 applied (c->balance_after set), 1 gave up
 * (c->failure_reason set), -ECANCELED when a shutdown began (nothing written since the last
 * collision: c stays for redelivery), other negatives on dependency errors.
 */
static int change_write(struct loyalty *l, PGconn *db, struct memberlock *lk,
                        struct journal_change *c, const struct member *known, char *err,
                        size_t errlen)
{
    char e2[256];
    bool put_in_flight = false;
    for (int attempt = 0; attempt <= l->o.max_retries; attempt++) {
        struct member before, after;
        if (attempt > 0) {
            if (!pause_ms(l, backoff_ms(l, attempt - 1)))
                return change_write_cancel(l, db, c, put_in_flight, err, errlen);
            if (memberlock_extend(lk, l->o.svc->redis, l->o.lock_ttl_ms, err, errlen))
                return -EAGAIN; /* lost the lock: let the batch come back */
        }
        if (!running(l))
            return change_write_cancel(l, db, c, put_in_flight, err, errlen);
        int rc = 0;
        if (attempt == 0 && known && known->version >= 0)
            before = *known;
        else
            rc = member_api_get(l->o.api, c->member_id, &before, e2, sizeof e2);
        if (rc == -ECANCELED)
            return change_write_cancel(l, db, c, put_in_flight, err, errlen);
        if (rc == -ENOENT) {
            snprintf(c->failure_reason, sizeof c->failure_reason, "member not found: %.200s", e2);
            return 1;
        }
        if (rc) {
            snprintf(c->failure_reason, sizeof c->failure_reason, "%s", e2);
            STAT_INC(l, collisions);
            continue;
        }
        c->state = CHANGE_IN_FLIGHT;
        c->expected_version = before.version;
        c->balance_after = before.version >= 0 ? before.points + c->points : -1;
        c->attempts++;
        rc = journal_change_put(db, c, err, errlen);
        if (rc)
            return rc;
        put_in_flight = true;
        rc = member_api_add_points(l->o.api, c->member_id, c->points, before.version, c->idem_key,
                                   &after, e2, sizeof e2);
        if (rc == 0) {
            c->balance_after = after.version >= 0 ? after.points : before.points + c->points;
            return 0;
        }
        if (rc == -ECANCELED) /* not sent */
            return change_write_cancel(l, db, c, put_in_flight, err, errlen);
        snprintf(c->failure_reason, sizeof c->failure_reason, "%s", e2);
        if (rc == -EAGAIN) {
            STAT_INC(l, collisions);
            log_kv(LOG_LVL_DEBUG, "points collision, retrying", "idempotency_key", c->idem_key,
                   "error", e2, NULL);
            continue;
        }
        if (rc == -EIO) {
            /* sent, answer lost: applied or not? only a version can tell */
            struct member now;
            if (before.version >= 0 &&
                member_api_get(l->o.api, c->member_id, &now, e2, sizeof e2) == 0) {
                if (now.version == before.version)
                    continue; /* not applied: safe to retry */
                if (now.version == before.version + 1 && now.points == before.points + c->points) {
                    c->balance_after = now.points;
                    return 0;
                }
            }
            char why[160];
            snprintf(why, sizeof why, "%.150s",
                     c->failure_reason[0] ? c->failure_reason : "I/O error");
            snprintf(c->failure_reason, sizeof c->failure_reason,
                     "outcome unknown after a lost answer (%s): check the member before replay",
                     why);
            return 1;
        }
        return 1;
    }
    return 1;
}

static int change_apply(struct loyalty *l, struct journal_change *want, bool replay, char *err,
                        size_t errlen);

/*
 * cur was in flight when an earlier run died between the platform call and the journal: did its
 * write land? The write replaced the member's version v = cur->expected_version (a compare-and-
 * set), so: the member still at v, or another of our applied writes that replaced v, means it
 * did not. Otherwise, when every later version is one of our applied writes, the single unknown
 * step from v tells by its points: the balance cur expected (landed) or the one before (another
 * writer, which changed no points). Anything else cannot be told apart. Returns 0 not landed,
 * 1 landed, 2 unknown (why set), -EAGAIN / -EIO when the member or journal cannot be read now.
 */
static int inflight_outcome(struct loyalty *l, PGconn *db, const struct journal_change *cur,
                            char *why, size_t whylen, char *err, size_t errlen)
{
    struct member now;
    struct journal_member_writes w;
    int64_t v = cur->expected_version, before = cur->balance_after - cur->points;
    char e2[256];
    int rc = member_api_get(l->o.api, cur->member_id, &now, e2, sizeof e2);

    if (rc == -ENOENT) {
        snprintf(why, whylen, "member not found after an interrupted write: %.150s", e2);
        return 2;
    }
    if (rc) {
        snprintf(err, errlen, "member read after an interrupted write: %.200s", e2);
        return -EAGAIN;
    }
    if (now.version == v)
        return 0;
    if (now.version >= 0 && v >= 0 && now.version > v) {
        rc = journal_member_writes(db, cur->member_id, cur->idem_key, v, now.version, &w, err,
                                   errlen);
        if (rc)
            return rc;
        if (w.at_base > 0)
            return 0;
        if (cur->balance_after >= 0 && w.after == now.version - v - 1) {
            if (now.points == cur->balance_after + w.after_points)
                return 1;
            if (now.points == before + w.after_points)
                return 0;
        }
    }
    snprintf(why, whylen,
             "an earlier attempt may have been applied (member changed since): check the member, "
             "then replay or close");
    return 2;
}

/* After an award committed: apply the reversals that were waiting for it. */
static int waiting_drive(struct loyalty *l, const char *source_key, char *err, size_t errlen)
{
    char **keys = NULL;
    size_t n = 0;
    PGconn *db = pg_acquire(l->o.svc->pg, 5000, err, errlen);
    if (!db)
        return -EIO;
    int rc = journal_open_keys(db, source_key, true, &keys, &n, err, errlen);
    pg_release(l->o.svc->pg, db);
    for (size_t i = 0; i < n; i++) {
        struct journal_change c;
        memset(&c, 0, sizeof c);
        snprintf(c.idem_key, sizeof c.idem_key, "%s", keys[i]);
        if (rc == 0 && !running(l)) {
            snprintf(err, errlen, "shutting down: waiting changes of %s left", source_key);
            rc = -ECANCELED;
        }
        if (rc == 0)
            rc = change_apply(l, &c, true, err, errlen);
        free(keys[i]);
    }
    free(keys);
    return rc;
}

/*
 * Apply one change. want holds the intent (state CHANGE_NEW) or only idem_key when replaying.
 * Returns 0 when decided, negative on dependency errors.
 */
static int change_apply(struct loyalty *l, struct journal_change *want, bool replay, char *err,
                        size_t errlen)
{
    struct journal_change cur;
    struct journal_award award;
    struct memberlock lk = {0};
    bool award_known = false, drive_waiting = false, redrive = false, landed = false;
    struct member known = {.version = -1};
    int64_t refunded = 0;
    int rc;
    PGconn *db = pg_acquire(l->o.svc->pg, 5000, err, errlen);
    if (!db)
        return -EIO;
    rc = journal_change_get(db, want->idem_key, &cur, err, errlen);
    if (rc == -EIO)
        goto out;
    if (rc == 0) {
        switch (cur.state) {
        case CHANGE_APPLIED:
        case CHANGE_NOOP:
            rc = cur.published ? 0 : change_publish(l, db, &cur, err, errlen);
            if (cur.kind == CHANGE_AWARD && !replay) {
                /* a redelivered award: its reversals may still wait (a shutdown came between
                 * its commit and their turn) */
                *want = cur;
                drive_waiting = true;
            }
            goto out;
        case CHANGE_FAILED:
        case CHANGE_AMBIGUOUS:
            rc = 0;
            if (!replay)
                goto out; /* kept for the replay endpoint */
            *want = cur;
            break;
        default:
            *want = cur;
            break;
        }
    } else if (want->kind == CHANGE_REVERSAL && !want->source_key[0]) {
        rc = -EINVAL;
        goto out;
    }
    want->failure_reason[0] = '\0';
    want->balance_after = -1;

    /* who, before the lock */
    if (want->kind == CHANGE_REVERSAL) {
        rc = journal_award_get(db, want->source_key, &award, err, errlen);
        if (rc == -ENOENT) {
            want->state = CHANGE_WAITING;
            rc = journal_change_put(db, want, err, errlen);
            if (rc)
                goto out;
            STAT_INC(l, waiting);
            /* the award may have committed (on another worker or replica) after we looked and
             * before the waiting row was there, its drive not seeing it: look once more */
            rc = journal_award_get(db, want->source_key, &award, err, errlen);
            if (rc == 0)
                redrive = true;
            rc = rc == -ENOENT ? 0 : rc;
            goto out;
        }
        if (rc)
            goto out;
        award_known = true;
        snprintf(want->member_id, sizeof want->member_id, "%s", award.member_id);
        if (!award.member_id[0] || award.points == 0) {
            refunded = want->amount_minor < 0 ? 0 : want->amount_minor;
            rc = change_noop(l, db, want, &award, refunded, err, errlen);
            goto out;
        }
    } else if (!want->member_id[0]) {
        rc = member_resolve(l, want, want->member_id, sizeof want->member_id, &known, err, errlen);
        if (rc < 0)
            goto out;
        if (rc == 1) {
            want->state = CHANGE_AMBIGUOUS;
            snprintf(want->failure_reason, sizeof want->failure_reason,
                     "several members match email %.120s / phone %.40s", want->email, want->phone);
            rc = journal_change_put(db, want, err, errlen);
            if (rc)
                goto out;
            STAT_INC(l, ambiguous);
            raise_exception(
                l, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_POSSIBLE_DUPLICATE_CUSTOMER, want,
                "Several loyalty members match one customer; points held");
            goto out;
        }
    }
    if (want->kind == CHANGE_AWARD) {
        memset(&award, 0, sizeof award);
        snprintf(award.source_key, sizeof award.source_key, "%s", want->source_key);
        snprintf(award.member_id, sizeof award.member_id, "%s", want->member_id);
        award.qualifying_minor = want->amount_minor;
        snprintf(award.currency, sizeof award.currency, "%s", want->currency);
        award.occurred_at_ms = want->occurred_at_ms;
        snprintf(award.rule_id, sizeof award.rule_id, "%s", l->o.rules->rule_id);
        want->points = want->member_id[0]
                           ? rules_points(l->o.rules, want->amount_minor, want->occurred_at_ms)
                           : 0;
        award.points = want->points;
        award_known = true;
        drive_waiting = true;
        if (want->points == 0) {
            rc = change_noop(l, db, want, &award, 0, err, errlen);
            goto out;
        }
    } else if (want->kind == CHANGE_UNLINKED) {
        want->points = want->member_id[0]
                           ? -rules_points(l->o.rules, want->amount_minor, want->occurred_at_ms)
                           : 0;
        if (want->points == 0) {
            rc = change_noop(l, db, want, NULL, 0, err, errlen);
            goto out;
        }
    }

    /* one writer per member */
    char lname[200];
    snprintf(lname, sizeof lname, "member:%s/%s/%s", platform_name(l), l->shop, want->member_id);
    rc = memberlock_acquire(&lk, l->o.svc->redis, l->o.svc->tenant_id, lname, l->o.lock_ttl_ms,
                            l->o.lock_wait_ms, l->o.running, err, errlen);
    if (rc) {
        rc = rc == -EBUSY ? -EAGAIN : rc;
        goto out;
    }
    /* re-check under the lock: another replica may have applied it meanwhile */
    rc = journal_change_get(db, want->idem_key, &cur, err, errlen);
    if (rc == -EIO)
        goto out;
    if (rc == 0 && (cur.state == CHANGE_APPLIED || cur.state == CHANGE_NOOP)) {
        rc = 0;
        goto out;
    }
    if (rc == 0 && cur.state == CHANGE_IN_FLIGHT &&
        cur.expected_version != JOURNAL_VERSION_NOT_WRITTEN) {
        rc = inflight_outcome(l, db, &cur, want->failure_reason, sizeof want->failure_reason, err,
                              errlen);
        if (rc < 0)
            goto out;
        if (rc == 2) {
            want->state = CHANGE_FAILED;
            goto failed;
        }
        landed = rc == 1;
    }
    rc = 0;
    if (want->kind == CHANGE_REVERSAL) {
        rc = journal_award_get(db, want->source_key, &award, err, errlen);
        if (rc)
            goto out;
        refunded = want->amount_minor < 0 ? award.qualifying_minor - award.refunded_minor
                                          : want->amount_minor;
        if (refunded < 0)
            refunded = 0;
        want->points = -rules_reversal_points(award.points, award.qualifying_minor,
                                              award.refunded_minor, refunded);
        if (want->points == 0) {
            rc = change_noop(l, db, want, &award, refunded, err, errlen);
            goto out;
        }
    }
    if (landed) {
        want->balance_after = cur.balance_after;
        want->expected_version = cur.expected_version;
        log_kv(LOG_LVL_INFO, "interrupted points write had landed", "idempotency_key",
               want->idem_key, "member_id", want->member_id, NULL);
    } else {
        rc = change_write(l, db, &lk, want,
                          known.id[0] && strcmp(known.id, want->member_id) == 0 ? &known : NULL,
                          err, errlen);
    }
    if (rc < 0)
        goto out;
    if (rc == 1) {
        want->state = CHANGE_FAILED;
        goto failed;
    }
    want->state = CHANGE_APPLIED;
    want->published = false;
    rc = journal_commit(db, want, award_known ? &award : NULL, refunded, err, errlen);
    if (rc)
        goto out;
    STAT_INC(l, applied);
    memberlock_release(&lk, l->o.svc->redis);
    log_kv(LOG_LVL_INFO, "points applied", "idempotency_key", want->idem_key, "member_id",
           want->member_id, NULL);
    rc = change_publish(l, db, want, err, errlen);
    goto out;

failed:
    want->balance_after = -1;
    rc = journal_change_put(db, want, err, errlen);
    if (rc)
        goto out;
    STAT_INC(l, failed);
    drive_waiting = false;
    log_kv(LOG_LVL_WARN, "points change failed", "idempotency_key", want->idem_key, "reason",
           want->failure_reason, NULL);
    raise_exception(l, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_LOYALTY_UPDATE_FAILED, want,
                    "Loyalty points could not be updated after retries; kept for replay");
    rc = change_publish(l, db, want, err, errlen);
out:
    memberlock_release(&lk, l->o.svc->redis);
    pg_release(l->o.svc->pg, db);
    if (rc == 0 && drive_waiting && want->kind == CHANGE_AWARD &&
        (want->state == CHANGE_APPLIED || want->state == CHANGE_NOOP))
        rc = waiting_drive(l, want->source_key, err, errlen);
    if (rc == 0 && redrive) {
        struct journal_change again;
        memset(&again, 0, sizeof again);
        snprintf(again.idem_key, sizeof again.idem_key, "%s", want->idem_key);
        rc = change_apply(l, &again, true, err, errlen);
    }
    return rc;
}

/* ---- events to changes */

static void change_init(struct journal_change *c, enum change_kind kind, const char *source,
                        const char *cause, int64_t amount, const char *currency,
                        int64_t occurred_at_ms, const char *event_id,
                        const Tillsync__V1__Customer *cu)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->state = CHANGE_NEW;
    c->balance_after = -1;
    c->expected_version = -1;
    if (kind == CHANGE_AWARD)
        snprintf(c->idem_key, sizeof c->idem_key, "award|%s", source);
    else if (kind == CHANGE_REVERSAL)
        snprintf(c->idem_key, sizeof c->idem_key, "reversal|%s|%s", source, cause);
    else
        snprintf(c->idem_key, sizeof c->idem_key, "unlinked|%s", source);
    snprintf(c->source_key, sizeof c->source_key, "%s", source);
    c->amount_minor = amount;
    snprintf(c->currency, sizeof c->currency, "%s", currency ? currency : "");
    c->occurred_at_ms = occurred_at_ms;
    snprintf(c->source_event_id, sizeof c->source_event_id, "%s", event_id ? event_id : "");
    if (cu) {
        snprintf(c->loyalty_id, sizeof c->loyalty_id, "%s", cu->loyalty_id ? cu->loyalty_id : "");
        snprintf(c->email, sizeof c->email, "%s", cu->email ? cu->email : "");
        snprintf(c->phone, sizeof c->phone, "%s", cu->phone ? cu->phone : "");
        snprintf(c->customer_name, sizeof c->customer_name, "%s", cu->name ? cu->name : "");
    }
}

static int64_t money_of(const Tillsync__V1__Money *m)
{
    return m ? m->minor_units : 0;
}

static int64_t abs64(int64_t v)
{
    return v < 0 ? -v : v;
}

/* Signed qualifying amount of a till line (negative for returned lines). */
static int64_t pos_line_amount(const struct rules *r, const Tillsync__V1__TransactionLine *ln)
{
    if (rules_line_excluded(r, ln->non_stock_code, ln->ledger_code))
        return 0;
    /* net_amount is the line as priced at the till: it holds the tax lines marked
     * included_in_price (VAT-inclusive prices) and not the others */
    int64_t net = money_of(ln->net_amount);
    int64_t incl = 0, excl = 0;
    for (size_t i = 0; i < ln->n_tax_lines; i++) {
        int64_t t = abs64(money_of(ln->tax_lines[i]->amount));
        if (ln->tax_lines[i]->included_in_price)
            incl += t;
        else
            excl += t;
    }
    bool negative = net < 0 || ln->quantity < 0;
    if (r->after_tax)
        return negative ? net - excl : net + excl;
    return negative ? net + incl : net - incl;
}

static int pos_handle(struct loyalty *l, const Tillsync__V1__PosTransactionEvent *ev, char *err,
                      size_t errlen)
{
    const Tillsync__V1__PosTransaction *t = ev->transaction;
    const Tillsync__V1__Envelope *env = ev->envelope;
    if (ev->body_case != TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION || !t)
        return 0; /* takings declarations earn nothing */
    if (!env || !t->transaction_id || !*t->transaction_id) {
        snprintf(err, errlen, "transaction without envelope or transaction_id");
        return -EBADMSG;
    }
    char src[200], cause[200], orig[200] = "";
    struct journal_change c;
    snprintf(src, sizeof src, "pos:%s", t->transaction_id);
    snprintf(cause, sizeof cause, "pos:%s", t->transaction_id);
    if (t->kind == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID) {
        if (!t->voided_transaction_id || !*t->voided_transaction_id)
            return 0;
        snprintf(orig, sizeof orig, "pos:%s", t->voided_transaction_id);
        snprintf(cause, sizeof cause, "void:%s", t->transaction_id);
        change_init(&c, CHANGE_REVERSAL, orig, cause, -1, t->currency, env->occurred_at_ms,
                    env->event_id, t->customer);
        return change_apply(l, &c, false, err, errlen);
    }
    int64_t net = 0;
    for (size_t i = 0; i < t->n_lines; i++)
        net += pos_line_amount(l->o.rules, t->lines[i]);
    if (t->original_transaction_id && *t->original_transaction_id)
        snprintf(orig, sizeof orig, "pos:%s", t->original_transaction_id);
    else if (t->original_platform_order_id && *t->original_platform_order_id)
        snprintf(orig, sizeof orig, "order:%s", t->original_platform_order_id);
    if (t->kind == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_SALE || net > 0) {
        /* a sale, or an exchange that nets to more spent: award the net */
        change_init(&c, CHANGE_AWARD, src, NULL, net > 0 ? net : 0, t->currency,
                    env->occurred_at_ms, env->event_id, t->customer);
        return change_apply(l, &c, false, err, errlen);
    }
    if (net == 0)
        return 0; /* an even exchange nets out */
    if (orig[0])
        change_init(&c, CHANGE_REVERSAL, orig, cause, -net, t->currency, env->occurred_at_ms,
                    env->event_id, t->customer);
    else
        change_init(&c, CHANGE_UNLINKED, src, NULL, -net, t->currency, env->occurred_at_ms,
                    env->event_id, t->customer);
    return change_apply(l, &c, false, err, errlen);
}

/* Qualifying amount of an order line (0 when excluded). */
static int64_t order_line_amount(const struct rules *r, const Tillsync__V1__OrderLine *ln)
{
    if (rules_line_excluded(r, NULL, ln->ledger_code))
        return 0;
    int64_t total = ln->quantity * money_of(ln->unit_price);
    for (size_t i = 0; i < ln->n_discounts; i++)
        total -= money_of(ln->discounts[i]->amount);
    int64_t incl = 0, excl = 0;
    for (size_t i = 0; i < ln->n_tax_lines; i++) {
        if (ln->tax_lines[i]->included_in_price)
            incl += money_of(ln->tax_lines[i]->amount);
        else
            excl += money_of(ln->tax_lines[i]->amount);
    }
    return r->after_tax ? total + excl : total - incl;
}

static const Tillsync__V1__OrderLine *order_line_find(const Tillsync__V1__ShopOrder *o,
                                                      const char *line_id)
{
    for (size_t i = 0; line_id && i < o->n_lines; i++)
        if (o->lines[i]->line_id && strcmp(o->lines[i]->line_id, line_id) == 0)
            return o->lines[i];
    return NULL;
}

static bool str_is(const char *s, const char *v)
{
    return s && strcmp(s, v) == 0;
}

static int order_handle(struct loyalty *l, const Tillsync__V1__ShopOrderEvent *ev, char *err,
                        size_t errlen)
{
    const Tillsync__V1__ShopOrder *o = ev->order;
    const Tillsync__V1__Envelope *env = ev->envelope;
    if (!env || !o || !o->order || !o->order->id || !*o->order->id) {
        snprintf(err, errlen, "order event without envelope or order id");
        return -EBADMSG;
    }
    char src[200], cause[200];
    struct journal_change c;
    snprintf(src, sizeof src, "order:%s", o->order->id);
    int k = ev->kind;
    if (k == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED) {
        change_init(&c, CHANGE_REVERSAL, src, "cancel", -1, o->currency, env->occurred_at_ms,
                    env->event_id, o->customer);
        return change_apply(l, &c, false, err, errlen);
    }
    if (k == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED && ev->refund &&
        ev->refund->refund_id && *ev->refund->refund_id) {
        const Tillsync__V1__Refund *rf = ev->refund;
        int64_t amount = 0;
        for (size_t i = 0; i < rf->n_lines; i++) {
            const Tillsync__V1__RefundLine *rl = rf->lines[i];
            const Tillsync__V1__OrderLine *ol = order_line_find(o, rl->line_id);
            if (ol && rules_line_excluded(l->o.rules, NULL, ol->ledger_code))
                continue;
            amount += abs64(money_of(rl->subtotal));
            if (l->o.rules->after_tax)
                amount += abs64(money_of(rl->tax));
        }
        if (rf->n_lines == 0)
            amount = abs64(money_of(rf->amount)); /* money-only refund */
        snprintf(cause, sizeof cause, "refund:%s", rf->refund_id);
        change_init(&c, CHANGE_REVERSAL, src, cause, amount, o->currency, env->occurred_at_ms,
                    env->event_id, o->customer);
        return change_apply(l, &c, false, err, errlen);
    }
    bool paid = k == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_PAID ||
                str_is(o->financial_status, "paid") ||
                str_is(o->financial_status, "partially_refunded") ||
                str_is(o->financial_status, "refunded");
    bool fulfilled = k == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_FULFILLED ||
                     k == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_PICKED_UP ||
                     str_is(o->fulfillment_status, "fulfilled");
    bool due =
        o->in_store_sale || (l->o.rules->trigger == RULES_TRIGGER_PAID ? paid : fulfilled && paid);
    if (!due || str_is(o->financial_status, "voided") || (o->cancel_reason && *o->cancel_reason))
        return 0;
    int64_t amount = 0;
    for (size_t i = 0; i < o->n_lines; i++)
        amount += order_line_amount(l->o.rules, o->lines[i]);
    change_init(&c, CHANGE_AWARD, src, NULL, amount > 0 ? amount : 0, o->currency,
                env->occurred_at_ms, env->event_id, o->customer);
    return change_apply(l, &c, false, err, errlen);
}

int loyalty_handle(struct loyalty *l, const char *topic_base, const void *payload, size_t len,
                   char *err, size_t errlen)
{
    int rc;
    if (strcmp(topic_base, "pos.transactions.v1") == 0) {
        Tillsync__V1__PosTransactionEvent *ev =
            tillsync__v1__pos_transaction_event__unpack(NULL, len, payload);
        if (!ev) {
            snprintf(err, errlen, "not a PosTransactionEvent");
            return -EBADMSG;
        }
        rc = pos_handle(l, ev, err, errlen);
        tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
        return rc;
    }
    if (strcmp(topic_base, "shop.orders.v1") == 0) {
        Tillsync__V1__ShopOrderEvent *ev =
            tillsync__v1__shop_order_event__unpack(NULL, len, payload);
        if (!ev) {
            snprintf(err, errlen, "not a ShopOrderEvent");
            return -EBADMSG;
        }
        rc = order_handle(l, ev, err, errlen);
        tillsync__v1__shop_order_event__free_unpacked(ev, NULL);
        return rc;
    }
    snprintf(err, errlen, "unexpected topic %s", topic_base);
    return -EBADMSG;
}

/* The customer key of cu (see loyalty_record_customer), else fallback. */
static void customer_key(const struct loyalty *l, const Tillsync__V1__Customer *cu,
                         const char *fallback, char *out, size_t cap)
{
    char buf[256];
    if (cu && cu->email && identity_email_normalise(cu->email, buf, sizeof buf) == 0 && buf[0]) {
        snprintf(out, cap, "e:%s", buf);
        return;
    }
    if (cu && cu->phone && identity_phone_e164(cu->phone, l->default_cc, buf, sizeof buf) == 0 &&
        buf[0]) {
        snprintf(out, cap, "p:%s", buf);
        return;
    }
    if (cu && cu->loyalty_id && *cu->loyalty_id) {
        snprintf(out, cap, "l:%s", cu->loyalty_id);
        return;
    }
    snprintf(out, cap, "s:%s", fallback ? fallback : "");
}

void loyalty_record_customer(struct loyalty *l, const char *topic_base, const void *payload,
                             size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    if (strcmp(topic_base, "pos.transactions.v1") == 0) {
        Tillsync__V1__PosTransactionEvent *ev =
            tillsync__v1__pos_transaction_event__unpack(NULL, len, payload);
        /* body is a oneof: a takings declaration shares the transaction's pointer */
        if (ev && ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION &&
            ev->transaction)
            customer_key(l, ev->transaction->customer, ev->transaction->transaction_id, out, cap);
        else if (ev && ev->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS &&
                 ev->takings)
            snprintf(out, cap, "t:%s/%s", ev->takings->store_code ? ev->takings->store_code : "",
                     ev->takings->till_id ? ev->takings->till_id : "");
        if (ev)
            tillsync__v1__pos_transaction_event__free_unpacked(ev, NULL);
    } else if (strcmp(topic_base, "shop.orders.v1") == 0) {
        Tillsync__V1__ShopOrderEvent *ev =
            tillsync__v1__shop_order_event__unpack(NULL, len, payload);
        if (ev && ev->order)
            customer_key(l, ev->order->customer, ev->order->order ? ev->order->order->id : NULL,
                         out, cap);
        if (ev)
            tillsync__v1__shop_order_event__free_unpacked(ev, NULL);
    }
}

int loyalty_replay(struct loyalty *l, const char *idem_key, size_t *done, size_t *open, char *err,
                   size_t errlen)
{
    char **keys = NULL;
    size_t n = 0;
    int rc = 0;
    *done = *open = 0;
    if (idem_key) {
        keys = calloc(1, sizeof *keys);
        if (!keys || !(keys[0] = strdup(idem_key))) {
            free(keys);
            return -ENOMEM;
        }
        n = 1;
    } else {
        PGconn *db = pg_acquire(l->o.svc->pg, 5000, err, errlen);
        if (!db)
            return -EIO;
        rc = journal_open_keys(db, NULL, false, &keys, &n, err, errlen);
        pg_release(l->o.svc->pg, db);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct journal_change c;
        memset(&c, 0, sizeof c);
        snprintf(c.idem_key, sizeof c.idem_key, "%s", keys[i]);
        if (rc == 0 && !running(l)) {
            snprintf(err, errlen, "shutting down");
            rc = -ECANCELED;
        }
        if (rc == 0) {
            PGconn *db = pg_acquire(l->o.svc->pg, 5000, err, errlen);
            int g = db ? journal_change_get(db, c.idem_key, &c, err, errlen) : -EIO;
            pg_release(l->o.svc->pg, db);
            if (g == -ENOENT) {
                snprintf(err, errlen, "no change %s in the journal", c.idem_key);
                rc = -ENOENT;
            } else if (g) {
                rc = g;
            } else {
                rc = change_apply(l, &c, true, err, errlen);
            }
            if (rc == 0) {
                PGconn *db2 = pg_acquire(l->o.svc->pg, 5000, err, errlen);
                if (db2 && journal_change_get(db2, keys[i], &c, err, errlen) == 0 &&
                    (c.state == CHANGE_APPLIED || c.state == CHANGE_NOOP))
                    (*done)++;
                else
                    (*open)++;
                pg_release(l->o.svc->pg, db2);
            }
        }
        free(keys[i]);
    }
    free(keys);
    return rc;
}
