/*
 * Fuzz target: pos-ingest's request validation (services/pos-ingest/posjson.c) over arbitrary
 * bytes, without network. The first byte chooses the handler ('t' transaction, 'm' movement,
 * 'k' takings, 'b' the batch split; anything else: t, m and k) and whether the API key is bound
 * to store S001 (odd byte) or to any store; the rest is the request body. The batch split is
 * checked against the full parse: every body it splits must parse whole, into exactly the
 * items of its spans, transactions first. Every accepted item is also packed as
 * its protobuf event, which would crash on a NULL string or a dangling pointer in the message.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "mapping.h"
#include "posjson.h"

static struct mapping *fuzz_mapping(void)
{
    static struct mapping *m;
    static const char text[] =
        "{\"stores\":{\"S001\":{\"location_id\":\"LOC-1\"},\"S002\":{\"location_id\":\"LOC-2\"}},"
        "\"locations\":[\"WH-1\"],\"non_stock\":{\"BAG\":{\"ledger_code\":\"4010\","
        "\"needs_no_shipping\":true}}}";
    char err[256];

    if (!m)
        m = mapping_parse(text, sizeof(text) - 1, err, sizeof(err));
    if (!m)
        abort();
    return m;
}

static bool fake_lookup(void *opaque, const char *sku, bool *ship)
{
    (void)opaque;
    *ship = sku[0] != 'D';
    return sku[0] == 'K' || sku[0] == 'D';
}

static void check_item(struct pos_item *it)
{
    uint8_t *buf;
    size_t n;

    if (it->kind == POS_ITEM_MOVEMENT) {
        Tillsync__V1__StockMovementEvent ev = TILLSYNC__V1__STOCK_MOVEMENT_EVENT__INIT;

        ev.movement = it->movement;
        n = tillsync__v1__stock_movement_event__get_packed_size(&ev);
        buf = malloc(n + 1);
        tillsync__v1__stock_movement_event__pack(&ev, buf);
    } else {
        Tillsync__V1__PosTransactionEvent ev = TILLSYNC__V1__POS_TRANSACTION_EVENT__INIT;

        if (it->kind == POS_ITEM_TRANSACTION) {
            ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION;
            ev.transaction = it->transaction;
        } else {
            ev.body_case = TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS;
            ev.takings = it->takings;
        }
        n = tillsync__v1__pos_transaction_event__get_packed_size(&ev);
        buf = malloc(n + 1);
        tillsync__v1__pos_transaction_event__pack(&ev, buf);
    }
    if (strlen(it->event_id) != 36 || strlen(it->body_hash) != 64 || !it->key[0])
        abort();
    free(buf);
}

/* posjson_batch_split against json_parse_object of the whole body: every body it splits
 * parses whole (the service hands a split body's first items to Kafka before it has parsed the
 * last), into exactly the items of its spans, each of which parses alone, transactions first. */
static void check_batch(const char *b, size_t n)
{
    struct posjson_span *sp;
    int count = posjson_batch_split(b, n, 64, &sp);
    json_t *all, *items, *ones;
    size_t ntx;
    char err[256];

    if (count < 0) {
        if (count != -EINVAL || sp)
            abort();
        return;
    }
    ones = json_array();
    for (int k = 0; k < count; k++) {
        json_t *one = json_loadb(b + sp[k].off, sp[k].len, JSON_REJECT_DUPLICATES, NULL);

        if (!one)
            abort();
        json_array_append_new(ones, one);
    }
    all = json_parse_object(b, n, err, sizeof(err));
    if (!all)
        abort();
    items = json_array();
    ntx = json_array_size(json_object_get(all, "transactions"));
    json_array_extend(items, json_object_get(all, "transactions"));
    json_array_extend(items, json_object_get(all, "movements"));
    if (json_object_size(all) > 2 || !json_equal(items, ones))
        abort();
    for (int k = 0; k < count; k++)
        if (sp[k].group != ((size_t)k < ntx ? 0 : 1))
            abort();
    json_decref(ones);
    json_decref(items);
    json_decref(all);
    free(sp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct posjson_ctx ctx = {0};
    struct posjson_error e;
    struct pos_item it;
    char err[256];
    json_t *obj;
    uint8_t sel;

    if (size < 1)
        return 0;
    sel = data[0];
    if (sel == 'b') {
        check_batch((const char *)data + 1, size - 1);
        return 0;
    }
    ctx.tenant_id = "fuzz";
    ctx.mapping = fuzz_mapping();
    ctx.auth_store = (sel & 1) ? "S001" : NULL;
    ctx.now_ms = 1795514400000LL;
    ctx.max_future_ms = 300000;
    ctx.uploaded_late = (sel & 2) != 0;
    ctx.sku_lookup = fake_lookup;
    obj = json_parse_object((const char *)data + 1, size - 1, err, sizeof(err));
    if (!obj)
        return 0;
    if (sel == 't' || (sel != 'm' && sel != 'k')) {
        if (posjson_transaction(obj, &ctx, &it, &e) == 0)
            check_item(&it);
        else if (e.status < 400 || !e.message[0] || !e.code[0])
            abort(); /* every refusal names a status, a code and a message */
        pos_item_release(&it);
    }
    if (sel == 'm' || (sel != 't' && sel != 'k')) {
        if (posjson_movement(obj, &ctx, &it, &e) == 0)
            check_item(&it);
        else if (e.status < 400 || !e.message[0] || !e.code[0])
            abort();
        pos_item_release(&it);
    }
    if (sel == 'k' || (sel != 't' && sel != 'm')) {
        if (posjson_takings(obj, &ctx, &it, &e) == 0)
            check_item(&it);
        else if (e.status < 400 || !e.message[0] || !e.code[0])
            abort();
        pos_item_release(&it);
    }
    json_decref(obj);
    return 0;
}
