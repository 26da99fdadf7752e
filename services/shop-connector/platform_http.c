/* platform_http — see platform_http.h. */
#include "platform_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *opaque)
{
    struct http_answer *ans = opaque;
    size_t n = size * nmemb;
    char *nb = realloc(ans->body, ans->len + n + 1);
    if (!nb)
        return 0;
    memcpy(nb + ans->len, ptr, n);
    ans->len += n;
    nb[ans->len] = '\0';
    ans->body = nb;
    return n;
}

/* Link: <https://...>; rel="next" */
static size_t header_cb(char *buf, size_t size, size_t nitems, void *opaque)
{
    struct http_answer *ans = opaque;
    size_t n = size * nitems;
    if (n > 12 && strncasecmp(buf, "retry-after:", 12) == 0) {
        char num[32];
        size_t l = n - 12 < sizeof(num) - 1 ? n - 12 : sizeof(num) - 1;
        memcpy(num, buf + 12, l);
        num[l] = '\0';
        char *end = NULL;
        long s = strtol(num, &end, 10);
        if (end != num && s >= 0 && s < 86400)
            ans->retry_after_ms = s * 1000;
    }
    if (n > 5 && strncasecmp(buf, "link:", 5) == 0) {
        char line[4096];
        size_t l = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
        memcpy(line, buf, l);
        line[l] = '\0';
        char *p = line;
        while ((p = strchr(p, '<')) != NULL) {
            char *end = strchr(p, '>');
            if (!end)
                break;
            if (strstr(end, "rel=\"next\"") &&
                (!strchr(end, ',') || strstr(end, "rel=\"next\"") < strchr(end, ','))) {
                size_t ul = (size_t)(end - p - 1);
                if (ul < sizeof(ans->next_url)) {
                    memcpy(ans->next_url, p + 1, ul);
                    ans->next_url[ul] = '\0';
                }
                break;
            }
            p = end + 1;
        }
    }
    return n;
}

int platform_http_call(const char *method, const char *url, const char *const *headers,
                       const char *body, struct http_answer *ans, char *err, size_t errlen)
{
    memset(ans, 0, sizeof(*ans));
    ans->retry_after_ms = -1;
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    int rc = -EIO;
    if (!c) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -EIO;
    }
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ans);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ans);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s %s: %s", method, url, curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ans->status);
    if (!ans->body) {
        ans->body = calloc(1, 1);
        if (!ans->body)
            goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        platform_http_release(ans);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return rc;
}

void platform_http_release(struct http_answer *ans)
{
    free(ans->body);
    ans->body = NULL;
    ans->len = 0;
}
