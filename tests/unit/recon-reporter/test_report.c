/* Unit tests of recon-reporter's pure helpers: CSV rendering of a reconciliation, dates, names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exstore.h"
#include "ingest.h"
#include "report.h"

static void test_csv_cells(void **state)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;

    (void)state;
    assert_int_equal(report_csv_cell(&buf, &len, &cap, "plain", 0), 0);
    assert_int_equal(report_csv_cell(&buf, &len, &cap, "a,b", 0), 0);
    assert_int_equal(report_csv_cell(&buf, &len, &cap, "say \"hi\"", 0), 0);
    assert_int_equal(report_csv_cell(&buf, &len, &cap, "two\nlines", 0), 0);
    assert_int_equal(report_csv_cell(&buf, &len, &cap, "", 1), 0);
    assert_string_equal(buf, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    assert_int_equal(len, strlen(buf));
    free(buf);
}

static void test_csv_from_json(void **state)
{
    json_t *doc = json_pack(
        "{s:s,s:s,s:[{s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:I,s:I,s:s},{s:s,s:s,s:s,s:n,s:I,s:I,s:s}]}]}",
        "tenant_id", "acme", "date", "2026-03-14", "groups", "store_code", "S1", "channel",
        "shopify:a,b", "figures", "metric", "tax", "key", "VAT@20%", "currency", "GBP", "amount",
        "-1.50", "quantity", (json_int_t)0, "event_count", (json_int_t)2, "trace", "/t", "metric",
        "open_exceptions", "key", "finance/takings_variance", "currency", "", "amount", "quantity",
        (json_int_t)3, "event_count", (json_int_t)0, "trace", "/x");
    char *csv;

    (void)state;
    assert_non_null(doc);
    csv = report_csv(doc);
    assert_non_null(csv);
    assert_string_equal(csv,
                        "date,tenant_id,store_code,channel,metric,key,currency,amount,quantity,"
                        "event_count\r\n"
                        "2026-03-14,acme,S1,\"shopify:a,b\",tax,VAT@20%,GBP,-1.50,0,2\r\n"
                        "2026-03-14,acme,S1,\"shopify:a,b\",open_exceptions,"
                        "finance/takings_variance,,,3,0\r\n");
    free(csv);
    json_decref(doc);
}

static void test_dates(void **state)
{
    char d[16];

    (void)state;
    assert_true(report_date_valid("2026-02-28"));
    assert_true(report_date_valid("2028-02-29"));
    assert_false(report_date_valid("2026-02-29"));
    assert_false(report_date_valid("2026-02-30"));
    assert_false(report_date_valid("2026-2-3"));
    assert_false(report_date_valid("2026-02-03x"));
    assert_false(report_date_valid(""));
    assert_false(report_date_valid(NULL));
    ingest_date(1773446400000LL, d, sizeof(d)); /* 2026-03-14T00:00:00Z */
    assert_string_equal(d, "2026-03-14");
    ingest_date(1773446399999LL, d, sizeof(d));
    assert_string_equal(d, "2026-03-13");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(exstore_type_name(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_UNKNOWN),
                        "sku_unknown");
    assert_string_equal(
        exstore_type_name(TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_SKU_ONE_SIDE_ONLY),
        "sku_one_side_only");
    assert_string_equal(exstore_type_name((Tillsync__V1__ExceptionType)999), "unspecified");
    assert_string_equal(exstore_owner_name(TILLSYNC__V1__OWNER_TEAM__OWNER_TEAM_CX), "cx");
    assert_string_equal(exstore_severity_name(TILLSYNC__V1__SEVERITY__SEVERITY_CRITICAL),
                        "critical");
    assert_string_equal(exstore_owner_name((Tillsync__V1__OwnerTeam)-1), "unspecified");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_cells),
        cmocka_unit_test(test_csv_from_json),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
