/* Unit tests of recon-reporter's payout CSV parser (services/recon-reporter/payout.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "payout.h"

static int parse(struct payout_file *f, const char *csv, char *err, size_t errlen)
{
    return payout_parse(f, csv, strlen(csv), err, errlen);
}

static void test_valid_file(void **state)
{
    /* BOM, CRLF, reordered and extra columns, a quoted order id with a comma and a quote, a
     * blank line, a zero-decimal currency */
    const char *csv = "\xEF\xBB\xBF"
                      "currency,amount,kind,order_id,note,payout_id\r\n"
                      "GBP,60.00,charge,O1,,P1\r\n"
                      "GBP,20,refund,\"O,2 \"\"x\"\"\",\"multi\nline\",P1\r\n"
                      "\r\n"
                      "JPY,1200,fee,O3,,P2\n";
    struct payout_file f;
    char err[256] = "";

    (void)state;
    assert_int_equal(parse(&f, csv, err, sizeof(err)), 0);
    assert_int_equal(f.n, 3);
    assert_string_equal(f.lines[0].payout_id, "P1");
    assert_string_equal(f.lines[0].order_id, "O1");
    assert_string_equal(f.lines[0].kind, "charge");
    assert_int_equal(f.lines[0].amount, 6000);
    assert_string_equal(f.lines[1].order_id, "O,2 \"x\"");
    assert_int_equal(f.lines[1].amount, 2000);
    assert_string_equal(f.lines[2].currency, "JPY");
    assert_int_equal(f.lines[2].amount, 1200);
    payout_file_release(&f);
}

static void expect_error(const char *csv, const char *want)
{
    struct payout_file f;
    char err[256] = "";

    assert_int_equal(parse(&f, csv, err, sizeof(err)), -EINVAL);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    payout_file_release(&f);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("", "line 1: empty file");
    expect_error("payout_id,order_id,kind,amount\nP1,O1,charge,1.00\n", "column currency missing");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,O1,bonus,1.00,GBP\n",
                 "line 2: kind \"bonus\"");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,O1,charge,1.005,GBP\n", "line 2");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,O1,charge,1e3,GBP\n", "line 2");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,,charge,1.00,GBP\n",
                 "line 2: order_id is empty");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,O1,charge\n", "line 2: amount");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,O1,charge,1.00,POUND\n",
                 "line 2: currency");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,\"O1,charge,1.00,GBP\n",
                 "line 2: unterminated quote");
    expect_error("payout_id,order_id,kind,amount,currency\nP1,O1,charge,1.00,GBP\n"
                 "P1,O2,charge,x,GBP\n",
                 "line 3");
}

static void test_release_twice(void **state)
{
    struct payout_file f;
    char err[64];

    (void)state;
    assert_int_equal(parse(&f, "payout_id,order_id,kind,amount,currency\n", err, sizeof(err)), 0);
    assert_int_equal(f.n, 0);
    payout_file_release(&f);
    payout_file_release(&f);
    payout_file_release(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_release_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
