/*
 * exstore — the exception store: one row per problem (dedupe key) with its sightings counted,
 * first/last seen, owner team, severity, business identifiers, plain-language explanation and
 * suggested action, and a lifecycle open → acknowledged → resolved with who and when.
 *
 * Rules: a new sighting of a resolved exception reopens it (the problem is back); a sighting of
 * an open or acknowledged one only counts. A clear (EXCEPTION_SIGNAL_CLEARED, or a check of
 * recon-reporter's own finding the condition gone) resolves it with resolution "cleared" and
 * resolved_by "system". Every function works inside the caller's transaction (or none).
 */
#ifndef RECON_EXSTORE_H
#define RECON_EXSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "tillsync/v1/exception.pb-c.h"

/* One sighting of an exception. Strings are borrowed; NULL reads as "". */
struct exstore_sighting {
    const char *dedupe_key; /* required */
    const char *type;       /* "sku_unknown" (exstore_type_name) */
    const char *owner;      /* "ecommerce" */
    const char *severity;   /* "error" */
    const char *summary;
    const char *explanation;
    const char *action;
    const char *topic;          /* base topic of the related event */
    const char *store_code;     /* for per-store views */
    const char *refs_json;      /* JSON object of the business identifiers; NULL = {} */
    const char *details_json;   /* JSON object of extra key/values; NULL = {} */
    int64_t seen_at_ms;         /* when it was seen; 0 = now */
    const char *event_id;       /* the event reporting it (linked as a sighting), may be NULL */
    const char *const *related; /* related event ids, nrelated of them */
    size_t nrelated;
};

/* Record a sighting. Sets *id (may be NULL) to the exception's id. Returns 0 or -EIO with err. */
int exstore_raise(PGconn *conn, const struct exstore_sighting *s, int64_t *id, char *err,
                  size_t errlen);

/*
 * Resolve the exception with dedupe_key as cleared (by "system"), linking event_id (may be NULL)
 * as the clearing event. Returns 1 when an unresolved exception was resolved, 0 when there was
 * none to resolve, -EIO with err on a database error.
 */
int exstore_clear(PGconn *conn, const char *dedupe_key, const char *event_id, char *err,
                  size_t errlen);

/* What a person may do to an exception. */
enum exstore_action {
    EXSTORE_ACKNOWLEDGE, /* open → acknowledged */
    EXSTORE_RESOLVE,     /* open or acknowledged → resolved (resolution "manual") */
};

/*
 * Apply action to exception id on behalf of by (required), with an optional note. On success
 * *json is the exception afterwards (malloc'd JSON object, caller frees). Returns 0, -ENOENT
 * (no such exception), -EPERM (not allowed from its current status; err says which), -EIO.
 */
int exstore_act(PGconn *conn, int64_t id, enum exstore_action action, const char *by,
                const char *note, char **json, char *err, size_t errlen);

/* Filters of exstore_list_json; NULL or "" = any. */
struct exstore_filter {
    const char *owner, *type, *status, *store_code, *severity;
    long limit; /* <= 0: 500 */
};

/*
 * The exceptions matching f, newest last_seen first, as a malloc'd JSON document
 * {"exceptions":[...],"counts":[{"owner","type","status","count"}...]}. NULL with err.
 */
char *exstore_list_json(PGconn *conn, const struct exstore_filter *f, char *err, size_t errlen);

/*
 * One exception with the events behind it (each with topic, partition, offset, type, times and
 * business identifiers) as malloc'd JSON. NULL with err; *notfound set when there is no such id.
 */
char *exstore_get_json(PGconn *conn, int64_t id, int *notfound, char *err, size_t errlen);

/* Lower-case names of the protobuf enums: "sku_unknown", "ecommerce", "error". Static strings;
 * "unspecified" for 0 or unknown values. */
const char *exstore_type_name(Tillsync__V1__ExceptionType t);
const char *exstore_owner_name(Tillsync__V1__OwnerTeam o);
const char *exstore_severity_name(Tillsync__V1__Severity s);

#endif
