/*
 * rawjson — JSON payloads whose integer ids must survive exactly.
 *
 * Shopify ids exceed 2^53 and Shopline's have 26 digits (beyond 64 bits); jansson would turn
 * the latter into an error or a rounded real. So before parsing, every integer literal of 16
 * or more digits outside strings is wrapped in quotes, keeping its exact text: the parsed
 * document then holds it as a JSON string. Integers of up to 15 digits are exact in
 * json_int_t and stay numbers; reals (fraction or exponent) are left alone. Id getters accept
 * either form and always yield the decimal text as the platform wrote it.
 */
#ifndef SHOP_RAWJSON_H
#define SHOP_RAWJSON_H

#include <jansson.h>
#include <stddef.h>

/* Integer literals with at least this many digits are quoted. */
#define RAWJSON_QUOTE_DIGITS 16

/*
 * Copy in[0..len) into a new malloc'd NUL-terminated buffer (*out, length *outlen) with every
 * long integer literal outside strings quoted. Malformed JSON is copied as is (the parser
 * reports it). Returns 0, or -ENOMEM. The caller frees *out.
 */
int rawjson_quote_big_ints(const char *in, size_t len, char **out, size_t *outlen);

/*
 * Quote big integers, then parse strictly (json_parse_object: top-level object, no duplicate
 * keys). Returns a new reference or NULL with err ("invalid JSON at line 1, column 4: ...").
 */
json_t *rawjson_parse(const char *body, size_t len, char *err, size_t errlen);

/*
 * The id text of v: a string is copied as is, an integer is written in decimal; a Shopify GID
 * ("gid://shopify/Order/123") is copied whole (use rawjson_gid_tail for the number).
 * Returns 0, -ENOENT for NULL or JSON null, -EINVAL for other types, -ENOSPC when out is small.
 */
int rawjson_id_text(const json_t *v, char *out, size_t outcap);

/* rawjson_id_text of obj[key]. */
int rawjson_get_id(const json_t *obj, const char *key, char *out, size_t outcap);

/* The part after the last '/' of a GID, without any "?query" (the whole string when it has no
 * '/'), copied into out. Returns 0 or -ENOSPC. */
int rawjson_gid_tail(const char *gid, char *out, size_t outcap);

/* String field or "" (NULL, absent, null or not a string). Borrowed from obj. */
const char *rawjson_str(const json_t *obj, const char *key);

/* Integer field (also an integer written as a string of digits); def when absent or bad. */
long long rawjson_int(const json_t *obj, const char *key, long long def);

#endif
