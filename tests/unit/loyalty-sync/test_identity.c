/* Unit tests of identity.c: email and phone normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "identity.h"

static void test_email(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(identity_email_normalise("  Frank@Example.COM \t", out, sizeof out), 0);
    assert_string_equal(out, "frank@example.com");
    assert_int_equal(identity_email_normalise("frank@example.com", out, sizeof out), 0);
    assert_string_equal(out, "frank@example.com");
    assert_int_equal(identity_email_normalise("", out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise("   ", out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise(NULL, out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise("no-at-sign", out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise("a@b@c", out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise("@example.com", out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise("a b@example.com", out, sizeof out), -EINVAL);
    assert_int_equal(identity_email_normalise("frank@example.com", out, 5), -ENOSPC);
}

static void test_phone_three_ways(void **state)
{
    char a[32], b[32], c[32], d[32];
    (void)state;
    assert_int_equal(identity_phone_e164("+44 7700 900123", "44", a, sizeof a), 0);
    assert_int_equal(identity_phone_e164("07700 900123", "44", b, sizeof b), 0);
    assert_int_equal(identity_phone_e164("0044 (0)7700-900.123", "44", c, sizeof c), 0);
    assert_int_equal(identity_phone_e164("447700900123", "44", d, sizeof d), 0);
    assert_string_equal(a, "+447700900123");
    assert_string_equal(b, a);
    assert_string_equal(c, a);
    assert_string_equal(d, a);
    assert_int_equal(identity_phone_e164("+44 (0)7700 900123", "1", a, sizeof a), 0);
    assert_string_equal(a, "+447700900123");
    /* a national number without a trunk zero takes the default code */
    assert_int_equal(identity_phone_e164("(415) 555-0100", "1", a, sizeof a), 0);
    assert_string_equal(a, "+14155550100");
}

static void test_phone_bad(void **state)
{
    char out[32];
    (void)state;
    assert_int_equal(identity_phone_e164("07700 900123", NULL, out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("07700 900123", "0x", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("call me", "44", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("+44 12", "44", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("+1234567890123456", "44", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("++447700900123", "44", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("", "44", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164(NULL, "44", out, sizeof out), -EINVAL);
    assert_int_equal(identity_phone_e164("+447700900123", "44", out, 6), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_phone_three_ways),
        cmocka_unit_test(test_phone_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
