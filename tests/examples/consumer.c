/*
 * consumer — how another team reads tillsync's topics in C (docs/consuming.md).
 *
 * A stand-alone example: it links only librdkafka and the protobuf-c code generated from
 * proto/tillsync/v1 (no tillsync runtime). It subscribes to the given topics, reads the
 * CloudEvents headers of each record, decodes the payload with the message type of its topic,
 * prints one line per event and skips an event whose ce_id it has already seen (delivery is at
 * least once: a producer retry or a consumer restart can bring a record twice).
 *
 * Usage: consumer [-b brokers] [-g group] [-c count] [-i idle_ms] topic...
 *   -b  bootstrap brokers (default: $KAFKA_BROKERS)
 *   -g  consumer group id (default: consumer-example); offsets are committed in it
 *   -c  exit 0 after this many distinct events (default: run until SIGINT/SIGTERM)
 *   -i  exit after this many ms without a record (default: never); exit 1 if -c was not reached
 * Topics are full names (with the tenant prefix, e.g. acme.pos.transactions.v1); a topic's
 * message type is found from its name's ending, so the prefix does not matter. A <topic>.dlq
 * record is decoded like its source topic and its dlq_* headers are shown.
 *
 * Output, one line per record on stdout:
 *   EVENT <topic> p<partition>@<offset> key=<key> ce_type=<type> ce_id=<id> <summary>
 *   DUPLICATE <topic> p<partition>@<offset> ce_id=<id>
 *   TOMBSTONE <topic> p<partition>@<offset> key=<key>
 *   UNDECODABLE <topic> p<partition>@<offset> ce_id=<id> <why>
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "tillsync/v1/catalog.pb-c.h"
#include "tillsync/v1/exception.pb-c.h"
#include "tillsync/v1/inventory.pb-c.h"
#include "tillsync/v1/loyalty.pb-c.h"
#include "tillsync/v1/order.pb-c.h"
#include "tillsync/v1/pos.pb-c.h"
#include "tillsync/v1/stock.pb-c.h"

static volatile sig_atomic_t running = 1;

static void on_signal(int sig)
{
    (void)sig;
    running = 0;
}

/* ---- dedupe by ce_id ------------------------------------------------------------------------
 * The idea, kept small: remember the ids already processed and skip a record whose id is known.
 * This is an in-memory, fixed-size set (open addressing, FNV-1a). A real consumer keeps the ids
 * where it keeps its effects — e.g. a table with a unique key on event_id written in the same
 * database transaction as the effect — and forgets them after a window longer than any redelivery
 * (the topic's retention). */
#define SEEN_SLOTS 4096
#define ID_MAX     128

static char seen[SEEN_SLOTS][ID_MAX];
static size_t seen_count;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Returns true if `id` was seen before; otherwise records it and returns false. When the set is
 * full every id counts as new (the example never evicts). */
static bool seen_check_and_add(const char *id)
{
    size_t i = (size_t)(fnv1a(id) % SEEN_SLOTS);
    for (size_t n = 0; n < SEEN_SLOTS; n++, i = (i + 1) % SEEN_SLOTS) {
        if (seen[i][0] == '\0') {
            if (seen_count + 1 >= SEEN_SLOTS)
                return false;
            size_t len = strnlen(id, ID_MAX - 1);

            memcpy(seen[i], id, len); /* longer ids are cut: fine for an example */
            seen[i][len] = '\0';
            seen_count++;
            return false;
        }
        if (strcmp(seen[i], id) == 0)
            return true;
    }
    return false;
}

/* ---- headers -------------------------------------------------------------------------------- */

/* Copies the last value of header `name` into out (NUL-terminated, truncated to outlen - 1);
 * "-" when the header is absent. */
static void header_get(rd_kafka_headers_t *hdrs, const char *name, char *out, size_t outlen)
{
    const void *val = NULL;
    size_t size = 0;
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        !val) {
        snprintf(out, outlen, "-");
        return;
    }
    if (size >= outlen)
        size = outlen - 1;
    memcpy(out, val, size);
    out[size] = '\0';
}

/* ---- one summary per message type ----------------------------------------------------------- */

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : "?";
}

static const char *str_or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static void money_fmt(const Tillsync__V1__Money *m, char *out, size_t outlen)
{
    if (!m)
        snprintf(out, outlen, "-");
    else
        snprintf(out, outlen, "%" PRId64 " %s", m->minor_units, str_or_dash(m->currency));
}

static void summarize_pos(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__PosTransactionEvent *e = (const Tillsync__V1__PosTransactionEvent *)msg;
    char total[64];
    if (e->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TRANSACTION) {
        const Tillsync__V1__PosTransaction *t = e->transaction;
        money_fmt(t->total, total, sizeof(total));
        snprintf(out, outlen, "pos transaction %s kind=%s store=%s till=%s lines=%zu total=%s",
                 str_or_dash(t->transaction_id),
                 enum_name(&tillsync__v1__transaction_kind__descriptor, t->kind),
                 str_or_dash(t->store_code), str_or_dash(t->till_id), t->n_lines, total);
    } else if (e->body_case == TILLSYNC__V1__POS_TRANSACTION_EVENT__BODY_TAKINGS) {
        const Tillsync__V1__TakingsDeclaration *d = e->takings;
        money_fmt(d->cash_counted, total, sizeof(total));
        snprintf(out, outlen, "pos takings store=%s till=%s date=%s cash=%s",
                 str_or_dash(d->store_code), str_or_dash(d->till_id), str_or_dash(d->business_date),
                 total);
    } else {
        snprintf(out, outlen, "pos event with no body");
    }
}

static void summarize_stock(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__StockMovementEvent *e = (const Tillsync__V1__StockMovementEvent *)msg;
    const Tillsync__V1__StockMovement *m = e->movement;
    if (!m) {
        snprintf(out, outlen, "stock movement with no body");
        return;
    }
    snprintf(out, outlen, "stock movement %s kind=%s location=%s lines=%zu",
             str_or_dash(m->movement_id),
             enum_name(&tillsync__v1__movement_kind__descriptor, m->kind),
             str_or_dash(m->location_id), m->n_lines);
}

static void summarize_order(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__ShopOrderEvent *e = (const Tillsync__V1__ShopOrderEvent *)msg;
    const Tillsync__V1__ShopOrder *o = e->order;
    char total[64];
    money_fmt(o ? o->total : NULL, total, sizeof(total));
    snprintf(out, outlen, "shop order %s kind=%s platform=%s shop=%s lines=%zu total=%s",
             o && o->order ? str_or_dash(o->order->id) : "-",
             enum_name(&tillsync__v1__order_event_kind__descriptor, e->kind),
             o ? enum_name(&tillsync__v1__platform__descriptor, o->platform) : "-",
             o ? str_or_dash(o->shop_id) : "-", o ? o->n_lines : 0, total);
}

static void summarize_catalog(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__CatalogItemEvent *e = (const Tillsync__V1__CatalogItemEvent *)msg;
    const Tillsync__V1__CatalogItem *i = e->item;
    char price[64];
    if (!i) {
        snprintf(out, outlen, "catalog item with no body");
        return;
    }
    money_fmt(i->price, price, sizeof(price));
    snprintf(out, outlen, "catalog item sku=%s variant=%s price=%s deleted=%s", str_or_dash(i->sku),
             i->variant ? str_or_dash(i->variant->id) : "-", price, i->deleted ? "true" : "false");
}

static void summarize_level(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__InventoryLevelEvent *e = (const Tillsync__V1__InventoryLevelEvent *)msg;
    const Tillsync__V1__InventoryLevel *l = e->level;
    if (!l) {
        snprintf(out, outlen, "inventory level with no body");
        return;
    }
    snprintf(out, outlen,
             "inventory level sku=%s location=%s on_hand=%" PRId64 " available=%" PRId64
             " version=%" PRId64,
             str_or_dash(l->sku), str_or_dash(l->location_id), l->on_hand, l->available,
             l->version);
}

static void summarize_points(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__LoyaltyPointsEvent *e = (const Tillsync__V1__LoyaltyPointsEvent *)msg;
    const Tillsync__V1__PointsChange *c = e->change;
    if (!c) {
        snprintf(out, outlen, "loyalty change with no body");
        return;
    }
    snprintf(out, outlen, "loyalty points member=%s kind=%s points=%" PRId64 " status=%s",
             str_or_dash(c->member_id),
             enum_name(&tillsync__v1__points_change_kind__descriptor, c->kind), c->points,
             enum_name(&tillsync__v1__points_change_status__descriptor, c->status));
}

static void summarize_exception(const ProtobufCMessage *msg, char *out, size_t outlen)
{
    const Tillsync__V1__ExceptionEvent *e = (const Tillsync__V1__ExceptionEvent *)msg;
    const Tillsync__V1__RaisedException *x = e->exception;
    if (!x) {
        snprintf(out, outlen, "exception with no body");
        return;
    }
    snprintf(out, outlen, "exception %s type=%s owner=%s signal=%s", str_or_dash(x->dedupe_key),
             enum_name(&tillsync__v1__exception_type__descriptor, x->type),
             enum_name(&tillsync__v1__owner_team__descriptor, x->owner),
             enum_name(&tillsync__v1__exception_signal__descriptor, x->signal));
}

/* Topic base name -> payload message type. Every message starts with an Envelope (field 1). */
static const struct topic_type {
    const char *base;
    const ProtobufCMessageDescriptor *desc;
    void (*summarize)(const ProtobufCMessage *msg, char *out, size_t outlen);
} topic_types[] = {
    {"pos.transactions.v1", &tillsync__v1__pos_transaction_event__descriptor, summarize_pos},
    {"stock.movements.v1", &tillsync__v1__stock_movement_event__descriptor, summarize_stock},
    {"shop.orders.v1", &tillsync__v1__shop_order_event__descriptor, summarize_order},
    {"catalog.items.v1", &tillsync__v1__catalog_item_event__descriptor, summarize_catalog},
    {"inventory.levels.v1", &tillsync__v1__inventory_level_event__descriptor, summarize_level},
    {"loyalty.points.v1", &tillsync__v1__loyalty_points_event__descriptor, summarize_points},
    {"recon.exceptions.v1", &tillsync__v1__exception_event__descriptor, summarize_exception},
};

/* The type of `topic` (with any tenant prefix and an optional ".dlq" suffix), or NULL. */
static const struct topic_type *topic_type_find(const char *topic, bool *is_dlq)
{
    size_t len = strlen(topic);
    *is_dlq = len > 4 && strcmp(topic + len - 4, ".dlq") == 0;
    if (*is_dlq)
        len -= 4;
    for (size_t i = 0; i < sizeof(topic_types) / sizeof(topic_types[0]); i++) {
        size_t blen = strlen(topic_types[i].base);
        if (len >= blen && memcmp(topic + len - blen, topic_types[i].base, blen) == 0)
            return &topic_types[i];
    }
    return NULL;
}

/* Handles one record; returns 1 when it was a new, decoded event, else 0. */
static int record_handle(const rd_kafka_message_t *rm)
{
    const char *topic = rd_kafka_topic_name(rm->rkt);
    rd_kafka_headers_t *hdrs = NULL;
    char ce_id[ID_MAX], ce_type[128], ctype[64], key[256], summary[512], dlq[512] = "";
    bool is_dlq = false;
    const struct topic_type *tt = topic_type_find(topic, &is_dlq);
    ProtobufCMessage *msg = NULL;

    size_t klen = rm->key_len < sizeof(key) - 1 ? rm->key_len : sizeof(key) - 1;
    if (rm->key)
        memcpy(key, rm->key, klen);
    key[rm->key ? klen : 0] = '\0';

    if (!rm->payload) { /* compacted topics: a deleted key */
        printf("TOMBSTONE %s p%" PRId32 "@%" PRId64 " key=%s\n", topic, rm->partition, rm->offset,
               key);
        return 0;
    }
    /* Headers are detached from the record only for reading here; the record still owns them. */
    if (rd_kafka_message_headers(rm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        hdrs = NULL;
    header_get(hdrs, "ce_id", ce_id, sizeof(ce_id));
    header_get(hdrs, "ce_type", ce_type, sizeof(ce_type));
    header_get(hdrs, "content-type", ctype, sizeof(ctype));
    if (is_dlq) {
        char code[64], otopic[256], service[64];
        header_get(hdrs, "dlq_error_code", code, sizeof(code));
        header_get(hdrs, "dlq_original_topic", otopic, sizeof(otopic));
        header_get(hdrs, "dlq_service", service, sizeof(service));
        snprintf(dlq, sizeof(dlq), " dlq_error_code=%s dlq_original_topic=%s dlq_service=%s", code,
                 otopic, service);
    }

    if (!tt || strcmp(ctype, "application/protobuf") != 0) {
        printf("UNDECODABLE %s p%" PRId32 "@%" PRId64 " ce_id=%s %s\n", topic, rm->partition,
               rm->offset, ce_id,
               !tt ? "unknown topic" : "content-type is not application/protobuf");
        return 0;
    }
    /* Dedupe before the work: dead letters are deduplicated separately (same ce_id as the
     * original, but a different fact: "this event failed"). */
    char dedupe_key[ID_MAX + 8];
    snprintf(dedupe_key, sizeof(dedupe_key), "%s%s", is_dlq ? "dlq:" : "", ce_id);
    if (strcmp(ce_id, "-") != 0 && seen_check_and_add(dedupe_key)) {
        printf("DUPLICATE %s p%" PRId32 "@%" PRId64 " ce_id=%s\n", topic, rm->partition, rm->offset,
               ce_id);
        return 0;
    }
    msg = protobuf_c_message_unpack(tt->desc, NULL, rm->len, rm->payload);
    if (!msg) {
        printf("UNDECODABLE %s p%" PRId32 "@%" PRId64 " ce_id=%s not a valid %s\n", topic,
               rm->partition, rm->offset, ce_id, tt->desc->name);
        return 0;
    }
    tt->summarize(msg, summary, sizeof(summary));
    printf("EVENT %s p%" PRId32 "@%" PRId64 " key=%s ce_type=%s ce_id=%s %s%s\n", topic,
           rm->partition, rm->offset, key, ce_type, ce_id, summary, dlq);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int parse_long(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < 0)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *brokers = getenv("KAFKA_BROKERS");
    const char *group = "consumer-example";
    long want = -1, idle_ms = -1;
    int opt, rc = 1;
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;

    while ((opt = getopt(argc, argv, "b:g:c:i:")) != -1) {
        switch (opt) {
        case 'b':
            brokers = optarg;
            break;
        case 'g':
            group = optarg;
            break;
        case 'c':
            if (parse_long(optarg, &want))
                goto usage;
            break;
        case 'i':
            if (parse_long(optarg, &idle_ms))
                goto usage;
            break;
        default:
            goto usage;
        }
    }
    if (optind >= argc || !brokers || !*brokers)
        goto usage;

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) ||
        /* A new group starts at the oldest record: needed to bootstrap from compacted topics. */
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr)) ||
        /* Store an offset only after the record was handled (at least once, never lost). */
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, sizeof(errstr))) {
        fprintf(stderr, "consumer: %s\n", errstr);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "consumer: %s\n", errstr);
        goto out;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(rk);

    topics = rd_kafka_topic_partition_list_new(argc - optind);
    for (int i = optind; i < argc; i++) {
        bool is_dlq;
        if (!topic_type_find(argv[i], &is_dlq))
            fprintf(stderr, "consumer: %s is not a tillsync topic; its records will be skipped\n",
                    argv[i]);
        rd_kafka_topic_partition_list_add(topics, argv[i], RD_KAFKA_PARTITION_UA);
    }
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics);
    if (err) {
        fprintf(stderr, "consumer: subscribe: %s\n", rd_kafka_err2str(err));
        goto out;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    long events = 0;
    long long last = now_ms();
    while (running) {
        rd_kafka_message_t *rm = rd_kafka_consumer_poll(rk, 200);
        if (!rm) {
            if (idle_ms >= 0 && now_ms() - last > idle_ms)
                break;
            continue;
        }
        last = now_ms();
        if (rm->err) {
            if (rm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "consumer: %s\n", rd_kafka_message_errstr(rm));
        } else {
            events += record_handle(rm);
            fflush(stdout);
            /* Only now is the record done: its offset may be committed (offset + 1). */
            rd_kafka_offset_store(rm->rkt, rm->partition, rm->offset);
        }
        rd_kafka_message_destroy(rm);
        if (want >= 0 && events >= want)
            break;
    }
    rc = (want < 0 || events >= want) ? 0 : 1;
    if (rc)
        fprintf(stderr, "consumer: %ld of %ld events before going idle\n", events, want);

out:
    if (rk) {
        rd_kafka_consumer_close(rk); /* commits the stored offsets, leaves the group */
        rd_kafka_destroy(rk);
    }
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (topics)
        rd_kafka_topic_partition_list_destroy(topics);
    return rc;

usage:
    fprintf(stderr, "usage: consumer [-b brokers] [-g group] [-c count] [-i idle_ms] topic...\n"
                    "       (brokers default to $KAFKA_BROKERS)\n");
    return 2;
}
