/* config — a service's configuration from environment variables (12-factor), described
 * by a table and validated at start.
 *
 * For every variable NAME, NAME_FILE may name a file holding the value instead (Kubernetes
 * secrets); trailing newlines / carriage returns are trimmed from the file's content.
 * An empty value counts as unset. Example table row:
 *   { "BATCH_MAX", CONFIG_INT, false, "500", 1, 10000, "Largest batch", &cfg.batch_max },
 */
#ifndef TILLSYNC_CONFIG_H
#define TILLSYNC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum config_type {
    CONFIG_STR,      /* any text */
    CONFIG_SECRET,   /* any text, never echoed in errors or docs */
    CONFIG_INT,      /* base-10 integer within [min, max] */
    CONFIG_BOOL,     /* true/false/1/0/yes/no, any case */
    CONFIG_HOSTPORT, /* "host:port", "[v6]:port" or ":port"; port 0..65535 */
    CONFIG_URL,      /* "scheme://..." (not echoed in errors: URLs may hold passwords) */
};

/* One variable. For CONFIG_INT, min == max == 0 means no bounds. */
struct config_var {
    const char *name; /* environment variable, e.g. "KAFKA_BROKERS" */
    enum config_type type;
    bool required;
    const char *def;  /* default as text, NULL = none */
    long min, max;    /* CONFIG_INT bounds, inclusive */
    const char *help; /* one line, for the README configuration table */
    void *out;        /* char ** for STR/SECRET/HOSTPORT/URL (malloc'd), long * for INT,
                         bool * for BOOL */
};

/* Loads every variable of vars[0..n) into its out. First clears every out (NULL, 0,
 * false), so a variable that is unset with no default reads as that. Stops at the FIRST
 * failure, writes a one-line message starting with the variable's name into err
 * (e.g. "BATCH_MAX: 0 is below the minimum 1"; a secret's value never appears) and frees
 * whatever it had set. Defaults are validated like values.
 * Returns 0 (the caller then owns the strings: free them with config_release), -EINVAL on
 * a bad or missing value, -ENOMEM when out of memory. */
int config_load(const struct config_var *vars, size_t n, char *err, size_t errlen);

/* Frees the strings config_load set in vars[0..n) and sets those pointers to NULL.
 * Safe to call twice. */
void config_release(const struct config_var *vars, size_t n);

/* Writes a Markdown table "| Variable | Required | Default | Description |" of vars to out,
 * for the README. Secrets' descriptions end with "(secret; NAME_FILE accepted)". */
void config_print_markdown(const struct config_var *vars, size_t n, FILE *out);

#endif
