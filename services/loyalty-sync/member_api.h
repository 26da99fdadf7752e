/*
 * member_api — the platform's loyalty member API behind one interface: the Shopify loyalty app
 * (REST, members with a version, 409 VERSION_CONFLICT / CONCURRENT_UPDATE) and Shopline
 * (REST Admin API customers: GET customers/v2/search.json?query_param= (a fuzzy search over
 * phone, email, name and address, so the answer is filtered here to exact matches) and POST
 * customers.json; Admin GraphQL pointsInfo / pointsUpdate INCREASE/DECREASE, user error
 * OPERATION_TOO_FREQUENT, no version). Every call first takes a token from the shop's shared
 * Redis bucket of the API it calls (ratelimit.h): Shopline REST calls from rest_bucket (the
 * bucket shop-connector takes from for the same shop), everything else from bucket; a 429
 * empties that bucket. Neither platform has an idempotency key for points: the caller's
 * journal must make sure a change is sent once (see loyalty.h).
 */
#ifndef LOYALTY_MEMBER_API_H
#define LOYALTY_MEMBER_API_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"
#include "redis.h"

enum member_platform {
    MEMBER_PLATFORM_LOYALTY_APP, /* Shopify shops: a loyalty app's member API */
    MEMBER_PLATFORM_SHOPLINE,    /* Shopline customers + pointsUpdate */
};

/* A member as the platform reports it. version is -1 when the API has none. */
struct member {
    char id[64];
    char email[256];
    char phone[48];
    int64_t points;
    int64_t version;
};

struct member_api_opts {
    enum member_platform platform;
    const char *base_url;           /* "https://shop.example" (no trailing slash needed) */
    const char *token;              /* Bearer token */
    const char *api_version;        /* Shopline "v20240601"; ignored for the loyalty app */
    long timeout_ms;                /* per HTTP call */
    struct redis *redis;            /* for the rate-limit buckets; NULL = no limit (tests) */
    struct ratelimit_bucket bucket; /* loyalty app calls, Shopline GraphQL calls; key borrowed,
                                       must outlive the api; key NULL = no limit */
    /* Shopline REST Admin API calls (customer search and create): the shop's REST bucket,
     * ratelimit_key(tenant, shop, "rest"), shared with shop-connector. Key borrowed; NULL =
     * no limit. Unused for the loyalty app. */
    struct ratelimit_bucket rest_bucket;
    /* while *running is 0 no call is started: a wait for a rate-limit token gives up within
     * ~50 ms and the call returns -ECANCELED (nothing sent). NULL = never. Borrowed. */
    volatile sig_atomic_t *running;
};

struct member_api;

/* Create; strings are copied (bucket.key is borrowed). NULL with err on bad options. */
struct member_api *member_api_new(const struct member_api_opts *o, char *err, size_t errlen);
void member_api_free(struct member_api *a);

/*
 * Members matching the normalised email (case-insensitive) or the E.164 phone (same digits)
 * exactly (either may be NULL), distinct by id, at most cap written to out; *n = how many there
 * were (may exceed cap). Shopline answers a fuzzy search: members that only contain the term
 * are dropped here. Returns 0, or
 * -EIO (network, 5xx), -EPROTO (answer not understood), -EAGAIN (409, 429, no rate-limit token
 * within the timeout), -ECANCELED (a shutdown began before the call was sent; every call).
 */
int member_api_find(struct member_api *a, const char *email, const char *phone, struct member *out,
                    size_t cap, size_t *n, char *err, size_t errlen);

/* Create a member with 0 points. Returns 0 with out filled, or negative as above. */
int member_api_create(struct member_api *a, const char *email, const char *phone, const char *name,
                      struct member *out, char *err, size_t errlen);

/* Current points (and version). Returns 0, -ENOENT unknown member, or negative as above. */
int member_api_get(struct member_api *a, const char *id, struct member *out, char *err,
                   size_t errlen);

/*
 * Add delta points (negative takes back) to member id; with a version API expected_version
 * must be the version last read (>= 0), else it is ignored. Returns 0 (after->points is the
 * balance after the change when the API tells it, else -1 in after->version), -EAGAIN when the
 * platform refused because of a collision (409 conflict, "operation is too frequent", 429):
 * nothing was applied and the caller retries after re-reading; -ENOENT, -EIO (the outcome may
 * be unknown: a timeout after sending), -EPROTO.
 */
int member_api_add_points(struct member_api *a, const char *id, int64_t delta,
                          int64_t expected_version, const char *reason, struct member *after,
                          char *err, size_t errlen);

#endif
