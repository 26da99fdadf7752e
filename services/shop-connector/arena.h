/*
 * arena — a bump allocator for one request's short-lived objects (parsed orders, protobuf
 * messages built from them). Everything allocated from an arena is freed at once by
 * arena_release(); nothing is freed individually. Out of memory aborts (the one policy for
 * OOM in tillsync), so allocations never return NULL.
 */
#ifndef SHOP_ARENA_H
#define SHOP_ARENA_H

#include <stddef.h>

struct arena_block;

/* Caller-owned; start it zeroed (struct arena a = {0}) or with arena_init(). */
struct arena {
    struct arena_block *head;
};

void arena_init(struct arena *a);

/* Free every block. The arena may be used again afterwards. */
void arena_release(struct arena *a);

/* n zeroed bytes aligned for any type. Owned by the arena. */
void *arena_alloc(struct arena *a, size_t n);

/* Copy of s[0..len) plus NUL. Owned by the arena. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* Copy of the NUL-terminated s; NULL gives "". Owned by the arena. */
char *arena_strdup(struct arena *a, const char *s);

/* Array of n pointers (zeroed). Owned by the arena. */
void **arena_ptrs(struct arena *a, size_t n);

#endif
