/* uuid — see uuid.h. */
#include "uuid.h"

#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t uuid_last_ms = -1; /* timestamp of the previous id */
static unsigned uuid_seq;         /* 12-bit counter of the previous id */

/* Fills buf with CSPRNG bytes. Deliberate policy: a failing CSPRNG is not a transient
 * outage we can retry around; event ids would lose their uniqueness, so abort. */
static void uuid_random(unsigned char *buf, int n)
{
    if (RAND_bytes(buf, n) != 1)
        abort();
}

/* Writes the 16 bytes b as 8-4-4-4-12 lowercase hex. */
static void uuid_text(const unsigned char *b, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 0xf];
    }
    *o = '\0';
}

void uuid_v7(char out[37])
{
    unsigned char b[16];
    unsigned char rnd[10];
    int64_t ms;
    unsigned seq;

    uuid_random(rnd, sizeof(rnd));
    pthread_mutex_lock(&uuid_lock);
    ms = clock_now_ms();
    if (ms > uuid_last_ms) {
        /* new millisecond: seed the counter in its lower half so it has room to grow */
        uuid_last_ms = ms;
        uuid_seq = ((unsigned)rnd[8] << 8 | rnd[9]) & 0x7ff;
    } else if (uuid_seq < 0xfff) {
        uuid_seq++; /* same ms, or the clock stepped back: keep increasing */
    } else {
        uuid_last_ms++; /* counter exhausted: borrow the next millisecond */
        uuid_seq = 0;
    }
    ms = uuid_last_ms;
    seq = uuid_seq;
    pthread_mutex_unlock(&uuid_lock);

    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (seq >> 8));
    b[7] = (unsigned char)(seq & 0xff);
    b[8] = (unsigned char)(0x80 | (rnd[0] & 0x3f));
    memcpy(b + 9, rnd + 1, 7);

    uuid_text(b, out);
}

void uuid_from_name(const char *name, char out[37])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)name, strlen(name), digest);
    digest[6] = (unsigned char)(0x80 | (digest[6] & 0x0f)); /* version 8: custom (RFC 9562) */
    digest[8] = (unsigned char)(0x80 | (digest[8] & 0x3f)); /* RFC 4122 variant */
    uuid_text(digest, out);
}

bool uuid_valid(const char *s)
{
    if (!s)
        return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false; /* also stops at a NUL before 36 */
        }
    }
    return s[36] == '\0';
}
