/*
 * textbuf — see textbuf.h.
 */
#include "textbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static void reserve(struct textbuf *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->failed || b->len + more < b->cap)
        return;
    cap = b->cap ? b->cap : 256;
    while (cap <= b->len + more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

void textbuf_add(struct textbuf *b, const char *s, size_t n)
{
    reserve(b, n);
    if (b->failed)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void textbuf_adds(struct textbuf *b, const char *s)
{
    textbuf_add(b, s, strlen(s));
}

void textbuf_add_json(struct textbuf *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);

    textbuf_add(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        size_t run = i;

        /* copy runs of plain characters in one go */
        while (run < len && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            textbuf_add(b, s + i, run - i);
            i = run;
            continue;
        }
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};

            textbuf_add(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            static const char short_form[0x20] = {
                ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
            char esc[8] = {'\\', short_form[c]};

            if (short_form[c])
                textbuf_add(b, esc, 2);
            else
                textbuf_add(b, esc, (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c));
            i++;
        } else {
            size_t n = utf8_seq_len(u + i, len - i);

            if (n) {
                textbuf_add(b, s + i, n);
                i += n;
            } else {
                textbuf_add(b, "\\ufffd", 6);
                i++;
            }
        }
    }
    textbuf_add(b, "\"", 1);
}

size_t text_join(char *out, size_t cap, const char *const *parts)
{
    size_t used = 0;

    for (; *parts; parts++) {
        size_t n = strlen(*parts);

        if (n > cap - 1 - used)
            n = cap - 1 - used;
        memcpy(out + used, *parts, n);
        used += n;
    }
    out[used] = '\0';
    return used;
}

size_t text_uint(char *out, uint64_t v)
{
    char rev[20];
    size_t n = 0;

    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}
