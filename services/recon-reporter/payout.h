/*
 * payout — import of a platform payout file (CSV, UTF-8, RFC 4180 quoting) for the payout check.
 *
 * Columns, by header name in any order (others ignored): payout_id, order_id, kind (charge,
 * refund, fee or adjustment), amount (decimal in major units, e.g. "12.34"; refunds and fees as
 * positive amounts), currency (ISO 4217). One line per order and kind within a payout.
 */
#ifndef RECON_PAYOUT_H
#define RECON_PAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* One parsed line; strings point into the parser's copy of the file. */
struct payout_line {
    const char *payout_id, *order_id, *kind, *currency;
    int64_t amount; /* minor units */
};

/* A parsed file. Release with payout_file_release(). */
struct payout_file {
    char *buf; /* the cells, NUL-separated */
    struct payout_line *lines;
    size_t n;
};

/*
 * Parse csv[0..len). Returns 0, or -EINVAL with err naming the line (1-based, header = 1) and
 * the problem: a missing column, an unknown kind, a bad amount, an unterminated quote.
 * f is caller-owned; release it whatever this returns.
 */
int payout_parse(struct payout_file *f, const char *csv, size_t len, char *err, size_t errlen);

void payout_file_release(struct payout_file *f);

/*
 * Store the lines of f, replacing earlier lines of the same payouts (a re-import is
 * idempotent), in one transaction. Returns the number of lines stored, or -EIO with err.
 */
int payout_import(PGconn *conn, const struct payout_file *f, char *err, size_t errlen);

#endif
