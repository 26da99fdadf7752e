/* The json-c half of the json_choice benchmark; see support/json_choice.h. */
#include "json_choice.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static struct json_tokener *tok;

static struct json_object *jc_parse(const char *text, size_t len, int flags)
{
    if (!tok)
        tok = json_tokener_new();
    json_tokener_reset(tok);
    json_tokener_set_flags(tok, flags);
    struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    /* in strict mode json-c reports trailing characters itself; check the end anyway */
    if (o && json_tokener_get_parse_end(tok) < len) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static size_t str_len(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return 0;
    return (size_t)json_object_get_string_len(v);
}

static long long int_of(struct json_object *o, const char *key)
{
    struct json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return 0;
    return (long long)json_object_get_int64(v);
}

int jsonc_parse_walk(const char *text, size_t len, struct txn_walk *w)
{
    struct json_object *root =
        jc_parse(text, len, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *lines, *cust;

    memset(w, 0, sizeof(*w));
    if (!root)
        return -1;
    w->text_bytes += str_len(root, "transaction_id") + str_len(root, "store_code") +
                     str_len(root, "till_id") + str_len(root, "occurred_at") +
                     str_len(root, "currency");
    if (json_object_object_get_ex(root, "customer", &cust))
        w->id_low = int_of(cust, "platform_id") % 1000000;
    if (json_object_object_get_ex(root, "lines", &lines) &&
        json_object_is_type(lines, json_type_array)) {
        size_t n = json_object_array_length(lines);
        for (size_t i = 0; i < n; i++) {
            struct json_object *l = json_object_array_get_idx(lines, i), *tax, *disc;
            w->lines++;
            w->quantity += int_of(l, "quantity");
            w->text_bytes += str_len(l, "line_id") + str_len(l, "sku") + str_len(l, "barcode") +
                             str_len(l, "description") + str_len(l, "unit_price");
            if (json_object_object_get_ex(l, "tax", &tax)) {
                w->tax_bp += int_of(tax, "rate_bp");
                w->text_bytes += str_len(tax, "amount");
            }
            if (json_object_object_get_ex(l, "discounts", &disc) &&
                json_object_is_type(disc, json_type_array)) {
                size_t nd = json_object_array_length(disc);
                for (size_t k = 0; k < nd; k++) {
                    struct json_object *d = json_object_array_get_idx(disc, k);
                    w->discounts++;
                    w->text_bytes += str_len(d, "code") + str_len(d, "amount");
                }
            }
        }
    }
    json_object_put(root);
    return 0;
}

void jsonc_probe(const char *text, size_t len, struct probe_result *r)
{
    struct json_object *o;

    if (!tok)
        tok = json_tokener_new();
    json_tokener_reset(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, text, (int)len);
    size_t end = json_tokener_get_parse_end(tok);
    if (o && end >= len) {
        r->accepted = true;
        snprintf(r->detail, sizeof(r->detail), "accepted: %s",
                 json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    } else if (o) {
        r->accepted = false;
        snprintf(r->detail, sizeof(r->detail),
                 "rejected only by our end check: stopped at byte %zu of %zu", end, len);
    } else {
        r->accepted = false;
        snprintf(r->detail, sizeof(r->detail), "rejected: \"%s\" at byte offset %zu",
                 json_tokener_error_desc(json_tokener_get_error(tok)), end);
    }
    json_object_put(o);
}

bool jsonc_read_id(const char *text, size_t len, long long *id)
{
    struct json_object *root = jc_parse(text, len, JSON_TOKENER_STRICT), *v;
    bool ok = false;

    if (root && json_object_object_get_ex(root, "id", &v) &&
        json_object_is_type(v, json_type_int)) {
        *id = (long long)json_object_get_int64(v);
        ok = true;
    }
    json_object_put(root);
    return ok;
}

void jsonc_cleanup(void)
{
    json_tokener_free(tok);
    tok = NULL;
}
