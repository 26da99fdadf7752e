/* Integration tests for services/common/pg.c and migrate.c against the real
 * Postgres of the local stack (DATABASE_URL). Each test works in a schema of
 * its own (search_path set through the URL), dropped afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "migrate.h"
#include "pg.h"

#ifndef TILLSYNC_SOURCE_DIR
#define TILLSYNC_SOURCE_DIR "."
#endif
#define DATA_DIR TILLSYNC_SOURCE_DIR "/tests/integration/data"

struct fx {
    char schema[64];
    char url[1024]; /* DATABASE_URL with search_path=schema */
    PGconn *admin;
};

static const char *base_url(void)
{
    return getenv("DATABASE_URL");
}

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static int setup(void **state)
{
    static int counter;
    const char *u = base_url();
    if (!u || !*u) {
        print_error("DATABASE_URL is not set (run through tests/lib/with-stack)\n");
        return -1;
    }
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->schema, sizeof f->schema, "t_pg_%d_%d", (int)getpid(), ++counter);
    snprintf(f->url, sizeof f->url, "%s%soptions=-csearch_path%%3D%s", u,
             strchr(u, '?') ? "&" : "?", f->schema);
    f->admin = PQconnectdb(u);
    PQsetNoticeProcessor(f->admin, quiet, NULL);
    if (PQstatus(f->admin) != CONNECTION_OK) {
        print_error("cannot connect to %s: %s", u, PQerrorMessage(f->admin));
        PQfinish(f->admin);
        free(f);
        return -1;
    }
    char sql[128], err[256];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", f->schema);
    if (pg_exec(f->admin, sql, err, sizeof err) < 0) {
        print_error("%s: %s\n", sql, err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char sql[128], err[256];
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", f->schema);
    pg_exec(f->admin, sql, err, sizeof err);
    PQfinish(f->admin);
    free(f);
    return 0;
}

static PGconn *connect_fx(const struct fx *f)
{
    PGconn *c = PQconnectdb(f->url);
    PQsetNoticeProcessor(c, quiet, NULL);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", f->url, PQerrorMessage(c));
    return c;
}

/* First value of a one-row query, as a long. */
static long query_long(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* ---- migrations */

static void test_migrate_once_in_order(void **state)
{
    struct fx *f = *state;
    PGconn *c = connect_fx(f);
    char err[512] = "";
    int n = migrate_apply(c, "testsvc", DATA_DIR "/migrations-ok", err, sizeof err);
    if (n != 4)
        fail_msg("migrate_apply = %d: %s", n, err);
    /* 9 ran before 10: seeded holds 1 and 2 */
    assert_int_equal(query_long(c, "SELECT count(*) FROM seeded"), 2);
    assert_int_equal(query_long(c, "SELECT max(n) FROM seeded"), 2);
    assert_int_equal(query_long(c, "SELECT count(*) FROM items"), 0);
    assert_int_equal(query_long(c, "SELECT count(*) FROM tillsync_schema_migrations "
                                   "WHERE service = 'testsvc' AND length(checksum) = 64"),
                     4);
    assert_int_equal(query_long(c, "SELECT count(*) FROM tillsync_schema_migrations "
                                   "WHERE service = 'testsvc' AND version = 10 "
                                   "AND name = '10_seed_more.sql'"),
                     1);
    /* again: nothing to do, nothing re-run */
    assert_int_equal(migrate_apply(c, "testsvc", DATA_DIR "/migrations-ok", err, sizeof err), 0);
    assert_int_equal(query_long(c, "SELECT count(*) FROM seeded"), 2);
    /* another service has its own record */
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    PQfinish(c);
}

static void test_migrate_changed_file_refused(void **state)
{
    struct fx *f = *state;
    char dir[] = "/tmp/test_pg_migr_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "%s/0001_a.sql", dir);
    FILE *fp = fopen(path, "w");
    fputs("CREATE TABLE a (id integer);\n", fp);
    fclose(fp);
    PGconn *c = connect_fx(f);
    assert_int_equal(migrate_apply(c, "changed", dir, err, sizeof err), 1);
    fp = fopen(path, "a");
    fputs("-- edited after release\n", fp);
    fclose(fp);
    int rc = migrate_apply(c, "changed", dir, err, sizeof err);
    assert_int_equal(rc, -EEXIST);
    if (!strstr(err, "0001_a.sql") || !strstr(err, "changed"))
        fail_msg("err: %s", err);
    unlink(path);
    rmdir(dir);
    /* the lock was released: another session can take it at once */
    PGconn *c2 = connect_fx(f);
    assert_int_equal(query_long(c2, "SELECT pg_try_advisory_lock(hashtext("
                                    "'tillsync_migrations:changed'))::int"),
                     1);
    PQfinish(c2);
    PQfinish(c);
}

static void test_migrate_error_rolls_back(void **state)
{
    struct fx *f = *state;
    PGconn *c = connect_fx(f);
    char err[512] = "";
    int rc = migrate_apply(c, "bad", DATA_DIR "/migrations-bad", err, sizeof err);
    assert_int_equal(rc, -EIO);
    if (!strstr(err, "0002_broken.sql") || !strstr(err, "syntax"))
        fail_msg("err: %s", err);
    assert_int_equal(query_long(c, "SELECT count(*) FROM tillsync_schema_migrations "
                                   "WHERE service = 'bad'"),
                     1);
    assert_int_equal(query_long(c, "SELECT count(*) FROM pg_tables WHERE tablename = "
                                   "'half_done' AND schemaname = current_schema()"),
                     0);
    assert_int_equal(query_long(c, "SELECT count(*) FROM pg_tables WHERE tablename = "
                                   "'good_one' AND schemaname = current_schema()"),
                     1);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    /* bad names and missing dirs are errors too */
    assert_int_equal(migrate_apply(c, "bad", DATA_DIR "/migrations-badname", err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "init.sql"));
    assert_int_equal(migrate_apply(c, "bad", DATA_DIR "/no-such-dir", err, sizeof err), -ENOENT);
    PQfinish(c);
}

struct race {
    const struct fx *f;
    int result;
    char err[512];
};

static void *race_worker(void *p)
{
    struct race *r = p;
    PGconn *c = PQconnectdb(r->f->url);
    r->result = migrate_apply(c, "race", DATA_DIR "/migrations-ok", r->err, sizeof r->err);
    PQfinish(c);
    return NULL;
}

static void test_migrate_concurrent(void **state)
{
    struct fx *f = *state;
    struct race r[3] = {{.f = f}, {.f = f}, {.f = f}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, race_worker, &r[i]);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    int total = 0;
    for (int i = 0; i < 3; i++) {
        if (r[i].result < 0)
            fail_msg("worker %d: %s", i, r[i].err);
        total += r[i].result;
    }
    assert_int_equal(total, 4);
    PGconn *c = connect_fx(f);
    assert_int_equal(query_long(c, "SELECT count(*) FROM seeded"), 2);
    PQfinish(c);
}

/* ---- pool */

static void test_pool_basics(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    assert_null(pg_new("nonsense", 2, err, sizeof err));
    assert_non_null(strstr(err, "DATABASE_URL"));

    struct pg *pg = pg_new(f->url, 1, err, sizeof err);
    assert_non_null(pg);
    PGconn *c = pg_acquire(pg, 1000, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(pg_exec(c, "CREATE TABLE t (id integer)", err, sizeof err), 0);
    assert_int_equal(pg_exec(c, "INSERT INTO nope VALUES (1)", err, sizeof err), -EIO);
    assert_non_null(strstr(err, "nope"));

    /* pool of one is busy: the second acquire times out */
    int64_t t0 = ms_now();
    assert_null(pg_acquire(pg, 200, err, sizeof err));
    int64_t took = ms_now() - t0;
    assert_true(took >= 150 && took < 2000);
    assert_non_null(strstr(err, "no database connection free"));

    /* released inside a transaction: rolled back */
    assert_int_equal(pg_exec(c, "BEGIN; INSERT INTO t VALUES (1)", err, sizeof err), 0);
    pg_release(pg, c);
    c = pg_acquire(pg, 1000, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    assert_int_equal(query_long(c, "SELECT count(*) FROM t"), 0);
    pg_release(pg, c);

    char why[256];
    assert_true(pg_ping(pg, why, sizeof why));
    pg_free(pg);
    pg_free(NULL);
}

static void test_pool_recovers_after_terminate(void **state)
{
    struct fx *f = *state;
    char err[256] = "";
    struct pg *pg = pg_new(f->url, 2, err, sizeof err);
    PGconn *c = pg_acquire(pg, 1000, err, sizeof err);
    assert_non_null(c);
    int pid = PQbackendPID(c);
    pg_release(pg, c);

    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)::int", pid);
    assert_int_equal(query_long(f->admin, sql), 1);
    usleep(200 * 1000);

    /* the idle connection is found dead and replaced on acquire */
    c = pg_acquire(pg, 1000, err, sizeof err);
    if (!c)
        fail_msg("acquire after terminate: %s", err);
    assert_int_not_equal(PQbackendPID(c), pid);
    assert_int_equal(query_long(c, "SELECT 1"), 1);

    /* a connection killed while in use fails its query, is returned broken
     * and repaired on the next acquire */
    pid = PQbackendPID(c);
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)::int", pid);
    assert_int_equal(query_long(f->admin, sql), 1);
    usleep(200 * 1000);
    assert_int_equal(pg_exec(c, "SELECT 1", err, sizeof err), -EIO);
    pg_release(pg, c);
    c = pg_acquire(pg, 1000, err, sizeof err);
    if (!c)
        fail_msg("acquire after failure: %s", err);
    assert_int_equal(query_long(c, "SELECT 1"), 1);
    pg_release(pg, c);
    char why[256];
    assert_true(pg_ping(pg, why, sizeof why));
    pg_free(pg);
}

static void test_pool_database_down(void **state)
{
    (void)state;
    char err[256] = "", why[256] = "";
    /* nothing listens on port 1 */
    struct pg *pg =
        pg_new("postgresql://tillsync@127.0.0.1:1/postgres?connect_timeout=2", 2, err, sizeof err);
    assert_non_null(pg);
    int64_t t0 = ms_now();
    assert_null(pg_acquire(pg, 1000, err, sizeof err));
    assert_non_null(strstr(err, "database unreachable"));
    assert_non_null(strstr(err, "127.0.0.1"));
    /* the next tries do not hammer: the second slot tries once, then both back off */
    assert_null(pg_acquire(pg, 1000, err, sizeof err));
    assert_null(pg_acquire(pg, 1000, err, sizeof err));
    assert_non_null(strstr(err, "retry pending"));
    assert_false(pg_ping(pg, why, sizeof why));
    assert_non_null(strstr(why, "postgres"));
    assert_true(ms_now() - t0 < 3000);
    pg_free(pg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_changed_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_error_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_basics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_recovers_after_terminate, setup, teardown),
        cmocka_unit_test(test_pool_database_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
