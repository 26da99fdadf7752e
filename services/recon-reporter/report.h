/*
 * report — the daily reconciliation per tenant, store and channel, as JSON and CSV, and the
 * trace of one figure back to its events.
 *
 * Figures (metric / key): transactions (kind), sales (stock | non_stock), returns, discounts
 * (code), tax (code@rate), tenders (cash, card, …), takings_declared (cash, card, other),
 * orders (online | pickup | in_store), cancellations, refunds, stock_movements (movement kind,
 * quantity only), and open_exceptions (owner/type, quantity = count). Money is a decimal string
 * in the figure's currency (money_format); every money figure carries the number of events
 * behind it and the trace path listing them.
 */
#ifndef RECON_REPORT_H
#define RECON_REPORT_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

/*
 * The reconciliation of date ("YYYY-MM-DD") for tenant, all stores or only store (NULL = all):
 * {"tenant_id","date","groups":[{"store_code","channel","figures":[{"metric","key","currency",
 * "amount","quantity","event_count","trace"}]}]}. Returns a new reference, or NULL with err.
 */
json_t *report_build(PGconn *conn, const char *tenant, const char *date, const char *store,
                     char *err, size_t errlen);

/*
 * The same report as CSV (UTF-8, CRLF line ends, a header line, RFC 4180 quoting): columns
 * date,tenant_id,store_code,channel,metric,key,currency,amount,quantity,event_count.
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *report_csv(const json_t *report);

/*
 * The events behind one figure: {"figure":{…},"events":[{"event_id","amount","quantity",
 * "topic","partition","offset","occurred_at","summary","refs"}]}; the events' amounts sum to
 * the figure. NULL with err.
 */
json_t *report_trace(PGconn *conn, const char *date, const char *store, const char *channel,
                     const char *metric, const char *key, const char *currency, char *err,
                     size_t errlen);

/* Append s to the CSV line in *buf, quoted when needed. Returns 0 or -ENOMEM. */
int report_csv_cell(char **buf, size_t *len, size_t *cap, const char *s, int last);

/* True when date is a valid calendar date "YYYY-MM-DD". */
int report_date_valid(const char *date);

#endif
