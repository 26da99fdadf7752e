/* hmac — HMAC-SHA256, SHA-256, base64, hex and webhook signature checks (OpenSSL 3). */
#ifndef TILLSYNC_HMAC_H
#define TILLSYNC_HMAC_H

#include <stdbool.h>
#include <stddef.h>

/* HMAC-SHA256 of data[0..len) under key[0..keylen) into out. key/data may be NULL when
 * their length is 0. Returns 0, or -EIO if OpenSSL fails. */
int hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                unsigned char out[32]);

/* Compares n bytes of a and b in time that does not depend on where they differ
 * (CRYPTO_memcmp). True when equal. */
bool ct_equal(const void *a, const void *b, size_t n);

/* Standard base64 (RFC 4648 §4, with '=' padding) of in[0..len) into out, NUL-terminated.
 * Returns the text length (4 * ceil(len / 3)), or 0 when outcap is too small (out is then
 * set to "" if outcap > 0). */
size_t base64_encode(const unsigned char *in, size_t len, char *out, size_t outcap);

/* Strict base64 decode of in[0..len): length a multiple of 4, only the standard alphabet,
 * '=' only as the last one or two characters, unused bits zero; no whitespace.
 * Writes the bytes into out and their count into *outlen.
 * Returns 0, -EINVAL on malformed input, -ENOSPC when outcap is too small. */
int base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen);

/* Lowercase hex of in[0..len) into out, which must hold 2 * len + 1 bytes; NUL-terminated. */
void hex_encode(const unsigned char *in, size_t len, char *out);

/* Lowercase hex SHA-256 of data[0..len) into out. Returns 0, or -EIO if OpenSSL fails. */
int sha256_hex(const void *data, size_t len, char out[65]);

/* Verifies a webhook signature over the raw body: signature is HMAC-SHA256(secret, body)
 * as base64 (Shopify, Shopline docs) or as hex in either case (Shopline SDK). It is
 * checked against secret and, when prev_secret is non-NULL and non-empty, against
 * prev_secret too (secret rotation window). Digest comparison is constant time.
 * Returns false for a NULL/empty secret or signature, or a signature that is neither
 * 44-char base64 nor 64-char hex of 32 bytes. */
bool hmac_verify(const char *secret, const char *prev_secret, const void *body, size_t len,
                 const char *signature);

#endif
