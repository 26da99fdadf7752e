/* Unit tests for services/common/hmac.c: RFC 4231 vectors, RFC 4648 base64 vectors,
 * SHA-256, and webhook signature verification including the failure cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "hmac.h"

static void hmac_hex(const void *key, size_t keylen, const char *data, char out[65])
{
    unsigned char mac[32];

    assert_int_equal(hmac_sha256(key, keylen, data, strlen(data), mac), 0);
    hex_encode(mac, 32, out);
}

static void test_rfc4231_case1(void **state)
{
    (void)state;
    unsigned char key[20];
    char hex[65];

    memset(key, 0x0b, sizeof(key));
    hmac_hex(key, sizeof(key), "Hi There", hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

static void test_rfc4231_case2(void **state)
{
    (void)state;
    char hex[65];

    hmac_hex("Jefe", 4, "what do ya want for nothing?", hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_rfc4231_case6(void **state)
{
    (void)state;
    unsigned char key[131];
    char hex[65];

    memset(key, 0xaa, sizeof(key));
    hmac_hex(key, sizeof(key), "Test Using Larger Than Block-Size Key - Hash Key First", hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_hmac_empty_key_and_data(void **state)
{
    (void)state;
    unsigned char a[32], b[32];

    /* NULL with length 0 must mean "empty", not "reuse the previous key" */
    assert_int_equal(hmac_sha256(NULL, 0, NULL, 0, a), 0);
    assert_int_equal(hmac_sha256("", 0, "", 0, b), 0);
    assert_memory_equal(a, b, 32);
    char hex[65];
    hex_encode(a, 32, hex);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_sha256_hex(void **state)
{
    (void)state;
    char hex[65];

    assert_int_equal(sha256_hex("abc", 3, hex), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(sha256_hex(NULL, 0, hex), 0);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(ct_equal("abcdef", "abcdef", 6));
    assert_false(ct_equal("abcdef", "abcdeg", 6));
    assert_false(ct_equal("xbcdef", "abcdef", 6));
    assert_true(ct_equal("a", "b", 0));
}

static void test_base64_rfc4648(void **state)
{
    (void)state;
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[16];
    unsigned char dec[16];
    size_t declen;

    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(
            base64_encode((const unsigned char *)plain[i], strlen(plain[i]), out, sizeof(out)),
            strlen(enc[i]));
        assert_string_equal(out, enc[i]);
        assert_int_equal(base64_decode(enc[i], strlen(enc[i]), dec, sizeof(dec), &declen), 0);
        assert_int_equal(declen, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], declen);
    }
    /* all 256 byte values survive a round trip; '+' and '/' appear */
    unsigned char all[256], back[256];
    char big[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    size_t n = base64_encode(all, 256, big, sizeof(big));
    assert_int_equal(n, 344);
    assert_non_null(strchr(big, '+'));
    assert_non_null(strchr(big, '/'));
    assert_int_equal(base64_decode(big, n, back, sizeof(back), &declen), 0);
    assert_int_equal(declen, 256);
    assert_memory_equal(all, back, 256);
}

static void test_base64_encode_too_small(void **state)
{
    (void)state;
    char out[8] = "xxxxxxx";

    /* "foobar" needs 8 chars + NUL */
    assert_int_equal(base64_encode((const unsigned char *)"foobar", 6, out, 8), 0);
    assert_string_equal(out, "");
    assert_int_equal(base64_encode((const unsigned char *)"foobar", 6, out, 0), 0);
}

static void test_base64_decode_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg=",      /* length not a multiple of 4 */
        "Zg",       /* unpadded */
        "Z===",     /* three pads */
        "====",     /* only pads */
        "Zg==Zg==", /* padding in the middle */
        "Zm9v\n",   /* whitespace */
        "Zm 9",     /* space */
        "Zm9-",     /* url-safe alphabet */
        "Zm9_",     /* url-safe alphabet */
        "Zh==",     /* non-zero unused bits */
        "Zm9=",     /* non-zero unused bits */
        "Z=g=",     /* pad before data */
    };
    unsigned char out[16];
    size_t outlen = 99;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &outlen), -EINVAL);
        assert_int_equal(outlen, 0);
    }
    /* a NUL inside the counted length is a bad character */
    assert_int_equal(base64_decode("Zm\0v", 4, out, sizeof(out), &outlen), -EINVAL);
    assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 5, &outlen), -ENOSPC);
    assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 6, &outlen), 0);
    assert_int_equal(outlen, 6);
}

static void test_hex_encode(void **state)
{
    (void)state;
    char out[9];

    hex_encode((const unsigned char *)"\x00\xff\x10\xab", 4, out);
    assert_string_equal(out, "00ff10ab");
    hex_encode(NULL, 0, out);
    assert_string_equal(out, "");
}

/* A Shopify-style webhook: base64 HMAC of the raw JSON body. The expected values were
 * computed independently with `openssl dgst -sha256 -hmac SECRET -binary | base64`. */
static const char shop_body[] = "{\"id\":820982911946154508,\"email\":\"jon@example.com\",\"total_"
                                "price\":\"12.34\",\"currency\":\"EUR\"}";
static const char shop_secret[] = "shpss_test_secret_2026";
static const char shop_sig_b64[] = "5bGWBM7P/EMBnn8OGglWbiTY/lxt+eNm5ADvKTaQlsw=";
static const char shop_sig_hex[] =
    "e5b19604cecffc43019e7f0e1a09566e24d8fe5c6df9e366e400ef29369096cc";

static void test_verify_shopify_base64(void **state)
{
    (void)state;
    unsigned char mac[32];
    char b64[64];

    assert_int_equal(
        hmac_sha256(shop_secret, strlen(shop_secret), shop_body, strlen(shop_body), mac), 0);
    assert_int_equal(base64_encode(mac, 32, b64, sizeof(b64)), 44);
    assert_string_equal(b64, shop_sig_b64);
    assert_true(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body), shop_sig_b64));
    assert_true(hmac_verify(shop_secret, "", shop_body, strlen(shop_body), shop_sig_b64));
}

static void test_verify_hex_any_case(void **state)
{
    (void)state;
    char upper[65];

    assert_true(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body), shop_sig_hex));
    for (int i = 0; i < 65; i++)
        upper[i] = (char)((shop_sig_hex[i] >= 'a' && shop_sig_hex[i] <= 'f') ? shop_sig_hex[i] - 32
                                                                             : shop_sig_hex[i]);
    assert_true(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body), upper));
}

static void test_verify_rejects_changed_body(void **state)
{
    (void)state;
    char body[sizeof(shop_body)];

    memcpy(body, shop_body, sizeof(body));
    body[60] ^= 0x01; /* one byte changed */
    assert_false(hmac_verify(shop_secret, NULL, body, strlen(body), shop_sig_b64));
    assert_false(hmac_verify(shop_secret, NULL, body, strlen(body), shop_sig_hex));
    /* truncated body */
    assert_false(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body) - 1, shop_sig_b64));
}

static void test_verify_rejects_wrong_secret(void **state)
{
    (void)state;
    assert_false(
        hmac_verify("shpss_test_secret_2027", NULL, shop_body, strlen(shop_body), shop_sig_b64));
    assert_false(hmac_verify("", NULL, shop_body, strlen(shop_body), shop_sig_b64));
    assert_false(hmac_verify(NULL, shop_secret, shop_body, strlen(shop_body), shop_sig_b64));
}

static void test_verify_rejects_garbage_signature(void **state)
{
    (void)state;
    char tampered[sizeof(shop_sig_b64)];
    const char *garbage[] = {
        "",
        "not a signature",
        "5bGWBM7P/EMBnn8OGglWbiTY/lxt+eNm5ADvKTaQlsw",
        "5bGWBM7P/EMBnn8OGglWbiTY/lxt+eNm5ADvKTaQlsw==",
        "e5b19604cecffc43019e7f0e1a09566e24d8fe5c6df9e366e400ef29369096c",
        "g5b19604cecffc43019e7f0e1a09566e24d8fe5c6df9e366e400ef29369096cc",
        "sha256=e5b19604cecffc43019e7f0e1a09566e24d8fe5c6df9e366e400ef29369096cc"};

    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
        assert_false(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body), garbage[i]));
    assert_false(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body), NULL));
    memcpy(tampered, shop_sig_b64, sizeof(tampered));
    tampered[0] = '6';
    assert_false(hmac_verify(shop_secret, NULL, shop_body, strlen(shop_body), tampered));
}

static void test_verify_previous_secret(void **state)
{
    (void)state;
    /* signed with the old secret during rotation: accepted only when it is configured */
    assert_true(hmac_verify("new_secret", shop_secret, shop_body, strlen(shop_body), shop_sig_b64));
    assert_false(hmac_verify("new_secret", NULL, shop_body, strlen(shop_body), shop_sig_b64));
    assert_false(
        hmac_verify("new_secret", "other_old", shop_body, strlen(shop_body), shop_sig_b64));
    /* the current one still works with a previous one configured */
    assert_true(hmac_verify(shop_secret, "old_secret", shop_body, strlen(shop_body), shop_sig_hex));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231_case1),
        cmocka_unit_test(test_rfc4231_case2),
        cmocka_unit_test(test_rfc4231_case6),
        cmocka_unit_test(test_hmac_empty_key_and_data),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_encode_too_small),
        cmocka_unit_test(test_base64_decode_strict),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_verify_shopify_base64),
        cmocka_unit_test(test_verify_hex_any_case),
        cmocka_unit_test(test_verify_rejects_changed_body),
        cmocka_unit_test(test_verify_rejects_wrong_secret),
        cmocka_unit_test(test_verify_rejects_garbage_signature),
        cmocka_unit_test(test_verify_previous_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
