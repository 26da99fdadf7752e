/*
 * memberlock — one writer per member across every replica: a Redis lock (SET key token NX PX
 * ttl) whose token is random per holder, released and extended only by its holder (Lua
 * compare-and-delete / compare-and-pexpire), so a holder whose lock expired can never free
 * someone else's.
 */
#ifndef LOYALTY_MEMBERLOCK_H
#define LOYALTY_MEMBERLOCK_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "redis.h"

/* A held (or not) lock. key and token are owned copies; caller-owned struct. */
struct memberlock {
    char key[256];
    char token[40];
    bool held;
};

/*
 * Try to take lock name (e.g. "member:shopify/shop/123") for ttl_ms, waiting with short
 * jittered sleeps up to wait_ms. Returns 0 with l->held, -EBUSY when another holder kept it
 * for wait_ms, -ECANCELED as soon as *running (NULL = never) is 0 while waiting, -EIO when
 * Redis is unavailable (err set).
 */
int memberlock_acquire(struct memberlock *l, struct redis *r, const char *tenant, const char *name,
                       long ttl_ms, long wait_ms, volatile sig_atomic_t *running, char *err,
                       size_t errlen);

/* Push the expiry of a held lock to ttl_ms from now. Returns 0, -ENOLCK when the lock is no
 * longer ours (expired and maybe taken), -EIO. */
int memberlock_extend(struct memberlock *l, struct redis *r, long ttl_ms, char *err, size_t errlen);

/* Release if held and still ours (compare-and-delete). Safe to call twice. */
void memberlock_release(struct memberlock *l, struct redis *r);

#endif
