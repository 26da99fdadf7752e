/* log — structured JSON logs, one object per line on stdout:
 *   {"ts":"2026-11-24T22:00:00.123Z","level":"info","service":"pos-ingest","msg":"...","key":"value"}
 * Every string is JSON-escaped (control characters as \uXXXX or the short escapes; bytes
 * that are not valid UTF-8 become U+FFFD), so every line parses as JSON. Each line is
 * written with one fwrite under a lock and flushed: lines from threads never interleave.
 * Until log_init is called, the service is "" and the level is info.
 */
#ifndef TILLSYNC_LOG_H
#define TILLSYNC_LOG_H

#include <stdio.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the service name (copied; at most 63 bytes kept) and the minimum level from its
 * name: "debug", "info", "warn" (or "warning"), "error", any case; NULL or "" means info.
 * Returns 0, or -EINVAL for an unknown level name (the settings are then unchanged). */
int log_init(const char *service, const char *level_name);

/* Sends log lines to out instead of stdout (for tests); NULL restores stdout. The caller
 * keeps ownership of out and must not close it while logging may happen. */
void log_set_output(FILE *out);

/* True if lines at lvl are currently written. */
int log_enabled(enum log_level lvl);

/* Writes one line with msg and then the key/value pairs that follow, as const char *,
 * terminated by a NULL key. A NULL value is written as JSON null. Keys should not repeat
 * ts, level, service or msg. Example:
 *   log_kv(LOG_LVL_WARN, "sku unknown", "sku", sku, "store", store, NULL); */
void log_kv(enum log_level lvl, const char *msg, ...) __attribute__((sentinel));

/* Write one line whose msg is the printf-style formatted text. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
