/*
 * rules — a tenant's points rules, loaded from configuration (RULES_FILE, JSON; the format is
 * in README.md "Rules"), and the arithmetic of awards and proportional reversals. Integers
 * only: points are floor(qualifying minor units × points_per_unit × multiplier% /
 * (unit_minor × 100)).
 */
#ifndef LOYALTY_RULES_H
#define LOYALTY_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rules_trigger {
    RULES_TRIGGER_PAID,      /* an online order earns once it is paid */
    RULES_TRIGGER_FULFILLED, /* … once it is fulfilled (or picked up) */
};

/* A bonus period [from_ms, to_ms) with a multiplier in percent (200 = double points). */
struct rules_multiplier {
    int64_t from_ms, to_ms;
    long percent;
};

/* One tenant's rules. Invariants after rules_parse(): points_per_unit >= 0, unit_minor > 0,
 * every multiplier has from_ms < to_ms and percent >= 0. Owns its arrays. */
struct rules {
    char rule_id[64];
    long points_per_unit;
    long unit_minor;
    bool after_tax; /* qualifying amount includes tax (else net before tax) */
    enum rules_trigger trigger;
    bool exclude_all_non_stock;
    bool exclude_gift_cards;
    char **non_stock_codes; /* excluded till non-stock codes */
    size_t n_non_stock_codes;
    char **ledger_codes; /* excluded ledger codes (till and online lines) */
    size_t n_ledger_codes;
    char **gift_card_codes; /* codes that mark a gift card line (non-stock or ledger code) */
    size_t n_gift_card_codes;
    struct rules_multiplier *multipliers;
    size_t n_multipliers;
};

/*
 * Parse rules JSON text for tenant: either {"tenants": {"<tenant>": {...}, "*": {...}}} (the
 * tenant's entry, else "*") or one rule set at the top level. out is caller-owned and filled;
 * release with rules_release() whatever this returns. Returns 0, or -EINVAL with err naming
 * the field ("tenants.acme.basis: must be net_before_tax or net_after_tax").
 */
int rules_parse(const char *json, size_t len, const char *tenant, struct rules *out, char *err,
                size_t errlen);

/* Read path and rules_parse() it. Returns 0, -ENOENT/-EIO reading, or -EINVAL. */
int rules_load_file(const char *path, const char *tenant, struct rules *out, char *err,
                    size_t errlen);

/* Free what rules_parse() allocated; safe on a zeroed or released struct. */
void rules_release(struct rules *r);

/* true when a line with these codes earns nothing (either may be NULL or ""). */
bool rules_line_excluded(const struct rules *r, const char *non_stock_code,
                         const char *ledger_code);

/* Multiplier in percent at time at_ms: the largest bonus covering it, else 100. */
long rules_multiplier_at(const struct rules *r, int64_t at_ms);

/* Points for a qualifying amount at time at_ms, rounded toward zero; a negative amount gives
 * the negative of the points of its absolute value. */
int64_t rules_points(const struct rules *r, int64_t qualifying_minor, int64_t at_ms);

/*
 * Proportional reversal: an award of award_points for award_qualifying, of which
 * refunded_before was already refunded, now refunded by refund_now more (>= 0). Returns the
 * points to take back now (>= 0) such that the total taken back after refunds R is
 * floor(award_points × min(R, award_qualifying) / award_qualifying): a full refund takes back
 * exactly the award, whatever the number of partial refunds before it.
 */
int64_t rules_reversal_points(int64_t award_points, int64_t award_qualifying,
                              int64_t refunded_before, int64_t refund_now);

#endif
