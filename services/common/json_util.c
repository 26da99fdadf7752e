/* json_util — see json_util.h. */
#include "json_util.h"

#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmac.h"
#include "textbuf.h"
#include "utf8.h"

json_t *json_parse_object(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;

    if (!body) {
        body = "";
        len = 0;
    }
    /* json_loadb rejects data after the value unless JSON_DISABLE_EOF_CHECK is given */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "expected a JSON object at the top level");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Looks key up; returns 0 with *val set, or the absent/required outcome. */
static int field_lookup(const json_t *obj, const char *key, bool required, json_t **val, char *err,
                        size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "%s: parent is not an object", key);
        return -EINVAL;
    }
    *val = json_object_get(obj, key);
    if (*val && !json_is_null(*val))
        return 0;
    if (required) {
        snprintf(err, errlen, "%s: required", key);
        return -EINVAL;
    }
    return -ENOENT;
}

int json_get_string(const json_t *obj, const char *key, bool required, const char **out, char *err,
                    size_t errlen)
{
    json_t *v;
    int rc = field_lookup(obj, key, required, &v, err, errlen);

    if (rc)
        return rc;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: expected a string", key);
        return -EINVAL;
    }
    *out = json_string_value(v);
    return 0;
}

int json_get_int(const json_t *obj, const char *key, bool required, int64_t min, int64_t max,
                 int64_t *out, char *err, size_t errlen)
{
    json_t *v;
    int rc = field_lookup(obj, key, required, &v, err, errlen);

    if (rc)
        return rc;
    if (!json_is_integer(v)) {
        snprintf(err, errlen, "%s: expected an integer", key);
        return -EINVAL;
    }
    /* integers beyond json_int_t (long long) are already rejected by the parser */
    int64_t n = (int64_t)json_integer_value(v);
    if (n < min || n > max) {
        snprintf(err, errlen, "%s: %lld is out of range [%lld, %lld]", key, (long long)n,
                 (long long)min, (long long)max);
        return -EINVAL;
    }
    *out = n;
    return 0;
}

int json_get_bool(const json_t *obj, const char *key, bool required, bool *out, char *err,
                  size_t errlen)
{
    json_t *v;
    int rc = field_lookup(obj, key, required, &v, err, errlen);

    if (rc)
        return rc;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s: expected true or false", key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

int json_get_money(const json_t *obj, const char *key, bool required, const char *currency,
                   int64_t *out, char *err, size_t errlen)
{
    char inner[160];
    json_t *v;
    int rc = field_lookup(obj, key, required, &v, err, errlen);

    if (rc)
        return rc;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: expected a decimal string or integer minor units", key);
        return -EINVAL;
    }
    if (money_parse(json_string_value(v), currency, out, inner, sizeof(inner)) != 0) {
        snprintf(err, errlen, "%s: %s", key, inner);
        return -EINVAL;
    }
    return 0;
}

int money_exponent(const char *currency)
{
    static const char *const zero[] = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY",
                                       "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                                       "VND", "VUV", "XAF", "XOF", "XPF"};
    static const char *const three[] = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"};

    if (!currency)
        return 2;
    for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
        if (strcmp(currency, zero[i]) == 0)
            return 0;
    for (size_t i = 0; i < sizeof(three) / sizeof(three[0]); i++)
        if (strcmp(currency, three[i]) == 0)
            return 3;
    if (strcmp(currency, "CLF") == 0 || strcmp(currency, "UYW") == 0)
        return 4;
    return 2;
}

int money_parse(const char *text, const char *currency, int64_t *minor_units, char *err,
                size_t errlen)
{
    int exp = money_exponent(currency);
    const char *p = text;
    bool neg = false;
    uint64_t mag = 0;
    /* the magnitude may reach 2^63 only for a negative amount */
    const uint64_t limit = (uint64_t)INT64_MAX + 1;
    int frac = 0;

    if (!text || !*text) {
        snprintf(err, errlen, "amount \"\": empty");
        return -EINVAL;
    }
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (*p < '0' || *p > '9')
        goto bad_syntax;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (mag > (limit - (uint64_t)(*p - '0')) / 10)
            goto overflow;
        mag = mag * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            goto bad_syntax;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (frac >= exp) {
                if (*p != '0') {
                    snprintf(err, errlen, "amount \"%.40s\": more than %d decimal places for %s",
                             text, exp, currency ? currency : "the currency");
                    return -EINVAL;
                }
                continue;
            }
            if (mag > (limit - (uint64_t)(*p - '0')) / 10)
                goto overflow;
            mag = mag * 10 + (uint64_t)(*p - '0');
            frac++;
        }
    }
    if (*p != '\0')
        goto bad_syntax;
    for (; frac < exp; frac++) {
        if (mag > limit / 10)
            goto overflow;
        mag *= 10;
    }
    if (!neg && mag > (uint64_t)INT64_MAX)
        goto overflow;
    *minor_units = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;

bad_syntax:
    snprintf(err, errlen, "amount \"%.40s\": not a decimal number like \"12.34\"", text);
    return -EINVAL;
overflow:
    snprintf(err, errlen, "amount \"%.40s\": too large", text);
    return -EINVAL;
}

int money_format(int64_t minor_units, const char *currency, char *out, size_t outcap)
{
    int exp = money_exponent(currency);
    uint64_t mag = minor_units < 0 ? 0 - (uint64_t)minor_units : (uint64_t)minor_units;
    uint64_t scale = 1;
    int n;

    for (int i = 0; i < exp; i++)
        scale *= 10;
    if (exp == 0)
        n = snprintf(out, outcap, "%s%llu", minor_units < 0 ? "-" : "", (unsigned long long)mag);
    else
        n = snprintf(out, outcap, "%s%llu.%0*llu", minor_units < 0 ? "-" : "",
                     (unsigned long long)(mag / scale), exp, (unsigned long long)(mag % scale));
    if (n < 0 || (size_t)n >= outcap) {
        if (outcap > 0)
            out[0] = '\0';
        return -ENOSPC;
    }
    return 0;
}

/* ---- the fingerprint: jansson's compact, key-sorted dump, hashed as it is written ---------- */

struct canon {
    EVP_MD_CTX *md;
    size_t n;
    bool failed;
    unsigned char buf[4096];
};

static void canon_flush(struct canon *c)
{
    if (c->n && !EVP_DigestUpdate(c->md, c->buf, c->n))
        c->failed = true;
    c->n = 0;
}

static void canon_put(struct canon *c, const void *p, size_t n)
{
    if (n > sizeof(c->buf) - c->n) {
        canon_flush(c);
        if (n > sizeof(c->buf)) {
            if (!EVP_DigestUpdate(c->md, p, n))
                c->failed = true;
            return;
        }
    }
    memcpy(c->buf + c->n, p, n);
    c->n += n;
}

/* A string as jansson dumps it without JSON_ENSURE_ASCII / JSON_ESCAPE_SLASH: '"', '\' and
 * control characters escaped (\b \f \n \r \t, else \u00XX in capitals), the rest as is. */
static void canon_string(struct canon *c, const char *str, size_t len)
{
    static const char hexd[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)str;
    size_t run = 0;

    canon_put(c, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned char ch = s[i];
        char esc[6];
        size_t elen = 2;

        if (ch >= 0x80) {
            size_t n = utf8_seq_len(s + i, len - i);

            if (!n) {
                c->failed = true;
                return;
            }
            i += n;
            run += n;
            continue;
        }
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            i++;
            run++;
            continue;
        }
        canon_put(c, s + i - run, run);
        run = 0;
        esc[0] = '\\';
        if (ch == '"' || ch == '\\') {
            esc[1] = (char)ch;
        } else if (ch >= '\b' && ch <= '\r' && ch != '\v') {
            esc[1] = "btn?fr"[ch - '\b']; /* \b \t \n (not \v) \f \r */
        } else {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hexd[ch >> 4];
            esc[5] = hexd[ch & 15];
            elen = 6;
        }
        canon_put(c, esc, elen);
        i++;
    }
    canon_put(c, s + len - run, run);
    canon_put(c, "\"", 1);
}

/* A real as jansson's jsonp_dtostr writes it: %.17g, ".0" added when there is neither '.'
 * nor 'e', and the exponent without '+' or leading zeros. */
static void canon_real(struct canon *c, double d)
{
    char b[64], *e;
    int n = snprintf(b, sizeof(b) - 3, "%.17g", d);

    if (n < 0 || (size_t)n >= sizeof(b) - 3 || !isfinite(d)) {
        c->failed = true;
        return;
    }
    if (!strchr(b, '.') && !strchr(b, 'e')) {
        memcpy(b + n, ".0", 3);
        n += 2;
    }
    e = strchr(b, 'e');
    if (e) {
        char *from = e + 1, *to = e + 1;

        if (*from == '-')
            from = to = e + 2;
        else if (*from == '+')
            from++;
        while (*from == '0' && from[1])
            from++;
        memmove(to, from, strlen(from) + 1);
        n = (int)strlen(b);
    }
    canon_put(c, b, (size_t)n);
}

static void canon_int(struct canon *c, json_int_t v)
{
    char b[24];

    if (v < 0)
        canon_put(c, "-", 1);
    canon_put(c, b, text_uint(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v));
}

struct canon_member {
    const char *key;
    size_t len;
    json_t *value;
};

static int member_cmp(const void *a, const void *b)
{
    const struct canon_member *x = a, *y = b;
    int r = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);

    return r ? r : (x->len > y->len) - (x->len < y->len);
}

static void canon_value(struct canon *c, const json_t *v);

static void canon_object(struct canon *c, const json_t *v)
{
    struct canon_member small[32], *m = small;
    size_t n = json_object_size(v), k = 0;
    void *it;

    if (n > sizeof(small) / sizeof(small[0])) {
        m = malloc(n * sizeof(*m));
        if (!m)
            abort(); /* OOM policy: abort (STYLE.md) */
    }
    for (it = json_object_iter((json_t *)v); it && k < n;
         it = json_object_iter_next((json_t *)v, it), k++) {
        m[k].key = json_object_iter_key(it);
        m[k].len = json_object_iter_key_len(it);
        m[k].value = json_object_iter_value(it);
    }
    if (k <= 8) { /* the common case: a few members, insertion sort */
        for (size_t i = 1; i < k; i++)
            for (size_t j = i; j > 0 && member_cmp(&m[j - 1], &m[j]) > 0; j--) {
                struct canon_member t = m[j];

                m[j] = m[j - 1];
                m[j - 1] = t;
            }
    } else {
        qsort(m, k, sizeof(*m), member_cmp);
    }
    canon_put(c, "{", 1);
    for (size_t i = 0; i < k && !c->failed; i++) {
        if (i)
            canon_put(c, ",", 1);
        canon_string(c, m[i].key, m[i].len);
        canon_put(c, ":", 1);
        canon_value(c, m[i].value);
    }
    canon_put(c, "}", 1);
    if (m != small)
        free(m);
}

static void canon_value(struct canon *c, const json_t *v)
{
    if (c->failed)
        return;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        canon_object(c, v);
        break;
    case JSON_ARRAY:
        canon_put(c, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && !c->failed; i++) {
            if (i)
                canon_put(c, ",", 1);
            canon_value(c, json_array_get(v, i));
        }
        canon_put(c, "]", 1);
        break;
    case JSON_STRING:
        canon_string(c, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        canon_int(c, json_integer_value(v));
        break;
    case JSON_REAL:
        canon_real(c, json_real_value(v));
        break;
    case JSON_TRUE:
        canon_put(c, "true", 4);
        break;
    case JSON_FALSE:
        canon_put(c, "false", 5);
        break;
    case JSON_NULL:
        canon_put(c, "null", 4);
        break;
    }
}

int json_sha256_hex(const json_t *v, char out[65])
{
    struct canon c = {.md = EVP_MD_CTX_new()};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -EIO;

    if (!c.md)
        return -EIO;
    if (v && EVP_DigestInit_ex(c.md, EVP_sha256(), NULL)) {
        canon_value(&c, v);
        canon_flush(&c);
        if (!c.failed && EVP_DigestFinal_ex(c.md, md, &mdlen) && mdlen == 32) {
            hex_encode(md, 32, out);
            rc = 0;
        }
    }
    EVP_MD_CTX_free(c.md);
    return rc;
}
