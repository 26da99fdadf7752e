/* Unit tests of rules.c: parsing, exclusions, multipliers, proportional reversals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "rules.h"

static const char *good =
    "{\"tenants\": {\"acme\": {\"rule_id\": \"acme-1\", \"points_per_unit\": 1, \"unit_minor\": "
    "100,"
    " \"basis\": \"net_before_tax\", \"trigger\": \"paid\","
    " \"exclude\": {\"non_stock_codes\": [\"BAG\"], \"ledger_codes\": [\"4100\"],"
    "  \"gift_cards\": true, \"gift_card_codes\": [\"GIFTCARD\"]},"
    " \"multipliers\": [{\"from\": \"2024-11-29\", \"to\": \"2024-11-29\", \"percent\": 200},"
    "  {\"from\": \"2024-11-29T12:00:00Z\", \"to\": \"2024-11-29T13:00:00Z\", \"percent\": 300}]},"
    " \"*\": {\"points_per_unit\": 5, \"unit_minor\": 1000, \"basis\": \"net_after_tax\","
    "  \"trigger\": \"fulfilled\"}}}";

static int64_t at(const char *s)
{
    int64_t ms = 0;
    assert_int_equal(clock_parse_rfc3339(s, &ms), 0);
    return ms;
}

static void test_parse_and_points(void **state)
{
    struct rules r;
    char err[256];
    (void)state;
    assert_int_equal(rules_parse(good, strlen(good), "acme", &r, err, sizeof err), 0);
    assert_string_equal(r.rule_id, "acme-1");
    assert_false(r.after_tax);
    assert_int_equal(r.trigger, RULES_TRIGGER_PAID);
    assert_true(rules_line_excluded(&r, "BAG", NULL));
    assert_true(rules_line_excluded(&r, "bag", ""));
    assert_true(rules_line_excluded(&r, NULL, "4100"));
    assert_true(rules_line_excluded(&r, NULL, "GIFTCARD"));
    assert_false(rules_line_excluded(&r, "REPAIR", "4200"));
    assert_false(rules_line_excluded(&r, NULL, NULL));
    /* 123.45 at 1 point per 1.00 = 123; negative mirrors */
    assert_int_equal(rules_points(&r, 12345, at("2024-11-28T10:00:00Z")), 123);
    assert_int_equal(rules_points(&r, -12345, at("2024-11-28T10:00:00Z")), -123);
    /* double points all of 29 November, triple between 12:00 and 13:00 */
    assert_int_equal(rules_points(&r, 1000, at("2024-11-29T00:00:00Z")), 20);
    assert_int_equal(rules_points(&r, 1000, at("2024-11-29T23:59:59Z")), 20);
    assert_int_equal(rules_points(&r, 1000, at("2024-11-29T12:30:00Z")), 30);
    assert_int_equal(rules_points(&r, 1000, at("2024-11-30T00:00:00Z")), 10);
    rules_release(&r);
    rules_release(&r); /* twice is fine */

    assert_int_equal(rules_parse(good, strlen(good), "other", &r, err, sizeof err), 0);
    assert_true(r.after_tax);
    assert_int_equal(r.trigger, RULES_TRIGGER_FULFILLED);
    assert_int_equal(rules_points(&r, 12345, 0), 61); /* 12.345 units of 10.00 × 5 */
    rules_release(&r);
}

static void test_parse_errors(void **state)
{
    struct rules r;
    char err[256];
    (void)state;
    const char *bad_basis = "{\"points_per_unit\": 1, \"basis\": \"gross\"}";
    assert_int_equal(rules_parse(bad_basis, strlen(bad_basis), "x", &r, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "basis"));
    const char *no_ppu = "{\"basis\": \"net_before_tax\"}";
    assert_int_equal(rules_parse(no_ppu, strlen(no_ppu), "x", &r, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "points_per_unit"));
    const char *bad_date =
        "{\"points_per_unit\": 1, \"multipliers\": [{\"from\": \"2024-13-01\", \"to\": "
        "\"2024-12-01\", \"percent\": 200}]}";
    assert_int_equal(rules_parse(bad_date, strlen(bad_date), "x", &r, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "multipliers[0]"));
    const char *no_tenant = "{\"tenants\": {\"acme\": {\"points_per_unit\": 1}}}";
    assert_int_equal(rules_parse(no_tenant, strlen(no_tenant), "zeta", &r, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "zeta"));
    assert_int_equal(rules_parse("{", 1, "x", &r, err, sizeof err), -EINVAL);
    const char *bad_codes = "{\"points_per_unit\": 1, \"exclude\": {\"ledger_codes\": [1]}}";
    assert_int_equal(rules_parse(bad_codes, strlen(bad_codes), "x", &r, err, sizeof err), -EINVAL);
    assert_int_equal(rules_load_file("/nonexistent/rules.json", "x", &r, err, sizeof err), -ENOENT);
}

static void test_reversal(void **state)
{
    (void)state;
    /* 99 points for 99.99; three refunds of 33.33 take back exactly 99 */
    int64_t a = rules_reversal_points(99, 9999, 0, 3333);
    int64_t b = rules_reversal_points(99, 9999, 3333, 3333);
    int64_t c = rules_reversal_points(99, 9999, 6666, 3333);
    assert_int_equal(a + b + c, 99);
    assert_int_equal(a, 33);
    /* 10 points for 3.00; refunds of 1.00 each: 3, 3, 4 */
    assert_int_equal(rules_reversal_points(10, 300, 0, 100), 3);
    assert_int_equal(rules_reversal_points(10, 300, 100, 100), 3);
    assert_int_equal(rules_reversal_points(10, 300, 200, 100), 4);
    /* refunding more than was bought takes back no more than the award */
    assert_int_equal(rules_reversal_points(10, 300, 200, 500), 4);
    assert_int_equal(rules_reversal_points(10, 300, 300, 100), 0);
    assert_int_equal(rules_reversal_points(10, 0, 0, 100), 0);
    assert_int_equal(rules_reversal_points(10, 300, 0, -5), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_points),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_reversal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
