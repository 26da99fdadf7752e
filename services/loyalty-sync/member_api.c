/*
 * member_api — loyalty app and Shopline member calls over libcurl (see member_api.h).
 * One curl easy handle per call: calls are rare (one per points change) and this keeps the
 * module free of shared mutable state between threads.
 */
#include "member_api.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

struct member_api {
    enum member_platform platform;
    char *base_url;
    char *token;
    char *api_version;
    long timeout_ms;
    struct redis *redis;
    struct ratelimit_bucket bucket;      /* loyalty app, Shopline GraphQL */
    struct ratelimit_bucket rest_bucket; /* Shopline REST Admin API */
    volatile sig_atomic_t *running;
};

struct buf {
    char *p;
    size_t len;
};

static size_t buf_write(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct buf *b = opaque;
    size_t n = size * nmemb;
    if (b->len + n > (4u << 20))
        return 0;
    char *np = realloc(b->p, b->len + n + 1);
    if (!np)
        return 0;
    memcpy(np + b->len, data, n);
    b->p = np;
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

struct member_api *member_api_new(const struct member_api_opts *o, char *err, size_t errlen)
{
    if (!o || !o->base_url || !*o->base_url || !o->token || !*o->token) {
        snprintf(err, errlen, "member api: base URL and token are required");
        return NULL;
    }
    struct member_api *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->platform = o->platform;
    a->base_url = strdup(o->base_url);
    a->token = strdup(o->token);
    a->api_version = strdup(o->api_version && *o->api_version ? o->api_version : "v20240601");
    a->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    a->redis = o->redis;
    a->bucket = o->bucket;
    a->rest_bucket = o->rest_bucket;
    a->running = o->running;
    if (!a->base_url || !a->token || !a->api_version) {
        member_api_free(a);
        return NULL;
    }
    size_t n = strlen(a->base_url);
    while (n > 0 && a->base_url[n - 1] == '/')
        a->base_url[--n] = '\0';
    return a;
}

void member_api_free(struct member_api *a)
{
    if (!a)
        return;
    free(a->base_url);
    free(a->token);
    free(a->api_version);
    free(a);
}

/*
 * Shopline writes 26-digit ids as bare JSON numbers, beyond any integer type: turn every
 * `"id": <digits>` (also customer_id) into a string before parsing, keeping the digits.
 */
static char *quote_bare_ids(const char *in, size_t len)
{
    char *out = malloc(len * 2 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        out[o++] = in[i];
        if (in[i] == ':' && i >= 4 && in[i - 1] == '"' &&
            (memcmp(in + i - 4, "\"id\"", 4) == 0 ||
             (i >= 13 && memcmp(in + i - 13, "\"customer_id\"", 13) == 0))) {
            size_t j = i + 1;
            while (j < len && (in[j] == ' ' || in[j] == '\t'))
                j++;
            size_t k = j;
            while (k < len && isdigit((unsigned char)in[k]))
                k++;
            if (k > j) {
                out[o++] = '"';
                memcpy(out + o, in + j, k - j);
                o += k - j;
                out[o++] = '"';
                i = k;
                continue;
            }
        }
        i++;
    }
    out[o] = '\0';
    return out;
}

static bool api_running(const struct member_api *a)
{
    return !a->running || *a->running;
}

/*
 * Take a token from bucket b of the shop, sleeping in slices of at most 50 ms (so a shutdown is
 * seen at once) for at most timeout_ms. Returns 0, -ECANCELED when stopping, -EAGAIN when no
 * token came in time, -EIO when Redis failed.
 */
static int token_take(struct member_api *a, const struct ratelimit_bucket *b, char *err,
                      size_t errlen)
{
    long waited = 0;
    for (;;) {
        if (!api_running(a)) {
            snprintf(err, errlen, "member api: shutting down");
            return -ECANCELED;
        }
        if (!a->redis || !b->key)
            return 0;
        long wait = 0;
        int rc = ratelimit_try(a->redis, b, 1, &wait, err, errlen);
        if (rc)
            return -EIO;
        if (wait == 0)
            return 0;
        if (waited >= a->timeout_ms) {
            snprintf(err, errlen, "ratelimit: no token for %s within %ld ms", b->key,
                     a->timeout_ms);
            return -EAGAIN;
        }
        long slice = wait < 50 ? wait : 50;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = slice * 1000000L};
        nanosleep(&ts, NULL);
        waited += slice;
    }
}

/* The bucket a call takes from: a Shopline REST call the shop's REST bucket, any other call
 * (Shopline GraphQL, the loyalty app) the member-API bucket. */
static const struct ratelimit_bucket *bucket_of(const struct member_api *a, bool rest)
{
    return rest && a->platform == MEMBER_PLATFORM_SHOPLINE ? &a->rest_bucket : &a->bucket;
}

/* Header callback: keep the URL of a `Link: <url>; rel="next"` header in the buffer (cap 2048). */
static size_t link_header(char *data, size_t size, size_t nmemb, void *opaque)
{
    char *next = opaque;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(data, "link:", 5) == 0) {
        for (size_t i = 5; i < n; i++) {
            if (data[i] != '<')
                continue;
            size_t j = i + 1;
            while (j < n && data[j] != '>')
                j++;
            if (j >= n)
                break;
            size_t k = j + 1; /* the parameters of this link, up to the next ',' */
            while (k < n && data[k] != ',')
                k++;
            if (memmem(data + j, k - j, "rel=\"next\"", 10) && j - i - 1 < 2048) {
                memcpy(next, data + i + 1, j - i - 1);
                next[j - i - 1] = '\0';
            }
            i = k;
        }
    }
    return n;
}

/*
 * One HTTP call, after a token from bucket bk. Returns 0 with *status and *resp (parsed JSON
 * object or NULL when the body is not JSON; caller decrefs) and, when next is not NULL, the
 * rel="next" URL of a Link header in next (2048 bytes, "" when none); -EIO on transport
 * errors, -EAGAIN when no rate-limit token came within the timeout, -ECANCELED when a shutdown
 * began (nothing sent in either case).
 */
static int api_call(struct member_api *a, const struct ratelimit_bucket *bk, const char *method,
                    const char *url, json_t *body, long *status, json_t **resp, char *next,
                    char *err, size_t errlen)
{
    CURL *c = NULL;
    struct curl_slist *h = NULL;
    struct buf b = {0};
    char *payload = NULL, auth[512];
    int rc = 0;
    *resp = NULL;
    if (next)
        next[0] = '\0';
    rc = token_take(a, bk, err, errlen);
    if (rc)
        return rc;
    c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "curl init failed");
        return -EIO;
    }
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", a->token);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (next) {
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, link_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, next);
    }
    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        if (!payload) {
            rc = -ENOMEM;
            goto out;
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s %s: %s", method, url, curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (b.p) {
        char *q = quote_bare_ids(b.p, b.len);
        if (!q) {
            rc = -ENOMEM;
            goto out;
        }
        json_error_t je;
        *resp = json_loads(q, 0, &je);
        free(q);
    }
    if (*status == 429 && a->redis && bk->key) {
        char e2[128];
        ratelimit_correct(a->redis, bk, 0, e2, sizeof e2);
    }
out:
    free(payload);
    free(b.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

/* Map a non-2xx status to an error. */
static int status_error(long status, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: HTTP %ld", what, status);
    if (status == 409 || status == 429)
        return -EAGAIN;
    if (status == 404)
        return -ENOENT;
    return -EIO;
}

static void str_field(const json_t *o, const char *key, char *out, size_t cap)
{
    json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        snprintf(out, cap, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        out[0] = '\0';
}

static int member_from_json(const json_t *o, struct member *m)
{
    memset(m, 0, sizeof *m);
    if (!json_is_object(o))
        return -EPROTO;
    str_field(o, "id", m->id, sizeof m->id);
    str_field(o, "email", m->email, sizeof m->email);
    str_field(o, "phone", m->phone, sizeof m->phone);
    json_t *p = json_object_get(o, "points"), *v = json_object_get(o, "version");
    m->points = json_is_integer(p) ? json_integer_value(p) : 0;
    m->version = json_is_integer(v) ? json_integer_value(v) : -1;
    return m->id[0] ? 0 : -EPROTO;
}

/* The digits of s (at most cap - 1) into out. */
static void digits_of(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; s && *s && o + 1 < cap; s++)
        if (isdigit((unsigned char)*s))
            out[o++] = *s;
    out[o] = '\0';
}

/* Whether m is exactly the member asked for: email equal ignoring case and surrounding
 * whitespace, or phone with the same digits (a fuzzy search also returns near misses). */
static bool member_matches(const struct member *m, const char *email, const char *phone)
{
    if (email && *email) {
        const char *e = m->email;
        size_t len = strlen(e);
        while (*e && isspace((unsigned char)*e))
            e++, len--;
        while (len > 0 && isspace((unsigned char)e[len - 1]))
            len--;
        if (len == strlen(email) && strncasecmp(e, email, len) == 0)
            return true;
    }
    if (phone && *phone) {
        char want[48], got[48];
        digits_of(phone, want, sizeof want);
        digits_of(m->phone, got, sizeof got);
        if (want[0] && strcmp(want, got) == 0)
            return true;
    }
    return false;
}

/* Append the members of array arr matching email / phone to out, skipping ids already there. */
static void members_add(const json_t *arr, const char *email, const char *phone, struct member *out,
                        size_t cap, size_t *n)
{
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it)
    {
        struct member m;
        if (member_from_json(it, &m) || !member_matches(&m, email, phone))
            continue;
        bool seen = false;
        for (size_t k = 0; k < *n && k < cap; k++)
            if (strcmp(out[k].id, m.id) == 0)
                seen = true;
        if (seen)
            continue;
        if (*n < cap)
            out[*n] = m;
        (*n)++;
    }
}

static int url_with_query(struct member_api *a, char *url, size_t cap, const char *path,
                          const char *name, const char *value)
{
    char *esc = curl_easy_escape(NULL, value, 0);
    if (!esc)
        return -ENOMEM;
    int n = snprintf(url, cap, "%s%s%s%s", a->base_url, path, name, esc);
    curl_free(esc);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : 0;
}

/* Shopline answers at most 250 customers a page; a fuzzy term rarely needs a second one. */
#define SHOPLINE_SEARCH_PAGES 8

int member_api_find(struct member_api *a, const char *email, const char *phone, struct member *out,
                    size_t cap, size_t *n, char *err, size_t errlen)
{
    const char *terms[2][2] = {{"email", email}, {"phone", phone}};
    bool shopline = a->platform == MEMBER_PLATFORM_SHOPLINE;
    *n = 0;
    for (int t = 0; t < 2; t++) {
        const char *v = terms[t][1];
        char url[2048], name[64];
        if (!v || !*v)
            continue;
        int rc;
        if (!shopline) {
            snprintf(name, sizeof name, "?%s=", terms[t][0]);
            rc = url_with_query(a, url, sizeof url, "/apps/loyalty/api/members", name, v);
        } else {
            char path[128];
            snprintf(path, sizeof path, "/admin/openapi/%s/customers/v2/search.json",
                     a->api_version);
            rc = url_with_query(a, url, sizeof url, path, "?limit=250&query_param=", v);
        }
        if (rc)
            return rc;
        for (int page = 0; url[0]; page++) {
            long status = 0;
            json_t *resp = NULL;
            char next[2048];
            if (page == SHOPLINE_SEARCH_PAGES) {
                snprintf(err, errlen, "member lookup: more than %d pages of customers match %s",
                         SHOPLINE_SEARCH_PAGES, terms[t][0]);
                return -EPROTO;
            }
            rc = api_call(a, bucket_of(a, true), "GET", url, NULL, &status, &resp,
                          shopline ? next : NULL, err, errlen);
            if (rc == 0 && status / 100 != 2)
                rc = status_error(status, "member lookup", err, errlen);
            json_t *arr = NULL;
            if (rc == 0) {
                arr = json_object_get(resp, shopline ? "customers" : "members");
                if (!json_is_array(arr)) {
                    snprintf(err, errlen, "member lookup: no member list in the answer");
                    rc = -EPROTO;
                }
            }
            if (rc == 0)
                members_add(arr, t == 0 ? v : NULL, t == 1 ? v : NULL, out, cap, n);
            json_decref(resp);
            if (rc)
                return rc;
            url[0] = '\0';
            /* the next page from its page_info only (it carries the query), on our base URL:
             * the token never goes to a host the answer named */
            const char *pi = shopline ? strstr(next, "page_info=") : NULL;
            if (pi) {
                char path[128];
                size_t len = strcspn(pi + 10, "&#");
                snprintf(path, sizeof path, "/admin/openapi/%s/customers/v2/search.json",
                         a->api_version);
                int w = snprintf(url, sizeof url, "%s%s?limit=250&page_info=%.*s", a->base_url,
                                 path, (int)len, pi + 10);
                if (w < 0 || (size_t)w >= sizeof url) {
                    snprintf(err, errlen, "member lookup: next page link too long");
                    return -EPROTO;
                }
            }
        }
    }
    return 0;
}

int member_api_create(struct member_api *a, const char *email, const char *phone, const char *name,
                      struct member *out, char *err, size_t errlen)
{
    char url[512];
    long status = 0;
    json_t *resp = NULL;
    json_t *m = json_object();
    if (!m)
        return -ENOMEM;
    if (email && *email)
        json_object_set_new(m, "email", json_string(email));
    if (phone && *phone)
        json_object_set_new(m, "phone", json_string(phone));
    if (name && *name)
        json_object_set_new(m, "first_name", json_string(name));
    json_t *body = m;
    if (a->platform == MEMBER_PLATFORM_LOYALTY_APP) {
        snprintf(url, sizeof url, "%s/apps/loyalty/api/members", a->base_url);
    } else {
        snprintf(url, sizeof url, "%s/admin/openapi/%s/customers.json", a->base_url,
                 a->api_version);
        body = json_pack("{s:o}", "customer", m);
    }
    int rc =
        body ? api_call(a, bucket_of(a, true), "POST", url, body, &status, &resp, NULL, err, errlen)
             : -ENOMEM;
    json_decref(body);
    if (rc == 0 && status / 100 != 2)
        rc = status_error(status, "member create", err, errlen);
    if (rc == 0) {
        json_t *o = json_object_get(resp, a->platform == MEMBER_PLATFORM_LOYALTY_APP ? "member"
                                                                                     : "customer");
        if (member_from_json(o, out)) {
            snprintf(err, errlen, "member create: no member in the answer");
            rc = -EPROTO;
        }
        if (a->platform == MEMBER_PLATFORM_SHOPLINE)
            out->version = -1;
    }
    json_decref(resp);
    return rc;
}

/* Shopline GraphQL call: data object of the answer in *data (borrowed from *resp). */
static int shopline_gql(struct member_api *a, const char *query, json_t *vars, json_t **resp,
                        json_t **data, char *err, size_t errlen)
{
    char url[512];
    long status = 0;
    snprintf(url, sizeof url, "%s/admin/graph/%s/graphql.json", a->base_url, a->api_version);
    json_t *body = json_pack("{s:s,s:o}", "query", query, "variables", vars);
    if (!body)
        return -ENOMEM;
    int rc = api_call(a, bucket_of(a, false), "POST", url, body, &status, resp, NULL, err, errlen);
    json_decref(body);
    if (rc == 0 && status / 100 != 2)
        rc = status_error(status, "shopline graphql", err, errlen);
    if (rc == 0) {
        *data = json_object_get(*resp, "data");
        if (!json_is_object(*data)) {
            json_t *e = json_array_get(json_object_get(*resp, "errors"), 0);
            snprintf(err, errlen, "shopline graphql: %s",
                     json_string_value(json_object_get(e, "message"))
                         ? json_string_value(json_object_get(e, "message"))
                         : "no data");
            rc = -EPROTO;
        }
    }
    return rc;
}

int member_api_get(struct member_api *a, const char *id, struct member *out, char *err,
                   size_t errlen)
{
    json_t *resp = NULL;
    int rc;
    if (a->platform == MEMBER_PLATFORM_LOYALTY_APP) {
        char url[512];
        long status = 0;
        snprintf(url, sizeof url, "%s/apps/loyalty/api/members/%s", a->base_url, id);
        rc = api_call(a, bucket_of(a, false), "GET", url, NULL, &status, &resp, NULL, err, errlen);
        if (rc == 0 && status / 100 != 2)
            rc = status_error(status, "member read", err, errlen);
        if (rc == 0 && member_from_json(json_object_get(resp, "member"), out)) {
            snprintf(err, errlen, "member read: no member in the answer");
            rc = -EPROTO;
        }
    } else {
        json_t *data = NULL;
        rc = shopline_gql(a, "query($id: ID!) { pointsInfo(customerId: $id) { pointsBalance } }",
                          json_pack("{s:s}", "id", id), &resp, &data, err, errlen);
        if (rc == 0) {
            json_t *pi = json_object_get(data, "pointsInfo");
            json_t *bal = json_object_get(pi, "pointsBalance");
            if (json_is_null(pi) || !pi) {
                snprintf(err, errlen, "member %s not found", id);
                rc = -ENOENT;
            } else if (!json_is_integer(bal)) {
                snprintf(err, errlen, "pointsInfo: no pointsBalance");
                rc = -EPROTO;
            } else {
                memset(out, 0, sizeof *out);
                snprintf(out->id, sizeof out->id, "%s", id);
                out->points = json_integer_value(bal);
                out->version = -1;
            }
        }
    }
    json_decref(resp);
    return rc;
}

int member_api_add_points(struct member_api *a, const char *id, int64_t delta,
                          int64_t expected_version, const char *reason, struct member *after,
                          char *err, size_t errlen)
{
    json_t *resp = NULL;
    int rc;
    memset(after, 0, sizeof *after);
    after->version = -1;
    after->points = -1;
    if (a->platform == MEMBER_PLATFORM_LOYALTY_APP) {
        char url[512];
        long status = 0;
        snprintf(url, sizeof url, "%s/apps/loyalty/api/members/%s/points", a->base_url, id);
        json_t *body = json_pack("{s:I,s:I,s:s}", "delta", (json_int_t)delta, "expected_version",
                                 (json_int_t)expected_version, "reason", reason ? reason : "");
        if (!body)
            return -ENOMEM;
        rc = api_call(a, bucket_of(a, false), "POST", url, body, &status, &resp, NULL, err, errlen);
        json_decref(body);
        if (rc == 0 && status / 100 != 2) {
            const char *code =
                json_string_value(json_object_get(json_object_get(resp, "error"), "code"));
            rc = status_error(status, "points write", err, errlen);
            if (code)
                snprintf(err, errlen, "points write: HTTP %ld %s", status, code);
        }
        if (rc == 0 && member_from_json(json_object_get(resp, "member"), after)) {
            snprintf(err, errlen, "points write: no member in the answer");
            rc = -EPROTO;
        }
    } else {
        json_t *data = NULL;
        json_t *vars = json_pack("{s:{s:s,s:I,s:s,s:s,s:s}}", "input", "customerId", id, "points",
                                 (json_int_t)(delta < 0 ? -delta : delta), "pointsUpdateType",
                                 delta < 0 ? "DECREASE" : "INCREASE", "pointsUpdateWay",
                                 "MODIFY_EXISTING", "remark", reason ? reason : "");
        if (!vars)
            return -ENOMEM;
        rc = shopline_gql(a,
                          "mutation($input: PointsUpdateInput!) { pointsUpdate(input: $input) "
                          "{ userErrors { code field message } } }",
                          vars, &resp, &data, err, errlen);
        if (rc == 0) {
            json_t *ue = json_object_get(json_object_get(data, "pointsUpdate"), "userErrors");
            json_t *e0 = json_array_get(ue, 0);
            if (e0) {
                const char *code = json_string_value(json_object_get(e0, "code"));
                const char *msg = json_string_value(json_object_get(e0, "message"));
                snprintf(err, errlen, "pointsUpdate: %s: %s", code ? code : "?", msg ? msg : "?");
                if (code && strcmp(code, "OPERATION_TOO_FREQUENT") == 0)
                    rc = -EAGAIN;
                else if (code && strcmp(code, "CUSTOMER_NOT_FOUND") == 0)
                    rc = -ENOENT;
                else
                    rc = -EPROTO;
            } else {
                snprintf(after->id, sizeof after->id, "%s", id);
            }
        }
    }
    json_decref(resp);
    return rc;
}
