/* payout — see payout.h. */
#include "payout.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json_util.h"
#include "pg.h"

/* Cells of one record: pointers into f->buf. */
#define PAYOUT_MAX_COLS 32

/*
 * Read one CSV record from *pos (RFC 4180: quoted cells may hold commas, CR/LF and "" for a
 * quote), writing unescaped NUL-terminated cells into *out. Returns the number of cells, 0 at
 * the end of input, -1 on an unterminated quote.
 */
static int csv_record(const char *csv, size_t len, size_t *pos, char **out, char *cells[],
                      int maxcells)
{
    size_t i = *pos;
    int n = 0;
    char *w = *out;

    if (i >= len)
        return 0;
    for (;;) {
        if (n < maxcells)
            cells[n] = w;
        n++;
        if (i < len && csv[i] == '"') {
            i++;
            for (;;) {
                if (i >= len)
                    return -1;
                if (csv[i] == '"') {
                    if (i + 1 < len && csv[i + 1] == '"') {
                        *w++ = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                *w++ = csv[i++];
            }
        }
        while (i < len && csv[i] != ',' && csv[i] != '\n' && csv[i] != '\r')
            *w++ = csv[i++];
        *w++ = '\0';
        if (i < len && csv[i] == ',') {
            i++;
            continue;
        }
        if (i < len && csv[i] == '\r')
            i++;
        if (i < len && csv[i] == '\n')
            i++;
        break;
    }
    *pos = i;
    *out = w;
    return n;
}

void payout_file_release(struct payout_file *f)
{
    if (!f)
        return;
    free(f->buf);
    free(f->lines);
    memset(f, 0, sizeof(*f));
}

int payout_parse(struct payout_file *f, const char *csv, size_t len, char *err, size_t errlen)
{
    static const char *const want[] = {"payout_id", "order_id", "kind", "amount", "currency"};
    int col[5] = {-1, -1, -1, -1, -1};
    char *cells[PAYOUT_MAX_COLS], *w;
    size_t pos = 0, cap = 0;
    int n, lineno = 1;

    memset(f, 0, sizeof(*f));
    f->buf = malloc(len * 2 + 2); /* each byte at most once, plus one NUL per cell */
    if (!f->buf) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    w = f->buf;
    if (len >= 3 && !memcmp(csv, "\xEF\xBB\xBF", 3)) /* a UTF-8 BOM from spreadsheets */
        pos = 3;
    n = csv_record(csv, len, &pos, &w, cells, PAYOUT_MAX_COLS);
    if (n <= 0) {
        snprintf(err, errlen, "line 1: %s", n < 0 ? "unterminated quote" : "empty file");
        return -EINVAL;
    }
    for (int c = 0; c < n && c < PAYOUT_MAX_COLS; c++)
        for (int k = 0; k < 5; k++)
            if (!strcmp(cells[c], want[k]))
                col[k] = c;
    for (int k = 0; k < 5; k++)
        if (col[k] < 0) {
            snprintf(err, errlen, "line 1: column %s missing", want[k]);
            return -EINVAL;
        }
    while ((n = csv_record(csv, len, &pos, &w, cells, PAYOUT_MAX_COLS)) != 0) {
        struct payout_line *l;
        char why[160];

        lineno++;
        if (n < 0) {
            snprintf(err, errlen, "line %d: unterminated quote", lineno);
            return -EINVAL;
        }
        if (n == 1 && !cells[0][0])
            continue; /* blank line */
        if (n > PAYOUT_MAX_COLS) {
            snprintf(err, errlen, "line %d: too many columns", lineno);
            return -EINVAL;
        }
        for (int k = 0; k < 5; k++)
            if (col[k] >= n || !cells[col[k]][0]) {
                snprintf(err, errlen, "line %d: %s is empty", lineno, want[k]);
                return -EINVAL;
            }
        if (f->n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct payout_line *nl = realloc(f->lines, nc * sizeof(*nl));
            if (!nl) {
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
            f->lines = nl;
            cap = nc;
        }
        l = &f->lines[f->n];
        l->payout_id = cells[col[0]];
        l->order_id = cells[col[1]];
        l->kind = cells[col[2]];
        l->currency = cells[col[4]];
        if (strcmp(l->kind, "charge") && strcmp(l->kind, "refund") && strcmp(l->kind, "fee") &&
            strcmp(l->kind, "adjustment")) {
            snprintf(err, errlen,
                     "line %d: kind \"%.40s\" is not charge, refund, fee or adjustment", lineno,
                     l->kind);
            return -EINVAL;
        }
        if (strlen(l->currency) != 3) {
            snprintf(err, errlen, "line %d: currency \"%.20s\" is not an ISO 4217 code", lineno,
                     l->currency);
            return -EINVAL;
        }
        if (money_parse(cells[col[3]], l->currency, &l->amount, why, sizeof(why))) {
            snprintf(err, errlen, "line %d: %s", lineno, why);
            return -EINVAL;
        }
        f->n++;
    }
    return 0;
}

int payout_import(PGconn *conn, const struct payout_file *f, char *err, size_t errlen)
{
    int rc = 0;

    if (pg_exec(conn, "BEGIN", err, errlen))
        return -EIO;
    for (size_t i = 0; i < f->n && rc == 0; i++) {
        const char *p[] = {f->lines[i].payout_id};
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(f->lines[j].payout_id, f->lines[i].payout_id))
                first = false;
        if (first)
            rc = db_exec(conn, "DELETE FROM recon_payout_lines WHERE payout_id = $1", 1, p, err,
                         errlen);
    }
    for (size_t i = 0; i < f->n && rc == 0; i++) {
        char no[16], amt[32];
        const char *p[] = {f->lines[i].payout_id,
                           db_int(no, sizeof(no), (int64_t)i + 1),
                           f->lines[i].order_id,
                           f->lines[i].kind,
                           db_int(amt, sizeof(amt), f->lines[i].amount),
                           f->lines[i].currency};
        rc = db_exec(conn,
                     "INSERT INTO recon_payout_lines (payout_id, line_no, order_id, kind, amount, "
                     "currency) VALUES ($1, $2::int, $3, $4, $5::bigint, $6)",
                     6, p, err, errlen);
    }
    if (rc == 0 && pg_exec(conn, "COMMIT", err, errlen) == 0)
        return (int)f->n;
    {
        char ignored[128];
        pg_exec(conn, "ROLLBACK", ignored, sizeof(ignored));
    }
    return -EIO;
}
