/*
 * Load generator for tests/bench/holds: THREADS threads, each on its own keep-alive connection
 * (libcurl easy handle), create one-unit holds of SKU at channel location CHANNEL through
 * POST ADDR/v1/holds (a fresh idempotency key per request) for SECONDS.
 *
 *   bench_holds_load ADDR CHANNEL SKU SECONDS THREADS TAG
 * prints "holds_per_s=<n> created=<n> other=<n> p50_ms=<n> p99_ms=<n>".
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "clock.h"

struct worker {
    pthread_t t;
    int id;
    long created, other;
    double *lat;
    size_t nlat, cap;
};

static const char *addr, *channel, *sku, *tag;
static int64_t until_ms;

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *hs = curl_slist_append(NULL, "content-type: application/json");
    char url[256], body[512];
    long seq = 0;

    snprintf(url, sizeof(url), "http://%s/v1/holds", addr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    while (clock_mono_ms() < until_ms) {
        long code = 0;
        int64_t t0 = clock_mono_ms();

        snprintf(body, sizeof(body),
                 "{\"idempotency_key\":\"%s-%d-%ld\",\"channel_location_id\":\"%s\","
                 "\"ttl_seconds\":600,\"lines\":[{\"sku\":\"%s\",\"quantity\":1}]}",
                 tag, w->id, seq++, channel, sku);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code == 201)
            w->created++;
        else
            w->other++;
        if (w->nlat == w->cap) {
            size_t cap = w->cap ? w->cap * 2 : 4096;
            double *l = realloc(w->lat, cap * sizeof(*l));

            if (!l)
                break;
            w->lat = l;
            w->cap = cap;
        }
        w->lat[w->nlat++] = (double)(clock_mono_ms() - t0);
    }
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    return NULL;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;

    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    long secs, n, created = 0, other = 0;
    struct worker *w;
    double *all;
    size_t nall = 0;
    int64_t t0;
    char *end;

    if (argc != 7) {
        fprintf(stderr, "usage: bench_holds_load ADDR CHANNEL SKU SECONDS THREADS TAG\n");
        return 2;
    }
    addr = argv[1];
    channel = argv[2];
    sku = argv[3];
    tag = argv[6];
    secs = strtol(argv[4], &end, 10);
    n = strtol(argv[5], &end, 10);
    if (secs < 1 || n < 1 || n > 1024) {
        fprintf(stderr, "bench_holds_load: bad SECONDS or THREADS\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    w = calloc((size_t)n, sizeof(*w));
    if (!w)
        return 1;
    t0 = clock_mono_ms();
    until_ms = t0 + secs * 1000;
    for (long i = 0; i < n; i++) {
        w[i].id = (int)i;
        pthread_create(&w[i].t, NULL, run, &w[i]);
    }
    for (long i = 0; i < n; i++) {
        pthread_join(w[i].t, NULL);
        created += w[i].created;
        other += w[i].other;
        nall += w[i].nlat;
    }
    all = malloc((nall ? nall : 1) * sizeof(*all));
    nall = 0;
    for (long i = 0; all && i < n; i++) {
        memcpy(all + nall, w[i].lat, w[i].nlat * sizeof(double));
        nall += w[i].nlat;
        free(w[i].lat);
    }
    if (all && nall)
        qsort(all, nall, sizeof(*all), cmp_d);
    printf("holds_per_s=%.0f created=%ld other=%ld p50_ms=%.0f p99_ms=%.0f\n",
           (double)created * 1000.0 / (double)(clock_mono_ms() - t0), created, other,
           all && nall ? all[nall / 2] : 0.0, all && nall ? all[nall * 99 / 100] : 0.0);
    free(all);
    free(w);
    curl_global_cleanup();
    return 0;
}
