/*
 * identity — the customer's contact details in the one form used to match platform members:
 * emails trimmed and lowercased, phones in E.164 ("+447700900123"). A returning shopper who
 * gives "07700 900123" at the till and "+44 7700 900123" online is the same member.
 */
#ifndef LOYALTY_IDENTITY_H
#define LOYALTY_IDENTITY_H

#include <stddef.h>

/*
 * Normalise an email: surrounding whitespace trimmed, lowercased (the whole address: stores
 * and platforms treat local parts case-insensitively in practice). Returns 0 with out set,
 * -EINVAL when in is NULL, empty, has inner whitespace or not exactly one '@' with text on
 * both sides, -ENOSPC when out is too small.
 */
int identity_email_normalise(const char *in, char *out, size_t outcap);

/*
 * Convert a phone number to E.164: spaces, dashes, dots, slashes and parentheses dropped, a
 * UK-style "(0)" after the country code dropped; "+CC…" and "00CC…" are international; a
 * leading trunk "0" is replaced by default_cc (digits only, e.g. "44"); other digits are
 * national and get default_cc in front unless they already start with it and are longer than
 * a national number. The result has 8..15 digits after '+'. Returns 0, -EINVAL for letters,
 * too few or too many digits or a national number without default_cc, -ENOSPC.
 */
int identity_phone_e164(const char *in, const char *default_cc, char *out, size_t outcap);

#endif
