/*
 * pg — a small pool of libpq connections to one database.
 *
 * Connections are made lazily, on the first pg_acquire() that needs one. A
 * connection returned broken (PQstatus not OK, or one whose socket shows the
 * server has gone away while it sat idle, e.g. after a restart or
 * pg_terminate_backend) is repaired on a later acquire: PQreset first, a new
 * connection if that fails. After a failed attempt a slot waits before trying
 * again (100 ms doubling to 5 s), so a database that is down is not hammered:
 * acquires during the wait fail at once with the last error.
 */
#ifndef TILLSYNC_PG_H
#define TILLSYNC_PG_H

#include <stdbool.h>

#include <libpq-fe.h>

struct pg;

/* Create a pool of up to pool_size (0 = 4) connections to url
 * ("postgresql://..."; a connect_timeout of 5 s applies unless the URL sets
 * one). Nothing is connected yet. Returns NULL with err when url does not
 * parse. Free with pg_free(). */
struct pg *pg_new(const char *url, unsigned pool_size, char *err, size_t errlen);

/* Take a connection for exclusive use until pg_release(). Waits up to
 * timeout_ms for a free one. Returns NULL with err when the database is
 * unreachable (err has libpq's reason, or says a retry is pending) or no
 * connection became free in time. The connection stays owned by the pool. */
PGconn *pg_acquire(struct pg *pg, int timeout_ms, char *err, size_t errlen);

/* Give conn back. A broken connection is marked for repair on a later
 * acquire; one left inside a transaction is rolled back. NULL is fine. */
void pg_release(struct pg *pg, PGconn *conn);

/* true when "SELECT 1" answers within 2 s on a pooled connection; else false
 * with the reason in why. For /readyz. */
bool pg_ping(struct pg *pg, char *why, size_t whylen);

/* Close every connection and free the pool; connections must have been
 * released. NULL is fine. */
void pg_free(struct pg *pg);

/* Run one statement (or several separated by ';') that returns no rows the
 * caller wants. Returns 0, or -EIO with the server's message in err. */
int pg_exec(PGconn *conn, const char *sql, char *err, size_t errlen);

#endif
