/*
 * Load generator and bare-server ceiling for tests/bench/pos_ingest.
 *
 *   bench_pos_ingest_load bare THREADS
 *       a bare libmicrohttpd server (same thread-pool/epoll model as services/common/http.c)
 *       that reads each body and answers 202 with a small JSON; prints "listening HOST:PORT"
 *       and serves until SIGTERM.
 *   bench_pos_ingest_load single ADDR KEY SECONDS CONNECTIONS TAG
 *       CONNECTIONS threads, each on its own keep-alive connection (libcurl easy handle),
 *       POST one distinct sale per request to /v1/transactions for SECONDS; prints
 *       "rps=<n> p50_ms=<n> p99_ms=<n> ok=<n> errors=<n>".
 *   bench_pos_ingest_load batch ADDR KEY BATCHES TRANSACTIONS LINES TAG
 *       BATCHES batches of TRANSACTIONS sales with LINES lines each to /v1/batches, one after
 *       the other; prints "lines_per_s=<n> ms_per_batch=<n>".
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "clock.h"

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

struct worker {
    pthread_t th;
    const char *url, *key, *tag;
    int id;
    int64_t until;
    double *lat; /* ms */
    size_t nlat, cap;
    long errors;
};

static void *single_worker(void *arg)
{
    struct worker *w = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char auth[256], body[1024];
    long n = 0;

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", w->key);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    while (clock_mono_ms() < w->until) {
        struct timespec a, b;
        long status = 0;

        snprintf(body, sizeof(body),
                 "{\"transaction_id\":\"%s-%d-%ld\",\"store_code\":\"S001\",\"till_id\":\"T%d\","
                 "\"kind\":\"sale\",\"occurred_at\":\"2026-11-24T10:00:00Z\",\"currency\":\"EUR\","
                 "\"lines\":[{\"sku\":\"SKU-1\",\"quantity\":2,\"unit_price\":\"5.00\"},"
                 "{\"non_stock_code\":\"BAG\",\"quantity\":1,\"unit_price\":\"0.10\"}],"
                 "\"tenders\":[{\"type\":\"card\",\"amount\":\"10.10\"}],\"total\":\"10.10\"}",
                 w->tag, w->id, n++, w->id % 8);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (status != 202) {
            w->errors++;
            continue;
        }
        if (w->nlat == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 4096;
            w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
        }
        w->lat[w->nlat++] =
            (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static int run_single(const char *addr, const char *key, int seconds, int conns, const char *tag)
{
    struct worker *ws = calloc((size_t)conns, sizeof(*ws));
    char url[256];
    double *all;
    size_t n = 0, k = 0;
    long errors = 0;
    int64_t t0, t1;

    snprintf(url, sizeof(url), "http://%s/v1/transactions", addr);
    t0 = clock_mono_ms();
    for (int i = 0; i < conns; i++) {
        ws[i] = (struct worker){
            .url = url, .key = key, .tag = tag, .id = i, .until = t0 + seconds * 1000LL};
        pthread_create(&ws[i].th, NULL, single_worker, &ws[i]);
    }
    for (int i = 0; i < conns; i++) {
        pthread_join(ws[i].th, NULL);
        n += ws[i].nlat;
        errors += ws[i].errors;
    }
    t1 = clock_mono_ms();
    all = malloc((n + 1) * sizeof(*all));
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof(*all));
        k += ws[i].nlat;
        free(ws[i].lat);
    }
    qsort(all, n, sizeof(*all), cmp_double);
    printf("rps=%.0f p50_ms=%.2f p99_ms=%.2f ok=%zu errors=%ld\n",
           (double)n * 1000.0 / (double)(t1 - t0), n ? all[n / 2] : 0.0,
           n ? all[(size_t)((double)n * 0.99)] : 0.0, n, errors);
    free(all);
    free(ws);
    return errors ? 1 : 0;
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
