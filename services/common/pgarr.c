/* pgarr — Postgres array literals. See pgarr.h. */
#include "pgarr.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pgarr_init(struct pgarr *a)
{
    memset(a, 0, sizeof(*a));
}

static void put(struct pgarr *a, const char *s, size_t n)
{
    if (a->oom)
        return;
    if (a->len + n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        char *b;

        while (a->len + n + 2 > cap)
            cap *= 2;
        b = realloc(a->buf, cap);
        if (!b) {
            a->oom = 1;
            return;
        }
        a->buf = b;
        a->cap = cap;
    }
    if (a->len == 0)
        a->buf[a->len++] = '{';
    memcpy(a->buf + a->len, s, n);
    a->len += n;
}

static void sep(struct pgarr *a)
{
    if (a->n++)
        put(a, ",", 1);
    else
        put(a, "", 0);
}

void pgarr_text(struct pgarr *a, const char *s)
{
    sep(a);
    put(a, "\"", 1);
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(a, "\\", 1);
        put(a, p, 1);
    }
    put(a, "\"", 1);
}

void pgarr_int(struct pgarr *a, int64_t v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);

    sep(a);
    put(a, num, (size_t)n);
}

const char *pgarr_finish(struct pgarr *a)
{
    put(a, "}", 1);
    if (a->oom)
        return NULL;
    a->buf[a->len] = '\0';
    return a->buf;
}

void pgarr_release(struct pgarr *a)
{
    free(a->buf);
    memset(a, 0, sizeof(*a));
}
