/* json_util — see json_util.h. */
#include "json_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
