/* identity — email and phone normalisation (see identity.h). */
#include "identity.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

int identity_email_normalise(const char *in, char *out, size_t outcap)
{
    if (!in)
        return -EINVAL;
    while (*in && isspace((unsigned char)*in))
        in++;
    size_t n = strlen(in);
    while (n > 0 && isspace((unsigned char)in[n - 1]))
        n--;
    if (n == 0)
        return -EINVAL;
    if (n + 1 > outcap)
        return -ENOSPC;
    size_t at = 0, nat = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (isspace(c) || c < 0x20)
            return -EINVAL;
        if (c == '@') {
            at = i;
            nat++;
        }
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    if (nat != 1 || at == 0 || at == n - 1) {
        out[0] = '\0';
        return -EINVAL;
    }
    return 0;
}

static bool cc_valid(const char *cc)
{
    size_t n = cc ? strlen(cc) : 0;
    if (n == 0 || n > 3 || cc[0] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)cc[i]))
            return false;
    return true;
}

int identity_phone_e164(const char *in, const char *default_cc, char *out, size_t outcap)
{
    char d[40];
    size_t nd = 0;
    bool plus = false;
    if (!in)
        return -EINVAL;
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '(' && p[1] == '0' && p[2] == ')' && (plus || nd > 0)) {
            p += 2; /* "+44 (0)7700…": the trunk zero written in brackets */
            continue;
        }
        if (isdigit(c)) {
            if (nd + 1 >= sizeof d)
                return -EINVAL;
            d[nd++] = (char)c;
        } else if (c == '+' && nd == 0 && !plus) {
            plus = true;
        } else if (!(isspace(c) || c == '-' || c == '.' || c == '/' || c == '(' || c == ')')) {
            return -EINVAL;
        }
    }
    d[nd] = '\0';
    const char *cc = "", *rest = d;
    if (plus) {
        /* already international */
    } else if (nd >= 2 && d[0] == '0' && d[1] == '0') {
        rest = d + 2;
    } else if (!cc_valid(default_cc)) {
        return -EINVAL;
    } else if (nd >= 1 && d[0] == '0') {
        cc = default_cc;
        rest = d + 1;
    } else if (strncmp(d, default_cc, strlen(default_cc)) == 0 && nd > 10) {
        /* "447700900123": international written without '+' */
    } else {
        cc = default_cc;
    }
    size_t total = strlen(cc) + strlen(rest);
    if (total < 8 || total > 15 || rest[0] == '0')
        return -EINVAL;
    if (total + 2 > outcap)
        return -ENOSPC;
    out[0] = '+';
    memcpy(out + 1, cc, strlen(cc));
    memcpy(out + 1 + strlen(cc), rest, strlen(rest) + 1);
    return 0;
}
