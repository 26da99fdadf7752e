/*
 * Load generator for tests/bench/holds: CONNS keep-alive connections driven by one epoll thread
 * (an event-loop client like redis-benchmark, the ceiling's client: a thread per connection
 * spent as much CPU on these two shared cores as the service did), each creating one-unit holds
 * of SKU at channel location CHANNEL through POST ADDR/v1/holds (a fresh idempotency key per
 * request, one request in flight per connection) for SECONDS.
 *
 *   bench_holds_load ADDR CHANNEL SKU SECONDS CONNS TAG
 * prints "holds_per_s=<n> created=<n> other=<n> p50_ms=<n> p99_ms=<n>".
 * Answers must carry Content-Length (the service's do); anything else counts as an error.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

struct conn {
    int fd, id;
    long seq;
    char req[768];
    size_t reqlen, sent;
    char buf[16384];
    size_t got;
    int64_t t0_us;
};

static const char *channel, *sku, *tag;
static char host[256], port[16];
static struct addrinfo *ai;
static long created, other;
static int64_t *lat;
static size_t nlat, cap;

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int conn_open(struct conn *c, int ep)
{
    int one = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev)) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

/* Build and write the next request (the socket is blocking: a request fits its buffer). */
static int conn_send(struct conn *c)
{
    char body[512];
    int blen = snprintf(body, sizeof(body),
                        "{\"idempotency_key\":\"%s-%d-%ld\",\"channel_location_id\":\"%s\","
                        "\"ttl_seconds\":600,\"lines\":[{\"sku\":\"%s\",\"quantity\":1}]}",
                        tag, c->id, c->seq++, channel, sku);

    c->reqlen = (size_t)snprintf(c->req, sizeof(c->req),
                                 "POST /v1/holds HTTP/1.1\r\nHost: %s:%s\r\n"
                                 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                                 host, port, blen, body);
    c->got = 0;
    c->t0_us = now_us();
    for (c->sent = 0; c->sent < c->reqlen;) {
        ssize_t w = send(c->fd, c->req + c->sent, c->reqlen - c->sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c->sent += (size_t)w;
    }
    return 0;
}

/* A complete answer in c->buf: its status, or 0 while incomplete, -1 when unparseable. */
static int answer_status(struct conn *c, size_t *len)
{
    char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
    char *cl;
    long status, clen;

    if (!end)
        return c->got == sizeof(c->buf) ? -1 : 0;
    *end = '\0';
    if (sscanf(c->buf, "HTTP/1.%*d %ld", &status) != 1)
        return -1;
    cl = strcasestr(c->buf, "\r\ncontent-length:");
    *end = '\r';
    if (!cl)
        return -1;
    clen = strtol(cl + 17, NULL, 10);
    if (clen < 0 || (size_t)(end + 4 - c->buf) + (size_t)clen > sizeof(c->buf))
        return -1;
    *len = (size_t)(end + 4 - c->buf) + (size_t)clen;
    return c->got >= *len ? (int)status : 0;
}

static void record(int64_t us)
{
    if (nlat == cap) {
        size_t ncap = cap ? cap * 2 : 65536;
        int64_t *l = realloc(lat, ncap * sizeof(*l));
        if (!l)
            return;
        lat = l;
        cap = ncap;
    }
    lat[nlat++] = us;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct epoll_event evs[256];
    struct conn *cs;
    const char *colon;
    long secs, n, open = 0;
    int64_t t0, until;
    int ep;
    char *end;

    if (argc != 7) {
        fprintf(stderr, "usage: bench_holds_load ADDR CHANNEL SKU SECONDS CONNS TAG\n");
        return 2;
    }
    channel = argv[2];
    sku = argv[3];
    tag = argv[6];
    secs = strtol(argv[4], &end, 10);
    n = strtol(argv[5], &end, 10);
    colon = strrchr(argv[1], ':');
    if (secs < 1 || n < 1 || n > 1024 || !colon || colon == argv[1] ||
        (size_t)(colon - argv[1]) >= sizeof(host)) {
        fprintf(stderr, "bench_holds_load: bad ADDR (host:port), SECONDS or CONNS\n");
        return 2;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - argv[1]), argv[1]);
    snprintf(port, sizeof(port), "%s", colon + 1);
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        fprintf(stderr, "bench_holds_load: cannot resolve %s\n", argv[1]);
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    cs = calloc((size_t)n, sizeof(*cs));
    if (ep < 0 || !cs)
        return 1;
    t0 = clock_mono_ms();
    until = t0 + secs * 1000;
    for (long i = 0; i < n; i++) {
        cs[i].id = (int)i;
        if (conn_open(&cs[i], ep) == 0 && conn_send(&cs[i]) == 0)
            open++;
        else
            fprintf(stderr, "bench_holds_load: connection %ld failed: %s\n", i, strerror(errno));
    }
    while (open > 0) {
        int k = epoll_wait(ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 1000);
        for (int e = 0; e < k; e++) {
            struct conn *c = evs[e].data.ptr;
            ssize_t r = recv(c->fd, c->buf + c->got, sizeof(c->buf) - c->got, 0);
            size_t len = 0;
            int st = 0;

            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r > 0) {
                c->got += (size_t)r;
                st = answer_status(c, &len);
                if (st == 0)
                    continue;
                if (st == 201)
                    created++;
                else
                    other++;
                if (st > 0)
                    record(now_us() - c->t0_us);
            }
            /* answered (or closed, or garbage): next request, on a new connection if need be */
            if (r <= 0 || st < 0 || c->got != len) {
                if (r <= 0)
                    other++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                if (clock_mono_ms() >= until || conn_open(c, ep) != 0) {
                    open--;
                    continue;
                }
            }
            if (clock_mono_ms() >= until || conn_send(c) != 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                open--;
            }
        }
    }
    if (nlat)
        qsort(lat, nlat, sizeof(*lat), cmp_i64);
    printf("holds_per_s=%.0f created=%ld other=%ld p50_ms=%.1f p99_ms=%.1f\n",
           (double)created * 1000.0 / (double)(clock_mono_ms() - t0), created, other,
           nlat ? (double)lat[nlat / 2] / 1000.0 : 0.0,
           nlat ? (double)lat[nlat * 99 / 100] / 1000.0 : 0.0);
    free(lat);
    free(cs);
    freeaddrinfo(ai);
    close(ep);
    return 0;
}
