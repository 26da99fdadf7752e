/*
 * http — libmicrohttpd server with routing, body limits, JSON errors and
 * request metrics. See http.h for the threading decision.
 *
 * Request life cycle (MHD_AccessHandlerCallback semantics): MHD calls
 * http_access() first with *con_cls == NULL once the headers are in; we
 * allocate the request context there, route, and check the method, the
 * Content-Length against the limit and the content type, queueing an error at
 * once when one fails (a response queued before the body is read makes MHD
 * skip the body and close the connection after replying). Then MHD calls once
 * per body fragment (*upload_data_size > 0; we must consume it and may not
 * queue a response), and finally with *upload_data_size == 0, when the
 * handler runs and the response is queued. A chunked body that passes the
 * limit while streaming cannot get a queued response (MHD 0.9.75 refuses
 * MHD_queue_response() during the body), so the 413 is written to the socket
 * directly and the connection closed (ctx_write_raw()).
 * All per-request memory hangs off the context and is freed in one place,
 * http_completed() (MHD_OPTION_NOTIFY_COMPLETED), which also counts the
 * request in the metrics.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HTTP_DEFAULT_MAX_BODY  (1024 * 1024)
#define HTTP_CONN_MEMORY_LIMIT (64 * 1024)
#define HTTP_CONNECTION_LIMIT  1024

struct http_header {
    char *name, *value;
};

struct http_response {
    int status; /* 0 = nothing set */
    char *content_type;
    char *body;
    size_t len;
    struct http_header *headers;
    size_t nheaders;
};

/* Per-request state (MHD's con_cls). */
struct http_ctx {
    struct http_server *srv;
    struct http_request req;
    const struct http_route *route; /* NULL for built-ins and errors */
    http_handler builtin;           /* set for /healthz, /readyz, /metrics */
    char *path_copy;                /* path split into parameter values */
    char *body;
    size_t len, cap, limit;
    bool queued;       /* a response was queued with MHD */
    bool answered;     /* a 413 was written to the socket directly */
    bool deferred;     /* the handler deferred its answer: suspended until resumed, then cont */
    atomic_uint *slot; /* its route's in-flight count, taken (route with max_inflight) */
    http_continuation cont; /* NULL once run */
    void *cont_arg;
    int status; /* status queued, for metrics */
    const char *metric_route;
    struct timespec start;
    struct http_response resp;
    struct MHD_Response *mhd_resp;
};

struct http_server {
    struct MHD_Daemon *daemon;
    struct http_route *routes;
    size_t nroutes;
    struct http_server_opts opts;
    char address[128];
    int port;
    bool quiesced;
    MHD_socket quiesced_fd; /* the listen socket MHD gave back, closed after MHD_stop_daemon */
    atomic_int deferred;    /* deferred requests not yet completed (answered or closed) */
    atomic_int handling;    /* route handlers running */
    atomic_uint *inflight;  /* per route: requests from routing to completion (max_inflight) */
    atomic_bool stopping;   /* http_server_free() began: route handlers are not called */
    struct metric *m_requests, *m_duration;
};

const char *http_request_header(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_request_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

static void response_set(struct http_response *resp, int status, const char *ctype, char *body,
                         size_t len)
{
    free(resp->body);
    free(resp->content_type);
    resp->status = status;
    resp->body = body;
    resp->len = len;
    resp->content_type = ctype ? strdup(ctype) : NULL;
}

void http_response_body(struct http_response *resp, int status, const char *content_type,
                        const void *body, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy) {
        response_set(resp, 500, NULL, NULL, 0);
        return;
    }
    if (len)
        memcpy(copy, body, len);
    copy[len] = '\0';
    response_set(resp, status, content_type, copy, len);
}

void http_response_json(struct http_response *resp, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        response_set(resp, 500, NULL, NULL, 0);
        return;
    }
    response_set(resp, status, "application/json", text, strlen(text));
}

static void response_verror(struct http_response *resp, int status, const char *code,
                            const char *field, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (err && field)
        json_object_set_new(err, "field", json_string(field));
    http_response_json(resp, status, err ? json_pack("{s:o}", "error", err) : NULL);
}

void http_response_error(struct http_response *resp, int status, const char *code,
                         const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    response_verror(resp, status, code, field, fmt, ap);
    va_end(ap);
}

int http_response_header(struct http_response *resp, const char *name, const char *value)
{
    if (!name || !value || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
        return -EINVAL;
    struct http_header *h = realloc(resp->headers, (resp->nheaders + 1) * sizeof *h);
    if (!h)
        return -ENOMEM;
    resp->headers = h;
    h[resp->nheaders].name = strdup(name);
    h[resp->nheaders].value = strdup(value);
    if (!h[resp->nheaders].name || !h[resp->nheaders].value) {
        free(h[resp->nheaders].name);
        free(h[resp->nheaders].value);
        return -ENOMEM;
    }
    resp->nheaders++;
    return 0;
}

static void response_release(struct http_response *resp)
{
    free(resp->body);
    free(resp->content_type);
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    memset(resp, 0, sizeof *resp);
}

/* ---- built-in endpoints */

static void builtin_healthz(const struct http_request *req, struct http_response *resp,
                            void *opaque)
{
    (void)req;
    (void)opaque;
    http_response_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static void builtin_readyz(const struct http_request *req, struct http_response *resp, void *opaque)
{
    struct http_server *s = opaque;
    char why[256] = "";
    (void)req;
    if (!s->opts.ready || s->opts.ready(s->opts.ready_opaque, why, sizeof why)) {
        http_response_json(resp, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    http_response_json(
        resp, 503,
        json_pack("{s:s, s:s}", "status", "not ready", "reason", why[0] ? why : "not ready"));
}

static void builtin_metrics(const struct http_request *req, struct http_response *resp,
                            void *opaque)
{
    struct http_server *s = opaque;
    size_t len = 0;
    char *text = s->opts.metrics ? metrics_render(s->opts.metrics, &len) : strdup("");
    (void)req;
    if (!text) {
        http_response_error(resp, 500, "internal", NULL, "cannot render metrics");
        return;
    }
    response_set(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text,
                 s->opts.metrics ? len : 0);
}

static const struct {
    const char *path;
    http_handler handler;
} builtins[] = {
    {"/healthz", builtin_healthz},
    {"/readyz", builtin_readyz},
    {"/metrics", builtin_metrics},
};

/* ---- routing */

/* Does path match pattern? On a match, fill params with pointers into
 * scratch (a copy of path with '/' turned into NULs) and return true. */
static bool route_match(const char *pattern, const char *path, char *scratch, const char **params,
                        size_t *nparams)
{
    const char *p = pattern, *q = path;
    size_t n = 0;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return false;
        p++;
        q++;
        const char *pe = strchrnul(p, '/');
        const char *qe = strchrnul(q, '/');
        size_t pl = (size_t)(pe - p), ql = (size_t)(qe - q);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (ql == 0 || n >= HTTP_MAX_PATH_PARAMS)
                return false;
            if (scratch) {
                size_t off = (size_t)(q - path);
                scratch[off + ql] = '\0';
                params[n] = scratch + off;
            }
            n++;
        } else if (pl != ql || memcmp(p, q, pl) != 0) {
            return false;
        }
        p = pe;
        q = qe;
    }
    if (*p || *q)
        return false;
    if (nparams)
        *nparams = n;
    return true;
}

static bool method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* Compare the media type of a Content-Type header (before ';', trimmed,
 * case-insensitive) with want. */
static bool content_type_matches(const char *have, const char *want)
{
    if (!have)
        return false;
    while (*have == ' ' || *have == '\t')
        have++;
    size_t n = strcspn(have, ";");
    while (n > 0 && (have[n - 1] == ' ' || have[n - 1] == '\t'))
        n--;
    return strlen(want) == n && strncasecmp(have, want, n) == 0;
}

/* Method label value: known methods as is, anything else "other", so a client
 * cannot blow up the series count. */
static const char *method_label(const char *m)
{
    static const char *known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return "other";
}

/* ---- queueing */

/* Queue ctx->resp on the connection. Returns the MHD result. */
static enum MHD_Result ctx_queue(struct http_ctx *ctx, struct MHD_Connection *conn)
{
    struct http_response *r = &ctx->resp;
    if (r->status == 0)
        http_response_error(r, 500, "internal", NULL, "handler produced no response");
    /* the buffer stays owned by ctx and is freed in http_completed() */
    ctx->mhd_resp = MHD_create_response_from_buffer(r->len, r->body ? r->body : (char *)"",
                                                    MHD_RESPMEM_PERSISTENT);
    if (!ctx->mhd_resp)
        return MHD_NO;
    if (r->content_type)
        MHD_add_response_header(ctx->mhd_resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    for (size_t i = 0; i < r->nheaders; i++)
        MHD_add_response_header(ctx->mhd_resp, r->headers[i].name, r->headers[i].value);
    ctx->status = r->status;
    ctx->queued = true;
    return MHD_queue_response(conn, (unsigned)r->status, ctx->mhd_resp);
}

static enum MHD_Result ctx_error(struct http_ctx *ctx, struct MHD_Connection *conn, int status,
                                 const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void response_verror_fmt(struct http_response *resp, int status, const char *code,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void response_verror_fmt(struct http_response *resp, int status, const char *code,
                                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    response_verror(resp, status, code, NULL, fmt, ap);
    va_end(ap);
}

static enum MHD_Result ctx_error(struct http_ctx *ctx, struct MHD_Connection *conn, int status,
                                 const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    response_verror(&ctx->resp, status, code, NULL, fmt, ap);
    va_end(ap);
    return ctx_queue(ctx, conn);
}

/* First call for a request: route it and check what can be checked from the
 * headers. Returns MHD_YES to go on (an error may have been queued). */
static enum MHD_Result ctx_start(struct http_ctx *ctx, struct MHD_Connection *conn)
{
    struct http_server *s = ctx->srv;
    const char *path = ctx->req.path, *method = ctx->req.method;

    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strcmp(path, builtins[i].path) != 0)
            continue;
        ctx->metric_route = builtins[i].path;
        ctx->req.route_pattern = builtins[i].path;
        if (strcmp(method, "GET") != 0) {
            http_response_header(&ctx->resp, "Allow", "GET");
            return ctx_error(ctx, conn, 405, "method_not_allowed", "method %s not allowed on %s",
                             method, path);
        }
        ctx->builtin = builtins[i].handler;
        ctx->limit = 0;
        return MHD_YES;
    }

    char allow[256] = "";
    size_t alen = 0;
    bool path_known = false;
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct http_route *r = &s->routes[i];
        if (!route_match(r->path, path, NULL, NULL, NULL))
            continue;
        if (!path_known)
            ctx->metric_route = r->path;
        path_known = true;
        if (strcmp(r->method, method) == 0) {
            ctx->route = r;
            ctx->metric_route = r->path;
            break;
        }
        int w = snprintf(allow + alen, sizeof allow - alen, "%s%s", alen ? ", " : "", r->method);
        if (w > 0 && (size_t)w < sizeof allow - alen)
            alen += (size_t)w;
    }
    if (!path_known) {
        ctx->metric_route = "unmatched";
        return ctx_error(ctx, conn, 404, "not_found", "no route for %s", path);
    }
    if (!ctx->route) {
        http_response_header(&ctx->resp, "Allow", allow);
        return ctx_error(ctx, conn, 405, "method_not_allowed", "method %s not allowed on %s",
                         method, path);
    }

    const struct http_route *r = ctx->route;
    ctx->path_copy = strdup(path);
    if (!ctx->path_copy)
        return MHD_NO;
    route_match(r->path, path, ctx->path_copy, ctx->req.path_params, &ctx->req.npath_params);
    ctx->req.route_pattern = r->path;
    ctx->limit = r->max_body ? r->max_body : s->opts.max_body;

    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    unsigned long long clen = 0;
    if (cl) {
        char *end = NULL;
        errno = 0;
        clen = strtoull(cl, &end, 10);
        if (errno || end == cl)
            clen = ~0ULL; /* MHD rejects malformed lengths itself; be safe */
        if (clen > ctx->limit)
            return ctx_error(ctx, conn, 413, "payload_too_large",
                             "request body of %llu bytes exceeds the limit of %zu", clen,
                             ctx->limit);
    }
    bool has_body = clen > 0 || te != NULL;
    if (has_body && r->content_type && method_has_body(method)) {
        const char *ct =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!content_type_matches(ct, r->content_type))
            return ctx_error(ctx, conn, 415, "unsupported_media_type", "content type must be %s",
                             r->content_type);
    }
    if (r->max_inflight) {
        atomic_uint *slot = &s->inflight[r - s->routes];

        if (atomic_fetch_add(slot, 1) >= r->max_inflight) {
            atomic_fetch_sub(slot, 1);
            http_response_header(&ctx->resp, "Retry-After", "1");
            http_response_header(&ctx->resp, "Connection", "close");
            return ctx_error(ctx, conn, 503, "busy",
                             "%u requests like this one are being processed (the limit of this "
                             "replica); retry in a moment",
                             r->max_inflight);
        }
        ctx->slot = slot;
    }
    return MHD_YES;
}

/* Write ctx->resp straight to the connection's socket as a complete HTTP/1.1
 * response with "Connection: close". Used only for a body that passes the
 * limit mid-stream: MHD 0.9.75 refuses MHD_queue_response() while the body is
 * being received, and we will not read the rest just to be allowed to answer.
 * The caller then returns MHD_NO, so MHD closes the connection without
 * reading further; nothing else has been written on it before. */
static void ctx_write_raw(struct http_ctx *ctx, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct http_response *r = &ctx->resp;
    char head[256];
    if (!ci)
        return;
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d Payload Too Large\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      r->status, r->content_type ? r->content_type : "application/json", r->len);
    if (hl <= 0 || (size_t)hl >= sizeof head)
        return;
    const struct iovec iov[2] = {{head, (size_t)hl}, {r->body, r->len}};
    size_t total = (size_t)hl + r->len, sent = 0;
    for (int tries = 0; sent < total && tries < 100; tries++) {
        struct msghdr mh = {0};
        struct iovec part[2];
        size_t skip = sent, n = 0;
        for (size_t i = 0; i < 2; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            part[n].iov_base = (char *)iov[i].iov_base + skip;
            part[n].iov_len = iov[i].iov_len - skip;
            skip = 0;
            n++;
        }
        mh.msg_iov = part;
        mh.msg_iovlen = n;
        ssize_t w = sendmsg(ci->connect_fd, &mh, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLOUT};
            poll(&pfd, 1, 10);
        } else {
            break;
        }
    }
    shutdown(ci->connect_fd, SHUT_WR);
    ctx->status = r->status;
    ctx->answered = true;
}

/* A body fragment: append it, or when it passes the limit answer 413 and
 * close the connection (see ctx_write_raw). */
static enum MHD_Result ctx_upload(struct http_ctx *ctx, struct MHD_Connection *conn,
                                  const char *data, size_t size)
{
    if (ctx->queued)
        return MHD_YES; /* an error is queued; MHD discards the rest */
    if (size > ctx->limit - ctx->len) {
        response_verror_fmt(&ctx->resp, 413, "payload_too_large",
                            "request body exceeds the limit of %zu bytes", ctx->limit);
        ctx_write_raw(ctx, conn);
        return MHD_NO;
    }
    if (ctx->len + size + 1 > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->len + size + 1)
            cap *= 2;
        char *b = realloc(ctx->body, cap);
        if (!b)
            return MHD_NO;
        ctx->body = b;
        ctx->cap = cap;
    }
    memcpy(ctx->body + ctx->len, data, size);
    ctx->len += size;
    return MHD_YES;
}

/* Run a deferred request's continuation, once (also when the connection closes first). */
static void ctx_continue(struct http_ctx *ctx)
{
    http_continuation cont = ctx->cont;

    ctx->cont = NULL;
    if (cont)
        cont(&ctx->req, &ctx->resp, ctx->cont_arg);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct http_ctx *ctx = *con_cls;
    (void)version;

    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        *con_cls = ctx; /* freed in http_completed() */
        ctx->srv = s;
        clock_gettime(CLOCK_MONOTONIC, &ctx->start);
        ctx->req.method = method;
        ctx->req.path = url;
        ctx->req.conn = conn;
        ctx->req.body = "";
        ctx->metric_route = "unmatched";
        return ctx_start(ctx, conn);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return ctx_upload(ctx, conn, upload_data, n);
    }
    if (ctx->queued)
        return MHD_YES;
    if (ctx->body) {
        ctx->body[ctx->len] = '\0';
        ctx->req.body = ctx->body;
        ctx->req.body_len = ctx->len;
    }
    if (ctx->deferred) { /* called again after http_response_resume() */
        ctx_continue(ctx);
        return ctx_queue(ctx, conn);
    }
    if (ctx->builtin) {
        ctx->builtin(&ctx->req, &ctx->resp, s);
    } else {
        /* a route handler may defer: none starts once http_server_free() waits for them */
        atomic_fetch_add(&s->handling, 1);
        if (atomic_load(&s->stopping)) {
            http_response_error(&ctx->resp, 503, "shutting_down", NULL,
                                "the service is stopping; retry (another replica will answer)");
            http_response_header(&ctx->resp, "Connection", "close");
        } else {
            ctx->route->handler(&ctx->req, &ctx->resp, ctx->route->opaque);
        }
        atomic_fetch_sub(&s->handling, 1);
    }
    if (ctx->deferred)
        return MHD_YES; /* suspended by the handler; MHD calls again once resumed */
    return ctx_queue(ctx, conn);
}

/* The request context a response belongs to: every http_response lives in one. */
static struct http_ctx *resp_ctx(struct http_response *resp)
{
    return (struct http_ctx *)(void *)((char *)resp - offsetof(struct http_ctx, resp));
}

void http_response_defer(struct http_response *resp, http_continuation cont, void *arg)
{
    struct http_ctx *ctx = resp_ctx(resp);

    ctx->deferred = true;
    ctx->cont = cont;
    ctx->cont_arg = arg;
    atomic_fetch_add(&ctx->srv->deferred, 1);
    MHD_suspend_connection(ctx->req.conn);
}

void http_response_resume(struct http_response *resp)
{
    MHD_resume_connection(resp_ctx(resp)->req.conn);
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct http_ctx *ctx = *con_cls;
    (void)conn;
    (void)toe;
    if (!ctx)
        return;
    *con_cls = NULL;
    ctx_continue(ctx); /* a deferred request closed before it went on: let it free its state */
    if (ctx->deferred)
        atomic_fetch_sub(&s->deferred, 1);
    if (ctx->slot)
        atomic_fetch_sub(ctx->slot, 1);
    if ((ctx->queued || ctx->answered) && s->m_requests) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double secs = (double)(now.tv_sec - ctx->start.tv_sec) +
                      (double)(now.tv_nsec - ctx->start.tv_nsec) / 1e9;
        char code[16];
        snprintf(code, sizeof code, "%d", ctx->status);
        const char *m = method_label(ctx->req.method);
        metric_add(s->m_requests, 1, ctx->metric_route, m, code);
        metric_observe(s->m_duration, secs, ctx->metric_route, m);
    }
    if (ctx->mhd_resp)
        MHD_destroy_response(ctx->mhd_resp); /* MHD holds its own reference while sending */
    response_release(&ctx->resp);
    free(ctx->body);
    free(ctx->path_copy);
    free(ctx);
}

/* MHD's diagnostics are dropped: a library module never prints to stderr. */
static void http_log_discard(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap;
}

/* Parse "host:port" ("[v6]:port" too) into a socket address. */
static int listen_parse(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen,
                        char *err, size_t errlen)
{
    char host[256];
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon) {
        snprintf(err, errlen, "listen address \"%s\" is not host:port", listen ? listen : "");
        return -EINVAL;
    }
    size_t hl = (size_t)(colon - listen);
    const char *h = listen;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host) {
        snprintf(err, errlen, "listen host too long");
        return -EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535) {
        snprintf(err, errlen, "listen port in \"%s\" is not a number 0-65535", listen);
        return -EINVAL;
    }
    memset(ss, 0, sizeof *ss);
    if (hl == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_ANY);
        in->sin_port = htons((uint16_t)port);
        *sslen = sizeof *in;
        return 0;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "listen host \"%s\": %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    return 0;
}

static int routes_check(const struct http_route *routes, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const struct http_route *r = &routes[i];
        if (!r->method || !r->path || r->path[0] != '/' || !r->handler) {
            snprintf(err, errlen, "route %zu: method, path starting with '/' and handler needed",
                     i);
            return -EINVAL;
        }
        size_t params = 0;
        for (const char *p = strchr(r->path, '{'); p; p = strchr(p + 1, '{'))
            params++;
        if (params > HTTP_MAX_PATH_PARAMS) {
            snprintf(err, errlen, "route %s: more than %d path parameters", r->path,
                     HTTP_MAX_PATH_PARAMS);
            return -EINVAL;
        }
    }
    return 0;
}

struct http_server *http_server_new(const struct http_server_opts *opts,
                                    const struct http_route *routes, size_t nroutes, char *err,
                                    size_t errlen)
{
    struct http_server *s = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;

    if (!opts || routes_check(routes, nroutes, err, errlen) < 0)
        goto fail;
    if (listen_parse(opts->listen, &ss, &sslen, err, errlen) < 0)
        goto fail;
    s = calloc(1, sizeof *s);
    if (!s)
        goto fail_oom;
    s->opts = *opts;
    if (!s->opts.max_body)
        s->opts.max_body = HTTP_DEFAULT_MAX_BODY;
    if (!s->opts.threads)
        s->opts.threads = 4;
    if (!s->opts.timeout_s)
        s->opts.timeout_s = 30;
    s->opts.listen = NULL; /* not kept: the caller's string may go away */
    if (nroutes) {
        s->routes = calloc(nroutes, sizeof *s->routes);
        if (!s->routes)
            goto fail_oom;
        memcpy(s->routes, routes, nroutes * sizeof *s->routes);
        s->inflight = calloc(nroutes, sizeof *s->inflight);
        if (!s->inflight)
            goto fail_oom;
    }
    s->nroutes = nroutes;
    if (opts->metrics) {
        s->m_requests = metrics_counter(opts->metrics, "http_requests_total",
                                        "HTTP requests answered, by route, method and status.",
                                        "route,method,code");
        s->m_duration = metrics_histogram(opts->metrics, "http_request_duration_seconds",
                                          "HTTP request duration from headers to completion.",
                                          "route,method", NULL, 0);
    }

    /* poll, not epoll: see "Threading" in http.h */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &ss},
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)s->opts.threads, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)s->opts.timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)HTTP_CONN_MEMORY_LIMIT, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)HTTP_CONNECTION_LIMIT, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)http_completed, s},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)http_log_discard, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, http_access, s, MHD_OPTION_ARRAY, ops,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)",
                 opts->listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "0.0.0.0";
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
        snprintf(s->address, sizeof s->address, "[%s]:%d", host, s->port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
        snprintf(s->address, sizeof s->address, "%s:%d", host, s->port);
    }
    return s;

fail_oom:
    snprintf(err, errlen, "out of memory");
fail:
    if (s) {
        free(s->inflight);
        free(s->routes);
        free(s);
    }
    return NULL;
}

const char *http_server_address(const struct http_server *s)
{
    return s->address;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_quiesce(struct http_server *s)
{
    if (!s || s->quiesced)
        return;
    s->quiesced = true;
    /* The pool threads may still be polling the socket when this returns, so it is closed
     * only once they are stopped (libmicrohttpd's manual); shutdown() stops it listening now:
     * new connections are refused at once instead of waiting in the backlog. */
    s->quiesced_fd = MHD_quiesce_daemon(s->daemon);
    if (s->quiesced_fd != MHD_INVALID_SOCKET)
        shutdown(s->quiesced_fd, SHUT_RDWR);
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    /* Let deferred requests be answered (bounded): libmicrohttpd aborts when it stops with a
     * connection suspended. Keep-alive connections may still bring requests; from now on they
     * get 503 without reaching a handler, so once the handlers running now have returned, no
     * request is deferred any more and the count only falls. */
    atomic_store(&s->stopping, true);
    for (int i = 0; i < 1000 && (atomic_load(&s->handling) > 0 || atomic_load(&s->deferred) > 0);
         i++)
        poll(NULL, 0, 10);
    MHD_stop_daemon(s->daemon);
    if (s->quiesced && s->quiesced_fd != MHD_INVALID_SOCKET)
        close(s->quiesced_fd);
    free(s->inflight);
    free(s->routes);
    free(s);
}
