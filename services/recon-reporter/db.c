/* db — see db.h. */
#include "db.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PGresult *db_query(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                   size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
    /* one line: libpq ends messages with a newline */
    err[strcspn(err, "\n")] = '\0';
    PQclear(r);
    return NULL;
}

int db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
            size_t errlen)
{
    PGresult *r = db_query(conn, sql, nparams, params, err, errlen);

    if (!r)
        return -EIO;
    PQclear(r);
    return 0;
}

char *db_scalar(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                size_t errlen)
{
    PGresult *r = db_query(conn, sql, nparams, params, err, errlen);
    char *out = NULL;

    if (!r)
        return NULL;
    if (PQntuples(r) != 1 || PQnfields(r) != 1) {
        snprintf(err, errlen, "expected one value, got %d rows", PQntuples(r));
        goto out;
    }
    out = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    if (!out)
        snprintf(err, errlen, "out of memory");
out:
    PQclear(r);
    return out;
}

const char *db_int(char *buf, size_t cap, int64_t v)
{
    snprintf(buf, cap, "%" PRId64, v);
    return buf;
}
