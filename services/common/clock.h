/* clock — wall and monotonic time in milliseconds, RFC 3339 text.
 *
 * Every timestamp tillsync stores or sends is Unix milliseconds (int64_t, UTC). Text
 * forms are RFC 3339 in UTC with millisecond precision: "2026-11-24T22:00:00.123Z".
 */
#ifndef TILLSYNC_CLOCK_H
#define TILLSYNC_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Wall-clock time as Unix milliseconds (CLOCK_REALTIME). Use for recorded-at stamps. */
int64_t clock_now_ms(void);

/* Monotonic milliseconds (CLOCK_MONOTONIC), for timeouts and durations only; the epoch
 * is arbitrary. */
int64_t clock_mono_ms(void);

/* Writes ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL) into out.
 * Returns 0, -ENOSPC when outcap < 25, -EINVAL when the year falls outside 0000..9999. */
int clock_format_rfc3339(int64_t ms, char *out, size_t outcap);

/* Parses an RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)".
 * 'T' and 'Z' may be lowercase; the fraction may have any number of digits, of which
 * milliseconds are kept (the rest truncated); a leap second (:60) is folded into the next
 * second. Fields are range-checked (e.g. February 30 is rejected).
 * Returns 0 and sets *ms (UTC Unix milliseconds), or -EINVAL (*ms untouched). */
int clock_parse_rfc3339(const char *s, int64_t *ms);

#endif
