/* Unit tests of events: the owner table of DESIGN.md, envelope filling, refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "events.h"

#define TYPE(t) TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_##t
#define OWN(o)  TILLSYNC__V1__OWNER_TEAM__OWNER_TEAM_##o

static void test_owners_follow_design(void **state)
{
    (void)state;
    /* DESIGN.md "Exceptions (owners in brackets)" */
    assert_int_equal(exception_owner(TYPE(SKU_UNKNOWN)), OWN(ECOMMERCE));
    assert_int_equal(exception_owner(TYPE(DUPLICATE_SKU)), OWN(ECOMMERCE));
    assert_int_equal(exception_owner(TYPE(TAX_MAPPING_FAILED)), OWN(FINANCE));
    assert_int_equal(exception_owner(TYPE(DISCOUNT_MAPPING_FAILED)), OWN(FINANCE));
    assert_int_equal(exception_owner(TYPE(NON_STOCK_UNMAPPED)), OWN(FINANCE));
    assert_int_equal(exception_owner(TYPE(PAYLOAD_REJECTED)), OWN(ECOMMERCE));
    assert_int_equal(exception_owner(TYPE(DEAD_LETTERED)), OWN(ECOMMERCE));
    assert_int_equal(exception_owner(TYPE(STOCK_DRIFT)), OWN(OPERATIONS));
    assert_int_equal(exception_owner(TYPE(NEGATIVE_STOCK)), OWN(OPERATIONS));
    assert_int_equal(exception_owner(TYPE(ORDER_NOT_REFLECTED)), OWN(OPERATIONS));
    assert_int_equal(exception_owner(TYPE(WEBHOOK_GAP)), OWN(ECOMMERCE));
    assert_int_equal(exception_owner(TYPE(LOYALTY_UPDATE_FAILED)), OWN(CX));
    assert_int_equal(exception_owner(TYPE(POSSIBLE_DUPLICATE_CUSTOMER)), OWN(CX));
    assert_int_equal(exception_owner(TYPE(TAKINGS_VARIANCE)), OWN(FINANCE));
    assert_int_equal(exception_owner(TYPE(PAYOUT_VARIANCE)), OWN(FINANCE));
}

static void test_every_type_has_words(void **state)
{
    (void)state;
    for (int t = 0; t < 64; t++) {
        assert_non_null(exception_default_explanation((Tillsync__V1__ExceptionType)t));
        assert_non_null(exception_default_action((Tillsync__V1__ExceptionType)t));
        assert_true(exception_owner((Tillsync__V1__ExceptionType)t) != 0);
    }
}

static void test_envelope_fill(void **state)
{
    static const struct service_spec spec = {.name = "pos-ingest"};
    struct service svc;
    Tillsync__V1__Envelope env;
    Tillsync__V1__BusinessRefs refs = TILLSYNC__V1__BUSINESS_REFS__INIT;

    (void)state;
    memset(&svc, 0, sizeof(svc));
    svc.spec = &spec;
    svc.tenant_id = "acme";
    event_envelope_fill(&env, &svc, "id-1", 1700000000000LL,
                        TILLSYNC__V1__SOURCE_SYSTEM__SOURCE_SYSTEM_POS, "S01/T1", &refs);
    assert_string_equal(env.event_id, "id-1");
    assert_string_equal(env.tenant_id, "acme");
    assert_string_equal(env.producer, "pos-ingest");
    assert_string_equal(env.source_name, "S01/T1");
    assert_int_equal(env.occurred_at_ms, 1700000000000LL);
    assert_true(env.recorded_at_ms > 1700000000000LL);
    assert_ptr_equal(env.refs, &refs);
}

static void test_refusals(void **state)
{
    static const struct service_spec spec = {.name = "recon-reporter"};
    struct service svc;
    struct exception_raise x = {.type = TYPE(SKU_UNKNOWN), .summary = "s"};
    Tillsync__V1__Envelope env = TILLSYNC__V1__ENVELOPE__INIT;
    char err[256];

    (void)state;
    memset(&svc, 0, sizeof(svc));
    svc.spec = &spec;
    svc.tenant_id = "acme";
    svc.topic_prefix = "";
    /* no dedupe key */
    assert_true(event_raise_exception(&svc, &x, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "dedupe"));
    /* no producer: refused with a reason, nothing crashes */
    x.dedupe_key = "k";
    assert_true(event_raise_exception(&svc, &x, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "producer"));
    /* no event id */
    assert_true(event_publish_sync(&svc, "pos.transactions.v1", "k", &env.base, NULL, 0, 10, err,
                                   sizeof(err)) < 0);
    assert_non_null(strstr(err, "id"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owners_follow_design),
        cmocka_unit_test(test_every_type_has_words),
        cmocka_unit_test(test_envelope_fill),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
