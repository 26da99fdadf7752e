/* loadgen — see loadgen.h. */
#include "loadgen.h"

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

#define REQ_CAP  16384
#define RESP_CAP 65536

struct lconn {
    int fd, id;
    long seq;
    char req[REQ_CAP];
    size_t reqlen;
    char buf[RESP_CAP];
    size_t got;
    int64_t t0_us;
};

struct lrun {
    struct addrinfo *ai;
    int ep;
    loadgen_build build;
    void *arg;
    int64_t *lat;
    size_t nlat, cap;
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int lconn_open(struct lrun *r, struct lconn *c)
{
    int one = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

    c->fd = socket(r->ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, r->ai->ai_addr, r->ai->ai_addrlen) != 0 ||
        epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

static void lconn_close(struct lrun *r, struct lconn *c)
{
    epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

/* Build and write the next request (the socket is blocking: a request fits its buffer). */
static int lconn_send(struct lrun *r, struct lconn *c)
{
    c->reqlen = r->build(c->req, sizeof(c->req), c->id, c->seq++, r->arg);
    if (c->reqlen == 0)
        return -1;
    c->got = 0;
    c->t0_us = now_us();
    for (size_t sent = 0; sent < c->reqlen;) {
        ssize_t w = send(c->fd, c->req + sent, c->reqlen - sent, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        sent += (size_t)w;
    }
    return 0;
}

/* A complete answer in c->buf: its status, or 0 while incomplete, -1 when unparseable. */
static int answer_status(struct lconn *c, size_t *len)
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

static void record(struct lrun *r, int64_t us)
{
    if (r->nlat == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 65536;
        int64_t *l = realloc(r->lat, ncap * sizeof(*l));

        if (!l)
            return;
        r->lat = l;
        r->cap = ncap;
    }
    r->lat[r->nlat++] = us;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

    return a < b ? -1 : a > b;
}

int loadgen_run(const char *addr, int conns, int seconds, int ok_status, loadgen_build build,
                void *arg, struct loadgen_result *out)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct lrun r = {.build = build, .arg = arg, .ep = -1};
    struct epoll_event evs[256];
    struct lconn *cs = NULL;
    const char *colon = strrchr(addr, ':');
    char host[256];
    long open = 0;
    int64_t t0, until;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host) || conns < 1 ||
        seconds < 1) {
        fprintf(stderr, "loadgen: bad address %s, connections or seconds\n", addr);
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    if (getaddrinfo(host, colon + 1, &hints, &r.ai) != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s\n", addr);
        return -1;
    }
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    cs = calloc((size_t)conns, sizeof(*cs));
    if (r.ep < 0 || !cs)
        goto out;
    t0 = now_us();
    until = t0 + (int64_t)seconds * 1000000;
    for (int i = 0; i < conns; i++) {
        cs[i].id = i;
        if (lconn_open(&r, &cs[i]) == 0 && lconn_send(&r, &cs[i]) == 0)
            open++;
        else
            fprintf(stderr, "loadgen: connection %d failed: %s\n", i, strerror(errno));
    }
    if (open == 0)
        goto out;
    while (open > 0) {
        int k = epoll_wait(r.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 1000);

        for (int e = 0; e < k; e++) {
            struct lconn *c = evs[e].data.ptr;
            ssize_t n = recv(c->fd, c->buf + c->got, sizeof(c->buf) - c->got, 0);
            size_t len = 0;
            int st = 0;

            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n > 0) {
                c->got += (size_t)n;
                st = answer_status(c, &len);
                if (st == 0)
                    continue;
                if (st == ok_status)
                    out->ok++;
                else
                    out->other++;
                if (st > 0)
                    record(&r, now_us() - c->t0_us);
            }
            /* answered (or closed, or garbage): next request, on a new connection if need be */
            if (n <= 0 || st < 0 || c->got != len) {
                if (n <= 0)
                    out->other++;
                lconn_close(&r, c);
                if (now_us() >= until || lconn_open(&r, c) != 0) {
                    open--;
                    continue;
                }
            }
            if (now_us() >= until || lconn_send(&r, c) != 0) {
                lconn_close(&r, c);
                open--;
            }
        }
    }
    out->rps = (double)out->ok * 1e6 / (double)(now_us() - t0);
    if (r.nlat) {
        qsort(r.lat, r.nlat, sizeof(*r.lat), cmp_i64);
        out->p50_ms = (double)r.lat[r.nlat / 2] / 1000.0;
        out->p99_ms = (double)r.lat[r.nlat * 99 / 100] / 1000.0;
    }
    rc = 0;
out:
    free(r.lat);
    free(cs);
    if (r.ep >= 0)
        close(r.ep);
    freeaddrinfo(r.ai);
    return rc;
}
