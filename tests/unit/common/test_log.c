/* Unit tests for services/common/log.c: every line is one valid JSON object (parsed back
 * with jansson), escaping, levels, and atomic lines under threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static FILE *out;

static int setup(void **state)
{
    (void)state;
    out = tmpfile();
    if (!out)
        return -1;
    log_set_output(out);
    return log_init("pos-ingest", "debug");
}

static int teardown(void **state)
{
    (void)state;
    log_set_output(NULL);
    fclose(out);
    return 0;
}

/* Returns everything logged since the last call, and empties the capture file. */
static char *captured(void)
{
    long n;
    char *buf;

    fflush(out);
    n = ftell(out);
    buf = calloc(1, (size_t)n + 1);
    rewind(out);
    if (n > 0)
        assert_int_equal(fread(buf, 1, (size_t)n, out), (size_t)n);
    rewind(out);
    assert_int_equal(ftruncate(fileno(out), 0), 0);
    return buf;
}

/* Parses the single line captured; checks the fixed members. Caller json_decref's. */
static json_t *one_line(const char *level)
{
    char *text = captured();
    json_error_t jerr;
    size_t len = strlen(text);

    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    assert_null(memchr(text, '\n', len - 1)); /* exactly one line */
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o)
        fail_msg("log line is not JSON (%s): %s", jerr.text, text);
    assert_true(json_is_object(o));
    assert_string_equal(json_string_value(json_object_get(o, "level")), level);
    assert_string_equal(json_string_value(json_object_get(o, "service")), "pos-ingest");
    int64_t ms;
    assert_int_equal(clock_parse_rfc3339(json_string_value(json_object_get(o, "ts")), &ms), 0);
    int64_t now = clock_now_ms();
    assert_true(ms <= now && ms > now - 5000);
    free(text);
    return o;
}

static void test_printf_levels(void **state)
{
    (void)state;
    json_t *o;

    log_info("started on port %d", 8080);
    o = one_line("info");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "started on port 8080");
    json_decref(o);
    log_debug("d");
    json_decref(one_line("debug"));
    log_warn("w %s", "x");
    json_decref(one_line("warn"));
    log_error("e");
    json_decref(one_line("error"));
}

static void test_kv(void **state)
{
    (void)state;
    json_t *o;

    log_kv(LOG_LVL_WARN, "sku unknown", "sku", "ABC-1", "store", "S042", "note", (const char *)NULL,
           NULL);
    o = one_line("warn");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "sku unknown");
    assert_string_equal(json_string_value(json_object_get(o, "sku")), "ABC-1");
    assert_string_equal(json_string_value(json_object_get(o, "store")), "S042");
    assert_true(json_is_null(json_object_get(o, "note")));
    assert_int_equal(json_object_size(o), 7);
    json_decref(o);
}

static void test_escaping(void **state)
{
    (void)state;
    json_t *o;
    const char nasty[] = "quote\" backslash\\ nl\n cr\r tab\t bell\a esc\x1b del\x7f slash/ end";

    log_kv(LOG_LVL_INFO, nasty, "k\"ey\n", nasty, NULL);
    o = one_line("info");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), nasty);
    assert_string_equal(json_string_value(json_object_get(o, "k\"ey\n")), nasty);
    json_decref(o);

    /* printf path with a format argument holding JSON */
    log_error("payload %s", "{\"a\":[1,2]}\n");
    o = one_line("error");
    assert_string_equal(json_string_value(json_object_get(o, "msg")), "payload {\"a\":[1,2]}\n");
    json_decref(o);
}

static void test_utf8(void **state)
{
    (void)state;
    json_t *o;

    /* valid multi-byte text passes through unchanged */
    log_info("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x92");
    o = one_line("info");
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x92");
    json_decref(o);

    /* invalid: lone continuation, truncated sequence, overlong '/', surrogate, > U+10FFFF,
     * 0xff; each bad byte becomes U+FFFD */
    log_kv(LOG_LVL_INFO, "bad", "v",
           "a\x80"
           "b\xc3"
           "c\xc0\xaf"
           "d\xed\xa0\x80"
           "e\xf4\x90\x80\x80"
           "f\xff",
           NULL);
    o = one_line("info");
    const char *v = json_string_value(json_object_get(o, "v"));
    assert_non_null(v);
    assert_string_equal(v, "a\xef\xbf\xbd"
                           "b\xef\xbf\xbd"
                           "c\xef\xbf\xbd\xef\xbf\xbd"
                           "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                           "e\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                           "f\xef\xbf\xbd");
    json_decref(o);

    /* truncated at the very end of the string */
    log_info("end\xe2\x82");
    o = one_line("info");
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "end\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(o);
}

static void test_long_message(void **state)
{
    (void)state;
    size_t n = 100000;
    char *big = malloc(n + 1);

    memset(big, 'x', n);
    big[n] = '\0';
    log_info("%s!", big);
    json_t *o = one_line("info");
    const char *msg = json_string_value(json_object_get(o, "msg"));
    assert_int_equal(strlen(msg), n + 1);
    assert_int_equal(msg[n], '!');
    json_decref(o);
    free(big);
}

static void test_level_filter(void **state)
{
    (void)state;
    char *text;

    assert_int_equal(log_init("pos-ingest", "WARN"), 0);
    log_debug("hidden");
    log_info("hidden");
    log_kv(LOG_LVL_INFO, "hidden", NULL);
    text = captured();
    assert_string_equal(text, "");
    free(text);
    assert_false(log_enabled(LOG_LVL_INFO));
    assert_true(log_enabled(LOG_LVL_ERROR));
    log_warn("shown");
    json_decref(one_line("warn"));

    /* unknown names are refused and leave the level alone */
    assert_int_equal(log_init("pos-ingest", "verbose"), -EINVAL);
    assert_int_equal(log_init("pos-ingest", "inf"), -EINVAL);
    log_info("still hidden");
    text = captured();
    assert_string_equal(text, "");
    free(text);

    assert_int_equal(log_init("pos-ingest", NULL), 0); /* default info */
    log_debug("hidden");
    log_info("shown");
    json_decref(one_line("info"));
    assert_int_equal(log_init("pos-ingest", "error"), 0);
    log_warn("hidden");
    text = captured();
    assert_string_equal(text, "");
    free(text);
    assert_int_equal(log_init("pos-ingest", "debug"), 0);
}

static void test_service_escaped(void **state)
{
    (void)state;
    json_t *o;

    assert_int_equal(log_init("we\"ird\n", "info"), 0);
    log_info("x");
    char *text = captured();
    o = json_loads(text, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "service")), "we\"ird\n");
    json_decref(o);
    free(text);
    assert_int_equal(log_init("pos-ingest", "debug"), 0);
}

static void *log_worker(void *arg)
{
    char tag[8];

    snprintf(tag, sizeof(tag), "t%d", (int)(intptr_t)arg);
    for (int i = 0; i < 500; i++)
        log_kv(LOG_LVL_INFO, "tick", "thread", tag, "pad",
               "................................................................................",
               NULL);
    return NULL;
}

static void test_threads_whole_lines(void **state)
{
    (void)state;
    pthread_t th[4];

    for (int t = 0; t < 4; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    char *text = captured();
    int lines = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, NULL);
        if (!o)
            fail_msg("interleaved line: %.*s", (int)(nl - line), line);
        json_decref(o);
        lines++;
    }
    assert_int_equal(lines, 2000);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_printf_levels),   cmocka_unit_test(test_kv),
        cmocka_unit_test(test_escaping),        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_long_message),    cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_service_escaped), cmocka_unit_test(test_threads_whole_lines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
