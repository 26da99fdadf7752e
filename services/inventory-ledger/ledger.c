/*
 * ledger — event → ledger operations. See ledger.h.
 *
 * Conventions of quantities (proto comments): a till line is positive for goods leaving and
 * negative for goods coming back; a returned line moves stock only when `restock` is set.
 * Movement quantities are positive units except ADJUSTMENT (signed). A transfer puts the units
 * in transit at the destination (counterpart) until the TRANSFER_IN arrives there.
 */
#include "ledger.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

const char *ledger_bucket_name(enum ledger_bucket b)
{
    switch (b) {
    case LEDGER_COMMITTED:
        return "committed";
    case LEDGER_IN_TRANSIT:
        return "in_transit";
    default:
        return "on_hand";
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

enum ledger_topic ledger_topic_of(const char *topic)
{
    if (!topic)
        return LEDGER_TOPIC_UNKNOWN;
    if (ends_with(topic, "pos.transactions.v1"))
        return LEDGER_TOPIC_POS;
    if (ends_with(topic, "stock.movements.v1"))
        return LEDGER_TOPIC_STOCK;
    if (ends_with(topic, "shop.orders.v1"))
        return LEDGER_TOPIC_ORDERS;
    return LEDGER_TOPIC_UNKNOWN;
}

static int op_add(struct ledger_event *ev, const struct ledger_op *op)
{
    if (ev->nops == ev->capops) {
        size_t cap = ev->capops ? ev->capops * 2 : 8;
        struct ledger_op *n = realloc(ev->ops, cap * sizeof(*n));

        if (!n)
            return -ENOMEM;
        ev->ops = n;
        ev->capops = cap;
    }
    ev->ops[ev->nops++] = *op;
    return 0;
}

static int move_add(struct ledger_event *ev, const char *sku, const char *loc, enum ledger_bucket b,
                    int64_t delta, const char *reason, const char *line_ref)
{
    struct ledger_op op = {LEDGER_OP_MOVE,           sku, loc, b, delta, reason,
                           line_ref ? line_ref : "", NULL};

    if (delta == 0)
        return 0;
    return op_add(ev, &op);
}

static int problem_add(struct ledger_event *ev, int type, const char *sku, const char *loc,
                       const char *what)
{
    if (ev->nproblems == ev->capproblems) {
        size_t cap = ev->capproblems ? ev->capproblems * 2 : 4;
        struct ledger_problem *n = realloc(ev->problems, cap * sizeof(*n));

        if (!n)
            return -ENOMEM;
        ev->problems = n;
        ev->capproblems = cap;
    }
    ev->problems[ev->nproblems++] =
        (struct ledger_problem){type, sku ? sku : "", loc ? loc : "", what};
    return 0;
}

static void envelope_take(struct ledger_event *ev, const Tillsync__V1__Envelope *env,
                          const char *fallback_id)
{
    const char *id = env && env->event_id && *env->event_id ? env->event_id : fallback_id;

    snprintf(ev->event_id, sizeof(ev->event_id), "%s", id ? id : "");
    ev->occurred_at_ms = env ? env->occurred_at_ms : 0;
}

/* ---- till transactions */

static int pos_decode(struct ledger_event *ev, const Tillsync__V1__PosTransactionEvent *pe)
{
    const Tillsync__V1__PosTransaction *tx = pe->transaction;
    const char *loc;
    int rc = 0;

    if (pe->body_case != TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION || !tx)
        return 0; /* takings declarations do not touch stock */
    snprintf(ev->source_ref, sizeof(ev->source_ref), "pos:%s/%s/%s", tx->store_code, tx->till_id,
             tx->transaction_id);
    loc = *tx->location_id ? tx->location_id : tx->store_code;
    if (tx->kind == TILLSYNC__V1__TRANSACTION_KIND__TRANSACTION_KIND_VOID) {
        struct ledger_op op = {LEDGER_OP_REVERSE, "", loc, LEDGER_ON_HAND, 0, "void", "", NULL};

        /* the voided transaction is of the same store and till */
        if (!*tx->voided_transaction_id)
            return problem_add(ev,
                               TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_TRANSACTION_NOT_APPLIED,
                               "", loc, "void without voided_transaction_id");
        snprintf(ev->reverse_ref, sizeof(ev->reverse_ref), "pos:%s/%s/%s", tx->store_code,
                 tx->till_id, tx->voided_transaction_id);
        op.ref = ev->reverse_ref;
        return op_add(ev, &op);
    }
    if (!*loc)
        rc = problem_add(ev, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_UNKNOWN_LOCATION, "", "",
                         "till transaction without location_id or store_code");
    for (size_t i = 0; rc == 0 && i < tx->n_lines; i++) {
        const Tillsync__V1__TransactionLine *l = tx->lines[i];

        if (!*l->sku) {
            if (!*l->ledger_code)
                rc =
                    problem_add(ev, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NON_STOCK_UNMAPPED,
                                l->non_stock_code, loc, "non-stock line without ledger code");
            continue; /* non-stock lines never touch stock */
        }
        if (!*loc)
            continue;
        if (l->quantity > 0)
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, -l->quantity, "sale", l->line_id);
        else if (l->quantity < 0 && l->restock)
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, -l->quantity, "return_restock",
                          l->line_id);
    }
    return rc;
}

/* ---- stock movements */

static int stock_decode(struct ledger_event *ev, const Tillsync__V1__StockMovementEvent *se)
{
    const Tillsync__V1__StockMovement *m = se->movement;
    const char *loc;
    int rc = 0;

    if (!m)
        return -EINVAL;
    snprintf(ev->source_ref, sizeof(ev->source_ref), "movement:%s", m->movement_id);
    loc = m->location_id;
    if (!*loc)
        return problem_add(ev, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_UNKNOWN_LOCATION, "",
                           "", "stock movement without location_id");
    for (size_t i = 0; rc == 0 && i < m->n_lines; i++) {
        const Tillsync__V1__MovementLine *l = m->lines[i];
        int64_t q = l->quantity;

        if (!*l->sku)
            continue;
        switch (m->kind) {
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_RECEIVED:
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, q, "received", l->line_id);
            break;
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_OUT: {
            const char *dest = *m->counterpart_location_id ? m->counterpart_location_id : loc;

            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, -q, "transfer_out", l->line_id);
            if (rc == 0)
                rc = move_add(ev, l->sku, dest, LEDGER_IN_TRANSIT, q, "transfer_out", l->line_id);
            break;
        }
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_TRANSFER_IN:
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, q, "transfer_in", l->line_id);
            if (rc == 0)
                rc = move_add(ev, l->sku, loc, LEDGER_IN_TRANSIT, -q, "transfer_in", l->line_id);
            break;
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_DAMAGE:
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, -q, "damage", l->line_id);
            break;
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SHRINKAGE:
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, -q, "shrinkage", l->line_id);
            break;
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_ADJUSTMENT:
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, q, "adjustment", l->line_id);
            break;
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_CYCLE_COUNT:
        case TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SNAPSHOT: {
            struct ledger_op op = {LEDGER_OP_COUNT,
                                   l->sku,
                                   loc,
                                   LEDGER_ON_HAND,
                                   l->counted_quantity,
                                   m->kind == TILLSYNC__V1__MOVEMENT_KIND__MOVEMENT_KIND_SNAPSHOT
                                       ? "snapshot"
                                       : "cycle_count",
                                   l->line_id,
                                   NULL};

            rc = op_add(ev, &op);
            break;
        }
        default:
            break;
        }
    }
    return rc;
}

/* ---- shop orders */

static bool order_line_is_stock(const Tillsync__V1__OrderLine *l)
{
    return *l->sku && !*l->ledger_code;
}

static int release_add(struct ledger_event *ev, const char *sku, int64_t qty, const char *reason,
                       const char *line_ref)
{
    struct ledger_op op = {LEDGER_OP_RELEASE,        sku, "", LEDGER_COMMITTED, qty, reason,
                           line_ref ? line_ref : "", NULL};

    return op_add(ev, &op);
}

static int refund_decode(struct ledger_event *ev, const Tillsync__V1__ShopOrderEvent *oe,
                         const char *order_loc)
{
    const Tillsync__V1__Refund *r = oe->refund;
    int rc = 0;

    if (!r)
        return 0;
    for (size_t i = 0; rc == 0 && i < r->n_lines; i++) {
        const Tillsync__V1__RefundLine *l = r->lines[i];
        const char *loc = *l->location_id ? l->location_id : order_loc;

        if (!*l->sku || l->quantity <= 0)
            continue;
        switch (l->restock_type) {
        case TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_CANCEL:
            rc = release_add(ev, l->sku, l->quantity, "refund_cancel", r->refund_id);
            break;
        case TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_RETURN:
        case TILLSYNC__V1__RESTOCK_TYPE__RESTOCK_TYPE_LEGACY_RESTOCK:
            rc = move_add(ev, l->sku, loc, LEDGER_ON_HAND, l->quantity, "refund_restock",
                          r->refund_id);
            break;
        default:
            break; /* NO_RESTOCK: money back, goods not back in stock */
        }
    }
    return rc;
}

static int order_decode(struct ledger_event *ev, const Tillsync__V1__ShopOrderEvent *oe,
                        const char *default_location)
{
    const Tillsync__V1__ShopOrder *o = oe->order;
    const Tillsync__V1__Fulfillment *f = oe->fulfillment;
    const char *platform;
    const char *loc;
    int rc = 0;

    if (!o)
        return -EINVAL;
    platform = o->platform == TILLSYNC__V1__PLATFORM__PLATFORM_SHOPLINE ? "shopline" : "shopify";
    snprintf(ev->source_ref, sizeof(ev->source_ref), "order:%s/%s/%s", platform, o->shop_id,
             o->order ? o->order->id : "");
    loc = *o->location_id ? o->location_id : default_location;

    /* unmapped non-stock lines are a problem whatever the event kind, once: on creation */
    if (oe->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED)
        for (size_t i = 0; rc == 0 && i < o->n_lines; i++)
            if (!*o->lines[i]->sku && !*o->lines[i]->ledger_code)
                rc =
                    problem_add(ev, TILLSYNC__V1__EXCEPTION_TYPE__EXCEPTION_TYPE_NON_STOCK_UNMAPPED,
                                o->lines[i]->line_id, loc, "order line without SKU or ledger code");
    if (rc)
        return rc;
    if (o->in_store_sale) {
        /* a platform POS sale: stock leaves the store now, nothing is ever committed */
        if (oe->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED)
            for (size_t i = 0; rc == 0 && i < o->n_lines; i++)
                if (order_line_is_stock(o->lines[i]))
                    rc = move_add(ev, o->lines[i]->sku, loc, LEDGER_ON_HAND, -o->lines[i]->quantity,
                                  "in_store_sale", o->lines[i]->line_id);
        if (oe->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED)
            rc = refund_decode(ev, oe, loc);
        return rc;
    }
    switch (oe->kind) {
    case TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CREATED:
        for (size_t i = 0; rc == 0 && i < o->n_lines; i++)
            if (order_line_is_stock(o->lines[i]))
                rc = move_add(ev, o->lines[i]->sku, loc, LEDGER_COMMITTED, o->lines[i]->quantity,
                              "order_created", o->lines[i]->line_id);
        break;
    case TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_CANCELLED:
        rc = release_add(ev, "", -1, "order_cancelled", "");
        break;
    case TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_FULFILLED:
    case TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_PICKED_UP: {
        bool pickup = oe->kind == TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_PICKED_UP;
        const char *reason = pickup ? "picked_up" : "fulfilled";
        const char *ship_loc = f && *f->location_id && !pickup ? f->location_id : loc;
        const char *ref = f ? f->fulfillment_id : "";

        if (f && f->n_lines) {
            for (size_t i = 0; rc == 0 && i < f->n_lines; i++) {
                const Tillsync__V1__FulfillmentLine *l = f->lines[i];

                if (!*l->sku || l->quantity <= 0)
                    continue;
                rc = release_add(ev, l->sku, l->quantity, reason, ref);
                if (rc == 0)
                    rc = move_add(ev, l->sku, ship_loc, LEDGER_ON_HAND, -l->quantity, reason, ref);
            }
        } else {
            for (size_t i = 0; rc == 0 && i < o->n_lines; i++) {
                const Tillsync__V1__OrderLine *l = o->lines[i];

                if (!order_line_is_stock(l) || l->quantity <= 0)
                    continue;
                rc = release_add(ev, l->sku, l->quantity, reason, l->line_id);
                if (rc == 0)
                    rc = move_add(ev, l->sku, ship_loc, LEDGER_ON_HAND, -l->quantity, reason,
                                  l->line_id);
            }
        }
        break;
    }
    case TILLSYNC__V1__ORDER_EVENT_KIND__ORDER_EVENT_KIND_REFUNDED:
        rc = refund_decode(ev, oe, loc);
        break;
    default:
        break; /* UPDATED, PAID, READY_FOR_PICKUP: no stock change */
    }
    return rc;
}

int ledger_event_decode(struct ledger_event *ev, const char *topic, const void *payload, size_t len,
                        const char *fallback_id, const char *default_location, char *err,
                        size_t errlen)
{
    int rc;

    memset(ev, 0, sizeof(*ev));
    ev->topic = ledger_topic_of(topic);
    switch (ev->topic) {
    case LEDGER_TOPIC_POS: {
        Tillsync__V1__PosTransactionEvent *pe =
            tillsync__v1__pos_transaction_event__unpack(NULL, len, payload);

        if (!pe)
            goto bad;
        ev->msg = pe;
        envelope_take(ev, pe->envelope, fallback_id);
        rc = pos_decode(ev, pe);
        break;
    }
    case LEDGER_TOPIC_STOCK: {
        Tillsync__V1__StockMovementEvent *se =
            tillsync__v1__stock_movement_event__unpack(NULL, len, payload);

        if (!se)
            goto bad;
        ev->msg = se;
        envelope_take(ev, se->envelope, fallback_id);
        rc = stock_decode(ev, se);
        break;
    }
    case LEDGER_TOPIC_ORDERS: {
        Tillsync__V1__ShopOrderEvent *oe =
            tillsync__v1__shop_order_event__unpack(NULL, len, payload);

        if (!oe)
            goto bad;
        ev->msg = oe;
        envelope_take(ev, oe->envelope, fallback_id);
        rc = order_decode(ev, oe, default_location ? default_location : "");
        break;
    }
    default:
        snprintf(err, errlen, "topic %s is not one the ledger consumes", topic ? topic : "");
        return -EINVAL;
    }
    if (rc == -EINVAL)
        snprintf(err, errlen, "event lacks its body");
    else if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    else if (!*ev->event_id) {
        snprintf(err, errlen, "event has no event id");
        rc = -EINVAL;
    }
    return rc;
bad:
    snprintf(err, errlen, "payload is not a valid protobuf event of %s", topic);
    return -EINVAL;
}

void ledger_event_release(struct ledger_event *ev)
{
    if (!ev)
        return;
    if (ev->msg) {
        switch (ev->topic) {
        case LEDGER_TOPIC_POS:
            tillsync__v1__pos_transaction_event__free_unpacked(ev->msg, NULL);
            break;
        case LEDGER_TOPIC_STOCK:
            tillsync__v1__stock_movement_event__free_unpacked(ev->msg, NULL);
            break;
        case LEDGER_TOPIC_ORDERS:
            tillsync__v1__shop_order_event__free_unpacked(ev->msg, NULL);
            break;
        default:
            break;
        }
    }
    free(ev->ops);
    free(ev->problems);
    memset(ev, 0, sizeof(*ev));
}
