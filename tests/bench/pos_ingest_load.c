/*
 * Load generator and bare-server ceiling for tests/bench/pos_ingest.
 *
 *   bench_pos_ingest_load bare THREADS
 *       a bare libmicrohttpd server (same thread-pool/epoll model as services/common/http.c)
 *       that reads each body and answers 202 with a small JSON; prints "listening HOST:PORT"
 *       and serves until SIGTERM.
 *   bench_pos_ingest_load single ADDR KEY SECONDS CONNECTIONS TAG
 *       CONNECTIONS keep-alive connections on one epoll thread (support/loadgen.h), each
 *       POSTing one distinct sale per request to /v1/transactions for SECONDS; prints
 *       "rps=<n> p50_ms=<n> p99_ms=<n> ok=<n> errors=<n>".
 *   bench_pos_ingest_load batch ADDR KEY BATCHES TRANSACTIONS LINES TAG
 *       BATCHES batches of TRANSACTIONS sales with LINES lines each to /v1/batches, one after
 *       the other; prints "lines_per_s=<n> ms_per_batch=<n>".
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "clock.h"
#include "support/loadgen.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

/* ---- bare server ------------------------------------------------------------------------- */

static enum MHD_Result bare_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *upload,
                                    size_t *upload_size, void **ptr)
{
    static const char body[] = "{\"status\":\"accepted\"}";
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    if (!*ptr) {
        *ptr = c; /* first call: headers only */
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* consume the body */
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    ret = MHD_queue_response(c, 202, r);
    MHD_destroy_response(r);
    return ret;
}

static int run_bare(unsigned threads)
{
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, bare_handler, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, 30U, MHD_OPTION_END);
    const union MHD_DaemonInfo *di;

    if (!d) {
        fprintf(stderr, "bare: cannot start\n");
        return 1;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening 127.0.0.1:%u\n", (unsigned)di->port);
    fflush(stdout);
    while (!stop)
        usleep(100000);
    MHD_stop_daemon(d);
    return 0;
}

/* ---- clients ------------------------------------------------------------------------------ */

static size_t sink(char *d, size_t sz, size_t n, void *u)
{
    (void)d;
    (void)u;
    return sz * n;
}

struct single_arg {
    const char *host, *key, *tag;
};

/* One distinct sale per request: a SKU line and a carrier bag, paid by card. */
static size_t single_build(char *buf, size_t cap, int conn, long seq, void *arg)
{
    const struct single_arg *a = arg;
    char body[1024];
    int blen, len;

    blen =
        snprintf(body, sizeof(body),
                 "{\"transaction_id\":\"%s-%d-%ld\",\"store_code\":\"S001\",\"till_id\":\"T%d\","
                 "\"kind\":\"sale\",\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\","
                 "\"lines\":[{\"sku\":\"SKU-1\",\"quantity\":2,\"unit_price\":\"5.00\"},"
                 "{\"non_stock_code\":\"BAG\",\"quantity\":1,\"unit_price\":\"0.10\"}],"
                 "\"tenders\":[{\"type\":\"card\",\"amount\":\"10.10\"}],\"total\":\"10.10\"}",
                 a->tag, conn, seq, conn % 8);
    if (blen < 0 || (size_t)blen >= sizeof(body))
        return 0;
    len = snprintf(buf, cap,
                   "POST /v1/transactions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                   a->host, a->key, blen, body);
    return len < 0 || (size_t)len >= cap ? 0 : (size_t)len;
}

static int run_single(const char *addr, const char *key, int seconds, int conns, const char *tag)
{
    struct single_arg a = {.host = addr, .key = key, .tag = tag};
    struct loadgen_result r;

    if (loadgen_run(addr, conns, seconds, 202, single_build, &a, &r) != 0)
        return 1;
    printf("rps=%.0f p50_ms=%.2f p99_ms=%.2f ok=%ld errors=%ld\n", r.rps, r.p50_ms, r.p99_ms, r.ok,
           r.other);
    return r.other ? 1 : 0;
}

static int run_batch(const char *addr, const char *key, int batches, int ntx, int nlines,
                     const char *tag)
{
    size_t cap = (size_t)ntx * ((size_t)nlines * 80 + 400) + 64;
    char *body = malloc(cap), url[256], auth[256];
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    int64_t total_ms = 0;
    int rc = 0;

    snprintf(url, sizeof(url), "http://%s/v1/batches", addr);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    for (int b = 0; b < batches; b++) {
        size_t off = (size_t)snprintf(body, cap, "{\"transactions\":[");
        long status = 0;
        int64_t t0;

        for (int t = 0; t < ntx; t++) {
            off += (size_t)snprintf(body + off, cap - off,
                                    "%s{\"transaction_id\":\"%s-b%d-%d\",\"store_code\":\"S001\","
                                    "\"till_id\":\"B%d\",\"kind\":\"sale\",\"occurred_at\":"
                                    "\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\",\"lines\":[",
                                    t ? "," : "", tag, b, t, t % 8);
            for (int l = 0; l < nlines; l++)
                off += (size_t)snprintf(body + off, cap - off,
                                        "%s{\"sku\":\"SKU-%d\",\"quantity\":1,\"unit_price\":"
                                        "\"1.00\"}",
                                        l ? "," : "", l);
            off += (size_t)snprintf(body + off, cap - off,
                                    "],\"tenders\":[{\"type\":\"cash\",\"amount\":%d}],"
                                    "\"total\":%d}",
                                    nlines * 100, nlines * 100);
        }
        off += (size_t)snprintf(body + off, cap - off, "]}");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)off);
        t0 = clock_mono_ms();
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        total_ms += clock_mono_ms() - t0;
        if (status != 200) {
            fprintf(stderr, "batch %d: status %ld\n", b, status);
            rc = 1;
        }
    }
    printf("lines_per_s=%.0f ms_per_batch=%.0f\n",
           (double)batches * ntx * nlines * 1000.0 / (double)(total_ms ? total_ms : 1),
           (double)total_ms / batches);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(body);
    return rc;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {0};

    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_ALL);
    if (argc == 3 && strcmp(argv[1], "bare") == 0)
        return run_bare((unsigned)strtoul(argv[2], NULL, 10));
    if (argc == 7 && strcmp(argv[1], "single") == 0)
        return run_single(argv[2], argv[3], (int)strtol(argv[4], NULL, 10),
                          (int)strtol(argv[5], NULL, 10), argv[6]);
    if (argc == 8 && strcmp(argv[1], "batch") == 0)
        return run_batch(argv[2], argv[3], (int)strtol(argv[4], NULL, 10),
                         (int)strtol(argv[5], NULL, 10), (int)strtol(argv[6], NULL, 10), argv[7]);
    fprintf(stderr, "usage: see the comment at the top of tests/bench/pos_ingest_load.c\n");
    return 2;
}
