/*
 * Load generator for tests/bench/holds: CONNS keep-alive connections driven by one epoll thread
 * (support/loadgen.c, an event-loop client like redis-benchmark, the ceiling's client: a thread
 * per connection spent as much CPU on these two shared cores as the service did), each creating
 * one-unit holds of SKU at channel location CHANNEL through POST ADDR/v1/holds (a fresh
 * idempotency key per request, one request in flight per connection) for SECONDS.
 *
 *   bench_holds_load ADDR CHANNEL SKU SECONDS CONNS TAG
 * prints "holds_per_s=<n> created=<n> other=<n> p50_ms=<n> p99_ms=<n>".
 * Answers must carry Content-Length (the service's do); anything else counts as an error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "support/loadgen.h"

struct holds_arg {
    const char *addr, *channel, *sku, *tag;
};

/* One single-unit hold per request, each with its own idempotency key. */
static size_t holds_build(char *buf, size_t cap, int conn, long seq, void *arg)
{
    const struct holds_arg *a = arg;
    char body[512];
    int blen, len;

    blen = snprintf(body, sizeof(body),
                    "{\"idempotency_key\":\"%s-%d-%ld\",\"channel_location_id\":\"%s\","
                    "\"ttl_seconds\":600,\"lines\":[{\"sku\":\"%s\",\"quantity\":1}]}",
                    a->tag, conn, seq, a->channel, a->sku);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        return 0;
    len = snprintf(buf, cap,
                   "POST /v1/holds HTTP/1.1\r\nHost: %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                   a->addr, blen, body);
    return len < 0 || (size_t)len >= cap ? 0 : (size_t)len;
}

int main(int argc, char **argv)
{
    struct holds_arg a;
    struct loadgen_result r;
    long secs, conns;

    if (argc != 7) {
        fprintf(stderr, "usage: bench_holds_load ADDR CHANNEL SKU SECONDS CONNS TAG\n");
        return 2;
    }
    a = (struct holds_arg){.addr = argv[1], .channel = argv[2], .sku = argv[3], .tag = argv[6]};
    secs = strtol(argv[4], NULL, 10);
    conns = strtol(argv[5], NULL, 10);
    if (secs < 1 || conns < 1 || conns > 1024) {
        fprintf(stderr, "bench_holds_load: bad SECONDS or CONNS\n");
        return 2;
    }
    if (loadgen_run(argv[1], (int)conns, (int)secs, 201, holds_build, &a, &r) != 0)
        return 1;
    printf("holds_per_s=%.0f created=%ld other=%ld p50_ms=%.1f p99_ms=%.1f\n", r.rps, r.ok, r.other,
           r.p50_ms, r.p99_ms);
    return 0;
}
