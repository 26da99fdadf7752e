/* uuid — time-ordered UUIDv7 (RFC 9562) identifiers, used as event ids (the dedupe key). */
#ifndef TILLSYNC_UUID_H
#define TILLSYNC_UUID_H

#include <stdbool.h>

/* Writes a new UUIDv7 as 36 lowercase characters plus NUL into out:
 * 48-bit Unix-ms timestamp, version 7, a 12-bit counter in rand_a (RFC 9562 §6.2 method 1,
 * seeded randomly each new millisecond) and 62 random bits (OpenSSL RAND_bytes).
 * Ids made by one process are strictly increasing, also within one millisecond and when
 * the wall clock steps back. Thread-safe. Aborts if the CSPRNG fails (ids without
 * randomness would silently collide; see uuid.c). */
void uuid_v7(char out[37]);

/* True if s is a UUID in canonical text form (8-4-4-4-12 hex digits, either case), of any
 * version. NULL is not valid. */
bool uuid_valid(const char *s);

/* A deterministic id from a name (SHA-256, UUID version 8): the same name always gives the same
 * id, so a retried or re-uploaded fact keeps its event id. Names should be namespaced, e.g.
 * "pos/<tenant>/<store>/<till>/<transaction id>". */
void uuid_from_name(const char *name, char out[37]);

#endif
