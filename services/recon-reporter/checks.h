/*
 * checks — recon-reporter's own checks, run periodically against its store:
 *   - POS transactions with stock lines that no inventory.levels.v1 record reflected within the
 *     deadline (TRANSACTION_NOT_APPLIED) and online orders likewise (ORDER_NOT_REFLECTED);
 *   - takings declared at a till versus the sum of its recorded tenders for the day, cash,
 *     card and other separately (TAKINGS_VARIANCE);
 *   - online order totals and refunds versus imported payout lines (PAYOUT_VARIANCE);
 *   - ledger balances versus the sum of the ledger (BALANCE_MISMATCH), when inventory-ledger's
 *     tables balances and ledger_entries are in the same database; otherwise the check reports
 *     itself unavailable (res->ledger) instead of failing;
 *   - SKUs known on one side only (SKU_ONE_SIDE_ONLY, skuside.h): sold or moved at the tills but
 *     in no shop catalogue, or tracked in a shop catalogue for longer than sku_side_grace_s and
 *     never sold or moved at a till; reported unavailable (res->sku_sides) until both sides
 *     have been seen at all.
 * "Reflected in stock" means an inventory.levels.v1 record tied to the fact (see ingest.h) or,
 * when inventory-ledger shares the database, the fact's event id in its applied_events.
 * Each finding becomes an exception once (again only when the figures change) and is cleared —
 * resolved automatically — once the condition no longer holds.
 */
#ifndef RECON_CHECKS_H
#define RECON_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct checks_opts {
    int64_t deadline_s;        /* transactions and orders must show in stock within this */
    int64_t takings_tolerance; /* minor units of difference accepted per tender group */
    int64_t sku_side_grace_s;  /* a tracked catalogue SKU may go unsold at the tills this long */
};

/* What a run found. */
struct checks_result {
    int raised;          /* exceptions raised or re-raised by this run */
    int cleared;         /* exceptions cleared by this run */
    char ledger[256];    /* "ok", or why the ledger check could not run */
    char sku_sides[256]; /* "ok", or why the one-side-only SKU check could not run */
};

/* Run every check once (autocommit statements on conn). Returns 0, or -EIO with err when a
 * check could not run for a database error (the others still ran). */
int checks_run(PGconn *conn, const struct checks_opts *o, struct checks_result *res, char *err,
               size_t errlen);

#endif
