/*
 * Fuzz target over the shared parsers every handler relies on: strict JSON objects and the
 * typed field getters, money amounts, RFC 3339 times, base64 and webhook signatures. The first
 * input byte picks the parser; the rest is its input. Properties checked besides "no crash":
 * a parsed time formats and parses back to itself; a parsed amount formats and parses back;
 * a parsed object's fingerprint (json_sha256_hex) is the SHA-256 of its json_dumps text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hmac.h"
#include "json_util.h"

static void check_fingerprint(const json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    char want[65], got[65];

    if (!text || sha256_hex(text, strlen(text), want) != 0 || json_sha256_hex(o, got) != 0 ||
        strcmp(want, got) != 0)
        abort();
    free(text);
}

static void fuzz_json(const char *s, size_t n)
{
    char err[256];
    json_t *o = json_parse_object(s, n, err, sizeof(err));
    const char *str;
    int64_t i;
    bool b;

    if (!o)
        return;
    check_fingerprint(o);
    json_get_string(o, "sku", false, &str, err, sizeof(err));
    json_get_int(o, "quantity", false, -1000000, 1000000, &i, err, sizeof(err));
    json_get_bool(o, "restock", false, &b, err, sizeof(err));
    json_get_money(o, "unit_price", false, "EUR", &i, err, sizeof(err));
    json_decref(o);
}

static void fuzz_money(const char *s)
{
    static const char *const currencies[] = {"EUR", "JPY", "KWD", "XXX"};
    char err[256], text[64];

    for (size_t c = 0; c < sizeof(currencies) / sizeof(currencies[0]); c++) {
        int64_t v, back;

        if (money_parse(s, currencies[c], &v, err, sizeof(err)) != 0)
            continue;
        if (money_format(v, currencies[c], text, sizeof(text)) != 0)
            abort();
        if (money_parse(text, currencies[c], &back, err, sizeof(err)) != 0 || back != v)
            abort();
    }
}

static void fuzz_time(const char *s)
{
    char text[64];
    int64_t ms, back;

    if (clock_parse_rfc3339(s, &ms) != 0)
        return;
    if (clock_format_rfc3339(ms, text, sizeof(text)) != 0)
        return; /* out of the formattable range */
    if (clock_parse_rfc3339(text, &back) != 0 || back != ms)
        abort();
}

static void fuzz_signature(const char *s, size_t n)
{
    unsigned char out[256];
    size_t len;

    base64_decode(s, n, out, sizeof(out), &len);
    hmac_verify("secret", "old-secret", s, n, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size < 1)
        return 0;
    s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 4) {
    case 0:
        fuzz_json(s, size - 1);
        break;
    case 1:
        fuzz_money(s);
        break;
    case 2:
        fuzz_time(s);
        break;
    default:
        fuzz_signature(s, strlen(s));
        break;
    }
    free(s);
    return 0;
}
