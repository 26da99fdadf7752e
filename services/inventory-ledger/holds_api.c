/* holds_api — HTTP handlers of holds. See holds_api.h. */
#include "holds_api.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json_util.h"

#define ID_MAX        200
#define DEFAULT_TTL_S 900

/* Identifiers: 1..200 printable ASCII characters, no space. */
static bool id_ok(const char *s)
{
    size_t n = 0;

    for (; s && s[n]; n++)
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e)
            return false;
    return n > 0 && n <= ID_MAX;
}

static json_t *hold_json(const struct hold *h)
{
    char crt[32] = "", exp[32] = "";
    json_t *lines = json_array(), *o;

    clock_format_rfc3339(h->created_at_ms, crt, sizeof(crt));
    clock_format_rfc3339(h->expires_at_ms, exp, sizeof(exp));
    for (size_t i = 0; i < h->nlines; i++)
        json_array_append_new(lines, json_pack("{s:s, s:I}", "sku", h->lines[i].sku, "quantity",
                                               (json_int_t)h->lines[i].quantity));
    o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:o}", "hold_id", h->id, "state", h->state,
                  "created_at", crt, "expires_at", exp, "expires_at_ms",
                  (json_int_t)h->expires_at_ms, "ttl_seconds", (json_int_t)h->ttl_s, "lines",
                  lines);
    json_object_set_new(o, h->channel ? "channel_location_id" : "location_id",
                        json_string(h->scope_id));
    if (*h->checkout_id)
        json_object_set_new(o, "checkout_id", json_string(h->checkout_id));
    if (*h->cart_token)
        json_object_set_new(o, "cart_token", json_string(h->cart_token));
    return o;
}

/* Answer an error of a holds_* call. */
static void fail(struct http_response *resp, int rc, const char *err)
{
    switch (rc) {
    case HOLDS_ERR_NOT_FOUND:
        http_response_error(resp, 404, "not_found", "hold", "%s", err);
        break;
    case HOLDS_ERR_STATE:
        http_response_error(resp, 409, "hold_not_live", NULL, "%s", err);
        break;
    case HOLDS_ERR_CONFLICT:
        http_response_error(resp, 422, "idempotency_key_reused", "idempotency_key", "%s", err);
        break;
    default:
        http_response_error(resp, 503, "reservations_unavailable", NULL,
                            "holds cannot be served now (fail closed): %s", err);
        break;
    }
}

static json_t *body_object(const struct http_request *req, struct http_response *resp,
                           bool allow_empty)
{
    char err[256];
    json_t *o;

    if (req->body_len == 0 && allow_empty)
        return json_object();
    o = json_parse_object(req->body, req->body_len, err, sizeof(err));
    if (!o)
        http_response_error(resp, 400, "invalid_json", NULL, "%s", err);
    return o;
}

/* Optional string field that must be an identifier; 0, or -1 after answering 400. */
static int opt_id(json_t *o, const char *key, const char **out, struct http_response *resp)
{
    char err[256];
    int rc = json_get_string(o, key, false, out, err, sizeof(err));

    if (rc == -ENOENT) {
        *out = NULL;
        return 0;
    }
    if (rc || !id_ok(*out)) {
        http_response_error(resp, 400, "invalid_field", key,
                            "%s: must be 1..200 printable characters", key);
        return -1;
    }
    return 0;
}

/* A struct hold for a new request: only what precedes the lines is zeroed (the struct is
 * ≈ 23 kB and zeroing it all was a visible share of a hold's CPU); lines are zeroed as added. */
static struct hold *hold_blank(void)
{
    struct hold *hold = malloc(sizeof(*hold));

    if (hold) {
        memset(hold, 0, offsetof(struct hold, lines));
        hold->nlines = 0;
    }
    return hold;
}

/* A create in flight: the request's connection is suspended until holds.c answers it. */
struct create_flight {
    struct holds_create c;
    struct holds *h;
    struct http_response *resp;
    struct hold *hold;
    char idem[ID_MAX + 1];
    char err[1024];
};

/* Answer a create once its result is in (a worker thread: a replay reads the stored hold). */
static void hold_create_answer(const struct http_request *req, struct http_response *resp,
                               void *arg)
{
    struct create_flight *f = arg;
    struct hold *hold = f->hold;
    int rc = holds_create_finish(f->h, &f->c);

    (void)req;
    if (rc == 0 || rc == 1) {
        http_response_json(resp, rc == 0 ? 201 : 200, hold_json(hold));
    } else if (rc == HOLDS_ERR_SHORT) {
        json_t *ls = json_array();

        for (size_t j = 0; j < hold->nlines; j++)
            json_array_append_new(ls, json_pack("{s:s, s:I, s:I, s:b}", "sku", hold->lines[j].sku,
                                                "requested", (json_int_t)hold->lines[j].quantity,
                                                "available", (json_int_t)hold->lines[j].available,
                                                "short", hold->lines[j].short_));
        http_response_json(resp, 409,
                           json_pack("{s:{s:s, s:s, s:s}, s:o}", "error", "code",
                                     "insufficient_stock", "message", f->err, "field", "lines",
                                     "lines", ls));
    } else {
        fail(resp, rc, f->err);
    }
    free(hold);
    free(f);
}

/* holds.c has the answer (a sender thread): let the request go on. */
static void hold_create_done(struct holds_create *c)
{
    http_response_resume(((struct create_flight *)c->arg)->resp);
}

static void hold_create(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct holds *h = opaque;
    struct hold *hold = hold_blank();
    struct create_flight *f = NULL;
    const char *idem = http_request_header(req, "Idempotency-Key"), *loc, *ch, *chk, *cart, *s;
    char err[1024];
    json_t *o = NULL, *lines, *v;
    int64_t ttl = DEFAULT_TTL_S;
    size_t i;
    int rc;

    if (!hold) {
        http_response_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    if (!(o = body_object(req, resp, false)))
        goto out;
    if (opt_id(o, "idempotency_key", &s, resp) || opt_id(o, "location_id", &loc, resp) ||
        opt_id(o, "channel_location_id", &ch, resp) || opt_id(o, "checkout_id", &chk, resp) ||
        opt_id(o, "cart_token", &cart, resp))
        goto out;
    if (s)
        idem = s;
    if (!idem || !id_ok(idem)) {
        http_response_error(resp, 400, "invalid_field", "idempotency_key",
                            "an idempotency key is required (Idempotency-Key header or "
                            "idempotency_key field, 1..200 printable characters)");
        goto out;
    }
    if (!loc == !ch) {
        http_response_error(resp, 400, "invalid_field", "location_id",
                            "give exactly one of location_id (pickup store) and "
                            "channel_location_id (online checkout)");
        goto out;
    }
    rc = json_get_int(o, "ttl_seconds", false, 1, HOLDS_MAX_TTL_S, &ttl, err, sizeof(err));
    if (rc && rc != -ENOENT) {
        http_response_error(resp, 400, "invalid_field", "ttl_seconds", "%s", err);
        goto out;
    }
    lines = json_object_get(o, "lines");
    if (!json_is_array(lines) || json_array_size(lines) == 0 ||
        json_array_size(lines) > HOLDS_MAX_LINES) {
        http_response_error(resp, 400, "invalid_field", "lines",
                            "lines: must be an array of 1..%d {sku, quantity}", HOLDS_MAX_LINES);
        goto out;
    }
    json_array_foreach(lines, i, v)
    {
        const char *sku = NULL;
        int64_t qty = 0;
        char field[32];

        snprintf(field, sizeof(field), "lines[%zu]", i);
        if (!json_is_object(v) || json_get_string(v, "sku", true, &sku, err, sizeof(err)) ||
            !id_ok(sku) || json_get_int(v, "quantity", true, 1, 1000000, &qty, err, sizeof(err))) {
            http_response_error(resp, 400, "invalid_field", field,
                                "%s: must be {\"sku\": 1..200 printable characters, "
                                "\"quantity\": 1..1000000}",
                                field);
            goto out;
        }
        for (size_t j = 0; j < hold->nlines; j++)
            if (strcmp(hold->lines[j].sku, sku) == 0) {
                http_response_error(resp, 400, "invalid_field", field,
                                    "%s: SKU %s appears twice; give one line per SKU", field, sku);
                goto out;
            }
        memset(&hold->lines[hold->nlines], 0, sizeof(hold->lines[0]));
        snprintf(hold->lines[hold->nlines].sku, sizeof(hold->lines[0].sku), "%s", sku);
        hold->lines[hold->nlines++].quantity = qty;
    }
    hold->channel = ch != NULL;
    snprintf(hold->scope_id, sizeof(hold->scope_id), "%s", ch ? ch : loc);
    snprintf(hold->checkout_id, sizeof(hold->checkout_id), "%s", chk ? chk : "");
    snprintf(hold->cart_token, sizeof(hold->cart_token), "%s", cart ? cart : "");
    hold->ttl_s = ttl;
    if (!(f = calloc(1, sizeof(*f)))) {
        http_response_error(resp, 500, "internal", NULL, "out of memory");
        goto out;
    }
    snprintf(f->idem, sizeof(f->idem), "%s", idem);
    f->h = h;
    f->resp = resp;
    f->hold = hold;
    f->c = (struct holds_create){.idem_key = f->idem,
                                 .req = hold,
                                 .err = f->err,
                                 .errlen = sizeof(f->err),
                                 .done = hold_create_done,
                                 .arg = f};
    json_decref(o);
    http_response_defer(resp, hold_create_answer, f);
    holds_create_submit(h, &f->c);
    return;
out:
    json_decref(o);
    free(hold);
}

static void hold_get(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct hold *hold = calloc(1, sizeof(*hold));
    char err[512];
    int rc;

    if (!hold) {
        http_response_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    if (!id_ok(req->path_params[0]))
        http_response_error(resp, 400, "invalid_hold", "hold", "hold id must be printable");
    else if ((rc = holds_get(opaque, req->path_params[0], hold, err, sizeof(err))))
        fail(resp, rc, err);
    else
        http_response_json(resp, 200, hold_json(hold));
    free(hold);
}

static void hold_extend(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct hold *hold = calloc(1, sizeof(*hold));
    char err[512];
    int64_t ttl = DEFAULT_TTL_S;
    json_t *o = NULL;
    int rc;

    if (!hold) {
        http_response_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    if (!id_ok(req->path_params[0])) {
        http_response_error(resp, 400, "invalid_hold", "hold", "hold id must be printable");
        goto out;
    }
    if (!(o = body_object(req, resp, true)))
        goto out;
    rc = json_get_int(o, "ttl_seconds", false, 1, HOLDS_MAX_TTL_S, &ttl, err, sizeof(err));
    if (rc && rc != -ENOENT) {
        http_response_error(resp, 400, "invalid_field", "ttl_seconds", "%s", err);
        goto out;
    }
    if ((rc = holds_extend(opaque, req->path_params[0], ttl, hold, err, sizeof(err))))
        fail(resp, rc, err);
    else
        http_response_json(resp, 200, hold_json(hold));
out:
    json_decref(o);
    free(hold);
}

static void hold_release(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct hold *hold = calloc(1, sizeof(*hold));
    char err[512];
    int rc;

    if (!hold) {
        http_response_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    if (!id_ok(req->path_params[0]))
        http_response_error(resp, 400, "invalid_hold", "hold", "hold id must be printable");
    else if ((rc = holds_release(opaque, req->path_params[0], hold, err, sizeof(err))))
        fail(resp, rc, err);
    else
        http_response_json(resp, 200, hold_json(hold));
    free(hold);
}

static void availability_get(const struct http_request *req, struct http_response *resp,
                             void *opaque)
{
    const char *sku = req->path_params[0];
    const char *loc = http_request_query(req, "location_id");
    const char *ch = http_request_query(req, "channel_location_id");
    int64_t base, held, avail;
    char err[512];
    int rc;

    if (!id_ok(sku)) {
        http_response_error(resp, 400, "invalid_sku", "sku", "sku must be 1..200 printable");
        return;
    }
    if (!loc == !ch || !id_ok(loc ? loc : ch)) {
        http_response_error(resp, 400, "invalid_field", "location_id",
                            "give exactly one of location_id and channel_location_id");
        return;
    }
    rc = holds_availability(opaque, ch != NULL, ch ? ch : loc, sku, &base, &held, &avail, err,
                            sizeof(err));
    if (rc) {
        fail(resp, rc, err);
        return;
    }
    http_response_json(resp, 200,
                       json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "sku", sku, "scope",
                                 ch ? "channel" : "location", "id", ch ? ch : loc, "base",
                                 (json_int_t)base, "held", (json_int_t)held, "available",
                                 (json_int_t)avail));
}

size_t holds_api_routes(struct http_route *routes, struct holds *h)
{
    const struct http_route r[HOLDS_API_NROUTES] = {
        {"POST", "/v1/holds", hold_create, h, 262144, "application/json", 0},
        {"GET", "/v1/holds/{hold}", hold_get, h, 0, NULL, 0},
        {"POST", "/v1/holds/{hold}/extend", hold_extend, h, 4096, "application/json", 0},
        {"POST", "/v1/holds/{hold}/release", hold_release, h, 4096, NULL, 0},
        {"GET", "/v1/availability/{sku}", availability_get, h, 0, NULL, 0},
    };

    memcpy(routes, r, sizeof(r));
    return HOLDS_API_NROUTES;
}
