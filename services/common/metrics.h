/*
 * metrics — a thread-safe Prometheus metrics registry rendered in the text
 * exposition format 0.0.4.
 *
 * A registry owns its metrics; a metric owns its series (one per distinct
 * tuple of label values, created on first use). Every operation takes the
 * registry's one mutex: updates are a few nanoseconds of work and renders are
 * rare, so one lock is simpler than per-metric locks and contention is low.
 *
 * metrics_new() registers the process collectors process_start_time_seconds,
 * process_resident_memory_bytes (from /proc/self/statm) and
 * process_cpu_seconds_total (getrusage), refreshed on every render.
 */
#ifndef TILLSYNC_METRICS_H
#define TILLSYNC_METRICS_H

#include <stddef.h>

struct metrics;
struct metric;

/* Create a registry with the process collectors registered. Returns NULL only
 * when out of memory. Free with metrics_free(). */
struct metrics *metrics_new(void);

/* Free the registry and every metric handle it returned. NULL is fine. */
void metrics_free(struct metrics *m);

/* Register (or look up) a counter. label_names is a comma-separated list of
 * Prometheus label names ("route,code") or NULL/"" for none. Registering the
 * same name again with the same type and labels returns the same handle.
 * Returns NULL when a name is invalid, a label name is invalid or repeated,
 * the name is already registered with another type or labels, or out of
 * memory. The handle is owned by the registry and lives until metrics_free. */
struct metric *metrics_counter(struct metrics *m, const char *name, const char *help,
                               const char *label_names);

/* Register a gauge; same rules as metrics_counter(). */
struct metric *metrics_gauge(struct metrics *m, const char *name, const char *help,
                             const char *label_names);

/* Register a histogram with the given upper bounds (strictly increasing,
 * finite; +Inf is implicit). buckets NULL or nbuckets 0 gives the default
 * {.005,.01,.025,.05,.1,.25,.5,1,2.5,5,10}. The label name "le" is reserved.
 * The bounds are copied. Same return rules as metrics_counter(). */
struct metric *metrics_histogram(struct metrics *m, const char *name, const char *help,
                                 const char *label_names, const double *buckets, size_t nbuckets);

/* Label values follow v as const char * arguments, exactly as many as the
 * metric has label names (a NULL value counts as ""). A NULL metric is a no-op,
 * so a failed registration never crashes a caller. */

/* Add v to a counter (v < 0 or NaN is ignored: counters only go up) or to a
 * gauge (any v). Ignored for histograms. */
void metric_add(struct metric *mt, double v, ...);

/* Set a gauge to v. Ignored for other types. */
void metric_set(struct metric *mt, double v, ...);

/* Record one observation of v in a histogram. Ignored for other types. */
void metric_observe(struct metric *mt, double v, ...);

/* Render every metric, in registration order, in the Prometheus text format
 * 0.0.4 (HELP and TYPE lines, escaped help and label values, histograms as
 * cumulative _bucket{le=...} lines including le="+Inf", then _sum and
 * _count). A metric without labels that was never touched renders as 0.
 * Returns malloc'd NUL-terminated text owned by the caller (free()), with
 * *len set to its length when len is non-NULL; NULL when out of memory. */
char *metrics_render(struct metrics *m, size_t *len);

#endif
