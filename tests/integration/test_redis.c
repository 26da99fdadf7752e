/* Integration tests for services/common/redis.c against the real Redis of the
 * local stack (REDIS_URL). Keys are prefixed with the process id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "redis.h"

static char prefix[32];

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    const char *u = getenv("REDIS_URL");
    char err[256] = "";
    if (!u || !*u) {
        print_error("REDIS_URL is not set (run through tests/lib/with-stack)\n");
        return -1;
    }
    struct redis *r = redis_new(u, 1, 2000, err, sizeof err);
    if (!r) {
        print_error("redis_new: %s\n", err);
        return -1;
    }
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    redis_free(*state);
    return 0;
}

static void key(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s:%s", prefix, name);
}

static void test_commands_binary_and_errors(void **state)
{
    struct redis *r = *state;
    char err[256] = "", k[64];
    key(k, sizeof k, "bin");
    const char *argv[] = {"SET", k, "a\0b"};
    const size_t lens[] = {3, strlen(k), 3};
    redisReply *rep = redis_command_argv(r, 3, argv, lens, err, sizeof err);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    rep = redis_command(r, err, sizeof err, "GET %s", k);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_int_equal(rep->len, 3);
    assert_memory_equal(rep->str, "a\0b", 3);
    freeReplyObject(rep);

    /* an error reply is passed through, not NULL */
    rep = redis_command(r, err, sizeof err, "INCR %s", k);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(rep->str, "not an integer"));
    freeReplyObject(rep);
    rep = redis_command(r, err, sizeof err, "NOSUCHCOMMAND");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
    rep = redis_command(r, err, sizeof err, "DEL %s", k);
    freeReplyObject(rep);

    char why[128];
    assert_true(redis_ping(r, why, sizeof why));
}

static long long client_id(struct redis *r)
{
    char err[256] = "";
    redisReply *rep = redis_command(r, err, sizeof err, "CLIENT ID");
    if (!rep)
        fail_msg("CLIENT ID: %s", err);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    long long id = rep->integer;
    freeReplyObject(rep);
    return id;
}

/* Kill the pool's connection from outside; the next command reconnects. */
static void test_reconnect_after_client_kill(void **state)
{
    struct redis *r = *state;
    char err[256] = "", k[64];
    long long id = client_id(r);

    struct redis *killer = redis_new(getenv("REDIS_URL"), 1, 2000, err, sizeof err);
    redisReply *rep = redis_command(killer, err, sizeof err, "CLIENT KILL ID %lld", id);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    redis_free(killer);

    key(k, sizeof k, "afterkill");
    rep = redis_command(r, err, sizeof err, "SET %s %s", k, "v");
    if (!rep)
        fail_msg("command after CLIENT KILL: %s", err);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    assert_int_not_equal(client_id(r), id);
    rep = redis_command(r, err, sizeof err, "DEL %s", k);
    freeReplyObject(rep);
}

static void test_script_noscript_reload(void **state)
{
    struct redis *r = *state;
    char err[256] = "", k[64];
    key(k, sizeof k, "counter");
    static struct redis_script incr = {.source = "return redis.call('INCRBY', KEYS[1], ARGV[1])"};
    const char *args[] = {k, "5"};
    redisReply *rep = redis_eval(r, &incr, 1, 1, args, NULL, err, sizeof err);
    if (!rep)
        fail_msg("eval: %s", err);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 5);
    freeReplyObject(rep);
    assert_int_equal(strlen(incr.sha), 40);
    char sha[41];
    memcpy(sha, incr.sha, sizeof sha);

    rep = redis_command(r, err, sizeof err, "SCRIPT FLUSH");
    freeReplyObject(rep);
    rep = redis_command(r, err, sizeof err, "SCRIPT EXISTS %s", sha);
    assert_int_equal(rep->element[0]->integer, 0);
    freeReplyObject(rep);

    rep = redis_eval(r, &incr, 1, 1, args, NULL, err, sizeof err);
    if (!rep)
        fail_msg("eval after SCRIPT FLUSH: %s", err);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 10); /* ran exactly once more */
    freeReplyObject(rep);
    assert_string_equal(incr.sha, sha);

    /* a script's runtime error is a reply */
    static struct redis_script bad = {.source = "return redis.call('INCR', KEYS[1], 'x', 'y')"};
    rep = redis_eval(r, &bad, 1, 0, args, NULL, err, sizeof err);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
    /* a script that does not compile: NULL with the reason */
    static struct redis_script broken = {.source = "return ((("};
    assert_null(redis_eval(r, &broken, 0, 0, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "SCRIPT LOAD"));

    rep = redis_command(r, err, sizeof err, "DEL %s", k);
    freeReplyObject(rep);
}

static void test_db_and_url(void **state)
{
    (void)state;
    char err[256] = "", url[256], k[64];
    const char *base = getenv("REDIS_URL");
    /* same server, database 3 */
    const char *hostport = base + strlen("redis://");
    size_t hl = strcspn(hostport, "/");
    snprintf(url, sizeof url, "redis://%.*s/3", (int)hl, hostport);
    struct redis *r3 = redis_new(url, 1, 1000, err, sizeof err);
    assert_non_null(r3);
    key(k, sizeof k, "db3");
    redisReply *rep = redis_command(r3, err, sizeof err, "SET %s here", k);
    assert_non_null(rep);
    freeReplyObject(rep);
    struct redis *r0 = redis_new(base, 1, 1000, err, sizeof err);
    rep = redis_command(r0, err, sizeof err, "EXISTS %s", k);
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    rep = redis_command(r3, err, sizeof err, "DEL %s", k);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    redis_free(r3);
    redis_free(r0);

    /* a wrong password: the connection fails with a clear reason */
    snprintf(url, sizeof url, "redis://:wrong@%.*s/0", (int)hl, hostport);
    struct redis *ra = redis_new(url, 1, 1000, err, sizeof err);
    assert_non_null(ra);
    assert_null(redis_command(ra, err, sizeof err, "PING"));
    assert_non_null(strstr(err, "AUTH"));
    redis_free(ra);

    assert_null(redis_new("http://x", 1, 1000, err, sizeof err));
    assert_null(redis_new("redis://host:port", 1, 1000, err, sizeof err));
    assert_null(redis_new("redis://host:1/x", 1, 1000, err, sizeof err));
    assert_null(redis_new("redis://", 1, 1000, err, sizeof err));
    redis_free(NULL);
}

static void test_unreachable(void **state)
{
    (void)state;
    char err[256] = "", why[256] = "";
    /* refused: nothing listens on port 1 */
    struct redis *r = redis_new("redis://127.0.0.1:1/0", 2, 500, err, sizeof err);
    assert_non_null(r);
    int64_t t0 = ms_now();
    assert_null(redis_command(r, err, sizeof err, "PING"));
    assert_non_null(strstr(err, "redis unavailable"));
    assert_non_null(strstr(err, "127.0.0.1:1"));
    assert_false(redis_ping(r, why, sizeof why));
    assert_non_null(strstr(why, "redis unavailable"));
    assert_true(ms_now() - t0 < 1000);
    redis_free(r);

    /* silent: a socket that accepts connections (backlog) but never answers;
     * the command fails within the timeout (twice: the retry) */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    socklen_t alen = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    r = redis_new(url, 1, 300, err, sizeof err);
    t0 = ms_now();
    assert_null(redis_command(r, err, sizeof err, "PING"));
    int64_t took = ms_now() - t0;
    assert_non_null(strstr(err, "redis unavailable"));
    if (took < 250 || took > 1500)
        fail_msg("took %lld ms (timeout 300 ms, one retry)", (long long)took);
    redis_free(r);
    close(lfd);
}

int main(void)
{
    snprintf(prefix, sizeof prefix, "test_redis:%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commands_binary_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_client_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_noscript_reload, setup, teardown),
        cmocka_unit_test(test_db_and_url),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
