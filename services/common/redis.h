/*
 * redis — a small pool of blocking hiredis (0.14) connections with
 * reconnect-and-retry-once on I/O errors, and Lua scripts run by SHA.
 *
 * A command on a connection that fails with an I/O error (server restarted,
 * CLIENT KILL, timeout) is retried once on a freshly made connection; a
 * command is therefore at-least-once across such a failure, so what is sent
 * through here must be idempotent or tolerate a repeat (our Lua scripts are
 * written that way).
 */
#ifndef TILLSYNC_REDIS_H
#define TILLSYNC_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

struct redis;

/* Create a pool of pool_size (0 = 4) connections to url
 * "redis://[[user]:password@]host[:port][/db]" (port 6379, db 0 by default).
 * timeout_ms (0 = 2000) bounds connecting, each command's I/O, and the wait
 * for a free connection. Connects lazily. Returns NULL with err when the URL
 * is malformed. Free with redis_free(). */
struct redis *redis_new(const char *url, unsigned pool_size, int timeout_ms, char *err,
                        size_t errlen);

/* Run a command given as argv (binary safe; argvlen NULL means use strlen).
 * Retries once on a fresh connection after an I/O error. Returns the reply,
 * owned by the caller (freeReplyObject), or NULL with err "redis unavailable:
 * ...". A Redis error reply (REDIS_REPLY_ERROR) is a reply, not NULL. */
redisReply *redis_command_argv(struct redis *r, int argc, const char **argv, const size_t *argvlen,
                               char *err, size_t errlen);

/* Same as redis_command_argv() with hiredis' printf-like format. */
redisReply *redis_command(struct redis *r, char *err, size_t errlen, const char *fmt, ...);

/* A Lua script: source is set by the caller (static storage is typical); sha
 * is filled on first use by SCRIPT LOAD. One struct may be shared by threads
 * using the same struct redis. */
struct redis_script {
    const char *source;
    char sha[41];
};

/* Run script s with EVALSHA. args holds nkeys keys then nargs arguments
 * (argslen NULL = strlen). On NOSCRIPT (Redis restarted or SCRIPT FLUSH) the
 * script is loaded again and run once more. Returns the reply (caller frees;
 * a script error is a REDIS_REPLY_ERROR reply) or NULL with err. */
redisReply *redis_eval(struct redis *r, struct redis_script *s, int nkeys, int nargs,
                       const char **args, const size_t *argslen, char *err, size_t errlen);

/* true when PING answers PONG; else false with the reason in why. */
bool redis_ping(struct redis *r, char *why, size_t whylen);

/* Close every connection and free the pool. NULL is fine. */
void redis_free(struct redis *r);

#endif
