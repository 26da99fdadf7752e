/* Shared declarations of the json_choice benchmark (tests/bench/json_choice.c). json-c's
 * headers clash with jansson's (both define json_object and json_type), so the json-c half
 * lives in its own translation unit, support/json_choice_jsonc.c. */
#ifndef TILLSYNC_BENCH_JSON_CHOICE_H
#define TILLSYNC_BENCH_JSON_CHOICE_H

#include <stdbool.h>
#include <stddef.h>

/* What walking one till transaction yields; equal across libraries for the same text. */
struct txn_walk {
    long lines;
    long long quantity;  /* sum of line quantities */
    long long tax_bp;    /* sum of line tax rates (basis points) */
    long long discounts; /* number of discounts */
    size_t text_bytes;   /* total length of the string fields read */
    long long id_low;    /* customer.platform_id % 1000000: exact only with 64-bit integers */
};

/* Outcome of feeding a library one probe document. */
struct probe_result {
    bool accepted;
    char detail[160]; /* error message/position, or what was accepted */
};

/* json-c: parse text, walk it into *w, free. Returns 0, -1 on a parse error. */
int jsonc_parse_walk(const char *text, size_t len, struct txn_walk *w);

/* json-c: parse a probe document with the strictest flags json-c offers. */
void jsonc_probe(const char *text, size_t len, struct probe_result *r);

/* json-c: reads the integer member "id" of an object document exactly, if it can. */
bool jsonc_read_id(const char *text, size_t len, long long *id);

/* json-c: frees the tokener kept between calls. */
void jsonc_cleanup(void);

#endif
