/* Unit tests: the pure decisions of the outbound push (push_plan.h): coalescing, due keys,
 * batching, compare-and-set outcomes, the adaptive window, staleness percentiles, bucket
 * costs and back-off, and the SKU -> item map of the batched catalogue lookup. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "platform.h"
#include "push_plan.h"

/* ---- coalescing */

static void coalesce_keeps_newest_version(void **state)
{
    (void)state;
    struct plan_key k;
    plan_key_init(&k);
    assert_false(plan_key_dirty(&k));
    assert_true(plan_key_apply(&k, 5, 10, 1000, 100));
    assert_true(plan_key_dirty(&k));
    assert_int_equal(k.dirty_since, 100);
    /* newer changes within the window: one write of the newest figure, window from the first */
    assert_true(plan_key_apply(&k, 7, 3, 1200, 150));
    assert_int_equal(k.quantity, 3);
    assert_int_equal(k.version, 7);
    assert_int_equal(k.as_of_ms, 1200);
    assert_int_equal(k.dirty_since, 100);
    /* an older or repeated version (replay, reordering) changes nothing */
    assert_false(plan_key_apply(&k, 6, 99, 1300, 160));
    assert_false(plan_key_apply(&k, 7, 99, 1300, 160));
    assert_int_equal(k.quantity, 3);
    assert_int_equal(k.as_of_ms, 1200);
    /* a negative figure is written as 0 */
    assert_true(plan_key_apply(&k, 8, -4, 1400, 170));
    assert_int_equal(k.quantity, 0);
}

static void coalesce_confirmed_version_is_clean(void **state)
{
    (void)state;
    struct plan_key k;
    plan_key_init(&k);
    /* restart: Postgres says version 9 is on the platform; the replay of version 9 is clean */
    k.done_version = 9;
    k.plat_known = true;
    k.plat_qty = 4;
    assert_true(plan_key_apply(&k, 9, 4, 1000, 50));
    assert_false(plan_key_dirty(&k));
    assert_int_equal(k.dirty_since, 0);
    assert_true(plan_key_apply(&k, 10, 2, 1100, 60));
    assert_true(plan_key_dirty(&k));
    assert_int_equal(k.dirty_since, 60);
}

/* ---- what a key needs */

static void next_action(void **state)
{
    (void)state;
    struct plan_key k;
    int64_t at = 0;
    plan_key_init(&k);
    assert_int_equal(plan_key_next(&k, true, 200, 0, &at), PLAN_IDLE);
    plan_key_apply(&k, 1, 5, 1000, 1000);
    /* compare-and-set platform without a known platform figure: read first */
    assert_int_equal(plan_key_next(&k, true, 200, 1000, &at), PLAN_READ);
    /* Shopline (no CAS): wait for the window, then write */
    assert_int_equal(plan_key_next(&k, false, 200, 1100, &at), PLAN_WAIT);
    assert_int_equal(at, 1200);
    assert_int_equal(plan_key_next(&k, false, 200, 1200, &at), PLAN_WRITE);
    plan_key_read(&k, true, 7);
    assert_int_equal(plan_key_compare(&k), 7);
    assert_int_equal(plan_key_next(&k, true, 200, 1199, &at), PLAN_WAIT);
    assert_int_equal(plan_key_next(&k, true, 200, 1200, &at), PLAN_WRITE);
    /* not found on the platform: compare figure 0 */
    plan_key_read(&k, false, 123);
    assert_int_equal(plan_key_compare(&k), 0);
}

/* ---- compare-and-set outcomes */

static void cas_ok_confirms(void **state)
{
    (void)state;
    struct plan_key k;
    int64_t at;
    plan_key_init(&k);
    plan_key_apply(&k, 3, 8, 1000, 1000);
    plan_key_read(&k, true, 10);
    plan_key_written(&k, LEVEL_OK, 3, 8, 1500, 300);
    assert_false(plan_key_dirty(&k));
    assert_int_equal(k.done_version, 3);
    assert_int_equal(plan_key_compare(&k), 8);
    assert_int_equal(k.dirty_since, 0);
    assert_int_equal(plan_key_next(&k, true, 200, 1500, &at), PLAN_IDLE);
}

static void cas_ok_with_newer_figure_stays_dirty(void **state)
{
    (void)state;
    struct plan_key k;
    plan_key_init(&k);
    plan_key_apply(&k, 3, 8, 1000, 1000);
    plan_key_read(&k, true, 10);
    /* version 4 arrives while version 3 is in flight */
    plan_key_apply(&k, 4, 6, 1100, 1100);
    plan_key_written(&k, LEVEL_OK, 3, 8, 1500, 300);
    assert_true(plan_key_dirty(&k));
    assert_int_equal(k.done_version, 3);
    assert_int_equal(plan_key_compare(&k), 8); /* the next write replaces what we wrote */
    assert_int_equal(k.dirty_since, 1500);
}

static void cas_stale_holds_then_reads(void **state)
{
    (void)state;
    struct plan_key k;
    int64_t at = 0;
    plan_key_init(&k);
    plan_key_apply(&k, 3, 8, 1000, 1000);
    plan_key_read(&k, true, 10);
    plan_key_written(&k, LEVEL_STALE, 3, 8, 2000, 300);
    /* not written blindly: held for the settle time, still dirty, then re-read */
    assert_true(plan_key_dirty(&k));
    assert_int_equal(k.done_version, -1);
    assert_int_equal(plan_key_next(&k, true, 200, 2100, &at), PLAN_HELD);
    assert_int_equal(at, 2300);
    assert_int_equal(plan_key_next(&k, true, 200, 2300, &at), PLAN_READ);
    /* the platform shows 9 (a sale): the ledger's figure is written against 9 */
    plan_key_read(&k, true, 9);
    assert_int_equal(plan_key_next(&k, true, 200, 2300, &at), PLAN_WRITE);
    assert_int_equal(plan_key_compare(&k), 9);
    assert_int_equal(k.quantity, 8);
}

static void cas_stale_released_by_newer_figure(void **state)
{
    (void)state;
    struct plan_key k;
    int64_t at = 0;
    plan_key_init(&k);
    plan_key_apply(&k, 3, 8, 1000, 1000);
    plan_key_read(&k, true, 10);
    plan_key_written(&k, LEVEL_STALE, 3, 8, 2000, 5000);
    assert_int_equal(plan_key_next(&k, true, 200, 2100, &at), PLAN_HELD);
    /* the order event reaches the ledger: the hold ends, the read still comes first */
    assert_true(plan_key_apply(&k, 4, 7, 2100, 2100));
    assert_int_equal(k.not_before, 0);
    assert_int_equal(plan_key_next(&k, true, 200, 2100, &at), PLAN_READ);
}

static void cas_rejected_and_not_applied(void **state)
{
    (void)state;
    struct plan_key k;
    plan_key_init(&k);
    plan_key_apply(&k, 3, 8, 1000, 1000);
    plan_key_read(&k, true, 10);
    plan_key_written(&k, LEVEL_NOT_APPLIED, 3, 8, 2000, 300);
    assert_true(plan_key_dirty(&k)); /* sent again */
    assert_int_equal(plan_key_compare(&k), 10);
    plan_key_written(&k, LEVEL_REJECTED, 3, 8, 2000, 300);
    assert_false(plan_key_dirty(&k)); /* left alone until a newer figure */
    assert_false(k.plat_known);
    assert_int_equal(k.done_version, 3);
    assert_true(plan_key_apply(&k, 4, 1, 1100, 2100));
    assert_true(plan_key_dirty(&k));
    /* a forced drift correction is cleared by the write */
    plan_key_read(&k, true, 1);
    plan_key_written(&k, LEVEL_OK, 4, 1, 2200, 300);
    k.force = true;
    assert_true(plan_key_dirty(&k));
    plan_key_written(&k, LEVEL_OK, 4, 1, 2300, 300);
    assert_false(plan_key_dirty(&k));
}

/* ---- batches */

static void urgency_classes(void **state)
{
    (void)state;
    assert_int_equal(plan_urgency(0, 5), 0);
    assert_int_equal(plan_urgency(-3, 5), 0);
    assert_int_equal(plan_urgency(1, 5), 1);
    assert_int_equal(plan_urgency(5, 5), 1);
    assert_int_equal(plan_urgency(6, 5), 2);
}

static void batch_orders_and_limits(void **state)
{
    (void)state;
    enum { N = 600 };
    struct plan_job *j = calloc(N, sizeof(*j));
    assert_non_null(j);
    for (int i = 0; i < N; i++) {
        j[i].quantity = i % 3 == 0 ? 0 : i % 3 == 1 ? 3 : 40;
        j[i].urg = plan_urgency(j[i].quantity, 5);
        j[i].since = N - i; /* later entries changed earlier */
    }
    /* Shopify: up to 250 per call, zeros first, then low stock, each oldest first */
    assert_int_equal(plan_batch(j, N, 250), 250);
    for (int i = 0; i < 200; i++)
        assert_int_equal(j[i].quantity, 0);
    for (int i = 200; i < 250; i++)
        assert_int_equal(j[i].quantity, 3);
    for (int i = 1; i < N; i++)
        if (j[i].urg == j[i - 1].urg)
            assert_true(j[i].since >= j[i - 1].since);
    /* Shopline: one per call, the most urgent */
    assert_int_equal(plan_batch(j, N, 1), 1);
    assert_int_equal(j[0].quantity, 0);
    assert_int_equal(plan_batch(j, 7, 250), 7);
    assert_int_equal(plan_batch(j, 0, 250), 0);
    assert_int_equal(plan_batch(j, 5, 0), 1); /* a 0 limit still makes progress */
    free(j);
}

static void window_adapts(void **state)
{
    (void)state;
    /* Shopify: backlog of due keys beyond two calls doubles, up to max */
    assert_int_equal(plan_window_adapt(200, 501, 250, 200, 1000), 400);
    assert_int_equal(plan_window_adapt(800, 501, 250, 200, 1000), 1000);
    assert_int_equal(plan_window_adapt(1000, 5000, 250, 200, 1000), 1000);
    /* between one and two calls: unchanged; within one call: halved, down to min */
    assert_int_equal(plan_window_adapt(800, 400, 250, 200, 1000), 800);
    assert_int_equal(plan_window_adapt(800, 250, 250, 200, 1000), 400);
    assert_int_equal(plan_window_adapt(300, 0, 250, 200, 1000), 200);
    /* Shopline (one per call) never lengthens it */
    assert_int_equal(plan_window_adapt(200, 5000, 1, 200, 1000), 200);
    /* throttled: doubled up to max */
    assert_int_equal(plan_window_throttled(300, 1000), 600);
    assert_int_equal(plan_window_throttled(600, 1000), 1000);
}

static void flush_early_only_full_batches(void **state)
{
    (void)state;
    assert_true(plan_flush_early(0, 250, 250));
    assert_true(plan_flush_early(100, 400, 250));
    assert_false(plan_flush_early(100, 249, 250)); /* would not fill a call: keep coalescing */
    assert_false(plan_flush_early(250, 600, 250)); /* due keys fill it already */
    assert_false(plan_flush_early(0, 40, 1));      /* Shopline: one per call anyway */
}

/* ---- staleness */

static void stale_percentiles(void **state)
{
    (void)state;
    struct plan_stale *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    assert_int_equal(plan_stale_quantile(h, 0.5), 0);
    for (int i = 0; i < 98; i++)
        plan_stale_observe(h, 120); /* bucket 100..150 */
    plan_stale_observe(h, 1999);    /* bucket 1950..2000 */
    plan_stale_observe(h, 10000000);
    assert_int_equal(h->n, 100);
    assert_int_equal(plan_stale_quantile(h, 0.50), 150);
    assert_int_equal(plan_stale_quantile(h, 0.98), 150);
    assert_int_equal(plan_stale_quantile(h, 0.99), 2000);
    assert_int_equal(plan_stale_quantile(h, 1.0), PLAN_STALE_BUCKETS * PLAN_STALE_BUCKET_MS);
    /* negative (clock skew) counts as 0; q out of range is clamped */
    plan_stale_observe(h, -50);
    assert_int_equal(h->hist[0], 1);
    assert_int_equal(plan_stale_quantile(h, -1), 50);
    free(h);
}

/* ---- the shared bucket */

static void bucket_costs(void **state)
{
    (void)state;
    const struct platform_ops *sf = platform_find("shopify");
    const struct platform_ops *sl = platform_find("shopline");
    assert_non_null(sf);
    assert_non_null(sl);
    assert_int_equal(plan_bucket_cost(sf->write_cost, 1000), 10);
    assert_int_equal(plan_bucket_cost(sf->read_cost(250), 1000), sf->read_cost(250));
    assert_int_equal(plan_bucket_cost(sf->read_cost(250), 20), 20); /* never above capacity */
    assert_int_equal(plan_bucket_cost(0, 40), 1);
    assert_true(sf->read_cost(250) >= sf->write_cost);
    assert_true(sl->read_cost(sl->max_read_batch) >= 1);
    assert_int_equal(plan_bucket_cost(sl->write_cost, 36), 1);
    /* throttled: Retry-After wins, else the restore time of one call, at least 250 ms */
    assert_int_equal(plan_throttle_wait_ms(2000, 10, 100), 2000);
    assert_int_equal(plan_throttle_wait_ms(0, 10, 100), 250);
    assert_int_equal(plan_throttle_wait_ms(-1, 10, 100), 250);
    assert_int_equal(plan_throttle_wait_ms(-1, 10, 4), 2500);
    assert_int_equal(plan_throttle_wait_ms(-1, 1, 3), 334);
    assert_int_equal(plan_throttle_wait_ms(-1, 1, 0), 1000);
    /* 5xx back-off: 200 ms doubling to 10 s */
    long b = plan_backoff_next(0);
    assert_int_equal(b, 200);
    for (int i = 0; i < 10; i++)
        b = plan_backoff_next(b);
    assert_int_equal(b, 10000);
}

/* ---- SKU -> item */

static void skus_batched_lookup(void **state)
{
    (void)state;
    struct plan_skus s;
    char item[32];
    plan_skus_init(&s);
    char *arr = plan_skus_pg_array(&s);
    assert_string_equal(arr, "{}");
    free(arr);
    plan_skus_add(&s, "A-1");
    plan_skus_add(&s, "A-1"); /* once */
    plan_skus_add(&s, "q\"uote\\d");
    plan_skus_add(&s, "DUP");
    plan_skus_add(&s, "");
    assert_int_equal(s.n, 4);
    arr = plan_skus_pg_array(&s);
    assert_string_equal(arr, "{\"A-1\",\"q\\\"uote\\\\d\",\"DUP\",\"\"}");
    free(arr);
    plan_skus_found(&s, "A-1", "111");
    plan_skus_found(&s, "q\"uote\\d", "222");
    plan_skus_found(&s, "DUP", "333");
    plan_skus_found(&s, "DUP", "444");
    plan_skus_found(&s, "NOT-ASKED", "555");
    assert_int_equal(plan_skus_item(&s, "A-1", item, sizeof(item)), 0);
    assert_string_equal(item, "111");
    assert_int_equal(plan_skus_item(&s, "q\"uote\\d", item, sizeof(item)), 0);
    assert_string_equal(item, "222");
    /* on two variants: not one item */
    assert_int_equal(plan_skus_item(&s, "DUP", item, sizeof(item)), -ENOENT);
    /* not in the catalogue, never asked, too long for the buffer */
    assert_int_equal(plan_skus_item(&s, "", item, sizeof(item)), -ENOENT);
    assert_int_equal(plan_skus_item(&s, "NOT-ASKED", item, sizeof(item)), -ENOENT);
    assert_int_equal(plan_skus_item(&s, "A-1", item, 3), -ENOENT);
    assert_int_equal(plan_skus_item(&s, NULL, item, sizeof(item)), -ENOENT);
    plan_skus_release(&s);
    plan_skus_release(&s); /* released twice is fine */
    plan_skus_release(NULL);
}

static void skus_many(void **state)
{
    (void)state;
    struct plan_skus s;
    char sku[32], item[32], want[32];
    plan_skus_init(&s);
    for (int i = 0; i < 1000; i++) {
        snprintf(sku, sizeof(sku), "SKU-%05d", i);
        plan_skus_add(&s, sku);
    }
    assert_int_equal(s.n, 1000);
    for (int i = 0; i < 1000; i += 2) {
        snprintf(sku, sizeof(sku), "SKU-%05d", i);
        snprintf(item, sizeof(item), "%d", 9000 + i);
        plan_skus_found(&s, sku, item);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(sku, sizeof(sku), "SKU-%05d", i);
        int rc = plan_skus_item(&s, sku, item, sizeof(item));
        if (i % 2) {
            assert_int_equal(rc, -ENOENT);
        } else {
            assert_int_equal(rc, 0);
            snprintf(want, sizeof(want), "%d", 9000 + i);
            assert_string_equal(item, want);
        }
    }
    plan_skus_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(coalesce_keeps_newest_version),
        cmocka_unit_test(coalesce_confirmed_version_is_clean),
        cmocka_unit_test(next_action),
        cmocka_unit_test(cas_ok_confirms),
        cmocka_unit_test(cas_ok_with_newer_figure_stays_dirty),
        cmocka_unit_test(cas_stale_holds_then_reads),
        cmocka_unit_test(cas_stale_released_by_newer_figure),
        cmocka_unit_test(cas_rejected_and_not_applied),
        cmocka_unit_test(urgency_classes),
        cmocka_unit_test(batch_orders_and_limits),
        cmocka_unit_test(window_adapts),
        cmocka_unit_test(flush_early_only_full_batches),
        cmocka_unit_test(stale_percentiles),
        cmocka_unit_test(bucket_costs),
        cmocka_unit_test(skus_batched_lookup),
        cmocka_unit_test(skus_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
