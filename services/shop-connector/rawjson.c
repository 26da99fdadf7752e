/* rawjson — see rawjson.h. */
#include "rawjson.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int rawjson_quote_big_ints(const char *in, size_t len, char **out, size_t *outlen)
{
    /* Worst case: every token is a quoted 16-digit integer → 18/16 of the input. */
    size_t cap = len + len / 8 + 16;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    size_t o = 0, i = 0;
    bool in_string = false;
    while (i < len) {
        char c = in[i];
        if (in_string) {
            buf[o++] = c;
            i++;
            if (c == '\\' && i < len) {
                buf[o++] = in[i++];
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == '"') {
            in_string = true;
            buf[o++] = c;
            i++;
            continue;
        }
        if (c == '-' || is_digit(c)) {
            /* One number token: sign, digits, optional fraction/exponent. */
            size_t start = i, j = i;
            if (in[j] == '-')
                j++;
            size_t digits_start = j;
            while (j < len && is_digit(in[j]))
                j++;
            size_t ndigits = j - digits_start;
            bool integer = true;
            while (j < len && (is_digit(in[j]) || in[j] == '.' || in[j] == 'e' || in[j] == 'E' ||
                               in[j] == '+' || in[j] == '-')) {
                integer = false;
                j++;
            }
            size_t toklen = j - start;
            if (integer && ndigits >= RAWJSON_QUOTE_DIGITS) {
                buf[o++] = '"';
                memcpy(buf + o, in + start, toklen);
                o += toklen;
                buf[o++] = '"';
            } else {
                memcpy(buf + o, in + start, toklen);
                o += toklen;
            }
            i = j;
            continue;
        }
        buf[o++] = c;
        i++;
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}

json_t *rawjson_parse(const char *body, size_t len, char *err, size_t errlen)
{
    char *text = NULL;
    size_t tlen = 0;
    if (rawjson_quote_big_ints(body, len, &text, &tlen) < 0) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    json_t *root = json_parse_object(text, tlen, err, errlen);
    free(text);
    return root;
}

int rawjson_id_text(const json_t *v, char *out, size_t outcap)
{
    int n;
    if (!v || json_is_null(v))
        return -ENOENT;
    if (json_is_string(v)) {
        size_t l = json_string_length(v);
        if (l + 1 > outcap)
            return -ENOSPC;
        memcpy(out, json_string_value(v), l);
        out[l] = '\0';
        return l ? 0 : -ENOENT;
    }
    if (json_is_integer(v)) {
        n = snprintf(out, outcap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return (n < 0 || (size_t)n >= outcap) ? -ENOSPC : 0;
    }
    return -EINVAL;
}

int rawjson_get_id(const json_t *obj, const char *key, char *out, size_t outcap)
{
    if (!json_is_object(obj))
        return -ENOENT;
    return rawjson_id_text(json_object_get(obj, key), out, outcap);
}

int rawjson_gid_tail(const char *gid, char *out, size_t outcap)
{
    const char *s = strrchr(gid, '/');
    s = s ? s + 1 : gid;
    size_t l = strcspn(s, "?");
    if (l + 1 > outcap)
        return -ENOSPC;
    memcpy(out, s, l);
    out[l] = '\0';
    return 0;
}

const char *rawjson_str(const json_t *obj, const char *key)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : "";
}

long long rawjson_int(const json_t *obj, const char *key, long long def)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end = NULL;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno == 0 && end != s && *end == '\0')
            return x;
    }
    return def;
}
