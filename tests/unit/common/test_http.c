/* Unit tests for services/common/http.c: a real server on 127.0.0.1:0, driven
 * with libcurl (and raw sockets where the exact bytes on the wire matter:
 * bodies refused before they are sent, header floods). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "metrics.h"

/* ---- handlers under test */

static void h_hold(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)opaque;
    json_t *o = json_pack("{s:s, s:s, s:I}", "id", req->path_params[0], "route", req->route_pattern,
                          "n", (json_int_t)req->npath_params);
    http_response_json(resp, 200, o);
}

static void h_item(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)opaque;
    http_response_json(resp, 201,
                       json_pack("{s:s, s:s, s:s%}", "hold", req->path_params[0], "item",
                                 req->path_params[1], "body", req->body, req->body_len));
}

/* Parses the JSON body; bad JSON is the handler's to report. */
static void h_echo(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)opaque;
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!body) {
        http_response_error(resp, 400, "invalid_json", "body", "line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
        return;
    }
    http_response_header(resp, "X-Echo", "yes");
    http_response_json(resp, 200,
                       json_pack("{s:o, s:I}", "echo", body, "len", (json_int_t)req->body_len));
}

static void h_query(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)opaque;
    const char *q = http_request_query(req, "sku");
    const char *h = http_request_header(req, "x-till-id");
    http_response_json(resp, 200, json_pack("{s:s?, s:s?}", "sku", q, "till", h));
}

static void h_text(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)req;
    (void)opaque;
    http_response_body(resp, 200, "text/plain", "hello", 5);
}

static void h_nothing(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)req;
    (void)resp;
    (void)opaque;
}

/* ---- deferred answers: the handler suspends, another thread resumes */

#define HELD_MAX 64
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cv = PTHREAD_COND_INITIALIZER;
static struct http_response *held[HELD_MAX];
static size_t nheld;

/* Runs on a worker after the resume: the request (path parameter, body, header) is still there. */
static void later_cont(const struct http_request *req, struct http_response *resp, void *arg)
{
    http_response_json(resp, 202,
                       json_pack("{s:s, s:s%, s:s?, s:s}", "id", req->path_params[0], "body",
                                 req->body, req->body_len, "till",
                                 http_request_header(req, "x-till-id"), "arg", (const char *)arg));
}

/* Defers and parks the response for the test's resumer thread. */
static void h_later(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)req;
    (void)opaque;
    http_response_defer(resp, later_cont, "later");
    pthread_mutex_lock(&held_mu);
    held[nheld++] = resp;
    pthread_cond_broadcast(&held_cv);
    pthread_mutex_unlock(&held_mu);
}

/* Defers and resumes at once, before returning (what a closing service does). */
static void h_at_once(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)req;
    (void)opaque;
    http_response_defer(resp, later_cont, "at once");
    http_response_resume(resp);
}

static atomic_bool is_ready;

static bool ready_cb(void *opaque, char *why, size_t whylen)
{
    (void)opaque;
    if (atomic_load(&is_ready))
        return true;
    snprintf(why, whylen, "postgres: connection refused");
    return false;
}

static const struct http_route routes[] = {
    {"GET", "/v1/holds/{id}", h_hold, NULL, 0, NULL, 0},
    {"DELETE", "/v1/holds/{id}", h_hold, NULL, 0, NULL, 0},
    {"POST", "/v1/holds/{id}/items/{item}", h_item, NULL, 0, NULL, 0},
    {"POST", "/v1/echo", h_echo, NULL, 0, "application/json", 0},
    {"POST", "/v1/small", h_echo, NULL, 16, "application/json", 0},
    {"GET", "/v1/query", h_query, NULL, 0, NULL, 0},
    {"GET", "/v1/text", h_text, NULL, 0, NULL, 0},
    {"GET", "/v1/nothing", h_nothing, NULL, 0, NULL, 0},
    {"POST", "/v1/later/{id}", h_later, NULL, 0, NULL, 0},
    {"POST", "/v1/at-once/{id}", h_at_once, NULL, 0, NULL, 0},
    {"POST", "/v1/one/{id}", h_later, NULL, 0, NULL, 1},
};

struct fixture {
    struct metrics *metrics;
    struct http_server *srv;
    char base[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256] = "";
    f->metrics = metrics_new();
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .max_body = 4096,
                                 .threads = 4,
                                 .timeout_s = 5,
                                 .ready = ready_cb,
                                 .metrics = f->metrics};
    f->srv = http_server_new(&o, routes, sizeof routes / sizeof routes[0], err, sizeof err);
    if (!f->srv)
        fail_msg("http_server_new: %s", err);
    snprintf(f->base, sizeof f->base, "http://%s", http_server_address(f->srv));
    atomic_store(&is_ready, true);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_server_free(f->srv);
    metrics_free(f->metrics);
    free(f);
    return 0;
}

/* ---- a small curl client */

struct reply {
    long status;
    char body[65536];
    size_t len;
    char allow[128];
    char ctype[128];
    char echo_hdr[16];
    char retry_after[16];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t len = sz * n;
    size_t room = sizeof r->body - 1 - r->len;
    size_t take = len < room ? len : room;
    memcpy(r->body + r->len, p, take);
    r->len += take;
    r->body[r->len] = '\0';
    return len;
}

static void copy_header(char *dst, size_t dlen, const char *v, size_t vlen)
{
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
        vlen--;
    while (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (vlen >= dlen)
        vlen = dlen - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct reply *r = ud;
    size_t len = sz * n;
    if (len > 6 && strncasecmp(p, "Allow:", 6) == 0)
        copy_header(r->allow, sizeof r->allow, p + 6, len - 6);
    if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0)
        copy_header(r->ctype, sizeof r->ctype, p + 13, len - 13);
    if (len > 7 && strncasecmp(p, "X-Echo:", 7) == 0)
        copy_header(r->echo_hdr, sizeof r->echo_hdr, p + 7, len - 7);
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
        copy_header(r->retry_after, sizeof r->retry_after, p + 12, len - 12);
    return len;
}

/* Perform method url with an optional body and content type; fills r.
 * Returns the curl code. */
static CURLcode request(const struct fixture *f, const char *method, const char *path,
                        const char *ctype, const char *body, struct reply *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    char cth[160];
    if (ctype) {
        snprintf(cth, sizeof cth, "Content-Type: %s", ctype);
        h = curl_slist_append(h, cth);
    }
    h = curl_slist_append(h, "X-Till-Id: till-07");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

/* Check r is our JSON error shape with the given code; returns the message. */
static void assert_error(const struct reply *r, long status, const char *code)
{
    if (r->status != status)
        fail_msg("status %ld, want %ld: %s", r->status, status, r->body);
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    assert_string_equal(r->ctype, "application/json");
    json_decref(j);
}

/* ---- raw socket client for byte-exact cases */

static int raw_connect(const struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_port = htons((uint16_t)http_server_port(f->srv));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Read until the peer closes or 5 s pass; returns bytes read into buf. */
static size_t raw_read_all(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* ---- tests */

static void test_routes_and_params(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    assert_int_equal(request(f, "GET", "/v1/holds/h-42", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"id\":\"h-42\",\"route\":\"/v1/holds/{id}\",\"n\":1}");
    assert_string_equal(r.ctype, "application/json");

    assert_int_equal(request(f, "POST", "/v1/holds/h1/items/sku%2F9", NULL, "abc", &r), CURLE_OK);
    assert_int_equal(r.status, 404);
    /* MHD decodes %2F before routing, so the decoded path has an extra
     * segment: no route matches it */
    assert_int_equal(request(f, "POST", "/v1/holds/h1/items/sku9", NULL, "abc", &r), CURLE_OK);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "{\"hold\":\"h1\",\"item\":\"sku9\",\"body\":\"abc\"}");

    assert_int_equal(request(f, "GET", "/v1/query?sku=AB%20C&x=1", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"sku\":\"AB C\",\"till\":\"till-07\"}");

    assert_int_equal(request(f, "GET", "/v1/text", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello");
    assert_string_equal(r.ctype, "text/plain");

    assert_int_equal(request(f, "GET", "/v1/nothing", NULL, NULL, &r), CURLE_OK);
    assert_error(&r, 500, "internal");
}

static void test_not_found_and_method(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    assert_int_equal(request(f, "GET", "/v1/nope", NULL, NULL, &r), CURLE_OK);
    assert_error(&r, 404, "not_found");
    assert_int_equal(request(f, "GET", "/v1/holds", NULL, NULL, &r), CURLE_OK);
    assert_error(&r, 404, "not_found");
    assert_int_equal(request(f, "GET", "/v1/holds/", NULL, NULL, &r), CURLE_OK);
    assert_error(&r, 404, "not_found"); /* a parameter never matches an empty segment */
    assert_int_equal(request(f, "GET", "/v1/holds/a/b", NULL, NULL, &r), CURLE_OK);
    assert_error(&r, 404, "not_found");

    assert_int_equal(request(f, "PUT", "/v1/holds/x", "application/json", "{}", &r), CURLE_OK);
    assert_error(&r, 405, "method_not_allowed");
    assert_string_equal(r.allow, "GET, DELETE");
    assert_int_equal(request(f, "POST", "/healthz", NULL, NULL, &r), CURLE_OK);
    assert_error(&r, 405, "method_not_allowed");
    assert_string_equal(r.allow, "GET");
}

static void test_json_body_and_errors(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    assert_int_equal(
        request(f, "POST", "/v1/echo", "application/json; charset=utf-8", "{\"a\":1}", &r),
        CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"echo\":{\"a\":1},\"len\":7}");
    assert_string_equal(r.echo_hdr, "yes");

    /* bad JSON reaches the handler, which answers with the error shape */
    assert_int_equal(request(f, "POST", "/v1/echo", "application/json", "{\"a\":", &r), CURLE_OK);
    assert_error(&r, 400, "invalid_json");
    json_t *j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "field")),
                        "body");
    json_decref(j);

    assert_int_equal(request(f, "POST", "/v1/echo", "text/plain", "{}", &r), CURLE_OK);
    assert_error(&r, 415, "unsupported_media_type");
    assert_int_equal(request(f, "POST", "/v1/echo", NULL, "{}", &r), CURLE_OK);
    assert_error(&r, 415, "unsupported_media_type"); /* curl's default form type */
    assert_int_equal(request(f, "POST", "/v1/echo", "application/jsonx", "{}", &r), CURLE_OK);
    assert_error(&r, 415, "unsupported_media_type");

    /* body limit from Content-Length (route limit 16) */
    assert_int_equal(request(f, "POST", "/v1/small", "application/json",
                             "{\"this\":\"is longer than sixteen\"}", &r),
                     CURLE_OK);
    assert_error(&r, 413, "payload_too_large");
    assert_int_equal(request(f, "POST", "/v1/small", "application/json", "{\"a\":1}", &r),
                     CURLE_OK);
    assert_int_equal(r.status, 200);
}

/* Content-Length over the limit: the 413 comes back before a single body
 * byte is sent. */
static void test_413_content_length_unread(void **state)
{
    struct fixture *f = *state;
    int fd = raw_connect(f);
    const char *req = "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 100000000\r\n\r\n";
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    char buf[4096];
    raw_read_all(fd, buf, sizeof buf);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 413", 12) != 0)
        fail_msg("got: %s", buf);
    assert_non_null(strstr(buf, "\"payload_too_large\""));
    assert_non_null(strstr(buf, "100000000"));
}

/* Chunked body: the 413 comes as soon as the count passes the limit, while
 * the client has not finished (no terminating chunk is ever sent). */
static void test_413_chunked(void **state)
{
    struct fixture *f = *state;
    int fd = raw_connect(f);
    const char *hdr = "POST /v1/small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(send(fd, hdr, strlen(hdr), MSG_NOSIGNAL), (ssize_t)strlen(hdr));
    const char *c1 = "a\r\n{\"a\":\"bbb\r\n";
    assert_int_equal(send(fd, c1, strlen(c1), MSG_NOSIGNAL), (ssize_t)strlen(c1));
    usleep(50 * 1000);
    const char *c2 = "14\r\nbbbbbbbbbbbbbbbbbbbb\r\n"; /* passes 16 */
    assert_int_equal(send(fd, c2, strlen(c2), MSG_NOSIGNAL), (ssize_t)strlen(c2));
    char buf[4096];
    raw_read_all(fd, buf, sizeof buf);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 413", 12) != 0)
        fail_msg("got: %s", buf);
    assert_non_null(strstr(buf, "\"payload_too_large\""));

    /* a chunked body within the limit is delivered whole */
    fd = raw_connect(f);
    const char *ok = "POST /v1/small HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
    assert_int_equal(send(fd, ok, strlen(ok), MSG_NOSIGNAL), (ssize_t)strlen(ok));
    raw_read_all(fd, buf, sizeof buf);
    close(fd);
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
        fail_msg("got: %s", buf);
    assert_non_null(strstr(buf, "{\"echo\":{\"a\":1},\"len\":7}"));
}

static void test_header_flood(void **state)
{
    struct fixture *f = *state;
    int fd = raw_connect(f);
    size_t cap = 200 * 1024, len = 0;
    char *req = malloc(cap);
    len += (size_t)snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; len + 200 < cap; i++)
        len += (size_t)snprintf(
            req + len, cap - len,
            "X-Flood-%d: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", i);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    (void)send(fd, req, len, MSG_NOSIGNAL); /* the server may close before all is sent */
    free(req);
    char buf[4096];
    raw_read_all(fd, buf, sizeof buf);
    close(fd);
    /* MHD answers 431 Request Header Fields Too Large */
    if (strncmp(buf, "HTTP/1.1 431", 12) != 0)
        fail_msg("header flood answered: %.60s", buf);
    /* and the server is fine afterwards */
    struct reply r;
    assert_int_equal(request(f, "GET", "/healthz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
}

static void test_health_ready(void **state)
{
    struct fixture *f = *state;
    struct reply r;
    assert_int_equal(request(f, "GET", "/healthz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    assert_int_equal(request(f, "GET", "/readyz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ready\"}");
    atomic_store(&is_ready, false);
    assert_int_equal(request(f, "GET", "/readyz", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body,
                        "{\"status\":\"not ready\",\"reason\":\"postgres: connection refused\"}");
    atomic_store(&is_ready, true);
}

struct load_arg {
    struct fixture *f;
    int ok;
};

static void *load_worker(void *p)
{
    struct load_arg *a = p;
    for (int i = 0; i < 50; i++) {
        struct reply *r = malloc(sizeof *r);
        char path[64];
        snprintf(path, sizeof path, "/v1/holds/c%d", i);
        if (request(a->f, "GET", path, NULL, NULL, r) == CURLE_OK && r->status == 200 &&
            strstr(r->body, path + 10))
            a->ok++;
        free(r);
    }
    return NULL;
}

static void test_concurrent_and_metrics(void **state)
{
    struct fixture *f = *state;
    pthread_t th[8];
    struct load_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct load_arg){f, 0};
        pthread_create(&th[i], NULL, load_worker, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 50);
    }
    struct reply r;
    static const char *const want[] = {
        "\nhttp_requests_total{route=\"/v1/holds/{id}\",method=\"GET\",code=\"200\"} 400\n",
        "\nhttp_requests_total{route=\"unmatched\",method=\"GET\",code=\"404\"} 1\n",
        "\nhttp_request_duration_seconds_count{route=\"/v1/holds/{id}\",method=\"GET\"} 400\n",
    };
    assert_int_equal(request(f, "GET", "/v1/nope", NULL, NULL, &r), CURLE_OK);
    /* A request is counted when MHD reports it complete, just after its response went out (on
     * the worker that served it): a /metrics read at once may come before the last count. Read
     * until every figure is there, for up to 2 s; a wrong or missing count still fails. */
    for (int attempt = 0;; attempt++) {
        assert_int_equal(request(f, "GET", "/metrics", NULL, NULL, &r), CURLE_OK);
        assert_int_equal(r.status, 200);
        size_t found = 0;
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
            found += strstr(r.body, want[i]) != NULL;
        if (found == sizeof(want) / sizeof(want[0]))
            break;
        if (attempt == 200)
            fail_msg("metrics: %s", r.body);
        usleep(10000);
    }
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "# TYPE process_cpu_seconds_total counter\n"));
}

struct later_arg {
    struct fixture *f;
    int id;
    struct reply r;
    CURLcode rc;
};

static void *later_client(void *p)
{
    struct later_arg *a = p;
    char path[64], body[32];

    snprintf(path, sizeof path, "/v1/later/r%d", a->id);
    snprintf(body, sizeof body, "body-%d", a->id);
    a->rc = request(a->f, "POST", path, NULL, body, &a->r);
    return NULL;
}

static size_t held_count(void)
{
    size_t n;

    pthread_mutex_lock(&held_mu);
    n = nheld;
    pthread_mutex_unlock(&held_mu);
    return n;
}

/* Wait until n responses are parked by h_later (10 s at most). */
static void wait_held(size_t n)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&held_mu);
    while (nheld < n)
        if (pthread_cond_timedwait(&held_cv, &held_mu, &until) != 0)
            break;
    pthread_mutex_unlock(&held_mu);
    assert_int_equal(nheld, n);
}

/* Let every parked response go on. */
static void resume_held(void)
{
    pthread_mutex_lock(&held_mu);
    for (size_t i = 0; i < nheld; i++)
        http_response_resume(held[i]);
    nheld = 0;
    pthread_mutex_unlock(&held_mu);
}

/* 32 requests held at once by a server of 4 workers (a waiting handler would hold a worker),
 * then answered by their continuations once resumed from another thread. */
static void test_deferred(void **state)
{
    struct fixture *f = *state;
    enum { N = 32 };
    pthread_t th[N];
    struct later_arg *args = calloc(N, sizeof(*args));
    struct reply r;

    nheld = 0;
    for (int i = 0; i < N; i++) {
        args[i] = (struct later_arg){.f = f, .id = i};
        pthread_create(&th[i], NULL, later_client, &args[i]);
    }
    wait_held(N); /* all at once */
    /* nothing answered while suspended; the server still serves others */
    assert_int_equal(request(f, "GET", "/v1/text", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resume_held();
    for (int i = 0; i < N; i++) {
        char want[160];

        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, CURLE_OK);
        assert_int_equal(args[i].r.status, 202);
        snprintf(want, sizeof want,
                 "{\"id\":\"r%d\",\"body\":\"body-%d\",\"till\":\"till-07\",\"arg\":\"later\"}", i,
                 i);
        assert_string_equal(args[i].r.body, want);
    }
    assert_int_equal(request(f, "POST", "/v1/at-once/x", NULL, "b", &r), CURLE_OK);
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body,
                        "{\"id\":\"x\",\"body\":\"b\",\"till\":\"till-07\",\"arg\":\"at once\"}");
    free(args);
}

static void *one_client(void *p)
{
    struct later_arg *a = p;
    char path[64];

    snprintf(path, sizeof path, "/v1/one/r%d", a->id);
    a->rc = request(a->f, "POST", path, NULL, "b", &a->r);
    return NULL;
}

/* A route with max_inflight 1: while one request is in flight (deferred) the next gets 503
 * busy with Retry-After before its body is read; once the first is answered the route takes
 * requests again. */
static void test_max_inflight(void **state)
{
    struct fixture *f = *state;
    struct later_arg a = {.f = f, .id = 1}, b = {.f = f, .id = 2};
    pthread_t th;
    struct reply r;
    int tries = 0;

    nheld = 0;
    pthread_create(&th, NULL, one_client, &a);
    wait_held(1);
    assert_int_equal(request(f, "POST", "/v1/one/r9", NULL, "b", &r), CURLE_OK);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"code\":\"busy\""));
    assert_string_equal(r.retry_after, "1");
    /* other routes are not limited */
    assert_int_equal(request(f, "GET", "/v1/text", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resume_held();
    pthread_join(th, NULL);
    assert_int_equal(a.rc, CURLE_OK);
    assert_int_equal(a.r.status, 202);
    /* the slot is given back when the first request completes, just after its answer went out */
    for (;;) {
        pthread_create(&th, NULL, one_client, &b);
        for (int i = 0; i < 100 && held_count() == 0; i++)
            usleep(10000);
        if (held_count() == 1)
            break;
        pthread_join(th, NULL);
        assert_int_equal(b.r.status, 503);
        assert_true(++tries < 20);
    }
    resume_held();
    pthread_join(th, NULL);
    assert_int_equal(b.r.status, 202);
}

/* ---- stopping while keep-alive clients go on sending to a deferring route */

static pthread_mutex_t auto_mu = PTHREAD_MUTEX_INITIALIZER;
static struct http_response *auto_q[256];
static size_t auto_n;
static atomic_bool auto_stop, clients_stop;
static atomic_int n202, n503, nbad;

/* Defers; the resumer thread lets it go on a moment later (as a batch sender would). */
static void h_auto(const struct http_request *req, struct http_response *resp, void *opaque)
{
    (void)req;
    (void)opaque;
    http_response_defer(resp, later_cont, "auto");
    pthread_mutex_lock(&auto_mu);
    auto_q[auto_n++] = resp; /* ≤ one per connection: the clients are fewer than the queue */
    pthread_mutex_unlock(&auto_mu);
}

static void *auto_resumer(void *p)
{
    (void)p;
    while (!atomic_load(&auto_stop)) {
        pthread_mutex_lock(&auto_mu);
        for (size_t i = 0; i < auto_n; i++)
            http_response_resume(auto_q[i]);
        auto_n = 0;
        pthread_mutex_unlock(&auto_mu);
        usleep(1000);
    }
    return NULL;
}

/* One keep-alive connection posting until it is refused or closed. */
static void *auto_client(void *p)
{
    const char *base = p;
    char url[128];
    struct reply *r = calloc(1, sizeof(*r));
    CURL *c = curl_easy_init();

    snprintf(url, sizeof url, "%s/v1/auto/x", base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "b");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    while (!atomic_load(&clients_stop)) {
        r->len = 0;
        r->body[0] = '\0';
        if (curl_easy_perform(c) != CURLE_OK)
            break; /* the server closed the connection or stopped listening */
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->status == 202) {
            atomic_fetch_add(&n202, 1);
            continue;
        }
        if (r->status == 503 && strstr(r->body, "shutting_down"))
            atomic_fetch_add(&n503, 1);
        else
            atomic_fetch_add(&nbad, 1); /* checked on the test's thread */
    }
    curl_easy_cleanup(c);
    free(r);
    return NULL;
}

/* http_server_free while 16 keep-alive clients keep posting to a route that defers every
 * request: later requests get 503 without reaching the handler, every deferred one is
 * answered, and libmicrohttpd is never stopped with a connection suspended (it aborts). */
static void test_free_while_deferring(void **state)
{
    (void)state;
    enum { N = 16 };
    char err[256] = "", base[64];
    struct http_route r = {"POST", "/v1/auto/{id}", h_auto, NULL, 0, NULL, 0};
    struct http_server_opts o = {.listen = "127.0.0.1:0", .threads = 4};
    pthread_t th[N], resumer;

    for (int round = 0; round < 20; round++) {
        struct http_server *s = http_server_new(&o, &r, 1, err, sizeof err);

        assert_non_null(s);
        snprintf(base, sizeof base, "http://%s", http_server_address(s));
        atomic_store(&auto_stop, false);
        atomic_store(&clients_stop, false);
        atomic_store(&n202, 0);
        atomic_store(&n503, 0);
        atomic_store(&nbad, 0);
        pthread_create(&resumer, NULL, auto_resumer, NULL);
        for (int i = 0; i < N; i++)
            pthread_create(&th[i], NULL, auto_client, base);
        for (int i = 0; i < 2000 && atomic_load(&n202) < 200; i++)
            usleep(1000);
        assert_true(atomic_load(&n202) > 0);
        http_server_quiesce(s);
        http_server_free(s);
        atomic_store(&clients_stop, true);
        for (int i = 0; i < N; i++)
            pthread_join(th[i], NULL);
        atomic_store(&auto_stop, true);
        pthread_join(resumer, NULL);
        assert_int_equal(auto_n, 0);
        assert_int_equal(atomic_load(&nbad), 0);
    }
}

static void test_bad_options_and_quiesce(void **state)
{
    (void)state;
    char err[256] = "";
    struct http_server_opts o = {.listen = "127.0.0.1"};
    assert_null(http_server_new(&o, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "host:port"));
    o.listen = "127.0.0.1:99999";
    assert_null(http_server_new(&o, NULL, 0, err, sizeof err));
    o.listen = "no-such-host.invalid:0";
    assert_null(http_server_new(&o, NULL, 0, err, sizeof err));
    struct http_route bad = {"GET", "nohash", h_text, NULL, 0, NULL, 0};
    o.listen = "127.0.0.1:0";
    assert_null(http_server_new(&o, &bad, 1, err, sizeof err));

    struct http_route one = {"GET", "/v1/text", h_text, NULL, 0, NULL, 0};
    struct http_server *s = http_server_new(&o, &one, 1, err, sizeof err);
    assert_non_null(s);
    /* the same port twice fails with a message */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http_server_port(s));
    struct http_server_opts o2 = {.listen = addr};
    assert_null(http_server_new(&o2, &one, 1, err, sizeof err));
    assert_non_null(strstr(err, "cannot listen"));

    struct fixture f = {.srv = s};
    snprintf(f.base, sizeof f.base, "http://%s", http_server_address(s));
    struct reply r;
    assert_int_equal(request(&f, "GET", "/v1/text", NULL, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    http_server_quiesce(s);
    http_server_quiesce(s);
    /* refused at once, not left waiting in the listen backlog */
    assert_int_equal(request(&f, "GET", "/v1/text", NULL, NULL, &r), CURLE_COULDNT_CONNECT);
    http_server_free(s);
    /* quiesce right after start, while the pool threads may not have looked at the socket yet
     * (libmicrohttpd aborted when the socket was closed under them) */
    for (int i = 0; i < 200; i++) {
        struct http_server_opts o3 = {.listen = "127.0.0.1:0", .threads = 4};
        s = http_server_new(&o3, &one, 1, err, sizeof err);
        assert_non_null(s);
        http_server_quiesce(s);
        http_server_free(s);
    }
    http_server_free(NULL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes_and_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_body_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_content_length_unread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_413_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred, setup, teardown),
        cmocka_unit_test(test_free_while_deferring),
        cmocka_unit_test_setup_teardown(test_max_inflight, setup, teardown),
        cmocka_unit_test(test_bad_options_and_quiesce),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
