/* Unit tests for services/common/metrics.c: exact rendered lines, escaping,
 * histogram buckets, registration errors, thread safety, and the whole output
 * validated by `promtool check metrics`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define assert_line(text, line)                                                                    \
    do {                                                                                           \
        if (!has_line((text), (line)))                                                             \
            fail_msg("missing line: %s\n--- output ---\n%s", (line), (text));                      \
    } while (0)

/* Run promtool check metrics on text; returns its exit status and copies its
 * output to out. */
static int promtool_check(const char *text, char *out, size_t outlen)
{
    char path[] = "/tmp/test_metrics_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, outlen - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_counter_gauge_lines(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    assert_non_null(m);
    struct metric *c = metrics_counter(m, "tillsync_events_total", "Events seen.", "topic,result");
    struct metric *g = metrics_gauge(m, "tillsync_queue_depth", "Queue depth.", NULL);
    struct metric *plain = metrics_counter(m, "tillsync_untouched_total", "Never used.", NULL);
    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(plain);
    metric_add(c, 1, "pos", "ok");
    metric_add(c, 2, "pos", "ok");
    metric_add(c, 1, "shop", "error");
    metric_add(c, -5, "pos", "ok"); /* ignored: counters only go up */
    metric_set(g, 42.5);
    metric_add(g, -0.5);

    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_line(text, "# HELP tillsync_events_total Events seen.");
    assert_line(text, "# TYPE tillsync_events_total counter");
    assert_line(text, "tillsync_events_total{topic=\"pos\",result=\"ok\"} 3");
    assert_line(text, "tillsync_events_total{topic=\"shop\",result=\"error\"} 1");
    assert_line(text, "# TYPE tillsync_queue_depth gauge");
    assert_line(text, "tillsync_queue_depth 42");
    assert_line(text, "tillsync_untouched_total 0");
    assert_line(text, "# TYPE process_start_time_seconds gauge");
    assert_line(text, "# TYPE process_resident_memory_bytes gauge");
    assert_line(text, "# TYPE process_cpu_seconds_total counter");
    assert_null(strstr(text, "process_resident_memory_bytes 0\n"));

    char out[4096];
    int rc = promtool_check(text, out, sizeof out);
    if (rc != 0)
        fail_msg("promtool rc=%d: %s\n%s", rc, out, text);
    free(text);
    metrics_free(m);
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct metric *c = metrics_counter(m, "esc_total", "Help with \\ backslash\nand newline.", "v");
    metric_add(c, 1, "a\"quote\\back\nnl");
    metric_add(c, 1, (const char *)NULL);
    char *text = metrics_render(m, NULL);
    assert_line(text, "# HELP esc_total Help with \\\\ backslash\\nand newline.");
    assert_line(text, "esc_total{v=\"a\\\"quote\\\\back\\nnl\"} 1");
    assert_line(text, "esc_total{v=\"\"} 1");
    char out[4096];
    int rc = promtool_check(text, out, sizeof out);
    if (rc != 0)
        fail_msg("promtool rc=%d: %s\n%s", rc, out, text);
    free(text);
    metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    const double b[] = {0.1, 0.5, 1};
    struct metric *h = metrics_histogram(m, "req_seconds", "Latency.", "route", b, 3);
    assert_non_null(h);
    metric_observe(h, 0.05, "/a");
    metric_observe(h, 0.1, "/a"); /* le is inclusive */
    metric_observe(h, 0.7, "/a");
    metric_observe(h, 3, "/a");
    struct metric *d = metrics_histogram(m, "default_seconds", "Defaults.", NULL, NULL, 0);
    metric_observe(d, 0.02);
    char *text = metrics_render(m, NULL);
    assert_line(text, "# TYPE req_seconds histogram");
    assert_line(text, "req_seconds_bucket{route=\"/a\",le=\"0.1\"} 2");
    assert_line(text, "req_seconds_bucket{route=\"/a\",le=\"0.5\"} 2");
    assert_line(text, "req_seconds_bucket{route=\"/a\",le=\"1\"} 3");
    assert_line(text, "req_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4");
    assert_line(text, "req_seconds_sum{route=\"/a\"} 3.85");
    assert_line(text, "req_seconds_count{route=\"/a\"} 4");
    assert_line(text, "default_seconds_bucket{le=\"0.01\"} 0");
    assert_line(text, "default_seconds_bucket{le=\"0.025\"} 1");
    assert_line(text, "default_seconds_bucket{le=\"10\"} 1");
    assert_line(text, "default_seconds_bucket{le=\"+Inf\"} 1");
    assert_line(text, "default_seconds_count 1");
    char out[4096];
    int rc = promtool_check(text, out, sizeof out);
    if (rc != 0)
        fail_msg("promtool rc=%d: %s\n%s", rc, out, text);
    free(text);
    metrics_free(m);
}

static void test_registration_errors(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    assert_null(metrics_counter(m, "9bad", "x", NULL));
    assert_null(metrics_counter(m, "bad-name", "x", NULL));
    assert_null(metrics_counter(m, "", "x", NULL));
    assert_null(metrics_counter(m, "ok_total", "x", "bad-label"));
    assert_null(metrics_counter(m, "ok_total", "x", "a,a"));
    assert_null(metrics_counter(m, "ok_total", "x", "__reserved"));
    assert_null(metrics_counter(m, "ok_total", "x", "a,"));
    const double unsorted[] = {1, 0.5};
    assert_null(metrics_histogram(m, "h", "x", NULL, unsorted, 2));
    assert_null(metrics_histogram(m, "h", "x", "le", NULL, 0));
    struct metric *a = metrics_counter(m, "ok_total", "x", "a, b");
    assert_non_null(a);
    assert_ptr_equal(metrics_counter(m, "ok_total", "x", "a,b"), a);
    assert_null(metrics_gauge(m, "ok_total", "x", "a,b")); /* other type */
    assert_null(metrics_counter(m, "ok_total", "x", "a")); /* other labels */
    /* NULL handles and wrong-type operations are harmless */
    metric_add(NULL, 1);
    metric_set(a, 5, "x", "y");
    metric_observe(a, 5, "x", "y");
    char *text = metrics_render(m, NULL);
    assert_null(strstr(text, "ok_total{"));
    free(text);
    metrics_free(m);
    metrics_free(NULL);
}

struct worker_arg {
    struct metric *c, *h;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    char label[8];
    for (int i = 0; i < 10000; i++) {
        snprintf(label, sizeof label, "k%d", i % 4);
        metric_add(a->c, 1, label);
        metric_observe(a->h, 0.001 * (i % 10));
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct worker_arg a = {metrics_counter(m, "t_total", "x", "k"),
                           metrics_histogram(m, "t_seconds", "x", NULL, NULL, 0)};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, worker, &a);
    for (int i = 0; i < 3; i++)
        free(metrics_render(m, NULL)); /* render concurrently with updates */
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *text = metrics_render(m, NULL);
    assert_line(text, "t_total{k=\"k0\"} 10000");
    assert_line(text, "t_total{k=\"k3\"} 10000");
    assert_line(text, "t_seconds_count 40000");
    free(text);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge_lines),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_registration_errors),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
