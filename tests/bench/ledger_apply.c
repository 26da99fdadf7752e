/*
 * bench_ledger_apply — the raw ceiling of the ledger's writes on this Postgres: multi-row
 * INSERTs of ledger rows equivalent to what the service writes (same table, same indexes, same
 * unnest() statement, batches of B rows, one transaction each).
 *
 * Usage: bench_ledger_apply DATABASE_URL ROWS BATCH   → prints "raw_rows_per_s=<n>"
 * The database must hold the inventory-ledger schema (tests/bench/ledger_apply prepares it).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Append text to a growing buffer (aborts on out of memory: a benchmark, not a service). */
static void put(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);

    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            abort();
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

int main(int argc, char **argv)
{
    PGconn *c;
    long rows, batch;
    double t0, t1;

    if (argc != 4) {
        fprintf(stderr, "usage: bench_ledger_apply DATABASE_URL ROWS BATCH\n");
        return 2;
    }
    rows = strtol(argv[2], NULL, 10);
    batch = strtol(argv[3], NULL, 10);
    if (rows < 1 || batch < 1) {
        fprintf(stderr, "bench_ledger_apply: ROWS and BATCH must be positive\n");
        return 2;
    }
    c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_ledger_apply: %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    t0 = now_s();
    for (long done = 0; done < rows;) {
        char *a[9] = {0}, item[160];
        size_t len[9] = {0}, cap[9] = {0};
        const char *params[11];
        long n = rows - done < batch ? rows - done : batch;
        PGresult *res;

        for (int k = 0; k < 9; k++)
            put(&a[k], &len[k], &cap[k], "{");
        for (long i = 0; i < n; i++) {
            long r = done + i;
            const char *sep = i ? "," : "";

            snprintf(item, sizeof(item), "%s\"S%ld\"", sep, r % 50);
            put(&a[0], &len[0], &cap[0], item);
            snprintf(item, sizeof(item), "%s\"L%ld\"", sep, (r / 50) % 4);
            put(&a[1], &len[1], &cap[1], item);
            snprintf(item, sizeof(item), "%s\"on_hand\"", sep);
            put(&a[2], &len[2], &cap[2], item);
            snprintf(item, sizeof(item), "%s%ld", sep, r % 2 ? -1L : 2L);
            put(&a[3], &len[3], &cap[3], item);
            snprintf(item, sizeof(item), "%s\"%s\"", sep, r % 2 ? "sale" : "received");
            put(&a[4], &len[4], &cap[4], item);
            snprintf(item, sizeof(item), "%s\"raw-bench-%ld\"", sep, r);
            put(&a[5], &len[5], &cap[5], item);
            snprintf(item, sizeof(item), "%s\"pos:L%ld/T1/B-%ld\"", sep, (r / 50) % 4, r);
            put(&a[6], &len[6], &cap[6], item);
            snprintf(item, sizeof(item), "%s\"1\"", sep);
            put(&a[7], &len[7], &cap[7], item);
            snprintf(item, sizeof(item), "%s%ld", sep, 1700000000000L + r);
            put(&a[8], &len[8], &cap[8], item);
        }
        for (int k = 0; k < 9; k++) {
            put(&a[k], &len[k], &cap[k], "}");
            params[k + 1] = a[k];
        }
        params[0] = "bench";
        params[10] = "1700000000000";
        PQclear(PQexec(c, "BEGIN"));
        res = PQexecParams(c,
                           "INSERT INTO ledger_entries (tenant_id, sku, location_id, bucket, "
                           "delta, reason, event_id, source_ref, line_ref, occurred_at_ms, "
                           "recorded_at_ms) SELECT $1, s, l, b, d, r, e, sr, lr, o, $11 FROM "
                           "unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], "
                           "$7::text[], $8::text[], $9::text[], $10::bigint[]) "
                           "AS u(s, l, b, d, r, e, sr, lr, o)",
                           11, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "bench_ledger_apply: %s", PQresultErrorMessage(res));
            PQclear(res);
            PQfinish(c);
            return 1;
        }
        PQclear(res);
        PQclear(PQexec(c, "COMMIT"));
        for (int k = 0; k < 9; k++)
            free(a[k]);
        done += n;
    }
    t1 = now_s();
    printf("raw_rows_per_s=%.0f\n", (double)rows / (t1 - t0));
    PQfinish(c);
    return 0;
}
