/*
 * textbuf — a growable text buffer for output written by hand rather than built as a tree:
 * log lines, and answers too large to build as jansson objects first (a batch's 10,000 results).
 * It also writes a C string as a JSON string.
 *
 * Errors: when an allocation fails, failed is set and every later add is ignored; the caller
 * checks failed once at the end (and drops the text, or applies its OOM policy).
 */
#ifndef TILLSYNC_TEXTBUF_H
#define TILLSYNC_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct textbuf {
    char *p; /* len bytes, not NUL-terminated; free() it when done */
    size_t len, cap;
    bool failed;
};

/* Append s[0..n). */
void textbuf_add(struct textbuf *b, const char *s, size_t n);

/* Append the NUL-terminated s. */
void textbuf_adds(struct textbuf *b, const char *s);

/* Append s as a quoted JSON string: '"', '\' and control characters escaped, valid UTF-8 as it
 * is, each byte that is not valid UTF-8 as \ufffd (a message cut short by its buffer can end
 * inside a character). */
void textbuf_add_json(struct textbuf *b, const char *s);

/* The NUL-terminated parts, up to a NULL, joined into out[0..cap) and cut short like snprintf
 * (cap > 0): what snprintf(out, cap, "%s%s…") gives, without its format interpreter, for text
 * built once per line of every item (a field's path, an exception's key). Returns the length
 * written. */
size_t text_join(char *out, size_t cap, const char *const *parts);

/* The decimal digits of v into out (room for 21 bytes), NUL-terminated; returns their count. */
size_t text_uint(char *out, uint64_t v);

#endif
