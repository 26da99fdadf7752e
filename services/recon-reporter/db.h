/*
 * db — small helpers over libpq for recon-reporter's modules: parameterised statements with
 * text parameters and one error line, transactions, and JSON produced by Postgres itself.
 */
#ifndef RECON_DB_H
#define RECON_DB_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/*
 * Run sql with nparams text parameters (a NULL entry is SQL NULL). Returns the result when it
 * is PGRES_COMMAND_OK or PGRES_TUPLES_OK (caller PQclear's it), else NULL with the server's
 * message in err.
 */
PGresult *db_query(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                   size_t errlen);

/* Same as db_query for a statement whose rows are not wanted. Returns 0 or -EIO with err. */
int db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
            size_t errlen);

/*
 * Run sql, which must return one row of one column (typically json built by Postgres), and
 * return a malloc'd copy of that value ("" for NULL). NULL with err on failure.
 */
char *db_scalar(PGconn *conn, const char *sql, int nparams, const char *const *params, char *err,
                size_t errlen);

/* Format v as a decimal into buf (for text parameters); returns buf. */
const char *db_int(char *buf, size_t cap, int64_t v);

#endif
