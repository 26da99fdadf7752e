/*
 * Unit tests of textbuf: text appended as given, C strings written as JSON strings that parse
 * back to the same text (or, for bytes that are not UTF-8, to U+FFFD).
 */
#include <setjmp.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "textbuf.h"

/* s written as a JSON string, parsed back by jansson. */
static char *round_trip(const char *s, char *text, size_t textlen)
{
    struct textbuf b = {0};
    json_t *v;
    char *back;

    textbuf_add_json(&b, s);
    assert_false(b.failed);
    assert_true(b.len < textlen);
    memcpy(text, b.p, b.len);
    text[b.len] = '\0';
    free(b.p);
    v = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    back = strdup(json_string_value(v));
    json_decref(v);
    return back;
}

static void test_add(void **state)
{
    struct textbuf b = {0};

    (void)state;
    for (int i = 0; i < 1000; i++)
        textbuf_adds(&b, "0123456789");
    textbuf_add(&b, "xyz", 2);
    assert_false(b.failed);
    assert_int_equal(b.len, 10002);
    assert_memory_equal(b.p + 9990, "0123456789xy", 12);
    free(b.p);
}

static void test_json_strings(void **state)
{
    static const char *const same[] = {
        "", "plain", "quote \" and backslash \\", "\x01\x1f\b\f\n\r\t", "é€😀 and /",
    };
    char text[256], *back;

    (void)state;
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        back = round_trip(same[i], text, sizeof(text));
        assert_string_equal(back, same[i]);
        free(back);
    }
    back = round_trip("\n\"", text, sizeof(text));
    assert_string_equal(text, "\"\\n\\\"\"");
    free(back);
    /* a character cut short, a stray continuation byte, an overlong form */
    back = round_trip("ab\xe2\x82", text, sizeof(text));
    assert_string_equal(back, "ab\xef\xbf\xbd\xef\xbf\xbd");
    free(back);
    back = round_trip("\x80x\xc0\xaf", text, sizeof(text));
    assert_string_equal(back, "\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd");
    free(back);
}

/* text_join gives what snprintf("%s%s…") gives, cut short the same way. */
static void test_join(void **state)
{
    const char *const parts[] = {"sku_unknown/", "acme", "/", "SKU-1", NULL};
    const char *const none[] = {NULL};
    char out[32], want[32];

    (void)state;
    assert_int_equal(text_join(out, sizeof(out), parts), 22);
    assert_string_equal(out, "sku_unknown/acme/SKU-1");
    for (size_t cap = 1; cap <= 24; cap++) {
        size_t n = text_join(out, cap, parts);

        snprintf(want, cap, "%s%s%s%s", parts[0], parts[1], parts[2], parts[3]);
        assert_string_equal(out, want);
        assert_int_equal(n, strlen(want));
    }
    assert_int_equal(text_join(out, sizeof(out), none), 0);
    assert_string_equal(out, "");
}

/* text_uint writes what snprintf("%" PRIu64) does. */
static void test_uint(void **state)
{
    static const uint64_t values[] = {0,         1, 9, 10, 99, 100, 1234567890, UINT64_MAX / 10,
                                      UINT64_MAX};
    char out[21], want[24];

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        size_t n = text_uint(out, values[i]);

        snprintf(want, sizeof(want), "%" PRIu64, values[i]);
        assert_string_equal(out, want);
        assert_int_equal(n, strlen(want));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_join),
        cmocka_unit_test(test_uint),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
