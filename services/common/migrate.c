/*
 * migrate — SQL migrations under an advisory lock. See migrate.h.
 */
#include "migrate.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "pg.h"

struct migration {
    long version;
    char *name; /* file name, e.g. "0001_init.sql" */
};

static int migration_cmp(const void *a, const void *b)
{
    const struct migration *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

static void migrations_free(struct migration *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].name);
    free(m);
}

/* List dir's NNNN_name.sql files sorted by version. Returns the count or a
 * negative error with err. */
static int migrations_scan(const char *dir, struct migration **out, char *err, size_t errlen)
{
    struct migration *list = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d) {
        rc = -errno;
        snprintf(err, errlen, "migrations directory %s: %s", dir, strerror(errno));
        return rc;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        if (len < 5 || strcmp(nm + len - 4, ".sql") != 0)
            continue;
        char *end = NULL;
        errno = 0;
        long v = isdigit((unsigned char)nm[0]) ? strtol(nm, &end, 10) : -1;
        if (v < 0 || errno || !end || *end != '_' || v > INT_MAX) {
            snprintf(err, errlen, "migration file %s/%s is not named NNNN_name.sql", dir, nm);
            rc = -EINVAL;
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct migration *l = realloc(list, cap * sizeof *l);
            if (!l) {
                rc = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            list = l;
        }
        list[n].version = v;
        list[n].name = strdup(nm);
        if (!list[n].name) {
            rc = -ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        n++;
    }
    if (n)
        qsort(list, n, sizeof *list, migration_cmp);
    for (size_t i = 1; i < n; i++) {
        if (list[i].version == list[i - 1].version) {
            snprintf(err, errlen, "migrations %s and %s have the same version %ld",
                     list[i - 1].name, list[i].name, list[i].version);
            rc = -EINVAL;
            goto out;
        }
    }
out:
    closedir(d);
    if (rc < 0) {
        migrations_free(list, n);
        return rc;
    }
    *out = list;
    return (int)n;
}

/* Read a whole file as a NUL-terminated string. Returns 0 or negative. */
static int file_read(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    if (!f) {
        snprintf(err, errlen, "migration %s: %s", path, strerror(errno));
        return -EIO;
    }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                rc = -ENOMEM;
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096)
            break;
    }
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, errlen, "migration %s: read error", path);
        goto out;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        rc = -EINVAL;
        snprintf(err, errlen, "migration %s contains a NUL byte", path);
        goto out;
    }
out:
    fclose(f);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *data = buf;
    *len = n;
    return 0;
}

static void sha256_hex(const char *data, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
}

/* Run a parameterised statement; returns its result (caller PQclear()s) or
 * NULL with err set when it failed. */
static PGresult *exec_params(PGconn *conn, const char *sql, int n, const char *const *params,
                             char *err, size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
    size_t l = strlen(err);
    while (l && err[l - 1] == '\n')
        err[--l] = '\0';
    PQclear(r);
    return NULL;
}

/* Apply one file in its own transaction. Returns 0 or -EIO with err. */
static int migration_run(PGconn *conn, const char *service, const struct migration *m,
                         const char *sql, const char *checksum, char *err, size_t errlen)
{
    char msg[512] = "", version[24];
    snprintf(version, sizeof version, "%ld", m->version);
    const char *params[] = {service, version, m->name, checksum};
    PGresult *r = NULL;
    if (pg_exec(conn, "BEGIN", msg, sizeof msg) < 0)
        goto fail;
    if (pg_exec(conn, sql, msg, sizeof msg) < 0)
        goto fail_rollback;
    r = exec_params(conn,
                    "INSERT INTO tillsync_schema_migrations (service, version, name, checksum) "
                    "VALUES ($1, $2::integer, $3, $4)",
                    4, params, msg, sizeof msg);
    if (!r)
        goto fail_rollback;
    PQclear(r);
    if (pg_exec(conn, "COMMIT", msg, sizeof msg) < 0)
        goto fail_rollback;
    return 0;
fail_rollback:
    pg_exec(conn, "ROLLBACK", NULL, 0);
fail:
    snprintf(err, errlen, "migration %s failed (rolled back): %s", m->name, msg);
    return -EIO;
}

int migrate_apply(PGconn *conn, const char *service, const char *dir, char *err, size_t errlen)
{
    struct migration *list = NULL;
    char *sql = NULL;
    char msg[512] = "";
    int applied = 0, rc;
    bool locked = false;
    const char *svc[] = {service};
    PGresult *r = NULL;

    int n = migrations_scan(dir, &list, err, errlen);
    if (n < 0)
        return n;

    r = exec_params(conn, "SELECT pg_advisory_lock(hashtext('tillsync_migrations:' || $1))", 1, svc,
                    msg, sizeof msg);
    if (!r) {
        snprintf(err, errlen, "migrations for %s: cannot take the lock: %s", service, msg);
        rc = -EIO;
        goto out;
    }
    PQclear(r);
    locked = true;
    /* to_regclass first: CREATE TABLE IF NOT EXISTS would send a NOTICE that
     * libpq prints on stderr by default */
    r = exec_params(conn, "SELECT to_regclass('tillsync_schema_migrations') IS NULL", 0, NULL, msg,
                    sizeof msg);
    bool missing = r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    r = NULL;
    if (missing && pg_exec(conn,
                           "CREATE TABLE tillsync_schema_migrations ("
                           " service text NOT NULL, version integer NOT NULL, name text NOT NULL,"
                           " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                           " PRIMARY KEY (service, version))",
                           msg, sizeof msg) < 0) {
        snprintf(err, errlen, "migrations table: %s", msg);
        rc = -EIO;
        goto out;
    }

    for (int i = 0; i < n; i++) {
        char path[PATH_MAX], version[24], checksum[65];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
        free(sql);
        sql = NULL;
        rc = file_read(path, &sql, &len, err, errlen);
        if (rc < 0)
            goto out;
        sha256_hex(sql, len, checksum);
        snprintf(version, sizeof version, "%ld", list[i].version);
        const char *q[] = {service, version};
        r = exec_params(conn,
                        "SELECT checksum, name FROM tillsync_schema_migrations "
                        "WHERE service = $1 AND version = $2::integer",
                        2, q, msg, sizeof msg);
        if (!r) {
            snprintf(err, errlen, "migration %s: %s", list[i].name, msg);
            rc = -EIO;
            goto out;
        }
        if (PQntuples(r) > 0) {
            bool same = strcmp(PQgetvalue(r, 0, 0), checksum) == 0;
            if (!same)
                snprintf(err, errlen,
                         "migration %s was changed after it was applied (as %s): checksum %s, "
                         "recorded %s",
                         list[i].name, PQgetvalue(r, 0, 1), checksum, PQgetvalue(r, 0, 0));
            PQclear(r);
            r = NULL;
            if (!same) {
                rc = -EEXIST;
                goto out;
            }
            continue;
        }
        PQclear(r);
        r = NULL;
        rc = migration_run(conn, service, &list[i], sql, checksum, err, errlen);
        if (rc < 0)
            goto out;
        applied++;
    }
    rc = applied;
out:
    if (locked) {
        PGresult *u = PQexecParams(conn,
                                   "SELECT pg_advisory_unlock(hashtext('tillsync_migrations:' "
                                   "|| $1))",
                                   1, NULL, svc, NULL, NULL, 0);
        PQclear(u); /* if the session is gone, so is the lock */
    }
    free(sql);
    migrations_free(list, (size_t)(n > 0 ? n : 0));
    return rc;
}
