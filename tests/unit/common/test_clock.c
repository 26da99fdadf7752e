/* Unit tests for services/common/clock.c: RFC 3339 formatting and strict parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static void test_now_and_mono(void **state)
{
    (void)state;
    int64_t now = clock_now_ms(), sys = (int64_t)time(NULL) * 1000;

    assert_true(now > 1700000000000LL);
    assert_true(now - sys < 2000 && sys - now < 2000);
    int64_t a = clock_mono_ms();
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    int64_t b = clock_mono_ms();
    assert_true(b - a >= 19);
}

static void test_format(void **state)
{
    (void)state;
    char buf[32];

    assert_int_equal(clock_format_rfc3339(1795557600123LL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2026-11-24T22:00:00.123Z");
    assert_int_equal(clock_format_rfc3339(0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    assert_int_equal(clock_format_rfc3339(1709251199999LL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "2024-02-29T23:59:59.999Z");
    /* before the epoch: floor, not truncation */
    assert_int_equal(clock_format_rfc3339(-1, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    assert_int_equal(clock_format_rfc3339(253402300799999LL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
}

static void test_format_errors(void **state)
{
    (void)state;
    char buf[32];

    assert_int_equal(clock_format_rfc3339(0, buf, 24), -ENOSPC);
    assert_int_equal(clock_format_rfc3339(0, buf, 25), 0);
    assert_int_equal(clock_format_rfc3339(253402300800000LL, buf, sizeof(buf)),
                     -EINVAL); /* year 10000 */
    assert_int_equal(clock_format_rfc3339(INT64_MIN, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(clock_format_rfc3339(INT64_MAX, buf, sizeof(buf)), -EINVAL);
}

static void test_parse(void **state)
{
    (void)state;
    int64_t ms = 0;

    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00.123Z", &ms), 0);
    assert_int_equal(ms, 1795557600123LL);
    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00Z", &ms), 0);
    assert_int_equal(ms, 1795557600000LL);
    /* offsets: same instant */
    assert_int_equal(clock_parse_rfc3339("2026-11-25T00:00:00.123+02:00", &ms), 0);
    assert_int_equal(ms, 1795557600123LL);
    assert_int_equal(clock_parse_rfc3339("2026-11-24T16:30:00-05:30", &ms), 0);
    assert_int_equal(ms, 1795557600000LL);
    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00-00:00", &ms), 0);
    assert_int_equal(ms, 1795557600000LL);
    /* fraction: 1, 2 and many digits; beyond ms truncated */
    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00.1Z", &ms), 0);
    assert_int_equal(ms, 1795557600100LL);
    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00.12Z", &ms), 0);
    assert_int_equal(ms, 1795557600120LL);
    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00.123456789Z", &ms), 0);
    assert_int_equal(ms, 1795557600123LL);
    /* lowercase t and z */
    assert_int_equal(clock_parse_rfc3339("2026-11-24t22:00:00z", &ms), 0);
    assert_int_equal(ms, 1795557600000LL);
    /* leap day, before the epoch, leap second */
    assert_int_equal(clock_parse_rfc3339("2024-02-29T23:59:59Z", &ms), 0);
    assert_int_equal(ms, 1709251199000LL);
    assert_int_equal(clock_parse_rfc3339("1969-12-31T23:59:59.999Z", &ms), 0);
    assert_int_equal(ms, -1);
    assert_int_equal(clock_parse_rfc3339("2016-12-31T23:59:60Z", &ms), 0);
    int64_t next;
    assert_int_equal(clock_parse_rfc3339("2017-01-01T00:00:00Z", &next), 0);
    assert_int_equal(ms, next);
}

static void test_parse_roundtrip(void **state)
{
    (void)state;
    char buf[32];
    int64_t back;

    for (int64_t ms = -86400000LL * 800; ms < 4102444800000LL; ms += 86400000LL * 37 + 3600123) {
        assert_int_equal(clock_format_rfc3339(ms, buf, sizeof(buf)), 0);
        assert_int_equal(clock_parse_rfc3339(buf, &back), 0);
        assert_int_equal(back, ms);
    }
}

static void test_parse_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-11-24",                /* date only */
        "2026-11-24T22:00:00",       /* no offset */
        "2026-11-24 22:00:00Z",      /* space separator */
        "2026-11-24T22:00Z",         /* no seconds */
        "2026-11-24T22:00:00.Z",     /* empty fraction */
        "2026-11-24T22:00:00,123Z",  /* comma */
        "2026-11-24T22:00:00+0200",  /* offset without colon */
        "2026-11-24T22:00:00+02",    /* short offset */
        "2026-11-24T22:00:00+24:00", /* offset hour */
        "2026-11-24T22:00:00+02:60", /* offset minute */
        "2026-11-24T22:00:00ZZ",     /* trailing */
        "2026-11-24T22:00:00Z ",     /* trailing space */
        " 2026-11-24T22:00:00Z",     /* leading space */
        "2026-13-01T00:00:00Z",      /* month */
        "2026-00-01T00:00:00Z",      /* month 0 */
        "2026-02-29T00:00:00Z",      /* not a leap year */
        "2100-02-29T00:00:00Z",      /* not a leap year (century) */
        "2026-04-31T00:00:00Z",      /* April has 30 */
        "2026-11-00T00:00:00Z",      /* day 0 */
        "2026-11-24T24:00:00Z",      /* hour */
        "2026-11-24T22:60:00Z",      /* minute */
        "2026-11-24T22:00:61Z",      /* second */
        "26-11-24T22:00:00Z",        /* 2-digit year */
        "2026-1-24T22:00:00Z",       /* 1-digit month */
        "+2026-11-24T22:00:00Z",
        "2026-11-24T22:00:00.12a3Z",
        "1795557600123",
    };
    int64_t ms = 42;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (clock_parse_rfc3339(bad[i], &ms) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(clock_parse_rfc3339(NULL, &ms), -EINVAL);
    assert_int_equal(clock_parse_rfc3339("2026-11-24T22:00:00Z", NULL), -EINVAL);
    /* 2000-02-29 exists (divisible by 400) */
    assert_int_equal(clock_parse_rfc3339("2000-02-29T00:00:00Z", &ms), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_now_and_mono),    cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_errors),   cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_roundtrip), cmocka_unit_test(test_parse_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
