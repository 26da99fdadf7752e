/*
 * events — see events.h. One place decides how an event looks on the wire (envelope, headers,
 * key, topic prefix) and who owns each exception type, so the five services cannot drift apart.
 */
#include "events.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "uuid.h"

void event_envelope_fill(Tillsync__V1__Envelope *env, const struct service *svc,
                         const char *event_id, int64_t occurred_at_ms,
                         Tillsync__V1__SourceSystem source, const char *source_name,
                         Tillsync__V1__BusinessRefs *refs)
{
    tillsync__v1__envelope__init(env);
    env->event_id = (char *)event_id;
    env->tenant_id = svc->tenant_id;
    env->occurred_at_ms = occurred_at_ms;
    env->recorded_at_ms = clock_now_ms();
    env->source = source;
    env->source_name = (char *)(source_name ? source_name : "");
    env->producer = (char *)svc->spec->name;
    env->refs = refs;
}

/* Everything a publish needs, serialised once: topic, payload, headers. */
struct event_wire {
    char topic[256];
    char source[256];
    char time[40];
    uint8_t *payload;
    size_t len;
    struct ce_headers ce;
};

static int event_wire_init(struct event_wire *w, struct service *svc, const char *topic_base,
                           const ProtobufCMessage *msg, const char *event_id,
                           int64_t occurred_at_ms, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    if (!event_id || !*event_id) {
        snprintf(err, errlen, "event without an id");
        return -EINVAL;
    }
    if (!svc->producer) {
        snprintf(err, errlen, "service has no Kafka producer");
        return -EINVAL;
    }
    if (service_topic(svc, topic_base, w->topic, sizeof(w->topic)) != 0) {
        snprintf(err, errlen, "topic name too long");
        return -EINVAL;
    }
    snprintf(w->source, sizeof(w->source), "/tillsync/%s/%s", svc->tenant_id, svc->spec->name);
    clock_format_rfc3339(occurred_at_ms, w->time, sizeof(w->time));
    w->len = protobuf_c_message_get_packed_size(msg);
    w->payload = malloc(w->len ? w->len : 1);
    if (!w->payload) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    protobuf_c_message_pack(msg, w->payload);
    w->ce.id = event_id;
    w->ce.source = w->source;
    w->ce.type = msg->descriptor->name; /* qualified: "tillsync.v1.PosTransactionEvent" */
    w->ce.time = w->time;
    return 0;
}

static int event_send(struct service *svc, const char *topic_base, const char *key,
                      const ProtobufCMessage *msg, const char *event_id, int64_t occurred_at_ms,
                      int timeout_ms, kafka_delivery_cb cb, void *opaque, char *err, size_t errlen)
{
    struct event_wire w;
    int rc;

    rc = event_wire_init(&w, svc, topic_base, msg, event_id, occurred_at_ms, err, errlen);
    if (rc != 0)
        goto out;
    if (cb)
        rc = kafka_producer_send(svc->producer, w.topic, key, key ? strlen(key) : 0, w.payload,
                                 w.len, &w.ce, NULL, 0, cb, opaque, err, errlen);
    else
        rc = kafka_producer_send_sync(svc->producer, w.topic, key, key ? strlen(key) : 0, w.payload,
                                      w.len, &w.ce, NULL, 0, timeout_ms, err, errlen);
out:
    free(w.payload);
    return rc;
}

int event_publish_sync(struct service *svc, const char *topic_base, const char *key,
                       const ProtobufCMessage *msg, const char *event_id, int64_t occurred_at_ms,
                       int timeout_ms, char *err, size_t errlen)
{
    return event_send(svc, topic_base, key, msg, event_id, occurred_at_ms, timeout_ms, NULL, NULL,
                      err, errlen);
}

int event_publish(struct service *svc, const char *topic_base, const char *key,
                  const ProtobufCMessage *msg, const char *event_id, int64_t occurred_at_ms,
                  kafka_delivery_cb cb, void *opaque, char *err, size_t errlen)
{
    if (!cb) {
        snprintf(err, errlen, "event_publish needs a delivery callback");
        return -EINVAL;
    }
    return event_send(svc, topic_base, key, msg, event_id, occurred_at_ms, 0, cb, opaque, err,
                      errlen);
}

/* DESIGN.md "Exceptions": the owner in brackets, a default severity and plain words. */
struct exception_kind {
    Tillsync__V1__OwnerTeam owner;
    Tillsync__V1__Severity severity;
    const char *explanation;
    const char *action;
};

#define OWN(o)  TILLSYNC__V1__OWNER_TEAM__OWNER_TEAM_##o
#define SEV(s)  TILLSYNC__V1__SEVERITY__SEVERITY_##s
#define TYPE(t) TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_##t

static const struct exception_kind *exception_kind(Tillsync__V1__ExceptionType type)
{
    static const struct exception_kind unknown = {
        OWN(OPERATIONS), SEV(WARNING), "An unclassified problem was reported.",
        "Read the details and the related event; ask engineering if unclear."};
    static const struct exception_kind kinds[] = {
        [TYPE(SKU_UNKNOWN)] = {OWN(ECOMMERCE), SEV(WARNING),
                               "A SKU was sold or ordered that the catalogue does not know.",
                               "Add the SKU to the shop catalogue or correct it at the till, "
                               "then replay the event."},
        [TYPE(DUPLICATE_SKU)] = {OWN(ECOMMERCE), SEV(ERROR),
                                 "Two platform variants carry the same SKU, so stock cannot be "
                                 "attributed to one of them.",
                                 "Give each variant its own SKU in the shop admin."},
        [TYPE(TAX_MAPPING_FAILED)] = {OWN(FINANCE), SEV(ERROR),
                                      "A tax line could not be mapped to an accounting tax code.",
                                      "Add the tax code mapping, then replay the event."},
        [TYPE(DISCOUNT_MAPPING_FAILED)] = {OWN(FINANCE), SEV(WARNING),
                                           "A discount could not be mapped for accounting.",
                                           "Add the discount mapping, then replay the event."},
        [TYPE(NON_STOCK_UNMAPPED)] = {OWN(FINANCE), SEV(ERROR),
                                      "A non-stock line (bag, service, gift card…) has no ledger "
                                      "code.",
                                      "Map the non-stock code to a ledger code, then replay."},
        [TYPE(PAYLOAD_REJECTED)] = {OWN(ECOMMERCE), SEV(ERROR),
                                    "The platform rejected a write from tillsync.",
                                    "Check the item and location on the platform; fix and replay "
                                    "the dead-lettered message."},
        [TYPE(DEAD_LETTERED)] = {OWN(ECOMMERCE), SEV(ERROR),
                                 "A message could not be processed and was put on a dead-letter "
                                 "topic.",
                                 "Read the error headers, fix the cause, replay the message."},
        [TYPE(STOCK_DRIFT)] = {OWN(OPERATIONS), SEV(WARNING),
                               "The platform shows a different available figure from the ledger.",
                               "tillsync corrects it automatically; if it persists, check "
                               "platform-side stock edits and apps."},
        [TYPE(NEGATIVE_STOCK)] = {OWN(OPERATIONS), SEV(ERROR),
                                  "Stock went below zero: more was sold than the ledger held "
                                  "(oversold, or offline sales arriving late).",
                                  "Count the SKU at the location and record the count; check "
                                  "for missing goods receipts."},
        [TYPE(ORDER_NOT_REFLECTED)] = {OWN(OPERATIONS), SEV(ERROR),
                                       "An online order has not reached the stock ledger within "
                                       "its deadline.",
                                       "Check the shop-connector and ledger flows for pauses or "
                                       "dead letters."},
        [TYPE(WEBHOOK_GAP)] = {OWN(ECOMMERCE), SEV(WARNING),
                               "The poll found orders whose webhooks never arrived.",
                               "Nothing is lost (the poll published them); check the platform's "
                               "webhook subscription health."},
        [TYPE(LOYALTY_UPDATE_FAILED)] = {OWN(CX), SEV(ERROR),
                                         "Member points could not be updated after retries.",
                                         "Check the member on the platform, then replay the "
                                         "points change."},
        [TYPE(POSSIBLE_DUPLICATE_CUSTOMER)] = {OWN(CX), SEV(WARNING),
                                               "A customer matched more than one loyalty member.",
                                               "Merge or correct the members on the platform."},
        [TYPE(TAKINGS_VARIANCE)] = {OWN(FINANCE), SEV(ERROR),
                                    "Declared takings differ from recorded tenders.",
                                    "Recount the till and check voids and refunds of the day."},
        [TYPE(PAYOUT_VARIANCE)] = {OWN(FINANCE), SEV(ERROR),
                                   "A platform payout differs from the orders and refunds it "
                                   "covers.",
                                   "Compare the payout file with the orders of its period."},
        [TYPE(UNKNOWN_LOCATION)] = {OWN(OPERATIONS), SEV(ERROR),
                                    "An event names a store or location tillsync does not know.",
                                    "Add the location mapping, then replay the event."},
        [TYPE(TRANSACTION_NOT_APPLIED)] = {OWN(OPERATIONS), SEV(ERROR),
                                           "A till transaction has had no effect on stock within "
                                           "its deadline.",
                                           "Check the ledger flow for pauses or dead letters."},
        [TYPE(BALANCE_MISMATCH)] = {OWN(OPERATIONS), SEV(CRITICAL),
                                    "A stored stock balance differs from the sum of its ledger.",
                                    "Escalate to engineering; do not adjust stock by hand."},
        [TYPE(SKU_ONE_SIDE_ONLY)] = {OWN(ECOMMERCE), SEV(INFO),
                                     "A SKU is known on one side only (till or platform).",
                                     "Add it to the missing side or retire it."},
    };

    if ((size_t)type < sizeof(kinds) / sizeof(kinds[0]) && kinds[type].explanation)
        return &kinds[type];
    return &unknown;
}

Tillsync__V1__OwnerTeam exception_owner(Tillsync__V1__ExceptionType type)
{
    return exception_kind(type)->owner;
}

const char *exception_default_explanation(Tillsync__V1__ExceptionType type)
{
    return exception_kind(type)->explanation;
}

const char *exception_default_action(Tillsync__V1__ExceptionType type)
{
    return exception_kind(type)->action;
}

int event_raise_exception(struct service *svc, const struct exception_raise *x, char *err,
                          size_t errlen)
{
    const struct exception_kind *kind = exception_kind(x->type);
    Tillsync__V1__ExceptionEvent ev = TILLSYNC__V1__EXCEPTION_EVENT__INIT;
    Tillsync__V1__RaisedException ex = TILLSYNC__V1__RAISED_EXCEPTION__INIT;
    Tillsync__V1__Envelope env;
    Tillsync__V1__ExceptionDetail *details = NULL, **detailp = NULL;
    char *related[1];
    char name[512], id[37];
    int64_t now = clock_now_ms();
    size_t nd = 0;
    int rc;

    if (!x->dedupe_key || !*x->dedupe_key || !x->summary) {
        snprintf(err, errlen, "exception needs a dedupe key and a summary");
        return -EINVAL;
    }
    while (x->details && x->details[2 * nd] && x->details[2 * nd + 1])
        nd++;
    if (nd) {
        details = calloc(nd, sizeof(*details));
        detailp = calloc(nd, sizeof(*detailp));
        if (!details || !detailp) {
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < nd; i++) {
            tillsync__v1__exception_detail__init(&details[i]);
            details[i].key = (char *)x->details[2 * i];
            details[i].value = (char *)x->details[2 * i + 1];
            detailp[i] = &details[i];
        }
    }
    snprintf(name, sizeof(name), "exception/%s/%s/%lld/%s", svc->tenant_id, x->dedupe_key,
             (long long)now, x->cleared ? "cleared" : "raised");
    uuid_from_name(name, id);
    event_envelope_fill(&env, svc, id, now, TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_TILLSYNC,
                        svc->spec->name, x->refs);
    ex.dedupe_key = (char *)x->dedupe_key;
    ex.type = x->type;
    ex.owner = x->owner ? x->owner : kind->owner;
    ex.severity = x->severity ? x->severity : kind->severity;
    ex.signal = x->cleared ? TILLSYNC__V1__EXCEPTION_SIGNAL__EXCEPTION_SIGNAL_CLEARED
                           : TILLSYNC__V1__EXCEPTION_SIGNAL__EXCEPTION_SIGNAL_RAISED;
    ex.summary = (char *)x->summary;
    ex.explanation = (char *)(x->explanation ? x->explanation : kind->explanation);
    ex.suggested_action = (char *)(x->suggested_action ? x->suggested_action : kind->action);
    if (x->related_event_id) {
        related[0] = (char *)x->related_event_id;
        ex.related_event_ids = related;
        ex.n_related_event_ids = 1;
    }
    ex.details = detailp;
    ex.n_details = nd;
    ex.topic = (char *)(x->topic ? x->topic : "");
    ev.envelope = &env;
    ev.exception = &ex;
    rc = event_publish_sync(svc, "recon.exceptions.v1", x->dedupe_key, &ev.base, id, now, 10000,
                            err, errlen);
out:
    free(details);
    free(detailp);
    return rc;
}
