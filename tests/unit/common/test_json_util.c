/* Unit tests for services/common/json_util.c: strict parsing with positions, typed getters
 * with field-named errors, and money in minor units without floating point. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmac.h"
#include "json_util.h"

static json_t *parse(const char *s, char *err, size_t errlen)
{
    return json_parse_object(s, strlen(s), err, errlen);
}

static void test_parse_ok(void **state)
{
    (void)state;
    char err[160] = "";
    json_t *o = parse("  {\"a\": 1, \"b\": [true, null]}\n\t ", err, sizeof(err));

    assert_non_null(o);
    assert_string_equal(err, "");
    json_decref(o);
    /* the length is honoured: trailing bytes outside len are not looked at */
    o = json_parse_object("{\"a\":1}garbage", 7, err, sizeof(err));
    assert_non_null(o);
    json_decref(o);
}

static void expect_parse_error(const char *body, const char *want)
{
    char err[200];
    json_t *o = parse(body, err, sizeof(err));

    if (o) {
        json_decref(o);
        fail_msg("accepted: %s", body);
    }
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("{\n  \"a\": 1,\n  \"b\": ,\n}", "invalid JSON at line 3, column 8: ");
    expect_parse_error("{\"sku\": \"A\", \"sku\": \"B\"}", "duplicate object key");
    expect_parse_error("{\"a\": 1} {\"b\": 2}", "invalid JSON at line 1, column ");
    expect_parse_error("{\"a\": 1}x", "end of file expected");
    expect_parse_error("[1, 2]", "expected a JSON object at the top level");
    expect_parse_error("\"str\"", "invalid JSON"); /* jansson refuses bare scalars */
    expect_parse_error("", "invalid JSON at line");
    expect_parse_error("{\"a\": \"x\\u0000y\"}", "invalid JSON");
    expect_parse_error("{\"a\": NaN}", "invalid JSON");
    expect_parse_error("{\"a\": 1,}", "invalid JSON");
    expect_parse_error("{\"a\": \"\xff\"}", "invalid JSON"); /* invalid UTF-8 */
    char err[64];
    assert_null(json_parse_object(NULL, 0, err, sizeof(err)));
}

static void test_get_string(void **state)
{
    (void)state;
    char err[160];
    json_t *o = parse("{\"s\": \"hello\", \"n\": 5, \"z\": null}", err, sizeof(err));
    const char *s = NULL;

    assert_int_equal(json_get_string(o, "s", true, &s, err, sizeof(err)), 0);
    assert_string_equal(s, "hello");
    s = "untouched";
    assert_int_equal(json_get_string(o, "missing", false, &s, err, sizeof(err)), -ENOENT);
    assert_string_equal(s, "untouched");
    assert_int_equal(json_get_string(o, "z", false, &s, err, sizeof(err)), -ENOENT);
    assert_int_equal(json_get_string(o, "missing", true, &s, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "missing: required");
    assert_int_equal(json_get_string(o, "z", true, &s, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "z: required");
    assert_int_equal(json_get_string(o, "n", true, &s, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "n: expected a string");
    assert_int_equal(json_get_string(json_object_get(o, "n"), "x", true, &s, err, sizeof(err)),
                     -EINVAL);
    json_decref(o);
}

static void test_get_int(void **state)
{
    (void)state;
    char err[160];
    json_t *o = parse("{\"q\": 3, \"neg\": -2, \"r\": 3.0, \"e\": 1e3, \"s\": \"3\", \"big\": "
                      "9223372036854775807,"
                      " \"id\": 820982911946154508}",
                      err, sizeof(err));
    int64_t v = 0;

    assert_non_null(o);
    assert_int_equal(json_get_int(o, "q", true, 0, 100, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 3);
    assert_int_equal(json_get_int(o, "neg", true, -5, 5, &v, err, sizeof(err)), 0);
    assert_int_equal(v, -2);
    assert_int_equal(json_get_int(o, "big", true, INT64_MIN, INT64_MAX, &v, err, sizeof(err)), 0);
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(json_get_int(o, "id", true, 0, INT64_MAX, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 820982911946154508LL); /* exact: no double on the way */
    assert_int_equal(json_get_int(o, "r", true, 0, 100, &v, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "r: expected an integer");
    assert_int_equal(json_get_int(o, "e", true, 0, 10000, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(json_get_int(o, "s", true, 0, 100, &v, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "s: expected an integer");
    assert_int_equal(json_get_int(o, "q", true, 4, 100, &v, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "q: 3 is out of range [4, 100]");
    assert_int_equal(json_get_int(o, "neg", true, 0, 100, &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(json_get_int(o, "nope", false, 0, 100, &v, err, sizeof(err)), -ENOENT);
    assert_int_equal(json_get_int(o, "nope", true, 0, 100, &v, err, sizeof(err)), -EINVAL);
    json_decref(o);

    /* beyond 64 bits is a parse error, never a silent double */
    expect_parse_error("{\"id\": 12345678901234567890123456}", "too big");
}

static void test_get_bool(void **state)
{
    (void)state;
    char err[160];
    json_t *o = parse("{\"t\": true, \"f\": false, \"one\": 1, \"s\": \"true\"}", err, sizeof(err));
    bool b = false;

    assert_int_equal(json_get_bool(o, "t", true, &b, err, sizeof(err)), 0);
    assert_true(b);
    assert_int_equal(json_get_bool(o, "f", true, &b, err, sizeof(err)), 0);
    assert_false(b);
    assert_int_equal(json_get_bool(o, "one", true, &b, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "one: expected true or false");
    assert_int_equal(json_get_bool(o, "s", false, &b, err, sizeof(err)), -EINVAL);
    assert_int_equal(json_get_bool(o, "x", false, &b, err, sizeof(err)), -ENOENT);
    assert_int_equal(json_get_bool(o, "x", true, &b, err, sizeof(err)), -EINVAL);
    json_decref(o);
}

static void test_money_exponent(void **state)
{
    (void)state;
    assert_int_equal(money_exponent("EUR"), 2);
    assert_int_equal(money_exponent("USD"), 2);
    assert_int_equal(money_exponent("JPY"), 0);
    assert_int_equal(money_exponent("KRW"), 0);
    assert_int_equal(money_exponent("BHD"), 3);
    assert_int_equal(money_exponent("KWD"), 3);
    assert_int_equal(money_exponent("OMR"), 3);
    assert_int_equal(money_exponent("JOD"), 3);
    assert_int_equal(money_exponent("TND"), 3);
    assert_int_equal(money_exponent(NULL), 2);
    assert_int_equal(money_exponent("XYZ"), 2);
}

static void expect_money(const char *text, const char *cur, int64_t want)
{
    char err[160];
    int64_t v = 0;

    if (money_parse(text, cur, &v, err, sizeof(err)) != 0)
        fail_msg("money_parse(\"%s\", %s): %s", text, cur ? cur : "NULL", err);
    assert_int_equal(v, want);
}

static void test_money_parse(void **state)
{
    (void)state;
    expect_money("12.34", "EUR", 1234);
    expect_money("12", "EUR", 1200);
    expect_money("12.3", "USD", 1230);
    expect_money("12.340", "USD", 1234);
    expect_money("0.05", "GBP", 5);
    expect_money("-0.05", "GBP", -5);
    expect_money("-12.34", NULL, -1234);
    expect_money("0", "EUR", 0);
    expect_money("007.10", "EUR", 710);
    expect_money("1200", "JPY", 1200);
    expect_money("1200.00", "JPY", 1200);
    expect_money("0.125", "BHD", 125);
    expect_money("1.5", "KWD", 1500);
    expect_money("92233720368547758.07", "EUR", INT64_MAX);
    expect_money("-92233720368547758.08", "EUR", INT64_MIN);
    expect_money("9223372036854775807", "JPY", INT64_MAX);
    /* 0.1 + 0.2 style values stay exact */
    expect_money("19.99", "EUR", 1999);
    expect_money("4.35", "EUR", 435);
}

static void expect_money_error(const char *text, const char *cur, const char *want)
{
    char err[160];
    int64_t v = 42;

    if (money_parse(text, cur, &v, err, sizeof(err)) != -EINVAL)
        fail_msg("money_parse accepted \"%s\" %s as %lld", text ? text : "NULL", cur ? cur : "",
                 (long long)v);
    assert_int_equal(v, 42);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static void test_money_parse_errors(void **state)
{
    (void)state;
    expect_money_error("12.345", "EUR", "more than 2 decimal places for EUR");
    expect_money_error("12.5", "JPY", "more than 0 decimal places for JPY");
    expect_money_error("0.1255", "BHD", "more than 3 decimal places");
    expect_money_error("", "EUR", "empty");
    expect_money_error(NULL, "EUR", "empty");
    static const char *const syntax[] = {"abc", "12.", ".5",  "+12",   "1e3",  "12,34", " 12",
                                         "12 ", "-",   "--1", "1.2.3", "0x10", "NaN",   "12.3a"};
    for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
        expect_money_error(syntax[i], "EUR", "not a decimal number");
    expect_money_error("92233720368547758.08", "EUR", "too large");
    expect_money_error("-92233720368547758.09", "EUR", "too large");
    expect_money_error("99999999999999999999", "JPY", "too large");
    expect_money_error("100000000000000000", "EUR", "too large"); /* *100 overflows */
}

static void expect_format(int64_t minor, const char *cur, const char *want)
{
    char buf[32];

    assert_int_equal(money_format(minor, cur, buf, sizeof(buf)), 0);
    assert_string_equal(buf, want);
    /* and it parses back to the same value */
    int64_t back;
    char err[128];
    assert_int_equal(money_parse(buf, cur, &back, err, sizeof(err)), 0);
    assert_int_equal(back, minor);
}

static void test_money_format(void **state)
{
    (void)state;
    char buf[8];

    expect_format(1234, "EUR", "12.34");
    expect_format(-5, "EUR", "-0.05");
    expect_format(0, "EUR", "0.00");
    expect_format(100, NULL, "1.00");
    expect_format(1200, "JPY", "1200");
    expect_format(-1200, "KRW", "-1200");
    expect_format(125, "BHD", "0.125");
    expect_format(INT64_MAX, "EUR", "92233720368547758.07");
    expect_format(INT64_MIN, "EUR", "-92233720368547758.08");
    assert_int_equal(money_format(123456789, "EUR", buf, sizeof(buf)), -ENOSPC);
    assert_string_equal(buf, "");
    assert_int_equal(money_format(12345, "EUR", buf, sizeof(buf)), 0); /* "123.45" fits in 8 */
}

static void test_get_money(void **state)
{
    (void)state;
    char err[160];
    json_t *o = parse("{\"price\": \"12.34\", \"minor\": 1234, \"real\": 12.34, \"bad\": "
                      "\"12.345\", \"b\": true}",
                      err, sizeof(err));
    int64_t v = 0;

    assert_int_equal(json_get_money(o, "price", true, "EUR", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 1234);
    assert_int_equal(json_get_money(o, "minor", true, "EUR", &v, err, sizeof(err)), 0);
    assert_int_equal(v, 1234);
    assert_int_equal(json_get_money(o, "real", true, "EUR", &v, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "real: expected a decimal string or integer minor units");
    assert_int_equal(json_get_money(o, "bad", true, "EUR", &v, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "bad: amount \"12.345\": more than 2 decimal places for EUR");
    assert_int_equal(json_get_money(o, "b", true, "EUR", &v, err, sizeof(err)), -EINVAL);
    assert_int_equal(json_get_money(o, "none", false, "EUR", &v, err, sizeof(err)), -ENOENT);
    json_decref(o);
}

/* json_sha256_hex hashes exactly the text json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) gives:
 * fingerprints stored before it existed must still match. */
static void expect_same_hash(const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    char want[65], got[65];

    assert_non_null(text);
    assert_int_equal(sha256_hex(text, strlen(text), want), 0);
    assert_int_equal(json_sha256_hex(v, got), 0);
    if (strcmp(want, got) != 0)
        fail_msg("fingerprint differs from json_dumps for %s", text);
    free(text);
}

static void test_sha256_matches_dumps(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{}",
        "{\"b\":1,\"a\":2,\"ab\":3,\"B\":4,\"\":5,\"a\\u00e9\":6,\"\\u20ac\":7,\"a\\u0001\":8}",
        "{\"s\":\"quote \\\" backslash \\\\ slash / \\b\\f\\n\\r\\t "
        "\\u0001\\u000b\\u001f\\u007f\"}",
        "{\"u\":\"\\u00e9 \\u20ac \\ud83d\\ude00 \\uffff\",\"k\":[]}",
        "{\"n\":[0,-1,1,9223372036854775807,-9223372036854775808,123456789]}",
        "{\"r\":[0.0,-0.0,1.0,0.1,1.5e-7,1e300,-1e-300,2.5e17,1e16,123456.789,5e-324,"
        "1.7976931348623157e308,3.0e5,1e-5,0.0001]}",
        "{\"t\":[true,false,null,{},[],[[[{\"z\":{\"y\":[1,{\"x\":null}]}}]]]]}",
        "{\"lines\":[{\"sku\":\"SKU-1\",\"quantity\":2,\"unit_price\":\"5.00\",\"tax_lines\":"
        "[{\"rate\":\"0.2\",\"amount\":\"1.00\"}]}],\"tenders\":[{\"type\":\"cash\"}]}",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char err[200];
        json_t *o = json_parse_object(texts[i], strlen(texts[i]), err, sizeof(err));

        if (!o)
            fail_msg("%s: %s", texts[i], err);
        expect_same_hash(o);
        json_decref(o);
    }
    /* many members (sorted with qsort, not the small insertion sort) */
    json_t *big = json_object();
    char key[16];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%d", (i * 7919) % 1000);
        json_object_set_new(big, key, json_integer(i));
    }
    expect_same_hash(big);
    json_decref(big);
    /* reals of every magnitude, from random bit patterns */
    uint64_t x = 88172645463325252ull;
    json_t *reals = json_array();
    for (int i = 0; i < 20000; i++) {
        double d;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(&d, &x, sizeof(d));
        if (isfinite(d))
            json_array_append_new(reals, json_real(d));
        json_array_append_new(reals, json_real((double)(int64_t)(x >> 20) / 1000.0));
    }
    expect_same_hash(reals);
    json_decref(reals);
    /* a long string crosses the 4 KB writing buffer */
    char *longs = malloc(20001);
    for (int i = 0; i < 20000; i++)
        longs[i] = "ab\"\\\ncd\xc3\xa9"[i % 9];
    longs[20000] = '\0';
    json_t *ls = json_pack("{s:s, s:[s]}", "long", longs, "x", longs);
    assert_non_null(ls);
    expect_same_hash(ls);
    json_decref(ls);
    free(longs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_get_string),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_money_exponent),
        cmocka_unit_test(test_money_parse),
        cmocka_unit_test(test_money_parse_errors),
        cmocka_unit_test(test_money_format),
        cmocka_unit_test(test_get_money),
        cmocka_unit_test(test_sha256_matches_dumps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
