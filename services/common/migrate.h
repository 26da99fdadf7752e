/*
 * migrate — apply a service's SQL migrations once, in order, safely from
 * several replicas starting together.
 */
#ifndef TILLSYNC_MIGRATE_H
#define TILLSYNC_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

/*
 * Apply the files NNNN_name.sql in dir (normally services/<service>/migrations)
 * in numeric order of NNNN, each at most once, each in its own transaction
 * together with its row in tillsync_schema_migrations(service, version, name,
 * checksum, applied_at). The whole run holds the session advisory lock
 * pg_advisory_lock(hashtext('tillsync_migrations:' || service)), so replicas
 * starting together apply each file once; the table is created under that
 * lock too. Other files in dir are ignored; a *.sql whose name does not start
 * with digits and '_' is an error. A file must not contain its own
 * BEGIN/COMMIT.
 *
 * Returns the number of files applied (0 when up to date), or a negative
 * error with err set: -EINVAL (bad file name or duplicate version), -ENOENT /
 * -EIO (dir or file unreadable), -EIO for a database error (err names the
 * file; that file's changes are rolled back, earlier files stay applied),
 * -EEXIST when an applied file's sha256 changed (err names the file).
 * conn must be idle (no transaction open) and is left idle.
 */
int migrate_apply(PGconn *conn, const char *service, const char *dir, char *err, size_t errlen);

#endif
