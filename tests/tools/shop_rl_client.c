/*
 * shop_rl_client — a loyalty-style client of a shop's API for the shared-bucket test: for
 * SECONDS, takes one token per call from the Redis bucket KEY (capacity CAP, RATE/s; the
 * common ratelimit.h, as loyalty-sync does) and calls GET URL with header HDR. Prints
 * "calls=N throttled=M" (429 answers). REDIS_URL from the environment.
 *
 *   shop_rl_client URL HDR KEY CAP RATE SECONDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "clock.h"
#include "ratelimit.h"
#include "redis.h"

static size_t sink(char *p, size_t s, size_t n, void *o)
{
    (void)p;
    (void)o;
    return s * n;
}

int main(int argc, char **argv)
{
    if (argc != 7 || !getenv("REDIS_URL")) {
        fprintf(stderr, "usage: shop_rl_client URL HDR KEY CAP RATE SECONDS (REDIS_URL)\n");
        return 2;
    }
    char err[256];
    struct redis *r = redis_new(getenv("REDIS_URL"), 1, 2000, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "shop_rl_client: %s\n", err);
        return 1;
    }
    struct ratelimit_bucket b = {.key = argv[3],
                                 .capacity = strtol(argv[4], NULL, 10),
                                 .refill_per_s = strtol(argv[5], NULL, 10)};
    int64_t until = clock_mono_ms() + (int64_t)(strtod(argv[6], NULL) * 1000.0);
    long calls = 0, throttled = 0;
    struct curl_slist *h = curl_slist_append(NULL, argv[2]);
    while (clock_mono_ms() < until) {
        if (ratelimit_take(r, &b, 1, 2000, err, sizeof(err)) < 0)
            continue;
        CURL *c = curl_easy_init();
        if (!c)
            break;
        curl_easy_setopt(c, CURLOPT_URL, argv[1]);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        long status = 0;
        if (curl_easy_perform(c) == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            calls++;
            if (status == 429) {
                throttled++;
                ratelimit_correct(r, &b, 0, err, sizeof(err));
            }
        }
        curl_easy_cleanup(c);
    }
    curl_slist_free_all(h);
    redis_free(r);
    printf("calls=%ld throttled=%ld\n", calls, throttled);
    return 0;
}
