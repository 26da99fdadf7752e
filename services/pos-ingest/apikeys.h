/*
 * apikeys — store API keys: each store (or a WMS / ERP) authenticates with its own key. Keys
 * are stored only as their SHA-256 (hex) in Postgres table pos_api_keys; the set of live keys
 * is cached in memory and reloaded every refresh_ms, so a key added or revoked in the table
 * takes effect within that time, without a restart (rotation: insert the new key, let the
 * till switch, then set revoked_at on the old one).
 *
 * A presented key is hashed and compared with EVERY cached hash in constant time (no early
 * exit), so timing reveals neither which key nor how much of one matched.
 */
#ifndef POS_INGEST_APIKEYS_H
#define POS_INGEST_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "pg.h"

struct apikeys;

/* Who a key belongs to. store_code "" = any store (a WMS, ERP or head-office system). */
struct apikey_principal {
    char store_code[129];
    char label[129];
};

/* Create the cache over pg (borrowed; must outlive it). Nothing is loaded yet. Never NULL. */
struct apikeys *apikeys_new(struct pg *pg, int refresh_ms);

void apikeys_free(struct apikeys *k);

/*
 * Check a presented key. Reloads the cache first when it is older than refresh_ms (when the
 * reload fails the previous set stays in use). Returns 0 with *who filled; -EACCES for a
 * missing or unknown key; -EAGAIN when no key set could ever be loaded (database down since
 * start: answer 503).
 */
int apikeys_check(struct apikeys *k, const char *presented, struct apikey_principal *who);

/* Force the next check to reload (tests, admin). */
void apikeys_invalidate(struct apikeys *k);

#endif
