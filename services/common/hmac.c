/* hmac — see hmac.h. base64 is our own code because OpenSSL's EVP_DecodeBlock is not
 * strict (it skips whitespace and does not report padding length). */
#include "hmac.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <string.h>

int hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, unsigned char out[32])
{
    static const unsigned char empty[1];
    unsigned int outlen = 0;

    /* OpenSSL reads a NULL key as "reuse the previous key": never hand it one */
    if (!key || keylen == 0) {
        key = empty;
        keylen = 0;
    }
    if (!data)
        data = empty;
    if (!HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) || outlen != 32)
        return -EIO;
    return 0;
}

bool ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const unsigned char *in, size_t len, char *out, size_t outcap)
{
    size_t need = (len + 2) / 3 * 4;
    size_t o = 0;

    if (len > (SIZE_MAX - 3) / 4 * 3 || outcap < need + 1) {
        if (out && outcap > 0)
            out[0] = '\0';
        return 0;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t rem = len - i;
        if (rem > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (rem > 2)
            v |= in[i + 2];
        out[o++] = b64_alphabet[v >> 18 & 63];
        out[o++] = b64_alphabet[v >> 12 & 63];
        out[o++] = rem > 1 ? b64_alphabet[v >> 6 & 63] : '=';
        out[o++] = rem > 2 ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* Value of a base64 character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen)
{
    size_t pad = 0, n, o = 0;

    if (outlen)
        *outlen = 0;
    if (len % 4 != 0 || (len > 0 && !in))
        return -EINVAL;
    if (len > 0 && in[len - 1] == '=')
        pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
    n = len / 4 * 3 - pad;
    if (n > outcap)
        return -ENOSPC;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int v[4];
        for (int k = 0; k < 4; k++) {
            bool padslot = last && k >= 4 - (int)pad;
            v[k] = padslot ? 0 : b64_value((unsigned char)in[i + k]);
            if (v[k] < 0)
                return -EINVAL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* canonical form: bits beyond the data must be zero */
        if (last && pad == 2 && (w & 0xffff))
            return -EINVAL;
        if (last && pad == 1 && (w & 0xff))
            return -EINVAL;
        size_t take = last ? 3 - pad : 3;
        out[o++] = (unsigned char)(w >> 16);
        if (take > 1)
            out[o++] = (unsigned char)(w >> 8);
        if (take > 2)
            out[o++] = (unsigned char)w;
    }
    if (outlen)
        *outlen = o;
    return 0;
}

void hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 0xf];
    }
    out[2 * len] = '\0';
}

int sha256_hex(const void *data, size_t len, char out[65])
{
    static const unsigned char empty[1];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(data ? data : empty, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return -EIO;
    hex_encode(md, 32, out);
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes a signature header value into 32 bytes; false if it is neither form. */
static bool signature_decode(const char *sig, unsigned char digest[32])
{
    size_t n = strlen(sig), got = 0;

    if (n == 64) {
        for (size_t i = 0; i < 32; i++) {
            int hi = hex_value(sig[2 * i]), lo = hex_value(sig[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return false;
            digest[i] = (unsigned char)(hi << 4 | lo);
        }
        return true;
    }
    return n == 44 && base64_decode(sig, n, digest, 32, &got) == 0 && got == 32;
}

/* True when HMAC-SHA256(secret, body) equals want. */
static bool hmac_matches(const char *secret, const void *body, size_t len,
                         const unsigned char want[32])
{
    unsigned char mac[32];
    bool ok;

    if (hmac_sha256(secret, strlen(secret), body, len, mac) != 0)
        return false;
    ok = ct_equal(mac, want, 32);
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

bool hmac_verify(const char *secret, const char *prev_secret, const void *body, size_t len,
                 const char *signature)
{
    unsigned char want[32];
    bool ok = false;

    if (!secret || !*secret || !signature || !signature_decode(signature, want))
        return false;
    if (hmac_matches(secret, body, len, want))
        ok = true;
    /* always computed when configured, so timing does not tell which secret matched */
    if (prev_secret && *prev_secret && hmac_matches(prev_secret, body, len, want))
        ok = true;
    return ok;
}
