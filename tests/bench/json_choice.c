/* json_choice — the measurement behind docs/decisions/json-library.md.
 *
 * Parses and walks a realistic till transaction (20 lines with tax and discounts, ~5 KB)
 * N times with jansson, json-c and cJSON, prints parses/s for each, then feeds each
 * library probe documents (duplicate keys, trailing data, a syntax error on line 3, an id
 * beyond 2^53, invalid UTF-8, \u0000) and prints what it does with them.
 *
 * Usage: tests/bench/json_choice [N]   (N parses per round, default 5000; best of 3 rounds)
 * Last line: BENCH json_choice value=<jansson parses/s> unit=parses_per_s
 */
#include <cjson/cJSON.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support/json_choice.h"

/* ---- the document */

/* Builds the transaction into buf; returns its length. */
static size_t make_transaction(char *buf, size_t cap)
{
    static const char *const desc[] = {"Organic whole milk 1L", "Sourdough loaf \\\"rustic\\\"",
                                       "Caf\xc3\xa9 cr\xc3\xa8me 250g", "Carrier bag",
                                       "AA batteries (4)"};
    size_t n = 0;

#define PUT(...) (n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__))
    PUT("{\n  \"transaction_id\": \"S042-T03-20261124-000187\",\n  \"type\": \"sale\",\n"
        "  \"store_code\": \"S042\",\n  \"till_id\": \"T03\",\n  \"operator_id\": \"op-1187\",\n"
        "  \"occurred_at\": \"2026-11-24T22:00:00.123+01:00\",\n  \"currency\": \"EUR\",\n"
        "  \"customer\": {\"platform_id\": 820982911946154509, \"loyalty_card\": "
        "\"LC-000493021\"},\n"
        "  \"lines\": [\n");
    for (int i = 0; i < 20; i++) {
        PUT("    {\"line_id\": \"L%02d\", \"sku\": \"SKU-%06d\", \"barcode\": \"40%011d\", "
            "\"description\": \"%s\", \"quantity\": %d, \"unit_price\": \"%d.%02d\", "
            "\"non_stock\": %s, \"tax\": {\"code\": \"VAT%d\", \"rate_bp\": %d, \"amount\": "
            "\"%d.%02d\"}, "
            "\"discounts\": [",
            i + 1, 100000 + i * 37, 12345678 + i, desc[i % 5], 1 + i % 4, 1 + i % 30,
            (i * 17) % 100, i % 5 == 3 ? "true" : "false", i % 3 == 0 ? 7 : 19,
            i % 3 == 0 ? 700 : 1900, i % 7, (i * 13) % 100);
        for (int k = 0; k < i % 3; k++)
            PUT("%s{\"code\": \"PROMO%d\", \"amount\": \"0.%02d\"}", k ? ", " : "", k + 1,
                10 + k * 15);
        PUT("]}%s\n", i < 19 ? "," : "");
    }
    PUT("  ],\n  \"payments\": [{\"method\": \"card\", \"amount\": \"187.45\", \"reference\": "
        "\"PSP-88213\"},"
        " {\"method\": \"cash\", \"amount\": \"20.00\"}],\n"
        "  \"totals\": {\"gross\": \"207.45\", \"discount\": \"3.05\", \"tax\": \"31.20\", "
        "\"net\": \"176.25\"}\n}\n");
#undef PUT
    return n < cap ? n : 0;
}

/* ---- jansson */

static size_t jn_len(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_length(v) : 0;
}

static long long jn_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static int jansson_parse_walk(const char *text, size_t len, struct txn_walk *w)
{
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err), *l;
    size_t i;

    memset(w, 0, sizeof(*w));
    if (!root)
        return -1;
    w->text_bytes += jn_len(root, "transaction_id") + jn_len(root, "store_code") +
                     jn_len(root, "till_id") + jn_len(root, "occurred_at") +
                     jn_len(root, "currency");
    w->id_low = jn_int(json_object_get(root, "customer"), "platform_id") % 1000000;
    json_array_foreach(json_object_get(root, "lines"), i, l)
    {
        json_t *tax = json_object_get(l, "tax"), *d;
        size_t k;
        w->lines++;
        w->quantity += jn_int(l, "quantity");
        w->text_bytes += jn_len(l, "line_id") + jn_len(l, "sku") + jn_len(l, "barcode") +
                         jn_len(l, "description") + jn_len(l, "unit_price");
        w->tax_bp += jn_int(tax, "rate_bp");
        w->text_bytes += jn_len(tax, "amount");
        json_array_foreach(json_object_get(l, "discounts"), k, d)
        {
            w->discounts++;
            w->text_bytes += jn_len(d, "code") + jn_len(d, "amount");
        }
    }
    json_decref(root);
    return 0;
}

static void jansson_probe(const char *text, size_t len, struct probe_result *r)
{
    json_error_t err;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);

    r->accepted = o != NULL;
    if (o) {
        char *dump = json_dumps(o, JSON_COMPACT);
        snprintf(r->detail, sizeof(r->detail), "accepted: %s", dump ? dump : "?");
        free(dump);
    } else {
        snprintf(r->detail, sizeof(r->detail),
                 "rejected: \"%.80s\" at line %d, column %d (byte %d)", err.text, err.line,
                 err.column, err.position);
    }
    json_decref(o);
}

static bool jansson_read_id(const char *text, size_t len, long long *id)
{
    json_t *o = json_loadb(text, len, 0, NULL), *v = json_object_get(o, "id");
    bool ok = json_is_integer(v);

    if (ok)
        *id = (long long)json_integer_value(v);
    json_decref(o);
    return ok;
}

/* ---- cJSON */

static size_t cj_len(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? strlen(v->valuestring) : 0;
}

/* cJSON keeps numbers as double (valueint is an int, saturated): this is all it offers */
static long long cj_int(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

static int cjson_parse_walk(const char *text, size_t len, struct txn_walk *w)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    const cJSON *l, *d;

    memset(w, 0, sizeof(*w));
    if (!root)
        return -1;
    w->text_bytes += cj_len(root, "transaction_id") + cj_len(root, "store_code") +
                     cj_len(root, "till_id") + cj_len(root, "occurred_at") +
                     cj_len(root, "currency");
    w->id_low = cj_int(cJSON_GetObjectItemCaseSensitive(root, "customer"), "platform_id") % 1000000;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(root, "lines"))
    {
        const cJSON *tax = cJSON_GetObjectItemCaseSensitive(l, "tax");
        w->lines++;
        w->quantity += cj_int(l, "quantity");
        w->text_bytes += cj_len(l, "line_id") + cj_len(l, "sku") + cj_len(l, "barcode") +
                         cj_len(l, "description") + cj_len(l, "unit_price");
        w->tax_bp += cj_int(tax, "rate_bp");
        w->text_bytes += cj_len(tax, "amount");
        cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(l, "discounts"))
        {
            w->discounts++;
            w->text_bytes += cj_len(d, "code") + cj_len(d, "amount");
        }
    }
    cJSON_Delete(root);
    return 0;
}

static void cjson_probe(const char *text, size_t len, struct probe_result *r)
{
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);

    /* require_null_terminated does not apply to a length-bounded buffer: check the end */
    while (o && end && end < text + len &&
           (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r'))
        end++;
    if (o && end == text + len) {
        char *dump = cJSON_PrintUnformatted(o);
        r->accepted = true;
        snprintf(r->detail, sizeof(r->detail), "accepted: %s", dump ? dump : "?");
        free(dump);
    } else if (o) {
        r->accepted = false;
        snprintf(r->detail, sizeof(r->detail),
                 "rejected only by our end check: stopped at byte %td", end - text);
    } else {
        const char *at = cJSON_GetErrorPtr();
        r->accepted = false;
        snprintf(r->detail, sizeof(r->detail), "rejected: no message, error pointer at byte %td",
                 at ? at - text : -1);
    }
    cJSON_Delete(o);
}

static bool cjson_read_id(const char *text, size_t len, long long *id)
{
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
    bool ok = cJSON_IsNumber(v);

    if (ok)
        *id = (long long)v->valuedouble;
    cJSON_Delete(o);
    return ok;
}

/* ---- driver */

struct lib {
    const char *name;
    int (*parse_walk)(const char *, size_t, struct txn_walk *);
    void (*probe)(const char *, size_t, struct probe_result *);
    bool (*read_id)(const char *, size_t, long long *);
    double rate;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static char doc[16384];
    struct lib libs[] = {
        {"jansson " JANSSON_VERSION, jansson_parse_walk, jansson_probe, jansson_read_id, 0},
        {"json-c", jsonc_parse_walk, jsonc_probe, jsonc_read_id, 0},
        {"cJSON", cjson_parse_walk, cjson_probe, cjson_read_id, 0},
    };
    const size_t nlibs = sizeof(libs) / sizeof(libs[0]);
    long n = 5000;
    struct txn_walk ref, w;
    int rc = 0;

    if (argc > 1) {
        char *end;
        n = strtol(argv[1], &end, 10);
        if (*end || n < 1) {
            fprintf(stderr, "usage: %s [parses-per-round]\n", argv[0]);
            return 2;
        }
    }
    size_t len = make_transaction(doc, sizeof(doc));
    if (len == 0 || jansson_parse_walk(doc, len, &ref) != 0) {
        fprintf(stderr, "json_choice: the generated document is broken\n");
        return 1;
    }
    printf("document: %zu bytes, %ld lines, %lld discounts; %ld parse+walk per round, best of 3 "
           "rounds\n",
           len, ref.lines, ref.discounts, n);
    if (ref.id_low != 154509)
        printf("note: jansson read platform_id inexactly (%lld)\n", ref.id_low);

    for (size_t li = 0; li < nlibs; li++) {
        struct lib *lib = &libs[li];
        if (lib->parse_walk(doc, len, &w) != 0) {
            printf("%-14s FAILED to parse the document\n", lib->name);
            rc = 1;
            continue;
        }
        bool same = w.lines == ref.lines && w.quantity == ref.quantity && w.tax_bp == ref.tax_bp &&
                    w.discounts == ref.discounts && w.text_bytes == ref.text_bytes;
        if (!same) {
            printf("%-14s walked a different document\n", lib->name);
            rc = 1;
        }
        for (int i = 0; i < n / 10; i++) /* warm-up */
            lib->parse_walk(doc, len, &w);
        for (int round = 0; round < 3; round++) {
            double t0 = now_s();
            for (long i = 0; i < n; i++)
                lib->parse_walk(doc, len, &w);
            double rate = (double)n / (now_s() - t0);
            if (rate > lib->rate)
                lib->rate = rate;
        }
        printf("%-14s %10.0f parses/s  %7.1f MB/s  (platform_id read as ...%06lld%s)\n", lib->name,
               lib->rate, lib->rate * (double)len / 1e6, w.id_low,
               w.id_low == 154509 ? ", exact" : ", WRONG");
    }

    static const struct {
        const char *what, *doc;
    } probes[] = {
        {"duplicate key", "{\"sku\": \"A\", \"sku\": \"B\"}"},
        {"trailing data", "{\"a\": 1} {\"b\": 2}"},
        {"syntax error on line 3", "{\n  \"a\": 1,\n  \"b\": ,\n  \"c\": 3\n}"},
        {"invalid UTF-8", "{\"s\": \"\xff\xfe\"}"},
        {"\\u0000 in a string", "{\"s\": \"a\\u0000b\"}"},
        {"trailing comma", "{\"a\": [1, 2,]}"},
    };
    printf("\nstrictness and error reporting:\n");
    for (size_t p = 0; p < sizeof(probes) / sizeof(probes[0]); p++) {
        printf("  %s: %s\n", probes[p].what,
               probes[p].doc[0] == '{' && strchr(probes[p].doc, '\n') ? "(multi-line document)"
                                                                      : probes[p].doc);
        for (size_t li = 0; li < nlibs; li++) {
            struct probe_result r = {0};
            libs[li].probe(probes[p].doc, strlen(probes[p].doc), &r);
            printf("    %-14s %s\n", libs[li].name, r.detail);
        }
    }
    const char *big = "{\"id\": 820982911946154509}";
    printf("  64-bit id 820982911946154509 (> 2^53, a Shopify order id):\n");
    for (size_t li = 0; li < nlibs; li++) {
        long long id = 0;
        bool ok = libs[li].read_id(big, strlen(big), &id);
        printf("    %-14s %s %lld%s\n", libs[li].name, ok ? "read" : "could not read", id,
               ok && id == 820982911946154509LL ? " (exact)" : " (WRONG)");
    }
    jsonc_cleanup();

    printf("BENCH json_choice value=%.0f unit=parses_per_s\n", libs[0].rate);
    return rc;
}
