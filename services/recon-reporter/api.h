/*
 * api — recon-reporter's HTTP API and dashboard (services/recon-reporter/openapi.yaml):
 *   GET  /                                    the dashboard (HTML; /dashboard.js, /dashboard.css)
 *   GET  /v1/exceptions                       list, filters owner, type, status, store_code,
 * severity GET  /v1/exceptions/{id}                  one exception with the events behind it POST
 * /v1/exceptions/{id}/acknowledge      {"by": "...", "note": "..."} POST
 * /v1/exceptions/{id}/resolve          {"by": "...", "note": "..."} GET  /v1/events/{id} one
 * consumed event (topic, partition, offset, refs) GET  /v1/reconciliation?date=&store_code= the
 * day's reconciliation (JSON) GET  /v1/reconciliation.csv?date=&store_code=   the same as CSV GET
 * /v1/reconciliation/trace?date=&store_code=&channel=&metric=&key=&currency= POST /v1/payouts a
 * payout CSV (text/csv) GET  /v1/flows                            flow health: lag, last event per
 * topic, DLQ counts POST /v1/checks/run                       run the own checks now
 */
#ifndef RECON_API_H
#define RECON_API_H

#include <stddef.h>

#include "http.h"

struct recon;

/* The route table (static storage, opaque = r). Sets *n. */
const struct http_route *api_routes(struct recon *r, size_t *n);

/* The dashboard's files (static strings). */
extern const char dashboard_html[];
extern const char dashboard_js[];
extern const char dashboard_css[];

#endif
