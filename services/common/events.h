/*
 * events — publishing tillsync events the same way from every service: the common envelope,
 * the CloudEvents Kafka headers, the topic prefix, and exceptions with their owners.
 *
 * Header conventions (docs/asyncapi.yaml): ce_id = the envelope's event_id, ce_type = the
 * payload's full protobuf name ("tillsync.v1.PosTransactionEvent"), ce_source =
 * "/tillsync/<tenant>/<service>", ce_time = occurred-at in RFC 3339 UTC.
 */
#ifndef TILLSYNC_EVENTS_H
#define TILLSYNC_EVENTS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "kafka.h"
#include "service.h"
#include "tillsync/v1/common.pb-c.h"
#include "tillsync/v1/exception.pb-c.h"

/*
 * Fill env (caller-owned; its strings are borrowed, not copied, so they must outlive the
 * publish): tenant and producer from svc, recorded-at = now, the given id, occurred-at and
 * source. refs may be NULL. A NULL event_id is not allowed: callers choose ids so that a retry
 * of the same fact keeps its id (see uuid.h).
 */
void event_envelope_fill(Tillsync__V1__Envelope *env, const struct service *svc,
                         const char *event_id, int64_t occurred_at_ms,
                         Tillsync__V1__SourceSystem source, const char *source_name,
                         Tillsync__V1__BusinessRefs *refs);

/*
 * Serialise msg and send it to TOPIC_PREFIX + topic_base with key and the CloudEvents headers.
 * event_publish_sync returns 0 only once the broker acknowledged the record (the proof a 2xx
 * may be answered on); event_publish queues it and calls cb from the producer's delivery thread.
 * Negative on failure with err set.
 */
int event_publish_sync(struct service *svc, const char *topic_base, const char *key,
                       const ProtobufCMessage *msg, const char *event_id, int64_t occurred_at_ms,
                       int timeout_ms, char *err, size_t errlen);
int event_publish(struct service *svc, const char *topic_base, const char *key,
                  const ProtobufCMessage *msg, const char *event_id, int64_t occurred_at_ms,
                  kafka_delivery_cb cb, void *opaque, char *err, size_t errlen);

/* An exception to raise (or clear). Unset owner/severity/explanation/action take the type's
 * defaults from DESIGN.md's table (exception_owner(), exception_default_action()). */
struct exception_raise {
    Tillsync__V1__ExceptionType type;
    Tillsync__V1__OwnerTeam owner;    /* 0 = the type's owner */
    Tillsync__V1__Severity severity;  /* 0 = the type's default */
    bool cleared;                     /* the condition no longer holds: auto-resolve */
    const char *dedupe_key;           /* required: same problem, same key */
    const char *summary;              /* required: one line a person understands */
    const char *explanation;          /* NULL = the type's default text */
    const char *suggested_action;     /* NULL = the type's default text */
    const char *related_event_id;     /* may be NULL */
    const char *topic;                /* base topic of the related event, may be NULL */
    Tillsync__V1__BusinessRefs *refs; /* may be NULL */
    const char *const *details;       /* NULL-terminated key, value pairs; may be NULL */
};

/*
 * Publish an ExceptionEvent to recon.exceptions.v1 (key = dedupe_key), synchronously. The event
 * id is derived from the dedupe key and the time, so every raise is a new sighting of the same
 * exception. Returns 0 or negative with err set.
 */
int event_raise_exception(struct service *svc, const struct exception_raise *x, char *err,
                          size_t errlen);

/* The owner team DESIGN.md gives an exception type. */
Tillsync__V1__OwnerTeam exception_owner(Tillsync__V1__ExceptionType type);

/* Plain-language default explanation and suggested action of a type (static strings). */
const char *exception_default_explanation(Tillsync__V1__ExceptionType type);
const char *exception_default_action(Tillsync__V1__ExceptionType type);

#endif
