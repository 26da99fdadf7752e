/* Integration tests for services/common/ratelimit.c against the stack's Redis (REDIS_URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "ratelimit.h"

static struct redis *r;
static char key[128];

static int setup(void **state)
{
    char err[256];
    (void)state;
    if (!getenv("REDIS_URL"))
        return -1;
    r = redis_new(getenv("REDIS_URL"), 2, 2000, err, sizeof err);
    snprintf(key, sizeof key, "tillsync:rl:it%d:shop.example:rest", (int)getpid());
    return r ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    redis_free(r);
    return 0;
}

static void test_key(void **state)
{
    char out[64];
    (void)state;
    assert_int_equal(ratelimit_key("acme", "shop.example", "rest", out, sizeof out), 0);
    assert_string_equal(out, "tillsync:rl:acme:shop.example:rest");
    assert_int_equal(ratelimit_key("acme", "", "rest", out, sizeof out), -EINVAL);
    assert_int_equal(ratelimit_key("acme", "shop.example", "rest", out, 10), -ENOSPC);
}

static void test_take_until_empty_then_refill(void **state)
{
    char err[256];
    long wait = 0;
    (void)state;
    struct ratelimit_bucket b = {.key = key, .capacity = 5, .refill_per_s = 10};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ratelimit_try(r, &b, 1, &wait, err, sizeof err), 0);
        assert_int_equal(wait, 0);
    }
    assert_int_equal(ratelimit_try(r, &b, 1, &wait, err, sizeof err), 0);
    assert_true(wait > 0 && wait <= 100); /* one token at 10/s */
    int64_t t0 = clock_mono_ms();
    assert_int_equal(ratelimit_take(r, &b, 2, 2000, err, sizeof err), 0);
    assert_true(clock_mono_ms() - t0 >= 100); /* had to wait for the refill */
    /* the platform says it has nothing left: our bucket follows */
    assert_int_equal(ratelimit_correct(r, &b, 0, err, sizeof err), 0);
    assert_int_equal(ratelimit_try(r, &b, 1, &wait, err, sizeof err), 0);
    assert_true(wait > 0);
    assert_int_equal(ratelimit_take(r, &b, 5, 50, err, sizeof err), -ETIMEDOUT);
}

static void test_bad_arguments_and_dead_redis(void **state)
{
    char err[256];
    long wait = 0;
    (void)state;
    struct ratelimit_bucket b = {.key = key, .capacity = 5, .refill_per_s = 10};
    assert_int_equal(ratelimit_try(r, &b, 6, &wait, err, sizeof err), -EINVAL);
    struct ratelimit_bucket z = {.key = key, .capacity = 5, .refill_per_s = 0};
    assert_int_equal(ratelimit_try(r, &z, 1, &wait, err, sizeof err), -EINVAL);
    struct redis *dead = redis_new("redis://127.0.0.1:1/0", 1, 200, err, sizeof err);
    assert_non_null(dead);
    assert_int_equal(ratelimit_try(dead, &b, 1, &wait, err, sizeof err), -EIO);
    redis_free(dead);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_take_until_empty_then_refill),
        cmocka_unit_test(test_bad_arguments_and_dead_redis),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
