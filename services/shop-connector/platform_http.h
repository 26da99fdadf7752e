/* platform_http — blocking HTTPS calls to a platform API (libcurl), for adapters. */
#ifndef SHOP_PLATFORM_HTTP_H
#define SHOP_PLATFORM_HTTP_H

#include <stddef.h>

/* An answer: body (malloc'd, NUL-terminated) and the "next" URL of a Link header ("" when
 * none). Release with platform_http_release(). */
struct http_answer {
    long status;
    char *body;
    size_t len;
    char next_url[2048];
    long retry_after_ms; /* Retry-After header in ms (seconds form); -1 when absent */
};

/*
 * method "GET" or "POST" to url with the given header lines ("Name: value", NULL-terminated)
 * and body (NULL for none). Timeout 30 s. Returns 0 with ans filled when an HTTP answer came
 * (any status), -EIO with err on a transport failure.
 */
int platform_http_call(const char *method, const char *url, const char *const *headers,
                       const char *body, struct http_answer *ans, char *err, size_t errlen);

void platform_http_release(struct http_answer *ans);

#endif
