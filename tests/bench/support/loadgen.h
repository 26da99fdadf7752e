/*
 * loadgen — a closed-loop HTTP/1.1 load client for the benchmarks: CONNS keep-alive connections
 * driven by one epoll thread (an event-loop client like redis-benchmark or wrk: a thread per
 * connection spends as much CPU on two shared cores as the server under test), one request in
 * flight per connection, the next sent as soon as the answer is in. Answers must carry
 * Content-Length; a connection the server closes is reopened.
 */
#ifndef BENCH_LOADGEN_H
#define BENCH_LOADGEN_H

#include <stddef.h>

/* Write the next whole request (request line, headers, body) of connection conn, its seq-th,
 * into buf (cap bytes). Returns its length, or 0 when it does not fit. */
typedef size_t (*loadgen_build)(char *buf, size_t cap, int conn, long seq, void *arg);

struct loadgen_result {
    long ok;               /* answers with the expected status */
    long other;            /* any other answer, or a connection lost */
    double rps;            /* ok answers per second */
    double p50_ms, p99_ms; /* latency of every answer */
};

/*
 * Run CONNS connections to addr ("host:port") for seconds, building requests with build(arg).
 * ok_status: the status that counts as ok. Returns 0 with out filled, or -1 (message on stderr)
 * when the address cannot be resolved or no connection opens.
 */
int loadgen_run(const char *addr, int conns, int seconds, int ok_status, loadgen_build build,
                void *arg, struct loadgen_result *out);

#endif
