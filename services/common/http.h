/*
 * http — the HTTP server every service embeds, on libmicrohttpd 0.9.75.
 *
 * Routes are a fixed table given at start; a route path may contain up to four
 * "{param}" segments whose values reach the handler in path_params. Built in:
 * GET /healthz, GET /readyz and GET /metrics. Everything that is not a 2xx from
 * a handler is a JSON error {"error":{"code":..,"message":..,"field":..}}:
 * not_found (404), method_not_allowed (405, with Allow), payload_too_large
 * (413), unsupported_media_type (415), internal (500, a handler that set no
 * response). Bodies over the limit are refused from Content-Length before any
 * byte is read, and chunked bodies as soon as the running count passes it; the
 * connection is then closed rather than drained.
 *
 * Threading: MHD's internal polling with a thread pool of opts.threads
 * workers (poll(), not epoll: libmicrohttpd 0.9.75 can abort the process when
 * an epoll daemon with its own threads is quiesced, as every service does on
 * SIGTERM — its worker and the quiescing thread race to remove the listen
 * socket from the epoll set; poll() over a worker's share of at most
 * HTTP_CONNECTION_LIMIT connections costs little). Chosen over thread-per-connection because it
 * bounds the threads and memory whatever the number of idle keep-alive connections from tills, and
 * the pool size is a plain knob. The cost: a handler that blocks (pos-ingest waits a few ms for the
 * Kafka acknowledgement) stalls the other connections served by the same worker for that long, so
 * size the pool for the concurrent in-flight requests you expect (≈ request rate × handler latency,
 * e.g. 16 workers carry ~3000 req/s at 5 ms each). Handlers run on those worker threads,
 * concurrently: they must be thread-safe. A handler whose wait is long or frequent defers its
 * answer instead (http_response_defer: the connection is suspended, the worker goes on with
 * other connections), so a few workers carry any number of requests in flight.
 *
 * Header floods: each connection gets a 64 KiB memory pool
 * (MHD_OPTION_CONNECTION_MEMORY_LIMIT) for its request line, headers and read
 * buffer; a request whose headers do not fit is answered by MHD itself with
 * 431 (its own body, not our JSON shape) and the connection closed.
 */
#ifndef TILLSYNC_HTTP_H
#define TILLSYNC_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <microhttpd.h>

#include "metrics.h"

#define HTTP_MAX_PATH_PARAMS 4

/* What a handler sees. Everything points into per-request memory that lives
 * until the request completes; copy what must outlive the handler call. */
struct http_request {
    const char *method, *path; /* path without query */
    const char *body;          /* full body, NUL-terminated copy ("" when none) */
    size_t body_len;
    struct MHD_Connection *conn;                   /* for headers and query arguments */
    const char *route_pattern;                     /* the matched route's path, for metrics */
    const char *path_params[HTTP_MAX_PATH_PARAMS]; /* values of {param} segments, in order */
    size_t npath_params;
};

/* Value of request header name (case-insensitive), or NULL if absent. Owned
 * by MHD, valid during the handler call. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Value of query argument name (URL-decoded), or NULL if absent. A key given
 * without "=" yields NULL too. Owned by MHD, valid during the handler call. */
const char *http_request_query(const struct http_request *req, const char *name);

/* The response a handler fills. Setting a body twice replaces the first. */
struct http_response;

typedef void (*http_handler)(const struct http_request *req, struct http_response *resp,
                             void *opaque);

/* Respond with status and body serialised compactly as application/json.
 * Takes ownership of body (json_decref'd here), also on failure. */
void http_response_json(struct http_response *resp, int status, json_t *body);

/* Respond with status and {"error":{"code":code,"message":<fmt...>,"field":field}};
 * "field" is omitted when field is NULL. */
void http_response_error(struct http_response *resp, int status, const char *code,
                         const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Respond with status and a copy of body[0..len) with the given content type. */
void http_response_body(struct http_response *resp, int status, const char *content_type,
                        const void *body, size_t len);

/* Add a response header (both strings copied). Returns 0, -EINVAL for a name
 * or value containing CR/LF, or -ENOMEM. */
int http_response_header(struct http_response *resp, const char *name, const char *value);

/* Fills a deferred request's response, on a worker thread (see http_response_defer). */
typedef void (*http_continuation)(const struct http_request *req, struct http_response *resp,
                                  void *arg);

/*
 * Answer later, without holding a worker: called by a route handler (only there, at most once
 * per request), it suspends the request's connection — nothing is read from or written to it —
 * and the handler returns without a response. Once somebody calls http_response_resume(resp),
 * from any thread, cont(req, resp, arg) runs on a worker thread and fills the response, which
 * is then sent. req, its body and resp stay valid until cont has run; request headers may be
 * read in cont. Every deferred request must be resumed before http_server_free() has waited
 * 10 s for it (libmicrohttpd aborts the process when it stops with a connection suspended).
 */
void http_response_defer(struct http_response *resp, http_continuation cont, void *arg);

/* Let a deferred request go on (see http_response_defer). Any thread, once per deferral. */
void http_response_resume(struct http_response *resp);

struct http_route {
    const char *method; /* "GET", "POST", … */
    const char *path;   /* "/v1/transactions", or with parameters "/v1/holds/{id}" */
    http_handler handler;
    void *opaque;
    size_t max_body;          /* 0 = server default */
    const char *content_type; /* required request media type for bodies, NULL = any */
    /* Requests of this route at once, from routing to completion (a deferred one counts until
     * it is answered); 0 = no limit. Past it a request gets 503 busy with Retry-After: 1 and
     * Connection: close before its body is read, so a burst of large uploads cannot hold
     * more than this many bodies (and what their handlers build from them) in memory. */
    unsigned max_inflight;
};

struct http_server_opts {
    const char *listen; /* "host:port"; port 0 = any free port; empty host = all */
    size_t max_body;    /* default body limit; 0 = 1 MiB */
    unsigned threads;   /* worker threads (MHD thread pool); 0 = 4 */
    unsigned timeout_s; /* idle connection timeout; 0 = 30 s */
    /* /readyz: true when dependencies are reachable, else write the reason to
     * why. NULL = always ready. Called on a worker thread. */
    bool (*ready)(void *opaque, char *why, size_t whylen);
    void *ready_opaque;
    /* /metrics renders this, and requests are counted in it:
     * http_requests_total{route,method,code} and
     * http_request_duration_seconds{route,method}. May be NULL. Must outlive
     * the server. */
    struct metrics *metrics;
};

/* Start a server. routes (and the strings they point to) must outlive it; the
 * array itself is copied. Returns NULL with err on a bad listen address, a bad
 * route table, or when the port cannot be bound. */
struct http_server *http_server_new(const struct http_server_opts *opts,
                                    const struct http_route *routes, size_t nroutes, char *err,
                                    size_t errlen);

/* "127.0.0.1:43121": the bound address with the real port. Owned by s. */
const char *http_server_address(const struct http_server *s);

/* The bound port. */
int http_server_port(const struct http_server *s);

/* Stop accepting new connections: they are refused at once (the listening socket itself is
 * closed by http_server_free). Requests on open connections finish. Idempotent. */
void http_server_quiesce(struct http_server *s);

/* Stop the server. From the call on, a request that reaches a route (keep-alive connections
 * go on sending after http_server_quiesce) gets 503 shutting_down with Connection: close, so
 * no new request is deferred; it waits for the route handlers running and (up to 10 s) for
 * the deferred requests to be resumed and answered, closes connections, frees s. NULL is
 * fine. */
void http_server_free(struct http_server *s);

#endif
