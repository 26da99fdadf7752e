/* Unit tests for services/common/config.c: values, defaults, NAME_FILE, validation errors
 * (one line, naming the variable, never a secret's value), release and the Markdown table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define SECRET_VALUE "s3cr3t-Value-42"

struct cfg {
    char *brokers;
    char *listen;
    char *db_url;
    char *app_secret;
    long batch_max;
    bool dry_run;
    char *prefix;
};

static struct cfg cfg;
static char tmpdir[64];

static const struct config_var vars[] = {
    {"TT_KAFKA_BROKERS", CONFIG_STR, true, NULL, 0, 0, "Kafka bootstrap servers", &cfg.brokers},
    {"TT_HTTP_LISTEN", CONFIG_HOSTPORT, false, ":8080", 0, 0, "HTTP address (port 0 = any)",
     &cfg.listen},
    {"TT_DATABASE_URL", CONFIG_URL, false, NULL, 0, 0, "Postgres URL", &cfg.db_url},
    {"TT_APP_SECRET", CONFIG_SECRET, false, NULL, 0, 0, "Webhook HMAC secret", &cfg.app_secret},
    {"TT_BATCH_MAX", CONFIG_INT, false, "500", 1, 10000, "Largest batch | per call",
     &cfg.batch_max},
    {"TT_DRY_RUN", CONFIG_BOOL, false, "false", 0, 0, "Do not write", &cfg.dry_run},
    {"TT_TOPIC_PREFIX", CONFIG_STR, false, NULL, 0, 0, "Topic prefix", &cfg.prefix},
};
#define NVARS (sizeof(vars) / sizeof(vars[0]))

static void clear_env(void)
{
    char name[64];

    for (size_t i = 0; i < NVARS; i++) {
        unsetenv(vars[i].name);
        snprintf(name, sizeof(name), "%s_FILE", vars[i].name);
        unsetenv(name);
    }
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    memset(&cfg, 0, sizeof(cfg));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    config_release(vars, NVARS);
    clear_env();
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes content to tmpdir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *content)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

/* Loads and expects failure; checks the message is one line starting with prefix. */
static void expect_error(const char *prefix, const char *contains)
{
    char err[256];

    assert_int_equal(config_load(vars, NVARS, err, sizeof(err)), -EINVAL);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
    if (contains && !strstr(err, contains))
        fail_msg("error \"%s\" does not contain \"%s\"", err, contains);
    assert_null(strchr(err, '\n'));
    assert_null(strstr(err, SECRET_VALUE));
    /* nothing left allocated on failure */
    assert_null(cfg.brokers);
    assert_null(cfg.listen);
    assert_null(cfg.app_secret);
}

static void test_defaults(void **state)
{
    (void)state;
    char err[256];

    setenv("TT_KAFKA_BROKERS", "localhost:9092", 1);
    assert_int_equal(config_load(vars, NVARS, err, sizeof(err)), 0);
    assert_string_equal(cfg.brokers, "localhost:9092");
    assert_string_equal(cfg.listen, ":8080");
    assert_null(cfg.db_url);
    assert_null(cfg.app_secret);
    assert_null(cfg.prefix);
    assert_int_equal(cfg.batch_max, 500);
    assert_false(cfg.dry_run);
}

static void test_values(void **state)
{
    (void)state;
    char err[256];

    setenv("TT_KAFKA_BROKERS", "k1:9092,k2:9092", 1);
    setenv("TT_HTTP_LISTEN", "[::1]:0", 1);
    setenv("TT_DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/db", 1);
    setenv("TT_APP_SECRET", SECRET_VALUE, 1);
    setenv("TT_BATCH_MAX", "10000", 1);
    setenv("TT_DRY_RUN", "YES", 1);
    setenv("TT_TOPIC_PREFIX", "", 1); /* empty counts as unset */
    assert_int_equal(config_load(vars, NVARS, err, sizeof(err)), 0);
    assert_string_equal(cfg.listen, "[::1]:0");
    assert_string_equal(cfg.db_url, "postgresql://u:p@127.0.0.1:5432/db");
    assert_string_equal(cfg.app_secret, SECRET_VALUE);
    assert_int_equal(cfg.batch_max, 10000);
    assert_true(cfg.dry_run);
    assert_null(cfg.prefix);
    config_release(vars, NVARS);
    assert_null(cfg.brokers);
    assert_null(cfg.app_secret);
    config_release(vars, NVARS); /* twice is harmless */
}

static void test_bool_forms(void **state)
{
    (void)state;
    static const char *const t[] = {"true", "TRUE", "1", "yes", "Yes"};
    static const char *const f[] = {"false", "False", "0", "no", "NO"};
    char err[256];

    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    for (size_t i = 0; i < 5; i++) {
        setenv("TT_DRY_RUN", t[i], 1);
        assert_int_equal(config_load(vars, NVARS, err, sizeof(err)), 0);
        assert_true(cfg.dry_run);
        config_release(vars, NVARS);
        setenv("TT_DRY_RUN", f[i], 1);
        cfg.dry_run = true;
        assert_int_equal(config_load(vars, NVARS, err, sizeof(err)), 0);
        assert_false(cfg.dry_run);
        config_release(vars, NVARS);
    }
}

static void test_missing_required(void **state)
{
    (void)state;
    expect_error("TT_KAFKA_BROKERS: required but not set", NULL);
    setenv("TT_KAFKA_BROKERS", "", 1);
    expect_error("TT_KAFKA_BROKERS: required but not set", NULL);
}

static void test_both_name_and_file(void **state)
{
    (void)state;
    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    setenv("TT_APP_SECRET", SECRET_VALUE, 1);
    setenv("TT_APP_SECRET_FILE", write_file("secret", SECRET_VALUE "\n"), 1);
    expect_error("TT_APP_SECRET: ", "TT_APP_SECRET_FILE");
}

static void test_file_value(void **state)
{
    (void)state;
    char err[256];

    setenv("TT_KAFKA_BROKERS_FILE", write_file("brokers", "k9:9092\r\n\n"), 1);
    setenv("TT_APP_SECRET_FILE", write_file("secret", SECRET_VALUE "\n"), 1);
    setenv("TT_BATCH_MAX_FILE", write_file("batch", "42\n"), 1);
    assert_int_equal(config_load(vars, NVARS, err, sizeof(err)), 0);
    assert_string_equal(cfg.brokers, "k9:9092");
    assert_string_equal(cfg.app_secret, SECRET_VALUE);
    assert_int_equal(cfg.batch_max, 42);
}

static void test_file_unreadable(void **state)
{
    (void)state;
    char path[160];

    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
    setenv("TT_APP_SECRET_FILE", path, 1);
    expect_error("TT_APP_SECRET_FILE: ", "No such file");
    /* a directory is not readable as a value either */
    setenv("TT_APP_SECRET_FILE", tmpdir, 1);
    expect_error("TT_APP_SECRET_FILE: ", NULL);
}

static void test_file_empty_counts_as_unset(void **state)
{
    (void)state;
    setenv("TT_KAFKA_BROKERS_FILE", write_file("empty", "\n"), 1);
    expect_error("TT_KAFKA_BROKERS: required but not set", NULL);
}

static void test_int_errors(void **state)
{
    (void)state;
    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    setenv("TT_BATCH_MAX", "0", 1);
    expect_error("TT_BATCH_MAX: 0 is below the minimum 1", NULL);
    setenv("TT_BATCH_MAX", "10001", 1);
    expect_error("TT_BATCH_MAX: 10001 is above the maximum 10000", NULL);
    setenv("TT_BATCH_MAX", "99999999999999999999999", 1);
    expect_error("TT_BATCH_MAX: ", "above the maximum");
    setenv("TT_BATCH_MAX", "-99999999999999999999999", 1);
    expect_error("TT_BATCH_MAX: ", "below the minimum");
    static const char *const bad[] = {"abc", "12abc", "1.5", " 12", "12 ", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("TT_BATCH_MAX", bad[i], 1);
        expect_error("TT_BATCH_MAX: ", "is not an integer");
    }
}

static void test_bad_bool(void **state)
{
    (void)state;
    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    setenv("TT_DRY_RUN", "maybe", 1);
    expect_error("TT_DRY_RUN: \"maybe\" is not a boolean", NULL);
    setenv("TT_DRY_RUN", "on", 1);
    expect_error("TT_DRY_RUN: ", "not a boolean");
}

static void test_hostport(void **state)
{
    (void)state;
    static const char *const good[] = {
        "0.0.0.0:8080", ":0", "localhost:65535", "[::]:80", "[fe80::1%eth0]:1", "my-host.svc:443"};
    static const char *const bad[] = {
        "abc",     "abc:",  ":",     "host:65536", "host:-1",     "host:http", "::1:80",
        "[::1]80", "[::1]", "[]:80", "ho st:80",   "host:123456", "host:80 "};
    char err[256];

    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        setenv("TT_HTTP_LISTEN", good[i], 1);
        if (config_load(vars, NVARS, err, sizeof(err)) != 0)
            fail_msg("rejected %s: %s", good[i], err);
        config_release(vars, NVARS);
    }
    setenv("TT_HTTP_LISTEN", "abc", 1);
    expect_error("TT_HTTP_LISTEN: \"abc\" is not host:port", NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("TT_HTTP_LISTEN", bad[i], 1);
        expect_error("TT_HTTP_LISTEN: ", "is not host:port");
    }
    /* a value with a newline is shown on the same line */
    setenv("TT_HTTP_LISTEN", "a\nb", 1);
    expect_error("TT_HTTP_LISTEN: \"a?b\" is not host:port", NULL);
}

static void test_url(void **state)
{
    (void)state;
    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    setenv("TT_DATABASE_URL", "host=db password=" SECRET_VALUE, 1);
    expect_error("TT_DATABASE_URL: not a URL", NULL); /* and the value is not echoed */
    setenv("TT_DATABASE_URL", "://x", 1);
    expect_error("TT_DATABASE_URL: ", NULL);
    setenv("TT_DATABASE_URL", "1http://x", 1);
    expect_error("TT_DATABASE_URL: ", NULL);
    setenv("TT_DATABASE_URL", "redis:/x", 1);
    expect_error("TT_DATABASE_URL: ", NULL);
}

/* The first failure stops: an earlier bad variable is reported, not a later one. */
static void test_first_failure_wins(void **state)
{
    (void)state;
    setenv("TT_KAFKA_BROKERS", "k:1", 1);
    setenv("TT_HTTP_LISTEN", "nope", 1);
    setenv("TT_BATCH_MAX", "0", 1);
    expect_error("TT_HTTP_LISTEN: ", NULL);
}

static void test_bad_default_and_small_err(void **state)
{
    (void)state;
    long n = 7;
    char err[8];
    const struct config_var v[] = {{"TT_BATCH_MAX", CONFIG_INT, false, "0", 1, 10, "x", &n}};

    assert_int_equal(config_load(v, 1, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "TT_BATC"); /* truncated, still NUL-terminated */
    assert_int_equal(config_load(v, 1, NULL, 0), -EINVAL);
}

static void test_markdown(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    config_print_markdown(vars, NVARS, f);
    fclose(f);
    assert_non_null(strstr(
        buf, "| Variable | Required | Default | Description |\n| --- | --- | --- | --- |\n"));
    assert_non_null(strstr(buf, "| `TT_KAFKA_BROKERS` | yes |  | Kafka bootstrap servers |\n"));
    assert_non_null(strstr(buf, "| `TT_BATCH_MAX` | no | `500` | Largest batch \\| per call |\n"));
    assert_non_null(strstr(buf, "| `TT_APP_SECRET` | no |  | Webhook HMAC secret (secret; "
                                "TT_APP_SECRET_FILE accepted) |\n"));
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + (int)NVARS);
    free(buf);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),           T(test_values),
        T(test_bool_forms),         T(test_missing_required),
        T(test_both_name_and_file), T(test_file_value),
        T(test_file_unreadable),    T(test_file_empty_counts_as_unset),
        T(test_int_errors),         T(test_bad_bool),
        T(test_hostport),           T(test_url),
        T(test_first_failure_wins), T(test_bad_default_and_small_err),
        T(test_markdown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
