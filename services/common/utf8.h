/*
 * utf8 — strict UTF-8 checks, as strict as Postgres and JSON consumers: no overlong forms, no
 * surrogates, nothing above U+10FFFF.
 */
#ifndef TILLSYNC_UTF8_H
#define TILLSYNC_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (2 to 4) of the valid multi-byte sequence at s, whose first byte is >= 0x80, within
 * avail bytes; 0 when it is not one. */
size_t utf8_seq_len(const unsigned char *s, size_t avail);

/* true when the NUL-terminated s is valid UTF-8. */
bool utf8_valid(const char *s);

/* Replace, in place, each byte of s that is not part of valid UTF-8 by '?'. */
void utf8_scrub(char *s);

#endif
