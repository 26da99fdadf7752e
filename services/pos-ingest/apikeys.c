/* apikeys — see apikeys.h. */
#include "apikeys.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hmac.h"
#include "log.h"

struct apikey_entry {
    char hash[65];
    struct apikey_principal who;
};

struct apikeys {
    struct pg *pg;
    int refresh_ms;
    pthread_mutex_t lock;      /* guards everything below */
    struct apikey_entry *keys; /* replaced whole on reload */
    size_t nkeys;
    int64_t loaded_at; /* monotonic ms; 0 = never */
    bool loaded;
};

struct apikeys *apikeys_new(struct pg *pg, int refresh_ms)
{
    struct apikeys *k = calloc(1, sizeof(*k));

    if (!k)
        abort(); /* OOM policy */
    k->pg = pg;
    k->refresh_ms = refresh_ms;
    pthread_mutex_init(&k->lock, NULL);
    return k;
}

void apikeys_free(struct apikeys *k)
{
    if (!k)
        return;
    free(k->keys);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

void apikeys_invalidate(struct apikeys *k)
{
    pthread_mutex_lock(&k->lock);
    k->loaded_at = 0;
    pthread_mutex_unlock(&k->lock);
}

/* Load the live keys. Called with the lock held (reloads are rare and short). */
static int apikeys_reload(struct apikeys *k)
{
    char err[256];
    PGconn *conn = pg_acquire(k->pg, 2000, err, sizeof(err));
    PGresult *res = NULL;
    struct apikey_entry *keys = NULL;
    int n, rc = -EIO;

    if (!conn) {
        log_kv(LOG_LVL_WARN, "api keys not reloaded", "reason", err, NULL);
        return -EIO;
    }
    res = PQexec(conn, "SELECT key_sha256, coalesce(store_code, ''), coalesce(label, '') "
                       "FROM pos_api_keys WHERE revoked_at IS NULL OR revoked_at > now()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_kv(LOG_LVL_WARN, "api keys not reloaded", "reason", PQerrorMessage(conn), NULL);
        goto out;
    }
    n = PQntuples(res);
    keys = calloc((size_t)n + 1, sizeof(*keys));
    if (!keys)
        abort();
    for (int i = 0; i < n; i++) {
        snprintf(keys[i].hash, sizeof(keys[i].hash), "%s", PQgetvalue(res, i, 0));
        snprintf(keys[i].who.store_code, sizeof(keys[i].who.store_code), "%s",
                 PQgetvalue(res, i, 1));
        snprintf(keys[i].who.label, sizeof(keys[i].who.label), "%s", PQgetvalue(res, i, 2));
    }
    free(k->keys);
    k->keys = keys;
    k->nkeys = (size_t)n;
    k->loaded = true;
    rc = 0;
out:
    PQclear(res);
    pg_release(k->pg, conn);
    return rc;
}

int apikeys_check(struct apikeys *k, const char *presented, struct apikey_principal *who)
{
    char hash[65];
    size_t match = SIZE_MAX;
    int64_t now = clock_mono_ms();
    int rc;

    if (!presented || !*presented || strlen(presented) > 512)
        return -EACCES;
    if (sha256_hex(presented, strlen(presented), hash) != 0)
        return -EACCES;
    pthread_mutex_lock(&k->lock);
    if (!k->loaded || now - k->loaded_at >= k->refresh_ms) {
        if (apikeys_reload(k) == 0 || k->loaded)
            k->loaded_at = now; /* on failure keep the old set for another period */
    }
    if (!k->loaded) {
        rc = -EAGAIN;
        goto out;
    }
    for (size_t i = 0; i < k->nkeys; i++) {
        bool eq = ct_equal(hash, k->keys[i].hash, 64);

        /* branch-free select: no early exit, same work for every key */
        match = eq ? i : match;
    }
    rc = match == SIZE_MAX ? -EACCES : 0;
    if (rc == 0)
        *who = k->keys[match].who;
out:
    pthread_mutex_unlock(&k->lock);
    return rc;
}
