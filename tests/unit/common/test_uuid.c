/* Unit tests for services/common/uuid.c: UUIDv7 layout, ordering, uniqueness, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "uuid.h"

static int64_t uuid_ms(const char *u)
{
    char hex[13];

    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    return strtoll(hex, NULL, 16);
}

static void test_layout(void **state)
{
    (void)state;
    char u[37];
    int64_t before = clock_now_ms();

    uuid_v7(u);
    int64_t after = clock_now_ms();
    assert_int_equal(strlen(u), 36);
    assert_true(uuid_valid(u));
    assert_int_equal(u[14], '7');           /* version */
    assert_non_null(strchr("89ab", u[19])); /* variant 10xx */
    for (int i = 0; i < 36; i++)
        assert_true(u[i] == '-' || (u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f'));
    /* the timestamp is the current time (the counter may borrow a few ms ahead) */
    assert_true(uuid_ms(u) >= before);
    assert_true(uuid_ms(u) <= after + 5);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Ids from one process sort in creation order and never repeat, even many per ms. */
static void test_ordered_and_unique(void **state)
{
    (void)state;
    enum { N = 20000 };
    char(*ids)[37] = malloc(N * sizeof(*ids));
    char **sorted = malloc(N * sizeof(*sorted));

    assert_non_null(ids);
    assert_non_null(sorted);
    for (int i = 0; i < N; i++) {
        uuid_v7(ids[i]);
        if (i > 0 && strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("not increasing: %s then %s", ids[i - 1], ids[i]);
        sorted[i] = ids[i];
    }
    qsort(sorted, N, sizeof(*sorted), cmp_str);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(sorted[i - 1], sorted[i]) < 0);
    free(sorted);
    free(ids);
}

static void *worker(void *arg)
{
    char(*ids)[37] = arg;

    for (int i = 0; i < 2000; i++)
        uuid_v7(ids[i]);
    return NULL;
}

static void test_threads_unique(void **state)
{
    (void)state;
    enum { T = 4, PER = 2000 };
    char(*ids)[37] = malloc(T * PER * sizeof(*ids));
    char **all = malloc(T * PER * sizeof(*all));
    pthread_t th[T];

    for (int t = 0; t < T; t++)
        assert_int_equal(pthread_create(&th[t], NULL, worker, ids + t * PER), 0);
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    for (int i = 0; i < T * PER; i++) {
        assert_true(uuid_valid(ids[i]));
        all[i] = ids[i];
    }
    qsort(all, T * PER, sizeof(*all), cmp_str);
    for (int i = 1; i < T * PER; i++)
        assert_true(strcmp(all[i - 1], all[i]) != 0);
    free(all);
    free(ids);
}

static void test_valid(void **state)
{
    (void)state;
    assert_true(uuid_valid("01890a5d-ac96-774b-bcce-b302099a8057"));
    assert_true(uuid_valid("550E8400-E29B-41D4-A716-446655440000")); /* v4, upper case */
    assert_true(uuid_valid("00000000-0000-0000-0000-000000000000"));
    assert_false(uuid_valid(NULL));
    assert_false(uuid_valid(""));
    assert_false(uuid_valid("01890a5d-ac96-774b-bcce-b302099a805"));   /* short */
    assert_false(uuid_valid("01890a5d-ac96-774b-bcce-b302099a80577")); /* long */
    assert_false(uuid_valid("01890a5dac96-774b-bcce-b302099a8057-"));  /* hyphen misplaced */
    assert_false(uuid_valid("01890a5d-ac96-774b-bcce-b302099a805g"));  /* not hex */
    assert_false(uuid_valid("{01890a5d-ac96-774b-bcce-b302099a8057}"));
    assert_false(uuid_valid("01890a5d0ac960774b0bcce0b302099a8057"));
}

static void test_from_name(void **state)
{
    char a[37], b[37], c[37];

    (void)state;
    uuid_from_name("pos/acme/S01/T1/1001", a);
    uuid_from_name("pos/acme/S01/T1/1001", b);
    uuid_from_name("pos/acme/S01/T1/1002", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_true(uuid_valid(a));
    assert_int_equal(a[14], '8');               /* version 8 */
    assert_true(strchr("89ab", a[19]) != NULL); /* RFC variant */
    /* a fixed vector: the id must never change between releases (consumers dedupe on it) */
    uuid_from_name("", c);
    assert_string_equal(c, "e3b0c442-98fc-8c14-9afb-f4c8996fb924");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),         cmocka_unit_test(test_ordered_and_unique),
        cmocka_unit_test(test_threads_unique), cmocka_unit_test(test_valid),
        cmocka_unit_test(test_from_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
