/*
 * pgarr — Postgres array literals ("{\"a\",\"b\"}") built in memory, to send many rows as one
 * parameter of an `unnest($1::text[], …)` statement.
 */
#ifndef TILLSYNC_PGARR_H
#define TILLSYNC_PGARR_H

#include <stddef.h>
#include <stdint.h>

/* A growing array literal. Invariant: buf holds "{" + elements so far; n counts them. */
struct pgarr {
    char *buf;
    size_t len, cap;
    size_t n;
    int oom;
};

/* Start an empty literal (caller-owned struct). */
void pgarr_init(struct pgarr *a);

/* Append a text element (quoted and escaped) / an integer element. */
void pgarr_text(struct pgarr *a, const char *s);
void pgarr_int(struct pgarr *a, int64_t v);

/* Close the literal and return it (owned by a), or NULL when memory ran out. */
const char *pgarr_finish(struct pgarr *a);

/* Free the buffer. */
void pgarr_release(struct pgarr *a);

#endif
