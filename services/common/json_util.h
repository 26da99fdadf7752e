/* json_util — strict request-body parsing and typed field getters over jansson, plus money
 * amounts as integer minor units (never floating point).
 *
 * Getter convention: each returns 0 and sets *out; -ENOENT when the key is absent or JSON
 * null and !required (*out untouched); -EINVAL with err = "<key>: <problem>" when the key
 * is missing but required, or has the wrong type or range. Strings returned are borrowed
 * from obj: valid while obj lives.
 */
#ifndef TILLSYNC_JSON_UTIL_H
#define TILLSYNC_JSON_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses body[0..len) strictly: duplicate keys rejected, nothing but whitespace after the
 * value, NUL escapes (\u0000) rejected, and the top level must be an object.
 * Returns a new reference (caller json_decref's it), or NULL with err set, e.g.
 * "invalid JSON at line 3, column 7: unexpected token" or "expected a JSON object at the
 * top level". */
json_t *json_parse_object(const char *body, size_t len, char *err, size_t errlen);

/* Lowercase hex SHA-256 of exactly the bytes json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS)
 * would give, computed as the text is written, without building it (a request's fingerprint:
 * the same content in any key order or spacing gives the same hash, and the hashes stay
 * those of the json_dumps text, so fingerprints already stored still match).
 * Returns 0, or -EIO if v cannot be dumped (a string that is not UTF-8) or OpenSSL fails. */
int json_sha256_hex(const json_t *v, char out[65]);

/* String field. */
int json_get_string(const json_t *obj, const char *key, bool required, const char **out, char *err,
                    size_t errlen);

/* Integer field within [min, max]; a real (1.0, 1e3) is rejected as not an integer. */
int json_get_int(const json_t *obj, const char *key, bool required, int64_t min, int64_t max,
                 int64_t *out, char *err, size_t errlen);

/* Boolean field (true/false only, not 0/1 nor strings). */
int json_get_bool(const json_t *obj, const char *key, bool required, bool *out, char *err,
                  size_t errlen);

/* Money field: either a decimal string ("12.34", parsed with money_parse for currency) or
 * an integer already in minor units (1234). */
int json_get_money(const json_t *obj, const char *key, bool required, const char *currency,
                   int64_t *out, char *err, size_t errlen);

/* Number of decimal places of an ISO 4217 currency code: 0 for JPY, KRW (and the other
 * zero-decimal codes), 3 for BHD, KWD, OMR, JOD, TND, IQD, LYD, 4 for CLF/UYW, and 2 for
 * everything else, including NULL or unknown codes. */
int money_exponent(const char *currency);

/* Parses a decimal amount "[-]digits[.digits]" in currency's major units into minor units:
 * "12.34" USD -> 1234, "1200" JPY -> 1200, "12" USD -> 1200, "0.125" BHD -> 125.
 * More fraction digits than the currency has are accepted only if they are zeros
 * ("12.340" USD). No exponent, sign '+', spaces, or ".5"/"5." forms.
 * Returns 0, or -EINVAL with err = "amount \"x\": <problem>" (also on int64 overflow). */
int money_parse(const char *text, const char *currency, int64_t *minor_units, char *err,
                size_t errlen);

/* Formats minor units as a decimal for currency: 1234 USD -> "12.34", -5 -> "-0.05",
 * 1200 JPY -> "1200". Returns 0, or -ENOSPC when out is too small (out then ""). */
int money_format(int64_t minor_units, const char *currency, char *out, size_t outcap);

#endif
